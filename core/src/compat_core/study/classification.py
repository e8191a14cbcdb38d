"""The report of a classification study (``evaluation: {task: classification}``): classifier updates.

For each method entry and seed pair (old seed s, new seed t) the new classifier is scored against old
classifier s on the same images: the old and new accuracy, the negative flip rate NFR = #(old right,
new wrong) / N and its impact NFI = negative flips / new errors (Yan et al., CVPR 2021), the positive
flip rate PFR, and BTC / BEC (Srivastava et al., KDD 2020), as :mod:`compat_core.metrics.regression`
defines them. The reference (the independently trained new model of seed t) is scored against the same
old model, so every method's NFR is also given against the reference's NFR of the same seed pair: the
regression that training with the old model removed. PCT's papers quote that as the relative NFR,
NFR / NFR(reference) - 1.
"""

from __future__ import annotations

from typing import Any

from compat_core.study.plan import new_run, old_run, seed_pairs
from compat_core.study.spec import StudySpec
from compat_core.study.stats import paired, pm, summarize

METRICS = ("old_accuracy", "new_accuracy", "new_top5", "nfr", "nfi", "pfr", "btc", "bec")
COMPARED = ("new_accuracy", "nfr")


def per_pair(spec: StudySpec, entry: str, results: dict) -> tuple[list[dict], list[str]]:
    """One row per seed pair of ``entry`` whose results (and the reference's) are all present."""
    rows, missing = [], []
    for old_seed, new_seed, run in seed_pairs(spec, entry):
        old, reference = old_run(old_seed), new_run(spec.reference, new_seed, None)
        if (run, old) not in results or (reference, old) not in results:
            missing.append(f"{old_seed}/{new_seed}")
            continue
        got, ref = results[run, old], results[reference, old]
        row = {"old_seed": old_seed, "new_seed": new_seed, "run": run, **{m: got[m] for m in METRICS},
               "reference": {m: ref[m] for m in COMPARED}}
        row["relative_nfr"] = got["nfr"] / ref["nfr"] - 1 if ref["nfr"] > 0 else None
        row["fewer_flips"] = got["nfr"] < ref["nfr"]
        if got.get("old_classes"):
            row["old_classes"] = {m: got["old_classes"][m] for m in ("old_accuracy", "new_accuracy", "nfr")}
        rows.append(row)
    return rows, missing


def summary(method: str, rows: list[dict]) -> dict[str, Any]:
    """Mean ± std of every metric over the seed pairs, and the paired differences from the reference."""
    relative = [r["relative_nfr"] for r in rows if r["relative_nfr"] is not None]
    return {"method": method, "n": len(rows), **{m: summarize([r[m] for r in rows]) for m in METRICS},
            "vs_reference": {m: paired([r[m] for r in rows], [r["reference"][m] for r in rows]) for m in COMPARED},
            "relative_nfr": {**summarize(relative), "undefined": len(rows) - len(relative)},
            "fewer_flips": sum(r["fewer_flips"] for r in rows), "per_pair": rows}


def versus(rows: list[dict], others: list[dict], comparison: str) -> dict[str, Any]:
    """Paired differences of accuracy and NFR against the comparison method, over shared seed pairs."""
    theirs = {(r["old_seed"], r["new_seed"]): r for r in others}
    common = [r for r in rows if (r["old_seed"], r["new_seed"]) in theirs]
    return {"against": comparison, "n": len(common),
            **{m: paired([r[m] for r in common], [theirs[r["old_seed"], r["new_seed"]][m] for r in common])
               for m in COMPARED}}


def tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` of every table, numbers in percent."""
    methods, n_all, ref = report["methods"], report["n_pairs"], report["reference"]
    out = []
    rows = [[name, str(s["n"]), pm(s["new_accuracy"]), pm(s["nfr"]), pm(s["nfi"]), pm(s["btc"])]
            for name, s in methods.items()]
    out.append((f"new classifier against its old one ({report['split']}). Mean ± std over the seed pairs "
                f"(n of {n_all}); NFR: old right and new wrong, share of all images",
                ["method", "n", "accuracy", "NFR", "NFI", "BTC"], rows))
    rows = [[name, pm(s["vs_reference"]["new_accuracy"]["diff"]), pm(s["vs_reference"]["nfr"]["diff"]),
             pm(s["relative_nfr"], digits=1), f"{s['fewer_flips']}/{s['n']}"] for name, s in methods.items()]
    out.append((f"against the reference ({ref}, same seed pair): accuracy and NFR differences, NFR relative "
                f"(NFR / NFR(ref) - 1), and in how many pairs the NFR is below the reference's",
                ["method", "accuracy diff", "NFR diff", "NFR relative", "fewer flips"], rows))
    first = next(iter(methods.values()), None)
    if first is not None:
        out.append(("the old classifier, over the same seed pairs", ["metric", "old"],
                    [["accuracy", pm(first["old_accuracy"])]]))
    versus_rows = [(name, s["versus"]) for name, s in methods.items() if "versus" in s]
    if versus_rows:
        rows = [[name, pm(v["new_accuracy"]["diff"]), _count(v["new_accuracy"]), pm(v["nfr"]["diff"]),
                 _count(v["nfr"], lower_is_better=True)] for name, v in versus_rows]
        out.append((f"paired with {report['comparison']}, seed pair by seed pair (difference; pairs "
                    f"better/worse)", ["method", "accuracy diff", "pairs", "NFR diff", "pairs"], rows))
    return out


def _count(p: dict, lower_is_better: bool = False) -> str:
    better, worse = p["favour_method"], p["favour_comparison"]
    return f"{worse}/{better}" if lower_is_better else f"{better}/{worse}"


def plot_axes(ax, report: dict[str, Any]) -> None:
    """Each method in the (new accuracy, NFR) plane with its seed spread; the old accuracy as a line."""
    for name, s in report["methods"].items():
        x, y = s["new_accuracy"], s["nfr"]
        ax.errorbar(100 * x["mean"], 100 * y["mean"], xerr=100 * x["std"], yerr=100 * y["std"], fmt="o",
                    capsize=3, label=f"{name} (n={s['n']})")
    first = next(iter(report["methods"].values()), None)
    if first is not None:
        ax.axvline(100 * first["old_accuracy"]["mean"], color="grey", linestyle="--", label="old accuracy")
    ax.set_xlabel("new accuracy (%)")
    ax.set_ylabel("negative flip rate (%)")
    ax.set_title(f"{report['study']} [{report['split']}]: accuracy vs regression")

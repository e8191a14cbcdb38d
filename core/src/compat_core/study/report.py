"""``compat study report``: per method, over every seed pair, as mean ± std (fractions in JSON).

For each method entry and seed pair (old seed s, new seed t): old/old is the old model s against
itself, new/old the method's new model against old model s (new queries, old gallery), new/new the new
model against itself, and the update gain (Shen et al., CVPR 2020) is
(M(new, old) - M(old, old)) / (M(ref, ref) - M(old, old)) with the reference run of new seed t.
Classification studies are summarised by :mod:`compat_core.study.classification`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compat_core.errors import CompatError
from compat_core.io import read_json
from compat_core.runs import read_history
from compat_core.study import classification
from compat_core.study.plan import retrieval_pairs, seed_pairs
from compat_core.study.runner import read_study_dir
from compat_core.study.spec import StudySpec
from compat_core.study.stats import paired, summarize

METRICS = ("top1", "top5", "mAP")
CRITERION = ("top1", "mAP")
GROUPS = ("old_classes", "new_classes")
# Equal features score equal up to the summation order of the metric code (the last bit of a float64);
# another old or reference model differs by a query or more, at least 1e-5 of a 100,000-item set.
SAME_MODEL_TOLERANCE = 1e-9


def build_report(study_dir: str | Path, split: str = "test", compare_to: str | None = None,
                 earlier: Sequence[str | Path] = ()) -> dict[str, Any]:
    """The report of the study in ``study_dir`` on ``split``; seed pairs whose results are missing
    are left out and counted in ``missing``. ``earlier`` reports (JSON of ``compat study report``) of the
    same study add the method entries this folder has no result for, see :func:`merge_earlier`.

    Example:
        >>> report = build_report("runs/study", "val")  # doctest: +SKIP
        >>> report["methods"]["bct"]["criterion_held"]  # doctest: +SKIP
        {'top1': 4, 'mAP': 6}
    """
    spec = read_study_dir(study_dir)
    if split not in spec.evaluation.splits:
        raise CompatError(f"--split {split}: study {spec.name} evaluates {', '.join(spec.evaluation.splits)}. "
                          f"Pick one of these.")
    comparison = compare_to or spec.comparison
    if comparison is not None and comparison not in spec.methods:
        raise CompatError(f"--compare-to {comparison}: not a method of study {spec.name} "
                          f"({', '.join(spec.methods)}).")
    results = _load_results(study_dir, split)
    if spec.chain:
        from compat_core.study.chain import chain_report

        methods, missing = chain_report(spec, results)
        return {"study": spec.name, "task": "chain", "split": split, "data": spec.data,
                "metric": spec.evaluation.metric, "reference": spec.reference, "comparison": None,
                "generations": len(spec.chain.generations), "n_pairs": len(spec.seeds.old) * len(spec.seeds.new),
                "seeds": {"old": spec.seeds.old, "new": spec.seeds.new}, "methods": methods, "missing": missing}
    task = spec.evaluation.task
    per_pair, summarise, versus = ((_per_pair, _summary, _versus) if task == "retrieval" else
                                   (classification.per_pair, classification.summary, classification.versus))
    methods, missing = {}, {}
    for entry in spec.methods:
        rows, absent = per_pair(spec, entry, results)
        missing[entry] = absent
        if rows:
            methods[entry] = summarise(spec.methods[entry].method, rows)
            warned = _training_warnings(study_dir, rows)
            if warned:
                methods[entry]["training_warnings"] = warned
            if task == "retrieval" and spec.methods[entry].transforms:
                methods[entry]["transforms"] = spec.methods[entry].transforms
    report = {"study": spec.name, "task": task, "split": split, "data": spec.data,
              "metric": spec.evaluation.metric, "reference": spec.reference, "comparison": comparison,
              "n_pairs": len(spec.seeds.old) * len(spec.seeds.new),
              "seeds": {"old": spec.seeds.old, "new": spec.seeds.new}, "methods": methods, "missing": missing}
    if earlier:
        merge_earlier(report, spec, earlier)
    if comparison in report["methods"]:
        for entry, summary in report["methods"].items():
            if entry != comparison:
                summary["versus"] = versus(summary["per_pair"], report["methods"][comparison]["per_pair"],
                                           comparison)
    report["missing"] = {k: v for k, v in report["missing"].items() if v}
    return report


def merge_earlier(report: dict[str, Any], spec: StudySpec, paths: Sequence[str | Path]) -> None:
    """Add to ``report`` the method entries of earlier reports of the same study (same name, split, metric
    and seeds) that ``report`` has no result for: a study whose runs were split over folders or machines.

    Pairing is only sound when both folders hold the same old and reference models, so every seed pair
    present on both sides must show the same old/old and reference new/new values (to
    :data:`SAME_MODEL_TOLERANCE`); anything else is an error (models trained on another machine or by other
    code differ in their last digits).
    Merged entries record where they came from (``from``)."""
    if report["task"] != "retrieval":
        raise CompatError(f"--with: merging earlier reports is for retrieval studies; study {spec.name} is a "
                          f"{report['task']} study. Report each folder on its own.")
    ours = _shared_values(report)
    for path in paths:
        other = _read_earlier(path)
        for key in ("study", "split", "metric", "seeds"):
            if other.get(key) != report[key]:
                raise CompatError(f"--with {path}: its {key} is {other.get(key)!r}, this study's is "
                                  f"{report[key]!r}. Merge reports of the same study, split and seeds only.")
        theirs = _shared_values(other)
        common = sorted(set(ours) & set(theirs))
        if not common:
            raise CompatError(f"--with {path}: no seed pair has results on both sides, so nothing shows that "
                              f"the two folders hold the same old and reference models. Report "
                              f"{report['reference']} (or any method) in this folder first.")
        for pair in common:
            for name, here in ours[pair].items():
                there = theirs[pair][name]
                if abs(here - there) > SAME_MODEL_TOLERANCE:
                    raise CompatError(
                        f"--with {path}: seed pair {pair[0]}/{pair[1]} has {name} {there!r} there and {here!r} "
                        f"here: the two folders trained different old or reference models (another machine or "
                        f"code version), so their methods cannot be paired. Report them separately.")
        for entry, summary in other.get("methods", {}).items():
            if entry in spec.methods and entry not in report["methods"]:
                # its pairing with the comparison is recomputed against this report's comparison
                report["methods"][entry] = {**{k: v for k, v in summary.items() if k != "versus"},
                                            "from": str(path)}
                report["missing"].pop(entry, None)
    report["methods"] = {e: report["methods"][e] for e in spec.methods if e in report["methods"]}


def _shared_values(report: dict[str, Any]) -> dict[tuple[int, int], dict[str, float]]:
    """Per seed pair, the values every method of a report shares: old/old and the reference's new/new."""
    values = {}
    for summary in report.get("methods", {}).values():
        for row in summary.get("per_pair", []):
            values[row["old_seed"], row["new_seed"]] = {
                **{f"old/old {m}": row["old_old"][m] for m in METRICS},
                **{f"reference new/new {m}": row["reference_new_new"][m] for m in METRICS}}
    return values


def _training_warnings(study_dir: str | Path, rows: list[dict]) -> dict[str, list[int]]:
    """``{run: [epochs with a warning]}`` for the runs of ``rows`` whose training warned (a method's
    ``epoch_warnings``: the run's numbers may not show what the method is meant to do)."""
    warned = {}
    for row in rows:
        history = read_history(Path(study_dir) / "runs" / row["run"] / "history.jsonl", strict=False)
        epochs = [int(record["epoch"]) for record in history if record.get("warnings")]
        if epochs:
            warned[row["run"]] = epochs
    return warned


def _read_earlier(path: str | Path) -> dict[str, Any]:
    data = read_json(path, "Give --with a report written by `compat study report --json`.")
    if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
        raise CompatError(f"--with {path}: not a study report (no methods). Give a report written by "
                          f"`compat study report --json`.")
    return data


def _load_results(study_dir: str | Path, split: str) -> dict[tuple[str, str], dict]:
    folder = Path(study_dir) / "results" / split
    results = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = json.loads(path.read_text())
        results[data["query"], data["gallery"]] = data
    return results


def _per_pair(spec: StudySpec, entry: str, results: dict) -> tuple[list[dict], list[str]]:
    rows, missing = [], []
    for old_seed, new_seed, run in seed_pairs(spec, entry):
        needed = retrieval_pairs(spec, entry, old_seed, new_seed)
        if not all(key in results for key in needed.values()):
            missing.append(f"{old_seed}/{new_seed}")
            continue
        got = {name: results[key] for name, key in needed.items()}
        row = {"old_seed": old_seed, "new_seed": new_seed, "run": run,
               **{name: {m: got[name][m] for m in METRICS} for name in ("old_old", "new_old", "new_new")},
               "reference_new_new": {m: got["reference"][m] for m in METRICS}}
        row["gain"] = {m: update_gain(row, m) for m in CRITERION}
        row["criterion"] = {m: row["new_old"][m] > row["old_old"][m] for m in CRITERION}
        if "by_group" in got["new_old"]:
            row["new_old_by_group"] = got["new_old"]["by_group"]
        rows.append(row)
    return rows, missing


def update_gain(row: dict, metric: str) -> float | None:
    from compat_core.metrics.compatibility import update_gain as gain

    return gain(row["new_old"][metric], row["old_old"][metric], row["reference_new_new"][metric])


def _summary(method: str, rows: list[dict]) -> dict[str, Any]:
    def over(key: str) -> dict:
        return {m: summarize([r[key][m] for r in rows]) for m in METRICS}

    gains = {m: [r["gain"][m] for r in rows if r["gain"][m] is not None] for m in CRITERION}
    summary = {"method": method, "n": len(rows), "old_old": over("old_old"), "new_old": over("new_old"),
               "new_new": over("new_new"),
               "gain": {m: {**summarize(gains[m]), "undefined": len(rows) - len(gains[m])} for m in CRITERION},
               "criterion_held": {m: sum(r["criterion"][m] for r in rows) for m in CRITERION},
               "new_new_vs_reference": {m: paired([r["new_new"][m] for r in rows],
                                                  [r["reference_new_new"][m] for r in rows]) for m in METRICS},
               "per_pair": rows}
    grouped = [r["new_old_by_group"] for r in rows if "new_old_by_group" in r]
    if len(grouped) == len(rows):
        summary["new_old_by_group"] = {g: {m: summarize([b[g][m] for b in grouped]) for m in METRICS}
                                       for g in GROUPS if all(g in b for b in grouped)}
    return summary


def _versus(rows: list[dict], others: list[dict], comparison: str) -> dict[str, Any]:
    """Paired new/old differences against the comparison method, over the seed pairs both have."""
    theirs = {(r["old_seed"], r["new_seed"]): r for r in others}
    common = [r for r in rows if (r["old_seed"], r["new_seed"]) in theirs]
    return {"against": comparison, "n": len(common),
            "new_old": {m: paired([r["new_old"][m] for r in common],
                                  [theirs[r["old_seed"], r["new_seed"]]["new_old"][m] for r in common])
                        for m in METRICS}}

"""Write the demo's Markdown report from ``compat eval matrix --json`` output, next to the committed study.

The study (``studies/results/fashion-mnist-5to10.test.json``, written by ``compat study report --split test
--json``) holds the same protocol over several seed pairs; the demo is one of those pairs trained on this
machine. Each demo number is shown with the study's mean ± std and range, and a number outside
mean ± 2 std (or the study's min..max, whichever is wider) is flagged: training is not bit-reproducible
across CPUs, so the distribution, not one run, is the claim.
"""

import argparse
import json
from pathlib import Path

from compat_core.io import write_text

METRICS = (("top1", "top-1"), ("mAP", "mAP"))


def pct(value):
    return f"{100 * value:.2f}"


def expected_range(summary: dict) -> tuple[float, float]:
    """The interval a run of this protocol is expected in: mean ± 2 std, widened to the study's min..max."""
    low, high = summary["mean"] - 2 * summary["std"], summary["mean"] + 2 * summary["std"]
    return min(low, summary["min"]), max(high, summary["max"])


def versus_study(label: str, value: float, summary: dict | None, scale: float = 100.0) -> tuple[str, bool]:
    if not summary or summary.get("mean") is None:
        return f"| {label} | {scale * value:.2f} | - | - | - |", True
    low, high = expected_range(summary)
    inside = low - 1e-12 <= value <= high + 1e-12
    return (f"| {label} | {scale * value:.2f} | {scale * summary['mean']:.2f} ± {scale * summary['std']:.2f} | "
            f"{scale * low:.2f} .. {scale * high:.2f} | {'yes' if inside else '**no**'} |", inside)


def matrix_tables(matrix: dict) -> list[str]:
    lines = ["| query | gallery | top-1 | top-5 | mAP |", "|---|---|---|---|---|"]
    for row in matrix["results"]:
        lines.append(f"| {row['query_label']} | {row['gallery_label']} | {pct(row['top1'])} | "
                     f"{pct(row['top5'])} | {pct(row['mAP'])} |")
    lines += ["", "| new | old | criterion top-1 | criterion mAP | gain top-1 | gain mAP | gain reference |",
              "|---|---|---|---|---|---|---|"]
    first = matrix["compatibility"][0]["old"] if matrix["compatibility"] else None
    for v in matrix["compatibility"]:
        if v["old"] != first:  # the story is each new model against the deployed (first) one
            continue
        gains = ["-" if v[m]["gain"] is None else f"{v[m]['gain']:.2f}" for m, _ in METRICS]
        marks = ["yes" if v[m]["compatible"] else "no" for m, _ in METRICS]
        lines.append(f"| {v['new_label']} | {v['old_label']} | {marks[0]} | {marks[1]} | {gains[0]} | "
                     f"{gains[1]} | {v['gain_reference']} |")
    return lines


def study_table(matrix: dict, study: dict, method: str) -> tuple[list[str], bool]:
    """This run's old/old, new/old, new/new and gain against the study's distribution of ``method``."""
    summary = study["methods"].get(method)
    verdict = next((v for v in matrix["compatibility"] if v["new_label"] == "new-bct" and v["old_label"] == "old"),
                   None)
    if summary is None or verdict is None:
        return [f"The study file has no method {method!r}; no comparison."], True
    lines = [f"This run next to the committed study `{study['study']}` (split `{study['split']}`, method "
             f"`{method}`, {summary['n']} seed pairs; the demo is its pair old seed 1 / new seed 2):", "",
             "| number | this run | study mean ± std | expected range | inside |", "|---|---|---|---|---|"]
    all_inside = True
    for metric, name in METRICS:
        for key, label in (("old_old", "old/old"), ("new_old", "new-bct/old"), ("new_new", "new-bct/new-bct")):
            line, inside = versus_study(f"{label} {name}", verdict[metric][key], summary[key][metric])
            lines.append(line)
            all_inside &= inside
    for metric, name in METRICS:
        if verdict[metric]["gain"] is not None:
            line, inside = versus_study(f"gain {name}", verdict[metric]["gain"], summary["gain"][metric], 1.0)
            lines.append(line)
            all_inside &= inside
    held = summary["criterion_held"]
    lines += ["", f"In the study the BCT criterion held on top-1 in {held['top1']} of {summary['n']} seed pairs and "
              f"on mAP in {held['mAP']} of {summary['n']}."]
    if not all_inside:
        lines += ["", "**A number of this run lies outside the study's expected range.** Training is not "
                  "bit-reproducible across CPUs, but this is further than the study's seeds spread: please "
                  "report it with `compat env` and this report."]
    return lines, all_inside


def report(matrix: dict, seconds: int | None, study: dict | None, method: str, epochs: int) -> str:
    took = f" The whole job took {seconds // 60} min {seconds % 60} s." if seconds is not None else ""
    lines = ["# compat demo: old -> new on Fashion-MNIST", "",
             f"Leave-one-out retrieval on the test split ({matrix['metric']}); query model first.{took}", ""]
    lines += matrix_tables(matrix)
    lines += ["", "Criterion: M(new query, old gallery) > M(old, old) (Shen et al., CVPR 2020). Gain: (M(new, old) "
              "- M(old, old)) / (M(ref, ref) - M(old, old)) with the independently trained new model as the "
              "reference: the share of its improvement that old-gallery users get without re-indexing.", ""]
    if study is None:
        lines.append("No committed study to compare with.")
    elif epochs != 10:
        lines.append(f"Quick mode ({epochs} epochs): the committed study trains 10 epochs, so this run is a smoke "
                     f"test of the pipeline and is not compared with it.")
    else:
        lines += study_table(matrix, study, method)[0]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("matrix")
    parser.add_argument("target")
    parser.add_argument("seconds", type=int, nargs="?")
    parser.add_argument("--study", help="The committed study report (JSON) of the same protocol.")
    parser.add_argument("--study-method", default="bct", help="The study entry the demo's BCT run reproduces.")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    study = json.loads(Path(args.study).read_text()) if args.study and Path(args.study).is_file() else None
    text = report(json.loads(Path(args.matrix).read_text()), args.seconds, study, args.study_method, args.epochs)
    write_text(args.target, text)
    print(text)


if __name__ == "__main__":
    main()

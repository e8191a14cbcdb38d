"""Write the demo's Markdown report from ``compat eval matrix --json`` output."""

import json
import sys
from pathlib import Path

from compat_core.io import write_text


def pct(value):
    return f"{100 * value:.1f}"


def report(matrix: dict, seconds: int | None = None) -> str:
    took = f" The whole job took {seconds // 60} min {seconds % 60} s." if seconds is not None else ""
    lines = ["# compat demo: old -> new on Fashion-MNIST", "",
             f"Leave-one-out retrieval on the test split ({matrix['metric']}). Query model first.{took}", "",
             "| query | gallery | top-1 | top-5 | mAP |", "|---|---|---|---|---|"]
    for row in matrix["results"]:
        lines.append(f"| {Path(row['query']).name} | {Path(row['gallery']).name} | {pct(row['top1'])} | "
                     f"{pct(row['top5'])} | {pct(row['mAP'])} |")
    lines += ["", "| new | old | criterion top-1 | criterion mAP | gain top-1 | gain mAP |", "|---|---|---|---|---|---|"]
    first = matrix["compatibility"][0]["old"] if matrix["compatibility"] else None
    for v in matrix["compatibility"]:
        if v["old"] != first:  # the story is each new model against the deployed (first) one
            continue
        gains = ["-" if v[m]["gain"] is None else f"{v[m]['gain']:.2f}" for m in ("top1", "mAP")]
        marks = ["yes" if v[m]["compatible"] else "no" for m in ("top1", "mAP")]
        lines.append(f"| {Path(v['new']).name} | {Path(v['old']).name} | {marks[0]} | {marks[1]} | "
                     f"{gains[0]} | {gains[1]} |")
    lines += ["", "Criterion: M(new query, old gallery) > M(old, old) (Shen et al., CVPR 2020). "
              "Gain: (M(new, old) - M(old, old)) / (M(new, new) - M(old, old)): the share of the new model's "
              "improvement that old-gallery users get without re-indexing."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    source, target = sys.argv[1], sys.argv[2]
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else None
    write_text(target, report(json.loads(Path(source).read_text()), seconds))

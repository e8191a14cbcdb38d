"""``compat eval matrix``: every (query, gallery) pair of several model generations.

For each later run against each earlier one it states the BCT criterion M(new, old) > M(old, old)
(Shen et al., CVPR 2020) and the update gain (M(new, old) - M(old, old)) / (M(new, new) - M(old, old)),
defined only when the new model improves on the old one (M(new, new) > M(old, old)).
"""

from __future__ import annotations

from pydantic import Field

from compat_core.evaluators.retrieval import SourceOptions

CRITERION_METRICS = ("top1", "mAP")


class MatrixOptions(SourceOptions):
    runs: list[str] = Field(..., description="Run directories or .npz files, oldest first.",
                            json_schema_extra={"positional": True})


def run_matrix(options: MatrixOptions) -> dict:
    from compat_core.engine.distributed import resolve_device
    from compat_core.errors import CompatError
    from compat_core.evaluators.retrieval import retrieval_between
    from compat_core.features import features_of

    if len(options.runs) < 2:
        raise CompatError("compat eval matrix needs at least two runs (oldest first), e.g. runs/old runs/new.")
    device = str(resolve_device(options.device))
    feats = {run: features_of(run, data=options.data, split=options.split, batch_size=options.batch_size,
                              device=device) for run in dict.fromkeys(options.runs)}  # each run once
    results = []
    for query in options.runs:
        for gallery in options.runs:
            metrics = retrieval_between(feats[query], feats[gallery], options.metric, options.align)
            results.append({"query": query, "gallery": gallery, **{k: metrics[k] for k in ("top1", "top5", "mAP")}})
    return {"results": results, "compatibility": compatibility(options.runs, results),
            "metric": options.metric, "split": options.split}


def compatibility(runs: list[str], results: list[dict]) -> list[dict]:
    """The BCT criterion and update gain of each later run against each earlier run.

    Example:
        >>> rows = [{"query": q, "gallery": g, "top1": v, "mAP": v} for q, g, v in
        ...         [("o", "o", 0.5), ("o", "n", 0.1), ("n", "o", 0.6), ("n", "n", 0.9)]]
        >>> compatibility(["o", "n"], rows)[0]["top1"]["gain"]
        0.25
    """
    score = {(r["query"], r["gallery"]): r for r in results}
    verdicts = []
    for j, new in enumerate(runs):
        for old in runs[:j]:
            entry = {"new": new, "old": old}
            for metric in CRITERION_METRICS:
                old_old, new_old = score[old, old][metric], score[new, old][metric]
                new_new = score[new, new][metric]
                spread = new_new - old_old
                entry[metric] = {"old_old": old_old, "new_old": new_old, "new_new": new_new,
                                 "compatible": new_old > old_old,
                                 # the gain measures how much of an improvement carries over: with no
                                 # improvement (new/new <= old/old) it is undefined, not a huge number
                                 "gain": (new_old - old_old) / spread if spread > 1e-12 else None}
            entry["compatible"] = all(entry[m]["compatible"] for m in CRITERION_METRICS)
            verdicts.append(entry)
    return verdicts


def render_matrix(console, result: dict) -> None:
    from rich.table import Table

    table = Table(title=f"retrieval matrix ({result['split']}, {result['metric']}; percent)")
    for column in ("query", "gallery", "top-1", "top-5", "mAP"):
        table.add_column(column, justify="right" if column[0] in "tm" else "left")
    for row in result["results"]:
        table.add_row(row["query"], row["gallery"], *(f"{100 * row[k]:.2f}" for k in ("top1", "top5", "mAP")))
    console.print(table)
    verdict = Table(title="compatibility: M(new, old) > M(old, old)?")
    for column in ("new", "old", "top-1 new/old vs old/old", "mAP new/old vs old/old", "gain top-1", "gain mAP",
                   "compatible"):
        verdict.add_column(column)
    for v in result["compatibility"]:
        cells = [f"{100 * v[m]['new_old']:.2f} vs {100 * v[m]['old_old']:.2f}" for m in CRITERION_METRICS]
        gains = ["-" if v[m]["gain"] is None else f"{v[m]['gain']:.2f}" for m in CRITERION_METRICS]
        mark = "[green]yes[/]" if v["compatible"] else "[red]no[/]"
        verdict.add_row(v["new"], v["old"], *cells, *gains, mark)
    console.print(verdict)

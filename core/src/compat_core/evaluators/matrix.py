"""``compat eval matrix``: every (query, gallery) pair of several model generations.

For each later run against each earlier one it states the BCT criterion M(new, old) > M(old, old)
and the update gain (M(new, old) - M(old, old)) / (M(new_ind, new_ind) - M(old, old)) of Shen et al.
(CVPR 2020; :mod:`compat_core.metrics.compatibility`). ``new_ind`` is an independently trained new
model given with ``--reference``; without one, each new run's own M(new, new) stands in for it and the
output says so (``gain_reference: "self"``).

Example:
    compat eval matrix runs/old runs/bct runs/l2 --reference runs/independent --data digits
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from compat_core.evaluators.retrieval import SourceOptions
from compat_core.tables import add_column

CRITERION_METRICS = ("top1", "mAP")
ROW_METRICS = ("top1", "top5", "mAP")
SELF = "self"


class MatrixOptions(SourceOptions):
    runs: list[str] = Field(..., description="Run directories or .npz files, oldest first.",
                            json_schema_extra={"positional": True})
    reference: str | None = Field(
        None, description="An independently trained new model (run directory or .npz): its self-retrieval is the "
                          "gain's M(new_ind, new_ind). Without it each new run's own new/new is used.")
    labels: list[str] | None = Field(
        None, description="Name of each run in the tables and JSON, once per run in order (repeat --label); "
                          "default: the basename of each run.", json_schema_extra={"aliases": ["--label"]})
    plot: str | None = Field(None, description="Also draw the query x gallery top-1 and mAP matrices as heatmaps "
                             "into this PNG (needs matplotlib: the plot extra).")


def run_matrix(options: MatrixOptions) -> dict:
    from compat_core.engine.distributed import resolve_device
    from compat_core.features import features_of

    names = _names(options)
    if options.plot:
        from compat_core.io import check_writable

        check_writable(options.plot, "--plot")
    device = str(resolve_device(options.device))
    feats = {source: features_of(source, data=options.data, split=options.split, batch_size=options.batch_size,
                                 device=device) for source in names}  # each run (and the reference) once
    check_distinct_models(options.runs, feats)
    results = [_pair(feats, names, query, gallery, options) for query in options.runs for gallery in options.runs]
    reference = None
    if options.reference:
        done = {(r["query"], r["gallery"]): r for r in results}  # the reference may be one of the runs
        ref = options.reference
        row = done.get((ref, ref)) or _pair(feats, names, ref, ref, options)
        reference = {"run": options.reference, "label": names[options.reference],
                     **{k: row[k] for k in (*ROW_METRICS, "leave_one_out")}}
    labels = {run: names[run] for run in options.runs}
    result = {"results": results, "compatibility": compatibility(options.runs, results, labels, reference),
              "chain": chain(options.runs, results), "reference": reference, "metric": options.metric,
              "split": options.split}
    if options.plot:
        heatmap(result, labels, options.plot)
    return result


def chain(runs: list[str], results: list[dict]) -> dict:
    """AC and AM (:func:`~compat_core.metrics.compatibility.chain_metrics`) for top-1 and mAP, runs oldest first."""
    from compat_core.metrics.compatibility import chain_metrics

    per_metric = {m: chain_metrics(runs, {(r["query"], r["gallery"]): r[m] for r in results})
                  for m in CRITERION_METRICS}
    return {"AC": {m: per_metric[m]["AC"] for m in CRITERION_METRICS},
            "AM": {m: per_metric[m]["AM"] for m in CRITERION_METRICS}, "order": list(runs),  # as given
            "linked": linked(runs)}


def linked(runs: list[str]) -> bool:
    """Whether the runs are generations of one chain: each trained against the one before it (``old_model``)."""
    from compat_core.models.run import is_run_dir, old_model_links

    for earlier, later in zip(runs, runs[1:], strict=False):
        if not is_run_dir(later) or not is_run_dir(earlier):
            return False
        if str(Path(earlier).resolve()) not in {str(Path(o).resolve()) for o in old_model_links(later)}:
            return False
    return True


def heatmap(result: dict, labels: dict[str, str], path: str) -> None:
    """The query x gallery matrices (top-1 and mAP, percent) as annotated heatmaps, oldest first."""
    from compat_core.study.render import pyplot

    plt = pyplot()
    runs = result["chain"]["order"]
    score = {(r["query"], r["gallery"]): r for r in result["results"]}
    size = max(4.0, 1.1 * len(runs) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    for ax, metric in zip(axes, CRITERION_METRICS, strict=True):
        values = [[100 * score[q, g][metric] for g in runs] for q in runs]
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100)
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="white" if value < 60 else "black")
        names = [labels[r] for r in runs]
        ax.set_xticks(range(len(runs)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(runs)), names)
        ax.set_xlabel("gallery model")
        ax.set_ylabel("query model")
        chain_values = result["chain"]
        ax.set_title(f"{metric.replace('top1', 'top-1')} (%): AC {chain_values['AC'][metric]:.2f}, "
                     f"AM {100 * chain_values['AM'][metric]:.1f}")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    from compat_core.io import write_atomic

    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def _names(options: MatrixOptions) -> dict[str, str]:
    """Table name of every distinct source: the runs, then the reference."""
    from compat_core.errors import CompatError
    from compat_core.evaluators.retrieval import run_labels

    runs = options.runs
    if len(runs) < 2:
        raise CompatError("compat eval matrix needs at least two runs (oldest first), e.g. runs/old runs/new.")
    if len(set(runs)) != len(runs):
        twice = ", ".join(dict.fromkeys(r for r in runs if runs.count(r) > 1))
        raise CompatError(f"compat eval matrix got {twice} twice: "
                          f"pass each run once, oldest first.")
    explicit = {}
    if options.labels:
        if len(options.labels) != len(runs):
            raise CompatError(f"--label was given {len(options.labels)} times for {len(runs)} runs: pass one "
                              f"--label per run, in the order of the runs.")
        explicit = dict(zip(runs, options.labels, strict=True))
    check_generation_order(runs)
    sources = list(dict.fromkeys([*runs, *([options.reference] if options.reference else [])]))
    return dict(zip(sources, run_labels(sources, explicit), strict=True))


def check_distinct_models(runs: list[str], feats: dict) -> None:
    """Two runs of a matrix whose vectors come from one model (the same fingerprint: a run and its own feature
    file, or a copy) would be compared as two generations: refuse it."""
    from compat_core.errors import CompatError

    seen: dict[str, str] = {}
    for run in runs:
        mark = feats[run].fingerprint
        if mark and mark in seen:
            raise CompatError(f"{seen[mark]} and {run} hold vectors of the same model (fingerprint {mark}), so "
                              f"the matrix would compare a model with itself as two generations. Pass each model "
                              f"once.")
        if mark:
            seen[mark] = run


def check_generation_order(runs: list[str]) -> None:
    """Refuse runs that are not oldest first: a run trained against another (its ``old_model`` in
    ``model.json``) must come after it, or AC, AM and every criterion would compare the wrong way round."""
    from compat_core.errors import CompatError
    from compat_core.models.run import is_run_dir, old_model_links

    position = {str(Path(run).resolve()): i for i, run in enumerate(runs) if is_run_dir(run)}
    for i, run in enumerate(runs):
        if not is_run_dir(run):
            continue
        for old in old_model_links(run):
            j = position.get(str(Path(old).resolve()))
            if j is not None and j > i:
                order = " ".join(runs[:i] + [runs[j]] + [r for k, r in enumerate(runs[i:], i) if k != j])
                raise CompatError(f"the runs are not in generation order: {run} was trained against {runs[j]} "
                                  f"(its old model), yet comes before it. Pass them oldest first, e.g. "
                                  f"`compat eval matrix {order} ...`.")


def _pair(feats: dict, names: dict, query: str, gallery: str, options: MatrixOptions) -> dict:
    from compat_core.evaluators.retrieval import retrieval_between

    metrics = retrieval_between(feats[query], feats[gallery], options.metric, options.align,
                                options.leave_one_out)
    row = {"query": query, "gallery": gallery, "query_label": names[query], "gallery_label": names[gallery],
           **{k: metrics[k] for k in ROW_METRICS}, "leave_one_out": metrics["leave_one_out"]}
    if "by_group" in metrics:
        row["by_group"] = metrics["by_group"]
    return row


def compatibility(runs: list[str], results: list[dict], labels: dict[str, str] | None = None,
                  reference: dict | None = None) -> list[dict]:
    """The BCT criterion and update gain of each later run against each earlier run.

    Args:
        runs: the runs, oldest first.
        results: one row per (query, gallery) pair with ``query``, ``gallery`` and the metrics.
        labels: the table name of each run (default: the run itself).
        reference: the independently trained model's self-retrieval (``label`` and the metrics); None:
            each new run's own new/new stands in for it (``gain_reference: "self"``).

    Example:
        >>> rows = [{"query": q, "gallery": g, "top1": v, "mAP": v} for q, g, v in
        ...         [("o", "o", 0.5), ("o", "n", 0.1), ("n", "o", 0.75), ("n", "n", 1.0)]]
        >>> compatibility(["o", "n"], rows)[0]["top1"]["gain"]  # (0.75 - 0.5) / (1.0 - 0.5)
        0.5
        >>> ref = {"label": "ind", "top1": 1.5, "mAP": 1.5}  # a reference doing better still
        >>> compatibility(["o", "n"], rows, reference=ref)[0]["top1"]["gain"]  # (0.75 - 0.5) / (1.5 - 0.5)
        0.25
    """
    from compat_core.metrics.compatibility import criterion_held, update_gain

    labels = labels or {run: run for run in runs}
    score = {(r["query"], r["gallery"]): r for r in results}
    verdicts = []
    for j, new in enumerate(runs):
        for old in runs[:j]:
            entry = {"new": new, "old": old, "new_label": labels[new], "old_label": labels[old],
                     "gain_reference": reference["label"] if reference else SELF}
            for metric in CRITERION_METRICS:
                old_old, new_old = score[old, old][metric], score[new, old][metric]
                new_new = score[new, new][metric]
                upper = reference[metric] if reference else new_new
                entry[metric] = {"old_old": old_old, "new_old": new_old, "new_new": new_new,
                                 "compatible": criterion_held(new_old, old_old),
                                 "gain": update_gain(new_old, old_old, upper)}
            entry["compatible"] = all(entry[m]["compatible"] for m in CRITERION_METRICS)
            verdicts.append(entry)
    return verdicts


def render_matrix(console, result: dict) -> None:
    """Print the pair table, the class-group table (when any pair has one) and the verdicts.

    Run names are never cut and numbers never wrap: only name columns fold, and only names longer
    than their column (give short ones with --label).
    """
    console.print(_pairs_table(result))
    if any("by_group" in row for row in result["results"]):
        console.print(_groups_table(result))
    console.print(_verdict_table(result))
    chain_values = result.get("chain")
    if chain_values and len(chain_values["order"]) > 2 and chain_values.get("linked"):
        console.print(f"chain of {len(chain_values['order'])} models, oldest first: average compatibility AC "
                      f"top-1 {chain_values['AC']['top1']:.2f}, mAP {chain_values['AC']['mAP']:.2f} (share of later/"
                      f"earlier pairs holding the criterion); average multi-model accuracy AM top-1 "
                      f"{_percent(chain_values['AM']['top1'])}, mAP {_percent(chain_values['AM']['mAP'])} (percent)",
                      highlight=False)


def _table(title: str, caption: str | None = None):
    from rich import box
    from rich.table import Table

    # A header rule and no vertical lines: two columns of space per boundary leave names their room.
    return Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                 collapse_padding=True, caption_justify="left")


def _name_columns(table, *headers: str) -> None:
    for header in headers:
        add_column(table, header)


def _number_columns(table, *headers: str) -> None:
    for header in headers:
        add_column(table, header, right=True, min_width=6)


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _pairs_table(result: dict):
    table = _table(f"retrieval matrix ({result['split']}, {result['metric']}; percent)",
                   "loo: leave-one-out, each query's own image left out of the gallery")
    _name_columns(table, "query", "gallery")
    _number_columns(table, "top-1", "top-5", "mAP", "loo")
    for row in result["results"]:
        table.add_row(row["query_label"], row["gallery_label"], *(_percent(row[k]) for k in ROW_METRICS),
                      "yes" if row["leave_one_out"] else "no")
    return table


def _groups_table(result: dict):
    table = _table("by class group: queries of classes the gallery model saw (old) or not (new); percent")
    _name_columns(table, "query", "gallery")
    add_column(table, "classes")
    _number_columns(table, "queries", "top-1", "top-5", "mAP")
    for row in result["results"]:
        for group, values in row.get("by_group", {}).items():
            table.add_row(row["query_label"], row["gallery_label"], group.split("_")[0], str(values["n_query"]),
                          *(_percent(values[k]) for k in ROW_METRICS))
    return table


def _verdict_table(result: dict):
    reference = result.get("reference")
    upper = "ref/ref" if reference else "new/new"
    if reference:
        caption = (f"gain (a ratio) = (new/old - old/old) / (ref/ref - old/old), ref = {reference['label']} "
                   f"(--reference, the independently trained model)")
    else:
        caption = ("gain (a ratio) = (new/old - old/old) / (new/new - old/old): no --reference, so each new "
                   "run's own new/new stands in for an independently trained model")
    table = _table("compatibility: M(new, old) > M(old, old)? (percent)", caption)
    # One name column, the new run on the top-1 line and the old one below it: the numbers keep
    # their width and a name gets almost half the line.
    _name_columns(table, "new vs old")
    add_column(table, "metric")
    _number_columns(table, "new/old", "old/old", upper, "gain")
    add_column(table, "held")
    for n, v in enumerate(result["compatibility"], 1):
        last_pair = n == len(result["compatibility"])
        names = (v["new_label"], f"vs {v['old_label']}")
        for name, metric in zip(names, CRITERION_METRICS, strict=True):
            cell = v[metric]
            top = reference[metric] if reference else cell["new_new"]
            gain = "-" if cell["gain"] is None else f"{cell['gain']:.2f}"
            held = "[green]yes[/]" if cell["compatible"] else "[red]no[/]"
            table.add_row(name, metric.replace("top1", "top-1"), _percent(cell["new_old"]), _percent(cell["old_old"]),
                          _percent(top), gain, held, end_section=metric == CRITERION_METRICS[-1] and not last_pair)
    return table

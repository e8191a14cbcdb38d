"""The study report as tables (rich, fitting 80 columns), Markdown, and the trade-off plot.

Each table is built once as rows of text cells (:func:`tables`) and then printed by rich or written
as Markdown, so the terminal and the committed README show the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compat_core.study.stats import pm
from compat_core.tables import add_column

NAMES = {"top1": "top-1", "top5": "top-5", "mAP": "mAP"}


def tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` of every table of the report, numbers in percent."""
    if report.get("task") == "classification":
        from compat_core.study.classification import tables as classification_tables

        return classification_tables(report)
    if report.get("task") == "chain":
        from compat_core.study.chain import chain_tables

        return chain_tables(report)
    methods = report["methods"]
    n_all = report["n_pairs"]
    out = []
    held = lambda s, m: f"{s['criterion_held'][m]}/{s['n']}"  # noqa: E731
    rows = [[name, str(s["n"]), pm(s["new_old"]["top1"]), pm(s["new_old"]["mAP"]), held(s, "top1"),
             held(s, "mAP")] for name, s in methods.items()]
    moved = {kind: [n for n, s in methods.items() if s.get("transforms") == kind] for kind in ("gallery", "queries")}
    note = "".join(f"; {', '.join(names)}: {what}" for names, what in (
        (moved["gallery"], "the reference's queries against the transformed old gallery"),
        (moved["queries"], "the reference's queries mapped into the old space")) if names)
    out.append((f"new/old: new queries, old gallery ({report['split']}). Mean ± std over the seed pairs "
                f"(n of {n_all}); held: M(new, old) > M(old, old) in k of n pairs{note}",
                ["method", "n", "top-1", "mAP", "held top-1", "held mAP"], rows))
    rows = [[name, pm(s["new_new"]["top1"]), pm(s["new_new"]["mAP"]),
             pm(s["new_new_vs_reference"]["top1"]["diff"]), pm(s["new_new_vs_reference"]["mAP"]["diff"])]
            for name, s in methods.items()]
    out.append((f"new/new: the new model alone, and its difference from the reference "
                f"({report['reference']}, same new seed): the cost of compatibility",
                ["method", "top-1", "mAP", "top-1 vs ref", "mAP vs ref"], rows))
    rows = [[name, pm(s["gain"]["top1"], 1), pm(s["gain"]["mAP"], 1),
             str(s["gain"]["top1"]["undefined"] + s["gain"]["mAP"]["undefined"])] for name, s in methods.items()]
    out.append(("update gain (Shen et al. 2020): (M(new, old) - M(old, old)) / (M(ref, ref) - M(old, old)); "
                "1 = as good as backfilling with the reference",
                ["method", "gain top-1", "gain mAP", "undefined"], rows))
    first = next(iter(methods.values()), None)
    if first is not None:
        out.append(("old/old: the old model against itself, over the same seed pairs",
                    ["metric", "old/old"], [[NAMES[m], pm(first["old_old"][m])] for m in ("top1", "top5", "mAP")]))
    grouped = [(name, s["new_old_by_group"]) for name, s in methods.items() if s.get("new_old_by_group")]
    if grouped:
        rows = [[name, pm(g["old_classes"]["top1"]), pm(g["new_classes"]["top1"]), pm(g["old_classes"]["mAP"]),
                 pm(g["new_classes"]["mAP"])] for name, g in grouped if set(g) == {"old_classes", "new_classes"}]
        out.append(("new/old by query class: classes the old model saw, and the others",
                    ["method", "old top-1", "new top-1", "old mAP", "new mAP"], rows))
    versus = [(name, s["versus"]) for name, s in methods.items() if "versus" in s]
    if versus:
        rows = [[name, pm(v["new_old"]["top1"]["diff"]), _count(v["new_old"]["top1"]),
                 pm(v["new_old"]["mAP"]["diff"]), _count(v["new_old"]["mAP"])] for name, v in versus]
        out.append((f"new/old paired with {report['comparison']}, seed pair by seed pair (difference; pairs "
                    f"better/worse)", ["method", "top-1 diff", "pairs", "mAP diff", "pairs"], rows))
    return out


def _count(p: dict) -> str:
    return f"{p['favour_method']}/{p['favour_comparison']}"


def print_report(console, report: dict[str, Any]) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    console.print(f"study {report['study']} on {report['data']}, split {report['split']}, {_task(report)}, "
                  f"percent: {report['n_pairs']} seed pairs (old seeds {_seeds(report, 'old')}; new "
                  f"seeds {_seeds(report, 'new')})", highlight=False, markup=False)
    for title, header, rows in tables(report):
        table = Table(title=escape(title), box=box.SIMPLE_HEAD, padding=(0, 1), title_justify="left")
        for number, column in enumerate(header):
            # fold, never ellipsize: a cell too wide for the terminal wraps whole, it is not cut
            add_column(table, escape(column), right=number > 0)
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
    for name, pairs in report.get("missing", {}).items():
        console.print(f"[yellow]missing:[/] {name}: seed pairs {', '.join(pairs)} have no results yet "
                      f"(resume the study)", highlight=False)
    for line in _warning_lines(report):
        console.print(f"[bold red]warning:[/] {escape(line)}", highlight=False)
    for source, names in _merged(report).items():
        console.print(f"from {source} (same old and reference models, checked pair by pair): "
                      f"{', '.join(names)}", highlight=False, markup=False)


def _warning_lines(report: dict) -> list[str]:
    """One line per method entry some of whose runs warned during training."""
    lines = []
    for name, summary in report["methods"].items():
        warned = summary.get("training_warnings")
        if warned:
            runs = ", ".join(f"{run} from epoch {epochs[0]}" for run, epochs in warned.items())
            lines.append(f"{name}: {len(warned)} of {summary['n']} runs warned during training ({runs}); "
                         f"its numbers may not show what the method is meant to do. The warnings are in "
                         f"each run's history.jsonl.")
    return lines


def _merged(report: dict) -> dict[str, list[str]]:
    """Method entries taken from earlier reports, by the file they came from."""
    sources: dict[str, list[str]] = {}
    for name, summary in report["methods"].items():
        if "from" in summary:
            sources.setdefault(summary["from"], []).append(name)
    return sources


def _task(report: dict) -> str:
    if report.get("task") == "chain":
        return f"a chain of {report['generations']} generations, {report['metric']} retrieval"
    if report.get("task") == "classification":
        return "classification (each new classifier against its old one)"
    return f"{report['metric']} retrieval"


def _seeds(report: dict, side: str) -> str:
    return ", ".join(map(str, report["seeds"][side]))


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables (what the README quotes)."""
    lines = [f"# Study {report['study']}: {report['data']}, split `{report['split']}`", "",
             f"{report['n_pairs']} seed pairs (old seeds {_seeds(report, 'old')} x new seeds "
             f"{_seeds(report, 'new')}); {_task(report)}; mean ± sample std over the pairs, in "
             f"percent; reference (independently trained new model): `{report['reference']}`.", ""]
    for title, header, rows in tables(report):
        lines += [f"**{title}**", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    for name, pairs in report.get("missing", {}).items():
        lines.append(f"Missing: {name}, seed pairs {', '.join(pairs)}.")
    lines += [f"Warning: {line}" for line in _warning_lines(report)]
    for source, names in _merged(report).items():
        lines.append(f"From `{source}` (same old and reference models, checked pair by pair): "
                     f"{', '.join(names)}.")
    return "\n".join(lines).rstrip() + "\n"


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display), or an error that says how to install it."""
    from compat_core.errors import CompatError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CompatError("--plot needs matplotlib. Install it with `pip install 'compat-core[plot]'`.") from None
    return plt


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """Each method in the (new/new mAP, new/old mAP) plane with its seed spread as error bars; old/old
    and the reference's new/new as lines: the trade-off between compatibility and the new model's quality."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    if report.get("task") == "classification":
        from compat_core.study.classification import plot_axes

        plot_axes(ax, report)
        _save(fig, ax, path)
        return Path(path)
    if report.get("task") == "chain":
        for number, (name, s) in enumerate(report["methods"].items()):
            x, y = s["AC"]["top1"], s["AM"]["top1"]
            ax.errorbar(x["mean"], 100 * y["mean"], xerr=x["std"], yerr=100 * y["std"], capsize=3,
                        label=f"{name} (n={s['n']})", **marker_style(number))
        ax.set_xlabel("average compatibility AC (top-1)")
        ax.set_ylabel("average multi-model accuracy AM (top-1, %)")
        ax.set_title(f"{report['study']} [{report['split']}]: {report['generations']} generations")
        _save(fig, ax, path)
        return Path(path)
    for number, (name, s) in enumerate(report["methods"].items()):
        x, y = s["new_new"]["mAP"], s["new_old"]["mAP"]
        ax.errorbar(100 * x["mean"], 100 * y["mean"], xerr=100 * x["std"], yerr=100 * y["std"], capsize=3,
                    label=f"{name} (n={s['n']})", **marker_style(number))
    first = next(iter(report["methods"].values()), None)
    if first is not None:
        ax.axhline(100 * first["old_old"]["mAP"]["mean"], color="grey", linestyle="--", label="old/old")
    reference = report["methods"].get(report["reference"])
    if reference is not None:
        ax.axvline(100 * reference["new_new"]["mAP"]["mean"], color="grey", linestyle=":",
                   label=f"{report['reference']} new/new")
    ax.set_xlabel("new/new mAP (%)")
    ax.set_ylabel("new/old mAP (%)")
    ax.set_title(f"{report['study']} [{report['split']}]: compatibility vs new-model quality")
    _save(fig, ax, path)
    return Path(path)


MARKERS = "osD^vP*"


def marker_style(number: int) -> dict[str, str]:
    """Colour and marker of the ``number``-th method: ten colours and seven markers, so no two of the first
    70 methods look alike (colour alone repeats after ten).

    Example:
        >>> marker_style(0), marker_style(10)
        ({'color': 'C0', 'marker': 'o', 'linestyle': 'none'}, {'color': 'C0', 'marker': '^', 'linestyle': 'none'})
    """
    return {"color": f"C{number % 10}", "marker": MARKERS[number % len(MARKERS)], "linestyle": "none"}


def _save(fig, ax, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    from compat_core.io import write_atomic

    # beside the axes, not over them: with a dozen methods an inside legend hides points
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)

"""``compat study run|report``: multi-seed studies of several methods on one protocol."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Multi-seed studies: train every method over every (old seed, new seed) pair and "
                       "report mean ± std.", no_args_is_help=True)


@app.command("run")
def run(
    study: Annotated[str, typer.Argument(help="Study file (YAML), e.g. studies/digits-smoke.yaml.")],
    out: Annotated[str, typer.Option("--out", help="Study folder: runs/, features/, results/ go here.")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue a study in --out; finished runs are "
                                                          "never retrained.")] = False,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only this method entry (repeatable); "
                                                   "the old models and the reference always run.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and a time estimate; train "
                                                            "nothing.")] = False,
) -> None:
    """Train and evaluate a study: each old model once per old seed, each method once per (old seed, new
    seed), the reference once per new seed, every (query, gallery) pair evaluated once on val and test."""
    from compat_core.plugins import get_host
    from compat_core.study.spec import load_study

    spec = load_study(study, installed_methods=get_host().methods.names())
    if dry_run:
        from compat_core.study.estimate import print_plan

        print_plan(Console(), spec, out, only)
        return
    from compat_core.study.runner import StudyRunner

    from compat_cli.progress import make_reporter

    err = Console(stderr=True, highlight=False)
    runner = StudyRunner(spec, out, only=only, log=lambda line: err.print(line, markup=False),
                         reporter_factory=make_reporter)
    runner.run(resume=resume)
    err.print(f"[green]done:[/] study {spec.name} in {out}; see `compat study report {out}` "
              f"(--split val to choose, --split test to report)")


@app.command("report")
def report(
    study_dir: Annotated[str, typer.Argument(help="Study folder written by `compat study run --out`.")],
    split: Annotated[str, typer.Option("--split", help="val (to choose) or test (to report).")] = "test",
    compare_to: Annotated[str | None, typer.Option("--compare-to", help="Method entry every other is paired "
                                                   "with (default: the study's compare_to, else the first "
                                                   "method trained against the old model).")] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="Write the report as JSON (fractions; - : to "
                                                                   "standard output, tables to standard error).")] = None,
    plot_out: Annotated[str | None, typer.Option("--plot", help="Write the trade-off plot: new/new vs "
                                                 "new/old mAP, or for a classification study accuracy vs NFR "
                                                 "(PNG; needs matplotlib).")] = None,
    markdown_out: Annotated[str | None, typer.Option("--markdown", help="Write the tables as Markdown.")] = None,
    earlier: Annotated[list[str] | None, typer.Option("--with", help="An earlier report (--json) of the same "
                                                      "study, split and seeds, made in another folder with the "
                                                      "same old and reference models (checked pair by pair): "
                                                      "adds the method entries this folder lacks. "
                                                      "Repeatable.")] = None,
) -> None:
    """Per method over every seed pair: old/old, new/old, new/new (top-1, top-5, mAP) as mean ± std, the BCT
    criterion as held in k of n, the update gain, the cost against the reference, and paired differences.
    A classification study reports accuracy, NFR, NFI, BTC and the NFR against the reference instead."""
    from compat_core.io import check_writable, write_json, write_text
    from compat_core.study import render
    from compat_core.study.report import build_report

    to_stdout = json_out == "-"
    for flag, target in (("--json", None if to_stdout else json_out), ("--plot", plot_out),
                         ("--markdown", markdown_out)):
        if target:
            check_writable(target, flag)
    result = build_report(study_dir, split, compare_to, earlier or ())
    render.print_report(Console(stderr=to_stdout), result)  # with --json -, stdout holds the JSON alone
    err = Console(stderr=True)
    if to_stdout:
        import json

        print(json.dumps(result, indent=2))
    elif json_out:
        write_json(json_out, result)
        err.print(f"[green]wrote[/] {json_out}")
    if markdown_out:
        write_text(markdown_out, render.markdown(result))
        err.print(f"[green]wrote[/] {markdown_out}")
    if plot_out:
        render.plot(result, plot_out)
        err.print(f"[green]wrote[/] {plot_out}")
    sys.stdout.flush()

"""``compat eval NAME``: one subcommand per registered evaluator."""

from __future__ import annotations

import inspect
from typing import Annotated

import typer
from rich.console import Console

from compat_cli.options import build_command, given, model_parameters, plain


def build(host) -> typer.Typer:
    app = typer.Typer(help="Evaluate models or feature files.", no_args_is_help=True)
    for entry in host.evaluators:
        app.command(entry.name, help=entry.summary)(_evaluator_command(entry))
    return app


def _evaluator_command(entry):
    options_cls = entry.get("config")
    params = model_parameters(options_cls, "Options") + [inspect.Parameter(
        "json_out", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[str | None, typer.Option("--json", help="Also write the metrics to this JSON file.")])]

    def handler(**values):
        from compat_core.config import validate
        from compat_core.io import check_writable, write_json

        from compat_cli.render import render_metrics

        values = {k: plain(v) for k, v in values.items()}
        options = validate(options_cls, given(values, options_cls))
        if values["json_out"]:  # before the evaluation: a result that cannot be written is work lost
            check_writable(values["json_out"], "--json")
        result = entry.get("run")(options)
        render = entry.options.get("render")
        if render:
            entry.get("render")(Console(), result)
        else:
            render_metrics(Console(), entry.name, result)
        if values["json_out"]:
            write_json(values["json_out"], result)
            Console(stderr=True).print(f"[green]wrote[/] {values['json_out']}")

    return build_command(params, handler, entry.summary)

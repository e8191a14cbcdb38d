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
        annotation=Annotated[str | None, typer.Option("--json", help="Also write the metrics to this JSON file "
                                                     "(- : JSON to standard output, tables to standard error).")])]

    def handler(**values):
        from compat_core.config import validate
        from compat_core.io import check_writable, write_json

        from compat_cli.render import render_metrics

        values = {k: plain(v) for k, v in values.items()}
        options = validate(options_cls, given(values, options_cls))
        to_stdout = values["json_out"] == "-"
        if values["json_out"] and not to_stdout:  # before the evaluation: a result that cannot be written is lost
            check_writable(values["json_out"], "--json")
        result = entry.get("run")(options)
        if to_stdout:  # JSON alone on stdout, for pipes; the tables go to stderr
            import json

            render_metrics_to = Console(stderr=True)
            print(json.dumps(result, indent=2, default=_plain_json))
        else:
            render_metrics_to = Console()
        render = entry.options.get("render")
        if render:
            entry.get("render")(render_metrics_to, result)
        else:
            render_metrics(render_metrics_to, entry.name, result)
        if values["json_out"] and not to_stdout:
            write_json(values["json_out"], result)
            Console(stderr=True).print(f"[green]wrote[/] {values['json_out']}")

    return build_command(params, handler, entry.summary)


def _plain_json(value):
    return value.item() if hasattr(value, "item") else str(value)


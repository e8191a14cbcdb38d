"""``compat train METHOD``: one subcommand per registered method, flags from its config schema."""

from __future__ import annotations

import inspect
import os
from typing import Annotated

import typer
from compat_core.config import TrainConfig, check_common_defaults
from compat_core.errors import CompatError
from rich.console import Console

from compat_cli.options import build_command, given, model_parameters, plain

COMMON_PANEL = "Common training options"
RUN_PANEL = "Run control"


def build(host) -> typer.Typer:
    app = typer.Typer(help="Train a model with a registered method (see `compat plugins list`).",
                      no_args_is_help=True)
    for entry in host.methods:
        try:
            command = _method_command(entry)
        except Exception as exc:  # one plugin's bad registration must not take the CLI down
            host.mark_broken(entry.distribution, f"method {entry.name!r}: {type(exc).__name__}: {exc}")
            continue
        app.command(entry.name, help=entry.summary)(command)
    return app


def _method_command(entry):
    config_cls = entry.get("config")
    clash = set(config_cls.model_fields) & set(TrainConfig.model_fields)
    if clash:
        raise CompatError(f"method {entry.name!r} ({entry.distribution}) declares options that clash with the "
                          f"common ones: {', '.join(sorted(clash))}. The plugin must rename them.")
    check_common_defaults(entry.name, config_cls)
    params = (model_parameters(TrainConfig, COMMON_PANEL, defaults=config_cls.common_defaults)
              + model_parameters(config_cls, f"{entry.name} options"))
    params += _run_control_parameters()

    def handler(**values):
        from compat_core.config import resolve_config
        from compat_core.engine import train

        from compat_cli.progress import make_reporter

        values = {k: plain(v) for k, v in values.items()}
        flags = {**given(values, TrainConfig), **given(values, config_cls), "preset": values["preset"]}
        common, own = resolve_config(entry.name, config_cls, config_file=values["config"],
                                     set_options=values["set_options"], flags=flags)
        try:
            result = train(entry.name, common, own, resume=bool(values["resume"]),
                           overwrite=bool(values["overwrite"]), reporter=make_reporter())
        except KeyboardInterrupt as exc:
            _interrupted(common.out, kept_previous=getattr(exc, "kept_previous", False))
        if os.environ.get("RANK", "0") != "0":
            return
        last = result.history[-1] if result.history else None
        summary = f" (final loss {last['loss']['total']:.4f})" if last else ""
        Console(stderr=True).print(f"[green]done:[/] {result.run_dir}{summary}")

    return build_command(params, handler, entry.summary)


def _run_control_parameters() -> list[inspect.Parameter]:
    def option(name, annotation):
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)

    return [
        option("preset", Annotated[str | None, typer.Option(
            "--preset", help="A named recipe of option values (`compat plugins list` shows them, `compat plugins show "
            "NAME` their values); the config file, --set and flags override it.", rich_help_panel=RUN_PANEL)]),
        option("config", Annotated[str | None, typer.Option(
            "--config", help="YAML file of options (e.g. a run's config.yaml).", rich_help_panel=RUN_PANEL)]),
        option("set_options", Annotated[list[str] | None, typer.Option(
            "--set", help="Override an option: --set key=value (repeatable).", rich_help_panel=RUN_PANEL)]),
        option("resume", Annotated[bool, typer.Option(
            "--resume", help="Continue the run in --out from its last checkpoint; with a larger --epochs, extend it.",
            rich_help_panel=RUN_PANEL)]),
        option("overwrite", Annotated[bool, typer.Option(
            "--overwrite", help="Replace the run already in --out, once the new run's first epoch is saved.",
            rich_help_panel=RUN_PANEL)]),
    ]


def _interrupted(out: str, kept_previous: bool = False) -> None:
    """Ctrl-C: say what was saved and the exact command that continues, then exit 130 (128 + SIGINT)."""
    import shlex
    import sys
    from pathlib import Path

    from compat_core.engine.checkpoint import checkpoint_path

    history = Path(out) / "history.jsonl"
    epochs = len([line for line in history.read_text().splitlines() if line.strip()]) if history.is_file() else 0
    args = [a for a in sys.argv[1:] if a not in ("--overwrite", "--resume")]
    again = "compat " + " ".join(shlex.quote(a) for a in args)
    if kept_previous:
        message = (f"interrupted before the new run's first epoch finished: the run in {out} is kept as it was. "
                   f"Replace it with:\n  {again} --overwrite")
    elif checkpoint_path(Path(out)).is_file():
        message = (f"interrupted: {out} keeps the checkpoint after epoch {epochs}. Continue with:\n"
                   f"  {again} --resume")
    else:
        message = (f"interrupted before the first epoch finished: nothing to keep in {out}. Start again with:\n"
                   f"  {again}")
    print(message, file=sys.stderr, flush=True)  # plain: a wrapped command could not be pasted back
    raise SystemExit(130)


"""Entry point of the ``compat`` command.

Only typer, rich, pluggy and pydantic are imported here: torch and timm load inside the commands
that need them, so ``compat --help`` and ``compat plugins list`` answer quickly.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from compat_cli import __version__
from compat_cli.errors import report


def _version(value: bool) -> None:
    if value:
        import compat_core

        typer.echo(f"compat {__version__} (compat-core {compat_core.__version__})")
        raise typer.Exit()


def root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Show the version and exit.")] = False) -> None:
    """compat: replace a deployed embedding or classification model without breaking what worked."""


def _fold_help_cells() -> None:
    """typer's rich help cuts an option name that does not fit its column with an ellipsis
    (``--no-detector-sc…`` at 80 columns): fold such cells onto the next line instead, so every name in
    ``--help`` stays whole in narrow terminals and logs."""
    from rich.text import Text
    from typer import rich_utils

    if getattr(rich_utils.Table, "_compat_folds", False):
        return

    class FoldingTable(rich_utils.Table):
        _compat_folds = True

        def add_row(self, *renderables, **kwargs):
            for cell in renderables:  # a name cell is a Text, a help cell a Columns of Texts
                for text in [cell, *getattr(cell, "renderables", [])]:
                    if isinstance(text, Text):
                        text.overflow = "fold"
                        if "\n" in text.plain and "\n\n" not in text.plain:  # a docstring's wrapped lines:
                            text.plain = text.plain.replace("\n", " ")  # one paragraph, wrapped by rich
            return super().add_row(*renderables, **kwargs)

    rich_utils.Table = FoldingTable


def build_app() -> typer.Typer:
    from compat_core.plugins import get_host

    _fold_help_cells()
    from compat_cli.commands import (
        backfill,
        data,
        env,
        evaluate,
        export,
        features,
        importing,
        index,
        plugins,
        runs,
        study,
        train,
    )

    host = get_host()
    app = typer.Typer(name="compat", help="Compatible model updates: train, extract features, evaluate.",
                      no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False)
    app.callback()(root)
    app.command("env")(env.env)
    app.add_typer(plugins.app, name="plugins")
    app.add_typer(data.app, name="data")
    app.add_typer(train.build(host), name="train")
    app.add_typer(features.app, name="features")
    app.add_typer(evaluate.build(host), name="eval")
    app.add_typer(study.app, name="study")
    app.add_typer(runs.app, name="runs")
    app.add_typer(index.app, name="index")
    app.add_typer(backfill.app, name="backfill")
    app.add_typer(importing.app, name="import")
    app.command("export")(export.export)
    host.register_commands(app)
    return app


def main(argv: list[str] | None = None) -> None:
    from compat_core.errors import CompatError

    try:
        command = typer.main.get_command(build_app())
        command.main(args=argv, prog_name="compat", standalone_mode=True)
    except CompatError as exc:
        report(str(exc))
        sys.exit(exc.exit_code)
    except OSError as exc:  # the file system's faults that no reader or writer turned into a message
        report(file_system_fault(exc))
        sys.exit(2)


def file_system_fault(exc: OSError) -> str:
    """One paragraph for an OSError: the file, what is wrong, the fix."""
    where = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name) or "a file"
    return (f"{where}: {exc.strerror or exc}. Check that the path exists, that you may read (or write) it and "
            f"that its disk has space, then run the command again.")


if __name__ == "__main__":
    main()

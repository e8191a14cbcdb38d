"""``compat plugins list|show``: exactly what is loaded."""

from __future__ import annotations

import json
import textwrap
from typing import Annotated

import typer
from compat_core.tables import add_column
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Show installed plugins and what they provide.", no_args_is_help=True)


@app.command("list")
def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Also list plugins excluded by COMPAT_LOAD_PLUGINS.")] = False,
) -> None:
    """Installed plugin distributions, their versions, entry points, hooks and what they provide."""
    from compat_core.plugins import get_host

    plugins = [p for p in get_host().plugins if show_all or p.loaded or p.error]
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in plugins], indent=2))
        return
    console = Console(highlight=False)
    for p in plugins:  # one block per plugin: lines wrap at spaces, so 80 columns never cut a name
        console.print(f"{p.distribution} {p.version} ({p.entry_point})", markup=False, style="bold")
        if p.error:
            console.print(f"  BROKEN: {p.error}", markup=False, style="red")
        elif not p.loaded:
            console.print("  not loaded (COMPAT_LOAD_PLUGINS)", markup=False, style="dim")
        lines = [f"{kind}: {', '.join(names)}" for kind, names in _by_kind(p.provides).items()]
        if p.hooks:
            lines.append(f"hooks: {', '.join(h.removeprefix('compat_') for h in p.hooks)}")
        for line in lines:
            console.print(textwrap.fill(line, width=max(40, console.width - 1), initial_indent="  ",
                                        subsequent_indent="    ", break_long_words=False, break_on_hyphens=False),
                          markup=False)


def _by_kind(provides: list[str]) -> dict[str, list[str]]:
    """``["method:bct", "loss:x", "method:l2"]`` -> ``{"methods": ["bct", "l2"], "losses": ["x"]}``."""
    plural = {"loss": "losses", "method": "methods", "backbone": "backbones", "dataset": "datasets",
              "evaluator": "evaluators", "command": "commands", "preset": "presets",
              "backfill_order": "backfill orders"}
    grouped: dict[str, list[str]] = {}
    for item in provides:
        kind, _, name = item.partition(":")
        grouped.setdefault(plural.get(kind, kind + "s"), []).append(name)
    return grouped


@app.command("show")
def show(method: Annotated[str, typer.Argument(help="Method name (e.g. baseline) or preset name.")]) -> None:
    """A method's own options, from its config schema, or the values a preset sets."""
    from compat_core.plugins import get_host

    host = get_host()
    if method not in host.methods and method in host.presets:
        _show_preset(method)
        return
    entry = host.methods.lookup(method)
    config_cls = entry.get("config")
    console = Console()
    console.print(f"[bold]{method}[/] ({entry.distribution}): {entry.summary}")
    table = Table()
    for column in ("option", "type", "default", "description"):
        add_column(table, column)
    for name, field in config_cls.model_fields.items():
        if field.is_required():
            default = "(required)"
        else:
            default = _plain_default(field.default_factory() if field.default_factory else field.default)
        table.add_row("--" + name.replace("_", "-"), _type_name(field.annotation), default,
                      field.description or "")
    if not config_cls.model_fields:
        console.print("no options beyond the common training options (see `compat train "
                      f"{method} --help`).")
    else:
        console.print(table)


def _show_preset(name: str) -> None:
    from compat_core.plugins import get_host
    from compat_core.presets import read_preset

    data = read_preset(name)
    console = Console(highlight=False)
    console.print(f"preset {name} ({get_host().presets.lookup(name).distribution}): {data['summary']}", markup=False)
    console.print("common options:", markup=False)
    for key, value in data["common"].items():
        console.print(f"  {_as_flag(key, value)}", markup=False)
    for method, values in data["methods"].items():
        console.print(f"compat train {method}:", markup=False)
        for key, value in (values or {}).items():
            console.print(f"  {_as_flag(key, value)}", markup=False)
    console.print("Flags, --set and --config override every value.", markup=False)


def _as_flag(key: str, value) -> str:
    """As typed on the command line: ``--amp``, ``--no-amp``, ``--lr 0.1``."""
    flag = str(key).replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {_plain_default(value)}"


def _plain_default(value) -> str:
    """As a user types it: none, true/false, 0.1, a, b (never a Python repr)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "(empty)"
    return str(value)


def _type_name(annotation) -> str:
    """The accepted values: the choices of a Literal (a|b|c), int, float, text, or a union of those.

    Example:
        >>> from typing import Literal
        >>> _type_name(Literal["a", "b"]), _type_name(float | None), _type_name(list[float])
        ('a|b', 'float or none', 'list of float')
    """
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "|".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or none" if type(None) in args else "")
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (list, tuple):
        return "list of " + (_type_name(args[0]) if args else "values")
    names = {str: "text", int: "int", float: "float", bool: "true|false"}
    return names.get(annotation, getattr(annotation, "__name__", None) or str(annotation).replace("typing.", ""))

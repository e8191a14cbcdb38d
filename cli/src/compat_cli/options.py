"""Typed CLI flags generated from pydantic option models, so each option is declared once.

Every generated flag defaults to ``None`` ("not given"), which lets the caller apply the precedence
defaults < config file < --set < explicit flags; the real default is shown in the help text.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def model_parameters(model: type[BaseModel], panel: str, skip: set[str] = frozenset(),
                     defaults: dict[str, Any] | None = None) -> list[inspect.Parameter]:
    """One keyword parameter with a ``typer.Option`` (or ``typer.Argument``) per model field;
    ``defaults`` replaces shown defaults (a method's ``common_defaults``)."""
    defaults = defaults or {}
    params = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        py_type, is_flag = _cli_type(field.annotation)
        help_text = (field.description or "") + (
            _shown_default(defaults[name]) if name in defaults else _default_text(field))
        if extra.get("positional"):
            info = typer.Argument(help=help_text, show_default=False)
        else:
            names = [_flag_name(name, is_flag)] + list(extra.get("aliases", []))
            info = typer.Option(*names, help=help_text, show_default=False, rich_help_panel=panel)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[py_type | None, info]))
    return params


def build_command(params: list[inspect.Parameter], handler: Callable[..., Any], doc: str) -> Callable[..., Any]:
    """A function typer can register, whose signature is ``params`` and whose body calls ``handler``."""

    def command(**kwargs: Any) -> Any:
        return handler(**kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc
    return command


def given(values: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """The values of ``model``'s fields that the user actually passed; a list of numbers may be given as
    ``1,2`` as well as by repeating the flag."""
    passed = {k: v for k, v in values.items() if k in model.model_fields and v is not None and v != []}
    for name, value in passed.items():
        if isinstance(value, list) and _numbers_list(model.model_fields[name].annotation):
            passed[name] = [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    return passed


def _numbers_list(annotation: Any) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _numbers_list(args[0])
    return typing.get_origin(annotation) in (list, tuple, set) and bool(args) and args[0] in (int, float)


def _flag_name(name: str, is_flag: bool) -> str:
    flag = "--" + name.replace("_", "-")
    return f"{flag}/--no-{flag[2:]}" if is_flag else flag


def _shown_default(value: Any) -> str:
    return rf" \[default for this method: {value}]"


def _default_text(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return r" \[required]"
    default = field.default_factory() if field.default_factory is not None else field.default
    if default is None or default == []:
        return ""
    if isinstance(default, enum.Enum):
        default = default.value
    return rf" \[default: {default}]"  # escaped: rich would read [default: x] as markup


_ENUMS: dict[tuple, type[enum.Enum]] = {}


def _cli_type(annotation: Any) -> tuple[Any, bool]:
    """Map a pydantic annotation to what typer understands; returns (type, is_boolean_flag)."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return _cli_type(args[0]) if len(args) == 1 else (str, False)
    if origin is Literal:
        values = tuple(str(a) for a in typing.get_args(annotation))
        if values not in _ENUMS:
            _ENUMS[values] = enum.Enum("Choice", {v: v for v in values}, type=str)
        return _ENUMS[values], False
    if origin in (list, tuple, set):
        inner, _ = _cli_type(args[0]) if args else (str, False)
        # numbers are read as text so that `--refine-epochs 10,20` works beside the repeated flag; given()
        # splits them and pydantic converts
        return list[str if inner in (int, float) else inner], False
    if annotation is bool:
        return bool, True
    if annotation in (int, float, str):
        return annotation, False
    return str, False


def plain(value: Any) -> Any:
    """Enum choices back to their strings, recursively in lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value

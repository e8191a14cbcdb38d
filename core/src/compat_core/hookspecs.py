"""The whole public plugin contract of compat.

A plugin is a module (or object) with functions named like the hooks below, decorated with
:data:`hookimpl`, published under the entry-point group ``compat``::

    # pyproject.toml of a third-party plugin
    [project.entry-points.compat]
    mymethod = "compat_mymethod.plugin"

    # compat_mymethod/plugin.py  (keep it light: no torch/timm import at module level)
    from compat_core.hookspecs import hookimpl

    @hookimpl
    def compat_register_methods(register):
        register(
            "mymethod",
            config="compat_mymethod.config:MyConfig",
            factory="compat_mymethod.method:MyMethod",
            summary="One line shown by `compat plugins list`.",
        )

Registration hooks use a register-callback style: the host passes ``register``; a plugin calls it
zero or more times. Factories and config models may be given as lazy ``"module:attr"`` strings so
that ``compat --help`` never imports torch. The keyword arguments of each ``register`` are
documented on the hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "compat"
ENTRY_POINT_GROUP = "compat"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def compat_register_methods(register: Callable[..., None]) -> None:
    """Register training methods (each becomes ``compat train NAME``).

    ``register(name, *, config, factory, summary)``: ``config`` is a pydantic model class (or lazy
    reference) subclassing :class:`compat_core.config.MethodConfig`; ``factory`` builds a
    :class:`compat_core.methods.Method` as ``factory(config, context)``.
    """


@hookspec
def compat_register_losses(register: Callable[..., None]) -> None:
    """Register named loss functions: ``register(name, *, factory, summary)``.

    The factory returns a callable ``loss(**tensors) -> dict[str, Tensor]`` with a ``total`` term.
    """


@hookspec
def compat_register_backbones(register: Callable[..., None]) -> None:
    """Register backbone factories beyond timm: ``register(name, *, factory, summary)``.

    ``factory(**kwargs) -> nn.Module`` returns a module mapping images (B, 3, H, W) to pooled
    features (B, F) and exposing ``num_features``. Core registers ``timm``, which serves every timm
    model name.
    """


@hookspec
def compat_register_datasets(register: Callable[..., None]) -> None:
    """Register dataset formats and named datasets: ``register(name, *, factory, summary, detect=None)``.

    ``factory(path_or_name, split, image_size) -> compat_core.data.Dataset``. ``detect(path) -> bool``
    (optional, must be cheap and import no torch) claims a path for this format; a spec without
    ``detect`` is a named dataset, chosen when ``--data`` equals its name.
    """


@hookspec
def compat_register_evaluators(register: Callable[..., None]) -> None:
    """Register evaluators: ``register(name, *, config, run, summary, render=None)``; each becomes ``compat eval NAME``.

    ``config`` is a pydantic options model (its fields become the command's flags, plus ``--json``);
    ``run(options) -> dict`` computes the metrics (fractions in [0, 1]); the optional
    ``render(console, result)`` prints them (default: a generic table). Give lazy ``"module:attr"``
    references; the options module must import only light modules at top level.
    """


@hookspec
def compat_register_presets(register: Callable[..., None]) -> None:
    """Register named option presets: ``register(name, *, path, summary)``.

    ``path`` is a YAML file (a path, or ``"package:file.yaml"`` inside an installed package) holding
    ``common:`` (common training options) and, optionally, ``methods: {METHOD: {option: value}}``.
    ``compat train METHOD --preset NAME`` applies it above the method's defaults and below a config
    file, ``--set`` and flags.
    """


@hookspec
def compat_register_backfill_orders(register: Callable[..., None]) -> None:
    """Register backfill orderings: ``register(name, *, factory, summary)``; each becomes a value of
    ``compat backfill plan --order``.

    ``factory(request) -> ids``: given a :class:`compat_core.backfill.orders.OrderRequest` (the index, its
    ids, the data, ``--old``/``--new`` runs, the seed, the device), return the index's ids in the order they
    are to be re-embedded (a permutation of ``request.ids``; first = re-embedded first). Raise a
    :class:`~compat_core.errors.CompatError` naming the missing option when the ordering needs one.
    """


@hookspec
def compat_register_commands(app: Any) -> None:
    """Add extra CLI subcommands to the root ``typer.Typer`` application."""


@hookspec(firstresult=True)
def compat_load_old_model(source: str) -> Any:
    """Resolve an old-model reference the core does not understand (e.g. ``"hub:name"``).

    Return an ``compat_core.models.EmbeddingModel`` (it will be frozen by the caller), or ``None``
    to let the next plugin try.
    """

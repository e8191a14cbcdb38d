"""Discover, load and query plugins.

Every plugin, core's own included, is found through the ``compat`` entry-point group and
registered through the hooks of :mod:`compat_core.hookspecs`. A plugin that fails to import, or
implements a hook that does not exist, is reported as broken and the others keep working.
``COMPAT_LOAD_PLUGINS`` (comma-separated distribution names; empty means none) limits what loads.

Example:
    >>> from compat_core.plugins import get_host
    >>> "baseline" in get_host().methods  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from typing import Any

import pluggy

from compat_core import hookspecs
from compat_core.registry import Entry, Registry

REGISTRATION_HOOKS = {
    "compat_register_methods": "method",
    "compat_register_losses": "loss",
    "compat_register_backbones": "backbone",
    "compat_register_datasets": "dataset",
    "compat_register_evaluators": "evaluator",
    "compat_register_presets": "preset",
    "compat_register_backfill_orders": "backfill_order",
}


@dataclass
class PluginInfo:
    """What ``compat plugins list`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    entry_point: str
    hooks: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    error: str | None = None
    loaded: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.distribution,
            "plugin": self.name,
            "version": self.version,
            "entry_point": self.entry_point,
            "provides": self.provides,
            "hooks": self.hooks,
            "error": self.error,
            "loaded": self.loaded,
        }


class PluginHost:
    """The loaded plugins and the registries they filled."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.registries = {kind: Registry(kind) for kind in REGISTRATION_HOOKS.values()}

    @property
    def methods(self) -> Registry:
        return self.registries["method"]

    @property
    def losses(self) -> Registry:
        return self.registries["loss"]

    @property
    def backbones(self) -> Registry:
        return self.registries["backbone"]

    @property
    def datasets(self) -> Registry:
        return self.registries["dataset"]

    @property
    def evaluators(self) -> Registry:
        return self.registries["evaluator"]

    @property
    def presets(self) -> Registry:
        return self.registries["preset"]

    @property
    def backfill_orders(self) -> Registry:
        return self.registries["backfill_order"]

    # -- loading -------------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        allowed = _allowed_distributions()
        for ep in sorted(metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=_core_first):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else "?"
            info = PluginInfo(ep.name, dist, version, ep.value)
            if allowed is not None and _normalize(dist) not in allowed:
                info.loaded = False
                self.plugins.append(info)
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                info.error = f"{type(exc).__name__}: {exc}"
                info.loaded = False
                self.plugins.append(info)
                continue
            self.add_plugin(module, info)

    def add_plugin(self, plugin: Any, info: PluginInfo) -> None:
        """Register one plugin object; unknown hook names mark it broken (they are typos)."""
        registered = False
        try:
            # Registered under "distribution:entry point": two distributions may reuse a short name.
            self.pm.register(plugin, name=f"{info.distribution}:{info.name}")
            registered = True
            self.pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            if registered:
                self.pm.unregister(plugin)
            info.error = str(exc)  # pluggy names the hook: "unknown hook 'compat_...' in plugin ..."
            info.loaded = False
            _warn_broken(info.distribution, info.error)
            self.plugins.append(info)
            return
        info.hooks = sorted(impl.name for impl in self.pm.get_hookcallers(plugin) or [])
        self.plugins.append(info)
        self._collect(plugin, info)

    def _collect(self, plugin: Any, info: PluginInfo) -> None:
        for hook_name, kind in REGISTRATION_HOOKS.items():
            function = getattr(plugin, hook_name, None)
            if function is None or hook_name not in info.hooks:
                continue
            function(register=partial(self._register, kind, info))

    def _register(self, kind: str, info: PluginInfo, name: str, *, summary: str = "", **options: Any) -> None:
        self.registries[kind].add(Entry(kind, name, info.distribution, summary, options))
        info.provides.append(f"{kind}:{name}")

    def mark_broken(self, distribution: str, error: str) -> None:
        """Record that part of a loaded plugin failed after registration (e.g. a method whose config class
        cannot be imported): ``compat plugins list`` shows the error and the rest keeps working."""
        for info in self.plugins:
            if info.distribution == distribution:
                info.error = error if not info.error else f"{info.error}; {error}"
        _warn_broken(distribution, error)

    # -- queries -------------------------------------------------------------------------------
    def register_commands(self, app: Any) -> None:
        self.pm.hook.compat_register_commands(app=app)

    def load_old_model(self, source: str) -> Any:
        return self.pm.hook.compat_load_old_model(source=source)


def _warn_broken(distribution: str, error: str) -> None:
    print(f"compat: plugin {distribution} is broken ({error})", file=sys.stderr)


def _allowed_distributions() -> set[str] | None:
    raw = os.environ.get("COMPAT_LOAD_PLUGINS")
    if raw is None:
        return None
    return {_normalize(part) for part in raw.split(",") if part.strip()}


def _normalize(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _core_first(ep: metadata.EntryPoint) -> tuple[int, str]:
    return (0 if ep.value.startswith("compat_core.") else 1, ep.name)


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _host
    if _host is None:
        host = PluginHost()
        host.load_entry_points()
        _host = host
    return _host


def reset_host(host: PluginHost | None = None) -> None:
    """Replace (or forget) the process-wide host: for tests and for embedding compat in other tools."""
    global _host
    _host = host

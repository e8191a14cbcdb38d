"""Named option presets: plain YAML data that sets a recipe's options (``--preset NAME``).

A preset file holds ``summary``, ``common`` (common training options) and optionally ``methods``
(per-method options). Applied by :func:`compat_core.config.resolve_config` above the method's own
defaults and below a config file, ``--set`` and flags, so any flag overrides it.

Example:
    >>> values = preset_values("mixbct-face", "mixbct")  # doctest: +SKIP
    >>> values["optimizer"], values["head"]  # doctest: +SKIP
    ('sgd', 'arcface')
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from compat_core.errors import CompatError


def read_preset(name: str) -> dict[str, Any]:
    """The parsed file of the registered preset ``name`` (``summary``, ``common``, ``methods``)."""
    from compat_core.plugins import get_host

    entry = get_host().presets.lookup(name)
    location = str(entry.options.get("path", ""))
    try:
        if ":" in location and not Path(location).exists():
            package, _, file = location.partition(":")
            text = resources.files(package).joinpath(file).read_text(encoding="utf-8")
        else:
            text = Path(location).read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
    except (OSError, ModuleNotFoundError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CompatError(f"preset {name!r} ({entry.distribution}) cannot be read from {location} ({exc}). "
                          f"Reinstall {entry.distribution}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("common", {}), dict) or not isinstance(
            data.get("methods", {}), dict):
        raise CompatError(f"preset {name!r} ({entry.distribution}): {location} must hold `common:` and `methods:` "
                          f"mappings. The plugin must fix it.")
    return {"summary": data.get("summary", entry.summary), "common": data.get("common") or {},
            "methods": data.get("methods") or {}}


def preset_values(name: str, method: str) -> dict[str, Any]:
    """The options preset ``name`` sets for ``compat train METHOD``: its common values, then the method's own."""
    data = read_preset(name)
    values = dict(data["common"])
    values.update(data["methods"].get(method) or {})
    return {str(k).replace("-", "_"): v for k, v in values.items()}

"""Named registries filled by plugins through the registration hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compat_core.errors import CompatError
from compat_core.lazy import resolve


@dataclass(frozen=True)
class Entry:
    """One registered thing: a method, loss, backbone, dataset or evaluator."""

    kind: str
    name: str
    distribution: str
    summary: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        """Resolve a lazy option (``"module:attr"``) on first use."""
        return resolve(self.options[key])


class Registry:
    """A kind of entries (e.g. ``method``) by name. Duplicate names are an error naming both owners.

    Example:
        >>> reg = Registry("method")
        >>> reg.add(Entry("method", "baseline", "compat-core"))
        >>> reg.names()
        ['baseline']
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        previous = self._entries.get(entry.name)
        if previous is not None:
            raise CompatError(
                f"{self.kind} {entry.name!r} is registered twice: by {previous.distribution} and by "
                f"{entry.distribution}. Uninstall one of them, or limit what loads with "
                f"COMPAT_LOAD_PLUGINS=<comma-separated distributions>."
            )
        self._entries[entry.name] = entry

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return sorted(self._entries)

    def lookup(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise CompatError(
                f"unknown {self.kind} {name!r}. Known: {known}. "
                f"Run `compat plugins list` to see what is installed."
            ) from None

"""``compat env``: versions, devices and plugins, for bug reports."""

from __future__ import annotations

import platform

from rich.console import Console
from rich.table import Table


def env() -> None:
    """Show versions, devices and loaded plugins (paste this into bug reports)."""
    import numpy
    import timm
    import torch
    from compat_core import __version__ as core_version
    from compat_core.plugins import get_host

    table = Table(show_header=False, box=None)
    rows = [("python", platform.python_version()), ("platform", platform.platform()),
            ("compat-core", core_version), ("torch", torch.__version__), ("timm", timm.__version__),
            ("numpy", numpy.__version__), ("cpu threads", str(torch.get_num_threads())),
            ("cuda", torch.version.cuda or "not built"),
            ("devices", ", ".join(_devices(torch)))]
    for plugin in get_host().plugins:
        state = "ok" if plugin.error is None else f"BROKEN: {plugin.error}"
        state = state if plugin.loaded or plugin.error else "not loaded (COMPAT_LOAD_PLUGINS)"
        rows.append((f"plugin {plugin.distribution}", f"{plugin.version} {state}"))
    for key, value in rows:
        table.add_row(f"[bold]{key}[/]", value)
    Console().print(table)


def _devices(torch) -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return devices

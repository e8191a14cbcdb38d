"""How the CLI reports user errors: one paragraph on stderr, exit code 2, no traceback."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

stderr = Console(stderr=True, soft_wrap=True)


def report(message: str) -> None:
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False)

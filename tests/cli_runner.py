"""Run the ``compat`` command in a subprocess, as a user would, for the end-to-end CLI tests.

Importable from every test folder: pytest puts ``tests/`` (home of the root conftest) on ``sys.path``.
"""

from __future__ import annotations

import os
import subprocess
import sys


def compat(*args, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``compat ARGS`` in a fresh interpreter; with ``check``, a non-zero exit fails the test with stderr.
    ``env`` adds to (or overrides) the environment, e.g. ``{"COLUMNS": "80"}`` for a narrow log."""
    env = {**os.environ, "COLUMNS": "250", **(env or {})}  # wide help tables: flags are not cut
    proc = subprocess.run([sys.executable, "-m", "compat_cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"compat {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, no traceback, and every fragment in the message."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output
    for fragment in fragments:
        assert fragment in output, output

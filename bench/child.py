"""Shared by the benchmarks that measure each configuration in a fresh child process."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys


def run_child(script: str, spec: dict, env: dict | None = None, timeout: int = 3600) -> dict:
    """Run ``script --child SPEC`` and return the JSON object it prints last; stop with its stderr on failure."""
    proc = subprocess.run([sys.executable, script, "--child", json.dumps(spec)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if proc.returncode:
        raise SystemExit(f"{spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "load_average": list(os.getloadavg())}


def write_report(out, report: dict) -> None:
    """Write the benchmark's JSON (its folder created) and say where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


def parse_or_run_child(parser, argv, child_function, default_out):
    """Add ``--out`` and the hidden ``--child SPEC`` to ``parser``; in a child, run ``child_function(spec)`` and
    return None, else return the parsed arguments."""
    import argparse

    parser.add_argument("--out", type=type(default_out), default=default_out)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_function(json.loads(args.child))
        return None
    return args

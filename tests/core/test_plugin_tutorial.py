"""The tutorial's example plugin (examples/compat-protopull, core/TUTORIAL.md) as a third party ships it:
installed into a temporary target (not the project's environment), discovered through its entry point,
trained and evaluated through the CLI, and passing its own tests (the conformance kit)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "compat-protopull"
pytestmark = pytest.mark.slow


def run(*args, env, cwd=None):
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=900)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_tutorial_plugin_installs_trains_evaluates_and_passes_its_tests(tmp_path):
    source = tmp_path / "compat-protopull"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp_path / "site"
    env = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}
    run("-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", site, source, env=env)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    listed = run("-m", "compat_cli.main", "plugins", "list", env=env)
    assert "compat-protopull" in listed.stdout and "protopull" in listed.stdout
    common = ["--data", "digits", "--backbone", "test_resnet", "--image-size", "16", "--embedding-dim", "16",
              "--epochs", "1", "--device", "cpu"]
    run("-m", "compat_cli.main", "train", "baseline", *common, "--classes", "0-4", "--out", tmp_path / "old", env=env)
    trained = run("-m", "compat_cli.main", "train", "protopull", *common, "--old", tmp_path / "old", "--pull-weight",
                  "2", "--out", tmp_path / "new", env=env)
    assert "class prototypes from the old model" in trained.stdout + trained.stderr
    matrix = run("-m", "compat_cli.main", "eval", "matrix", tmp_path / "old", tmp_path / "new", "--data", "digits",
                 env=env)
    assert "new/old" in matrix.stdout
    run("-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", source, source / "tests", env=env, cwd=source)

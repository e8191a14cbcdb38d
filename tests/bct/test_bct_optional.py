"""compat-bct is optional: without it (not loaded), core and the CLI keep working."""

import json
import os
import subprocess
import sys


def compat(*args, env_extra):
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "compat_cli.main", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_plugins_list_shows_bct_with_its_four_methods():
    proc = compat("plugins", "list", "--json", env_extra={})
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["compat-bct"]["error"] is None
    assert {"method:bct", "method:l2", "method:triplet", "method:contrastive"} <= set(plugins["compat-bct"]["provides"])


def test_core_keeps_working_without_bct(tmp_path):
    env = {"COMPAT_LOAD_PLUGINS": "compat-core,compat-cli"}
    listed = json.loads(compat("plugins", "list", "--json", env_extra=env).stdout)
    assert [p["name"] for p in listed] == ["compat-core"]
    assert compat("train", "bct", "--help", env_extra=env).returncode == 2  # no such command now
    proc = compat("train", "baseline", "--data", "digits", "--backbone", "test_resnet", "--embedding-dim", "8",
                  "--image-size", "16", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run"),
                  env_extra=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "model.safetensors").is_file()


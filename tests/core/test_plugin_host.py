"""PluginHost: registration bookkeeping, broken plugins, entry-point loading and COMPAT_LOAD_PLUGINS.

Plugins here are tiny in-test classes, or fake distributions written to ``tmp_path`` (a
``*.dist-info`` folder with an ``entry_points.txt``) and put on ``sys.path``.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from compat_core.errors import CompatError
from compat_core.hookspecs import hookimpl
from compat_core.plugins import PluginHost, PluginInfo

COMPAT = Path(sys.executable).with_name("compat")
_counter = itertools.count()


class MethodsPlugin:
    def __init__(self, *names: str):
        self.names = names

    @hookimpl
    def compat_register_methods(self, register):
        for name in self.names:
            register(name, config="compat_core.methods.configs:BaselineConfig", factory="x:y", summary=f"{name}!")


class LossAndDataPlugin:
    @hookimpl
    def compat_register_losses(self, register):
        register("my_loss", factory="x:loss")

    @hookimpl
    def compat_register_datasets(self, register):
        register("my_data", factory="x:data")


class TypoPlugin:
    @hookimpl
    def compat_register_methodz(self, register):
        register("typo_method")


class WrongArgumentPlugin:
    @hookimpl
    def compat_register_methods(self, registr):  # misspelled argument of a known hook
        registr("wrong_arg_method")


def info(name: str, dist: str) -> PluginInfo:
    return PluginInfo(name=name, distribution=dist, version="1.2", entry_point=f"{name}_mod.plugin")


# -- add_plugin --------------------------------------------------------------------------------
def test_registration_records_provides_and_hooks():
    host = PluginHost()
    a, b = info("a", "dist-a"), info("b", "dist-b")
    host.add_plugin(MethodsPlugin("m1", "m2"), a)
    host.add_plugin(LossAndDataPlugin(), b)
    assert host.plugins == [a, b]
    assert a.hooks == ["compat_register_methods"] and a.error is None and a.loaded
    assert a.provides == ["method:m1", "method:m2"]
    assert b.hooks == ["compat_register_datasets", "compat_register_losses"]
    assert b.provides == ["loss:my_loss", "dataset:my_data"]
    assert host.methods.names() == ["m1", "m2"]
    entry = host.methods.lookup("m2")
    assert (entry.kind, entry.distribution, entry.summary) == ("method", "dist-a", "m2!")
    assert entry.get("config").__name__ == "BaselineConfig"  # lazy reference resolved on use
    assert host.losses.lookup("my_loss").options == {"factory": "x:loss"}
    assert "my_data" in host.datasets and host.evaluators.names() == [] and host.backbones.names() == []
    assert a.as_dict() == {"name": "dist-a", "plugin": "a", "version": "1.2", "entry_point": "a_mod.plugin",
                           "provides": ["method:m1", "method:m2"], "hooks": ["compat_register_methods"],
                           "error": None, "loaded": True}


def test_duplicate_method_from_two_distributions_names_both():
    host = PluginHost()
    host.add_plugin(MethodsPlugin("shared"), info("first", "dist-first"))
    with pytest.raises(CompatError) as excinfo:
        host.add_plugin(MethodsPlugin("shared"), info("second", "dist-second"))
    message = str(excinfo.value)
    assert "'shared'" in message and "dist-first" in message and "dist-second" in message
    assert "COMPAT_LOAD_PLUGINS" in message
    assert host.methods.lookup("shared").distribution == "dist-first"


def test_misspelled_hook_marks_plugin_broken_and_others_work(capsys):
    host = PluginHost()
    typo, good = info("typo", "dist-typo"), info("good", "dist-good")
    broken = TypoPlugin()
    host.add_plugin(broken, typo)
    host.add_plugin(MethodsPlugin("fine"), good)
    assert typo.loaded is False and typo.provides == [] and typo.hooks == []
    assert typo.error.startswith("unknown hook") and "compat_register_methodz" in typo.error
    assert not host.pm.is_registered(broken) and host.pm.get_plugin("typo") is None
    assert "typo_method" not in host.methods
    assert good.error is None and host.methods.names() == ["fine"]
    assert host.plugins == [typo, good]
    assert "dist-typo is broken" in capsys.readouterr().err


def test_wrong_hook_argument_marks_plugin_broken():
    host = PluginHost()
    bad, good = info("bad", "dist-bad"), info("good", "dist-good")
    host.add_plugin(WrongArgumentPlugin(), bad)
    host.add_plugin(MethodsPlugin("fine"), good)
    assert bad.loaded is False and bad.error and "registr" in bad.error
    assert host.methods.names() == ["fine"]


def test_same_entry_point_name_in_two_distributions():
    host = PluginHost()
    host.add_plugin(MethodsPlugin("one"), info("plugin", "dist-one"))
    host.add_plugin(MethodsPlugin("two"), info("plugin", "dist-two"))
    assert host.methods.names() == ["one", "two"]


# -- entry points --------------------------------------------------------------------------------
def make_dist(root: Path, source: str, *, dist: str = "fakeplug", ep_name: str = "fake") -> str:
    """A fake installed distribution ``dist`` 0.1 whose ``compat`` entry point is a fresh module."""
    module = f"fakeplug_mod_{os.getpid()}_{next(_counter)}"
    info_dir = root / f"{dist}-0.1.dist-info"
    info_dir.mkdir(parents=True)
    (info_dir / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info_dir / "entry_points.txt").write_text(f"[compat]\n{ep_name} = {module}\n")
    (root / f"{module}.py").write_text(source)
    return module


BROKEN_SOURCE = 'raise ImportError("fakeplug needs zzz_missing")\n'
GOOD_SOURCE = (
    "from compat_core.hookspecs import hookimpl\n\n"
    "@hookimpl\n"
    "def compat_register_methods(register):\n"
    "    register({name!r}, config='compat_core.methods.configs:BaselineConfig', factory='x:y')\n"
)


def by_distribution(host: PluginHost) -> dict[str, PluginInfo]:
    return {p.distribution: p for p in host.plugins}


@pytest.fixture
def no_filter(monkeypatch):
    monkeypatch.delenv("COMPAT_LOAD_PLUGINS", raising=False)


def test_import_error_is_listed_broken_and_core_still_loads(tmp_path, monkeypatch, no_filter):
    module = make_dist(tmp_path, BROKEN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost()
    host.load_entry_points()
    plugins = by_distribution(host)
    fake, core = plugins["fakeplug"], plugins["compat-core"]
    assert (fake.name, fake.version, fake.entry_point) == ("fake", "0.1", module)
    assert fake.error == "ImportError: fakeplug needs zzz_missing"
    assert fake.loaded is False and fake.provides == []
    assert core.error is None and core.loaded and "method:baseline" in core.provides
    assert host.plugins[0] is core  # core's own plugin loads first
    assert "baseline" in host.methods


def test_good_entry_point_plugin_registers(tmp_path, monkeypatch, no_filter):
    make_dist(tmp_path, GOOD_SOURCE.format(name="fakemethod"))
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost()
    host.load_entry_points()
    fake = by_distribution(host)["fakeplug"]
    assert fake.error is None and fake.loaded
    assert fake.provides == ["method:fakemethod"] and fake.hooks == ["compat_register_methods"]
    assert host.methods.lookup("fakemethod").distribution == "fakeplug"


def test_entry_point_duplicating_core_method_names_both(tmp_path, monkeypatch, no_filter):
    make_dist(tmp_path, GOOD_SOURCE.format(name="baseline"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CompatError, match=r"by compat-core and by fakeplug"):
        PluginHost().load_entry_points()


@pytest.mark.parametrize("value", ["compat-core", " Compat_Core ,"])
def test_load_plugins_env_excludes_other_distributions(tmp_path, monkeypatch, value):
    make_dist(tmp_path, BROKEN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COMPAT_LOAD_PLUGINS", value)
    host = PluginHost()
    host.load_entry_points()
    plugins = by_distribution(host)
    assert plugins["fakeplug"].loaded is False and plugins["fakeplug"].error is None
    assert plugins["compat-core"].loaded and "baseline" in host.methods


def test_empty_load_plugins_env_loads_nothing(tmp_path, monkeypatch):
    make_dist(tmp_path, BROKEN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COMPAT_LOAD_PLUGINS", "")
    host = PluginHost()
    host.load_entry_points()
    assert {p.distribution for p in host.plugins} >= {"fakeplug", "compat-core"}
    assert all(not p.loaded and p.error is None and p.provides == [] for p in host.plugins)
    assert host.methods.names() == [] and host.datasets.names() == []


# -- through the CLI -----------------------------------------------------------------------------
def run_cli(args: list[str], pythonpath: Path, **env_changes: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COMPAT_LOAD_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(pythonpath)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(env_changes)
    return subprocess.run([str(COMPAT), *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_plugins_list_json_shows_broken_plugin(tmp_path):
    make_dist(tmp_path, BROKEN_SOURCE)
    result = run_cli(["plugins", "list", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert isinstance(listed, list)
    for item in listed:
        assert {"name", "version", "entry_point", "provides", "hooks", "error"} <= set(item)
    by_name = {item["name"]: item for item in listed}
    assert by_name["fakeplug"]["error"] == "ImportError: fakeplug needs zzz_missing"
    assert by_name["fakeplug"]["version"] == "0.1"
    assert by_name["compat-core"]["error"] is None
    assert "method:baseline" in by_name["compat-core"]["provides"]
    assert "compat_register_methods" in by_name["compat-core"]["hooks"]


def test_cli_plugins_list_respects_load_plugins_env(tmp_path):
    make_dist(tmp_path, BROKEN_SOURCE)
    shown = run_cli(["plugins", "list", "--json"], tmp_path, COMPAT_LOAD_PLUGINS="compat-core")
    assert shown.returncode == 0, shown.stderr
    assert [item["name"] for item in json.loads(shown.stdout)] == ["compat-core"]
    everything = run_cli(["plugins", "list", "--json", "--all"], tmp_path, COMPAT_LOAD_PLUGINS="compat-core")
    fake = {item["name"]: item for item in json.loads(everything.stdout)}["fakeplug"]
    assert fake["loaded"] is False and fake["error"] is None


BAD_CONFIG_SOURCE = (
    "from compat_core.hookspecs import hookimpl\n\n"
    "@hookimpl\n"
    "def compat_register_methods(register):\n"
    "    register('badconfig', config='compat_core.methods.configs:NoSuchConfig', factory='x:y')\n"
)


def test_cli_survives_a_method_whose_config_cannot_be_imported(tmp_path):
    make_dist(tmp_path, BAD_CONFIG_SOURCE)
    listed = run_cli(["plugins", "list", "--json"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    fake = {item["name"]: item for item in json.loads(listed.stdout)}["fakeplug"]
    assert "method 'badconfig'" in fake["error"] and "NoSuchConfig" in fake["error"]
    helped = run_cli(["train", "--help"], tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "baseline" in helped.stdout and "badconfig" not in helped.stdout
    assert "Traceback" not in helped.stdout + helped.stderr
    assert "compat: plugin fakeplug is broken" in helped.stderr


def test_cli_help_works_with_broken_plugin(tmp_path):
    make_dist(tmp_path, BROKEN_SOURCE)
    result = run_cli(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "plugins" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr

"""Step 4: the plugin's own tests. compat's conformance kit checks registration, options, one step,
export and reload, and an exact --resume; a short training run checks what the method logs."""

import json

import compat_protopull.plugin
import pytest
from compat_core.config import resolve_config
from compat_core.engine import train
from compat_core.testing import TINY, plugin_host_with, run_conformance, train_old_model


def test_conformance(tmp_path):
    run_conformance(compat_protopull.plugin, "protopull", tmp_path, needs_old=True)


def test_history_holds_the_terms_and_the_logged_cosine(tmp_path):
    old = train_old_model(tmp_path)
    with plugin_host_with(compat_protopull.plugin, "compat-protopull") as host:
        config_class = host.methods.lookup("protopull").get("config")
        common, own = resolve_config("protopull", config_class,
                                     flags={**TINY, "out": str(tmp_path / "run"), "old": [old], "pull_weight": 2.0})
        train("protopull", common, own)
    record = json.loads((tmp_path / "run" / "history.jsonl").read_text().splitlines()[0])
    loss = record["loss"]
    assert set(loss) == {"total", "ce", "pull"} and set(record["scalars"]) == {"cosine"}
    assert loss["total"] == pytest.approx(loss["ce"] + 2.0 * loss["pull"], rel=1e-5)  # epoch means are linear
    assert loss["pull"] == pytest.approx(1 - record["scalars"]["cosine"], rel=1e-5)

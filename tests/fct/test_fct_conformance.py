"""compat's conformance kit on fct and fastfill (with and without side information)."""

from pathlib import Path

import compat_fct.plugin
import pytest
import torch
from compat_core.models.embedding import EmbeddingModel, ModelSpec
from compat_core.models.run import save_model
from compat_core.testing import run_conformance, train_old_model


@pytest.fixture(scope="module")
def frozen_runs(tmp_path_factory):
    """A tiny trained old model, and untrained new / side-info models (their weights do not matter here)."""
    root = tmp_path_factory.mktemp("fct-conformance")
    runs = {"old": Path(train_old_model(root))}
    for name, dim, seed in (("new", 16, 2), ("side", 12, 3)):
        torch.manual_seed(seed)
        spec = ModelSpec(backbone="test_resnet", embedding_dim=dim, num_classes=10, classes=[str(i) for i in range(10)],
                         input={"size": 16, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3})
        save_model(EmbeddingModel(spec), root / name)
        runs[name] = str(root / name)
    return runs


@pytest.mark.parametrize("method, side", [("fct", False), ("fct", True), ("fastfill", False), ("fastfill", True)])
def test_conformance(method, side, tmp_path, frozen_runs):
    options = {"new": frozen_runs["new"], "mixer_width": 32}
    if side:
        options["side_info"] = frozen_runs["side"]
    run_conformance(compat_fct.plugin, method, tmp_path, needs_old=True, options=options,
                    distribution="compat-fct", old_run=frozen_runs["old"])

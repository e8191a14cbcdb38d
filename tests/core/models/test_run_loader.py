"""Run loaders: a model.json may name a plugin function that rebuilds a non-standard model.

A toy plugin (this module, registered through compat's testing host) saves a composite model whose
run names ``test_run_loader:load_doubled_run``; ``load_model`` must call it, standard runs must load
exactly as before, and a loader that is not a marked function of an installed plugin must be refused
before anything is imported.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from compat_core.errors import CompatError
from compat_core.models.embedding import EmbeddingModel, ModelOutput, ModelSpec
from compat_core.models.run import load_model, read_spec, run_loader, save_model
from compat_core.testing import plugin_host_with
from torch import nn

LOADER = f"{__name__}:load_doubled_run"


def tiny_spec(classes=("a", "b")) -> ModelSpec:
    return ModelSpec(backbone="test_resnet", embedding_dim=4, num_classes=len(classes), classes=list(classes),
                     input={"size": 16, "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3})


class Doubled(nn.Module):
    """A composite: an inner EmbeddingModel whose embedding is doubled."""

    run_loader = LOADER
    head = None

    def __init__(self, inner: EmbeddingModel):
        super().__init__()
        self.inner = inner
        self.spec = ModelSpec(**{**tiny_spec().__dict__, "num_classes": 0, "classes": [],
                                 "extra": {"inner": inner.spec.to_json()}})

    @property
    def embedding_dim(self) -> int:
        return self.inner.embedding_dim

    def embed(self, images):
        return 2 * self.inner.embed(images)

    def forward(self, images, targets=None):
        return ModelOutput(self.embed(images), None)


CALLS = []


@run_loader
def load_doubled_run(run_dir, device="cpu"):
    from safetensors.torch import load_file

    CALLS.append(str(run_dir))
    spec = read_spec(run_dir)
    model = Doubled(EmbeddingModel(ModelSpec.from_json(spec.extra["inner"])))
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    return model


def not_marked(run_dir, device="cpu"):
    raise AssertionError("an unmarked function must never be called")


@pytest.fixture
def toy_plugin_host():
    with plugin_host_with(sys.modules[__name__], "toy-loader-plugin") as host:
        yield host


def images():
    return torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)


def test_standard_run_has_no_loader_and_loads_as_before(tmp_path):
    torch.manual_seed(0)
    model = EmbeddingModel(tiny_spec()).eval()
    save_model(model, tmp_path / "plain")
    assert "loader" not in json.loads((tmp_path / "plain" / "model.json").read_text())
    loaded = load_model(tmp_path / "plain")
    assert type(loaded) is EmbeddingModel
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded(x).embedding, model(x).embedding)


def test_named_loader_rebuilds_the_composite(tmp_path, toy_plugin_host):
    torch.manual_seed(0)
    composite = Doubled(EmbeddingModel(tiny_spec())).eval()
    save_model(composite, tmp_path / "composite")
    assert json.loads((tmp_path / "composite" / "model.json").read_text())["loader"] == LOADER
    CALLS.clear()
    loaded = load_model(tmp_path / "composite")
    assert CALLS == [str(tmp_path / "composite")]
    assert isinstance(loaded, Doubled) and not loaded.training
    x = images()
    with torch.no_grad():
        assert torch.allclose(loaded(x).embedding, 2 * composite.inner.embed(x))


def test_features_of_accepts_a_composite_run(tmp_path, toy_plugin_host):
    from compat_core.features import features_of

    save_model(Doubled(EmbeddingModel(tiny_spec())).eval(), tmp_path / "composite")
    feats = features_of(str(tmp_path / "composite"), data="digits", split="test")
    assert feats.features.shape == (450, 4)


def write_loader(tmp_path, loader: str):
    save_model(EmbeddingModel(tiny_spec()), tmp_path / "run")
    spec_file = tmp_path / "run" / "model.json"
    spec_file.write_text(json.dumps({**json.loads(spec_file.read_text()), "loader": loader}))
    return tmp_path / "run"


def test_loader_outside_installed_plugins_is_refused_without_import(tmp_path, toy_plugin_host):
    run = write_loader(tmp_path, "evil_module_that_does_not_exist:run")
    with pytest.raises(CompatError, match="not a function of an installed compat plugin"):
        load_model(run)
    assert "evil_module_that_does_not_exist" not in sys.modules
    with pytest.raises(CompatError, match="not a function of an installed compat plugin"):
        load_model(write_loader(tmp_path / "b", "os:system"))


def test_unmarked_function_of_a_plugin_is_refused(tmp_path, toy_plugin_host):
    with pytest.raises(CompatError, match="not marked as a run loader"):
        load_model(write_loader(tmp_path, f"{__name__}:not_marked"))


def test_missing_loader_attribute_is_a_user_error(tmp_path, toy_plugin_host):
    with pytest.raises(CompatError, match="cannot be imported"):
        load_model(write_loader(tmp_path, f"{__name__}:no_such_loader"))

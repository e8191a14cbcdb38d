"""IResNet face backbones against the published architecture: parameter counts of insightface's
iresnet18/34/50/100 (24.03M, 34.14M, 43.59M, 65.16M, as its model zoo lists them), the 512-d output for
112 x 112 input, registration as backbones beside timm's names, and the size error."""

import pytest
import torch
from compat_core.errors import CompatError
from compat_core.models import iresnet
from compat_core.models.backbone import create_backbone

PUBLISHED_MILLIONS = {"iresnet18": 24.03, "iresnet34": 34.14, "iresnet50": 43.59, "iresnet100": 65.16}


@pytest.mark.parametrize("name", sorted(PUBLISHED_MILLIONS))
def test_parameter_counts_match_the_published_models(name):
    net = getattr(iresnet, name)()
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == PUBLISHED_MILLIONS[name]
    assert net.num_features == 512


def test_a_112_image_gives_a_512_d_embedding_through_the_registry():
    net = create_backbone("iresnet18").eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 112, 112)).shape == (2, 512)
    assert not net.features.weight.requires_grad  # the final BN's scale is fixed, as published


def test_another_input_size_is_an_error_that_names_the_flag():
    with pytest.raises(CompatError, match="--image-size 112"):
        create_backbone("iresnet18")(torch.zeros(1, 3, 64, 64))


def test_the_tiny_test_model_trains_through_the_cli(tmp_path):
    from cli_runner import compat

    compat("train", "baseline", "--data", "digits", "--backbone", "test_iresnet", "--image-size", "32",
           "--embedding-dim", "0", "--epochs", "1", "--device", "cpu", "--out", tmp_path / "run")
    import json

    spec = json.loads((tmp_path / "run" / "model.json").read_text())
    assert spec["backbone"] == "test_iresnet" and spec["feature_dim"] == 64 and spec["embedding_dim"] is None

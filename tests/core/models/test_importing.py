"""compat import model: a torchvision and a timm checkpoint reproduce the original model's outputs exactly,
under any key prefix; what does not fit is one paragraph naming the keys."""

from __future__ import annotations

import pickle

import pytest
import timm
import torch
import torchvision
from cli_runner import assert_user_error, compat
from compat_core.errors import CompatError
from compat_core.models.importing import ImportRequest, common_prefix, import_model
from compat_core.models.run import load_model
from safetensors.torch import save_file


def images(n=4, size=32):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


@pytest.mark.slow
def test_a_torchvision_resnet_saved_by_torchvision_imports_exactly(tmp_path):
    original = torchvision.models.resnet18(num_classes=7).eval()
    torch.save(original.state_dict(), tmp_path / "tv.pth")
    (tmp_path / "classes.txt").write_text("\n".join(f"class-{i}" for i in range(7)))
    compat("import", "model", "--backbone", "resnet18", "--weights", tmp_path / "tv.pth", "--head", "linear",
           "--head-weights", "fc", "--classes", tmp_path / "classes.txt", "--input-size", "32", "--out",
           tmp_path / "run")
    model = load_model(tmp_path / "run")
    with torch.no_grad():
        out, x = model(images()), model.preprocess(images())
        logits = original(x)
        original.fc = torch.nn.Identity()
        assert torch.equal(out.embedding, original(x)) and torch.equal(out.logits, logits)
    assert model.spec.classes[6] == "class-6" and model.spec.method == "imported"
    info = compat("features", "extract", "--model", tmp_path / "run", "--data", "digits", "--out", tmp_path / "f.npz")
    assert info.returncode == 0


def test_a_timm_checkpoint_under_a_prefix_with_a_projection_imports_exactly(tmp_path):
    net = timm.create_model("test_resnet", pretrained=False, num_classes=0).eval()
    projection = torch.nn.Linear(net.num_features, 16)
    state = {f"module.backbone.{k}": v for k, v in net.state_dict().items()}
    state.update({"module.embed.weight": projection.weight.detach(), "module.embed.bias": projection.bias.detach()})
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "m.safetensors"))
    model = import_model(ImportRequest("test_resnet", str(tmp_path / "m.safetensors"), projection_weights="embed",
                                       input_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    assert model.spec.extra["imported"]["prefix"] == "module.backbone." and model.embedding_dim == 16
    with torch.no_grad():
        x = model.preprocess(images())
        assert torch.equal(model.embed(images()), projection(net(x)))
    assert model.spec.input["mean"] == [0.5, 0.5, 0.5]


def test_common_prefix_prefers_the_one_most_keys_share():
    own = ["conv.weight", "bn.weight", "bn.bias"]
    keys = ["model.conv.weight", "model.bn.weight", "model.bn.bias", "aux.bn.weight"]
    assert common_prefix(keys, own) == "model."
    assert common_prefix(own, own) == ""


def test_what_does_not_fit_is_named(tmp_path):
    original = torchvision.models.resnet18(num_classes=3)
    state = original.state_dict()
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(CompatError, match=r"1 backbone tensors missing \(layer1.0.conv1.weight\).*2 checkpoint "
                                          r"tensors unused \(fc.weight, fc.bias\)"):
        import_model(ImportRequest("resnet18", str(tmp_path / "cut.pth")))
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CompatError, match="does not fit --backbone resnet34"):
        import_model(ImportRequest("resnet34", str(tmp_path / "r18.pth"), head="linear", head_weights="fc"))
    with pytest.raises(CompatError, match="--head-weights classifier: the checkpoint has no tensor"):
        import_model(ImportRequest("resnet18", str(tmp_path / "r18.pth"), head="linear", head_weights="classifier"))
    with pytest.raises(CompatError, match="has no bias"):
        import_model(ImportRequest("resnet18", str(tmp_path / "r18.pth"), head="normface", head_weights="fc"))


class NotAStateDict:
    pass


def test_bad_files_through_the_cli(tmp_path):
    with open(tmp_path / "object.pth", "wb") as handle:
        pickle.dump({"model": NotAStateDict()}, handle)
    result = compat("import", "model", "--backbone", "resnet18", "--weights", tmp_path / "object.pth", "--out",
                    tmp_path / "run", check=False)
    assert_user_error(result, "never unpickles")
    assert not (tmp_path / "run").exists()
    assert_user_error(compat("import", "model", "--backbone", "resnet18", "--weights", tmp_path / "none.pth",
                             "--out", tmp_path / "run", check=False), "no such file")
    assert_user_error(compat("import", "model", "--backbone", "resnet18", "--weights", tmp_path / "object.pth",
                             "--head", "linear", "--out", tmp_path / "run", check=False), "go together")

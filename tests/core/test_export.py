"""compat export: ONNX (onnxruntime) and TorchScript files that embed as compat does, with the metadata a serving
stack needs; a file that does not match is never written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_runner import assert_user_error, compat
from compat_core.export import export_model, read_metadata
from compat_core.models.run import load_model
from compat_core.provenance import fingerprint

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TINY = ["--data", "digits", "--backbone", "test_resnet", "--image-size", "16", "--embedding-dim", "8", "--epochs",
        "1", "--device", "cpu", "--val-split", "none"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    compat("train", "baseline", *TINY, "--classes", "0-4", "--out", root / "old")
    compat("train", "bct", *TINY, "--old", root / "old", "--out", root / "bct")
    return root


@pytest.mark.parametrize("name", ["old", "bct"])
def test_onnx_export_embeds_real_images_as_compat_does(runs, tmp_path, name):
    import onnxruntime

    out = tmp_path / f"{name}.onnx"
    result = compat("export", runs / name, "--out", out, "--data", "digits")
    assert "largest difference" in result.stderr and out.is_file()
    meta = read_metadata(out)
    assert meta["fingerprint"] == fingerprint(runs / name) and meta["input_size"] == "16"
    assert meta["embedding_dim"] == "8" and meta["format"] == "compat-export/1"
    session = onnxruntime.InferenceSession(str(out))
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        expected = load_model(runs / name).embed(images).numpy()
    got = session.run(None, {"images": images.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4  # a batch size the check did not use: the batch is dynamic


def test_torchscript_export_with_its_metadata(runs, tmp_path):
    report = export_model(str(runs / "bct"), tmp_path / "bct.pt", fmt="torchscript")
    assert report["max_abs_difference"] <= 1e-4 and read_metadata(tmp_path / "bct.pt")["method"] == "bct"


def test_a_file_outside_the_tolerance_is_not_written(runs, tmp_path):
    result = compat("export", runs / "bct", "--out", tmp_path / "x.onnx", "--tolerance", "-1", check=False)
    assert_user_error(result, "was not written", "tolerance")
    assert list(tmp_path.iterdir()) == []
    assert_user_error(compat("export", tmp_path / "nothing", "--out", tmp_path / "y.onnx", check=False),
                      "is not a compat run directory")
    assert_user_error(compat("export", runs / "bct", "--out", tmp_path / "z.onnx", "--format", "tflite",
                             check=False), "--format tflite")


class _Branchy(torch.nn.Module):
    """Python control flow on a tensor's value: torch.export refuses it (a trace would keep one branch)."""

    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return -x


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.gate = _Branchy()

    def forward(self, x):
        return self.gate(self.lin(x))


def test_a_model_that_cannot_be_exported_names_the_module_at_fault(tmp_path):
    from compat_core.errors import CompatError
    from compat_core.export import _write_onnx, failing_module

    class Wrapper(torch.nn.Module):  # as export_model wraps a run's model: the model is `inner`
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Sequential(torch.nn.Linear(4, 4), _Block())

        def forward(self, x):
            return self.inner(x)

    module, args = Wrapper().eval(), (torch.ones(3, 4),)
    with pytest.raises(CompatError, match=r"in module 1\.gate \(_Branchy\).*try --format torchscript"):
        _write_onnx(module, args, tmp_path / "m.onnx", {}, opset=18, dynamic_batch=False, names=(["x"], "y"))
    assert not (tmp_path / "m.onnx").exists()
    # a failure in the model's own forward (no child fails alone) names the model itself
    assert failing_module(_Branchy(), args, lambda sub, inputs: 1 / 0) == ", in module the model itself (_Branchy)"

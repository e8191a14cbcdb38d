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

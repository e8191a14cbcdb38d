"""BT^2's own BCT baseline as an option of bct: s * n(f) . w with the old class means as they are, label
smoothing on both CE terms, and the preset bt2-bct-baseline that sets it all."""

import json

import torch
from cli_runner import assert_user_error, compat
from compat_bct.losses import influence_loss
from compat_bct.row_fit import score

COMMON = ["--data", "digits", "--backbone", "test_resnet", "--image-size", "8", "--embedding-dim", "8",
          "--epochs", "1", "--device", "cpu"]


def test_the_logits_keep_the_rows_as_they_are():
    features, rows = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.5, 0.0], [0.0, 0.25]])
    logits = score(features, rows, torch.zeros(2), "feature-normalized", 2.0)
    assert torch.allclose(logits, torch.tensor([[2 * 0.6 * 0.5, 2 * 0.8 * 0.25]]))


def test_the_influence_takes_the_label_smoothing():
    logits, target = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    smoothed = influence_loss(logits, target, label_smoothing=0.1)["influence"]
    log_p = torch.log_softmax(logits, dim=1)[0]
    assert torch.isclose(smoothed, -(0.95 * log_p[0] + 0.05 * log_p[1]))


def test_the_preset_trains_with_its_logits_and_refuses_the_row_fit(tmp_path):
    compat("train", "baseline", *COMMON, "--classes", "0-4", "--out", tmp_path / "old")
    proc = compat("train", "bct", "--preset", "bt2-bct-baseline", *COMMON, "--old", tmp_path / "old", "--out",
                  tmp_path / "new")
    assert "the rows not normalised (BT^2's BCT baseline)" in proc.stderr
    spec = json.loads((tmp_path / "new" / "model.json").read_text())
    assert spec["extra"]["influence_logits"]["kind"] == "feature-normalized"
    assert spec["extra"]["influence_logits"]["scale"] == 1.0
    config = (tmp_path / "new" / "config.yaml").read_text()
    assert "label_smoothing: 0.1" in config and "influence_weight: 10.0" in config
    fitted = compat("train", "bct", *COMMON, "--old", tmp_path / "old", "--no-normalize-rows", "--out", tmp_path / "x",
                    check=False)
    assert_user_error(fitted, "--no-fit-synthesized")

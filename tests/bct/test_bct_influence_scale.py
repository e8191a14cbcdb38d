"""--influence-scale auto (the scale that keeps the validated setting's reachable target probability for
any number of rows) and adacos (AdaCos's fixed scale, floored): values against independent formulas,
the option's forms (flag, --set, config), and what a run records."""

import json
import math

import numpy as np
import pytest
from cli_runner import assert_user_error, compat
from compat_bct.config import BCTConfig
from compat_bct.old_classifier import (
    adacos_scale,
    build_old_classifier,
    describe_logits,
    influence_logits,
    matched_scale,
)
from compat_core.config import dump_resolved, resolve_config
from compat_core.errors import CompatError
from compat_core.old_space import OldEmbeddings
from test_bct_old_classifier import make_ctx, make_data, make_old

TINY = ["--data", "digits", "--backbone", "test_resnet", "--embedding-dim", "16", "--image-size", "16",
        "--epochs", "1", "--batch-size", "64", "--device", "cpu"]


def reachable(scale, classes):
    """Target probability with the target at cosine 1 and every other row orthogonal."""
    return math.exp(scale) / (math.exp(scale) + classes - 1)


@pytest.mark.parametrize("classes", [2, 10, 1000, 93_000])
def test_auto_keeps_the_reachable_probability_of_s4_at_ten_classes(classes):
    assert reachable(matched_scale(classes), classes) == pytest.approx(reachable(4.0, 10), rel=1e-12)
    assert matched_scale(10) == 4.0  # exactly: the demo's default is bit-identical to --influence-scale 4
    assert round(reachable(4.0, 1000), 2) == 0.05  # what a fixed 4 would leave at 1,000 classes


@pytest.mark.parametrize("classes", [10, 1000, 93_000])
def test_adacos_scale_is_adacos_fixed_scale(classes):
    # Zhang et al. 2019, the fixed scale: s = sqrt(2) * log(C - 1), computed here with numpy
    expected = float(np.sqrt(2.0) * np.log(classes - 1))
    assert adacos_scale(classes) == pytest.approx(expected, rel=1e-12)
    assert round(adacos_scale(10), 3) == 3.107


@pytest.mark.parametrize("classes", [1, 2, 3])
def test_adacos_scale_never_falls_below_one(classes):
    # ln(2 - 1) = 0 would make every logit 0; C = 3 gives 0.98
    assert adacos_scale(classes) == 1.0
    assert math.sqrt(2) * math.log(3 - 1) < 1.0 < adacos_scale(4)


def test_the_option_takes_a_positive_number_auto_or_adacos():
    assert BCTConfig().influence_scale == "auto"
    assert BCTConfig(influence_scale="adacos").influence_scale == "adacos"
    assert BCTConfig(influence_scale="8").influence_scale == 8.0  # a CLI flag arrives as text
    assert BCTConfig(influence_scale=8).influence_scale == 8.0
    for bad in (0, -1.0, "big"):
        with pytest.raises(ValueError):
            BCTConfig(influence_scale=bad)


def test_flags_set_and_config_file_resolve_to_the_same_values(tmp_path):
    required = {"data": "digits", "out": str(tmp_path / "run")}

    assert resolve_config("bct", BCTConfig, set_options=["influence_scale=auto"], flags=required)[1].influence_scale \
        == "auto"
    assert resolve_config("bct", BCTConfig, set_options=["influence_scale=8"], flags=required)[1].influence_scale == 8.0
    _, own = resolve_config("bct", BCTConfig, set_options=["influence_scale=auto"],
                            flags={**required, "influence_scale": "8"})
    assert own.influence_scale == 8.0  # flags win over --set
    common, own = resolve_config("bct", BCTConfig, flags={**required, "influence_scale": "auto"})
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_resolved("bct", common, own))
    assert resolve_config("bct", BCTConfig, config_file=str(saved))[1].influence_scale == "auto"
    with pytest.raises(CompatError, match="influence_scale"):
        resolve_config("bct", BCTConfig, flags={**required, "influence_scale": "0"})


def test_scales_resolve_on_the_rows_after_synthesis():
    classes = tuple(str(i) for i in range(12))
    old, data = make_old(classes[:4]), make_data(classes)
    clf = build_old_classifier(BCTConfig(influence_scale="adacos"), make_ctx(old, data), OldEmbeddings(old))
    assert len(clf.weight) == 12 and clf.kind == "cosine"
    assert clf.scale == pytest.approx(float(np.sqrt(2.0) * np.log(11)))
    auto = build_old_classifier(BCTConfig(), make_ctx(old, data), OldEmbeddings(old))
    assert auto.scale == pytest.approx(4.0 + math.log(11 / 9))
    # the paper's recipe keeps the old head's 4 rows and appends 8: 12 rows as well
    paper = BCTConfig(synthesize="new-only", influence_scale="adacos")
    assert build_old_classifier(paper, make_ctx(old, data), OldEmbeddings(old)).scale == pytest.approx(clf.scale)
    fixed = build_old_classifier(BCTConfig(influence_scale=8.0), make_ctx(old, data), OldEmbeddings(old))
    assert fixed.scale == 8.0


def test_the_resolved_scale_is_recorded_and_told():
    classes = ("0", "1")
    old, data = make_old(classes), make_data(classes)
    clf = build_old_classifier(BCTConfig(influence_scale="adacos"), make_ctx(old, data), OldEmbeddings(old))
    logits = influence_logits(clf, BCTConfig(influence_scale="adacos"))
    assert logits == {"kind": "cosine", "scale": 1.0, "scale_option": "adacos", "rows": 2}  # floored, not 0
    assert "floored at 1" in describe_logits(logits)
    fixed = describe_logits({"kind": "cosine", "scale": 4.0, "scale_option": 4.0, "rows": 1000})
    assert "4 * cos(f, w)" in fixed and "auto would give 8.71)" in fixed  # 4 significant digits


@pytest.mark.slow
def test_cli_forms_of_the_option(tmp_path):
    old = tmp_path / "old"
    compat("train", "baseline", *TINY, "--classes", "0-4", "--seed", "1", "--out", old)
    expected = float(np.sqrt(2.0) * np.log(9))  # digits: 10 classes, every row synthesized
    for name, args in (("adacos", ["--influence-scale", "adacos"]), ("eight", ["--influence-scale", "8"]),
                       ("set", ["--set", "influence_scale=adacos"])):
        proc = compat("train", "bct", *TINY, "--old", old, *args, "--out", tmp_path / name)
        logits = json.loads((tmp_path / name / "model.json").read_text())["extra"]["influence_logits"]
        scale = 8.0 if name == "eight" else expected
        assert logits["scale"] == pytest.approx(scale, abs=1e-6) and logits["rows"] == 10
        assert f"influence logits: {scale:g}"[:22] in proc.stdout + proc.stderr
    assert_user_error(compat("train", "bct", *TINY, "--old", old, "--influence-scale", "0", "--out",
                             tmp_path / "x", check=False), "influence_scale")

"""The BCT criterion and update gain computed by `compat eval matrix`."""

import pytest
from compat_core.evaluators.matrix import compatibility


def rows(values):
    return [{"query": q, "gallery": g, "top1": t, "mAP": m} for (q, g), (t, m) in values.items()]


def test_gain_and_criterion_for_each_later_run_against_each_earlier_one():
    values = {("old", "old"): (0.60, 0.40), ("old", "bct"): (0.0, 0.0), ("old", "ind"): (0.0, 0.0),
              ("bct", "old"): (0.70, 0.55), ("bct", "bct"): (0.80, 0.70), ("bct", "ind"): (0.0, 0.0),
              ("ind", "old"): (0.10, 0.12), ("ind", "bct"): (0.0, 0.0), ("ind", "ind"): (0.82, 0.72)}
    verdicts = compatibility(["old", "bct", "ind"], rows(values))
    assert [(v["new"], v["old"]) for v in verdicts] == [("bct", "old"), ("ind", "old"), ("ind", "bct")]
    bct = verdicts[0]
    assert bct["compatible"] is True
    assert bct["top1"] == {"old_old": 0.60, "new_old": 0.70, "new_new": 0.80, "compatible": True,
                           "gain": pytest.approx((0.70 - 0.60) / (0.80 - 0.60))}
    assert bct["mAP"]["gain"] == pytest.approx((0.55 - 0.40) / (0.70 - 0.40))
    independent = verdicts[1]
    assert independent["compatible"] is False and independent["top1"]["compatible"] is False
    assert independent["mAP"]["gain"] == pytest.approx((0.12 - 0.40) / (0.72 - 0.40))


def test_criterion_is_strict_and_gain_is_undefined_without_spread():
    values = {("a", "a"): (0.5, 0.5), ("a", "b"): (0.5, 0.5), ("b", "a"): (0.5, 0.6), ("b", "b"): (0.5, 0.6)}
    (verdict,) = compatibility(["a", "b"], rows(values))
    assert verdict["top1"]["compatible"] is False  # equal is not better
    assert verdict["top1"]["gain"] is None  # new/new == old/old: no spread to divide by
    assert verdict["mAP"]["compatible"] is True and verdict["compatible"] is False


def test_gain_is_undefined_when_the_new_model_is_worse_than_the_old():
    # new/new below old/old: (0.1 - 0.874) / (0.870 - 0.874) would be a meaningless 193
    values = {("a", "a"): (0.874, 0.85), ("a", "b"): (0.1, 0.1), ("b", "a"): (0.1, 0.1), ("b", "b"): (0.870, 0.81)}
    (verdict,) = compatibility(["a", "b"], rows(values))
    assert verdict["top1"]["gain"] is None and verdict["mAP"]["gain"] is None


@pytest.mark.slow
def test_a_chain_of_three_runs_reports_ac_am_and_draws_the_heatmap(tmp_path):
    import json

    from cli_runner import compat

    common = ["--data", "digits", "--backbone", "test_resnet", "--image-size", "8", "--embedding-dim", "8",
              "--epochs", "1", "--device", "cpu"]
    compat("train", "baseline", *common, "--classes", "0-3", "--out", tmp_path / "v1")
    compat("train", "bct", *common, "--classes", "0-6", "--old", tmp_path / "v1", "--out", tmp_path / "v2")
    compat("train", "bct", *common, "--old", tmp_path / "v2", "--out", tmp_path / "v3")
    out = compat("eval", "matrix", tmp_path / "v1", tmp_path / "v2", tmp_path / "v3", "--data", "digits",
                 "--json", tmp_path / "m.json", "--plot", tmp_path / "m.png").stdout
    assert "chain of 3 models" in out.replace("\n", " ")  # v3 was trained against v2, v2 against v1
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["chain"]["order"] == [str(tmp_path / f"v{i}") for i in (1, 2, 3)]
    assert set(result["chain"]["AC"]) == {"top1", "mAP"} and 0 <= result["chain"]["AC"]["top1"] <= 1
    assert result["chain"]["linked"] is True
    pairs = {(v["new_label"], v["old_label"]) for v in result["compatibility"]}
    assert pairs == {("v2", "v1"), ("v3", "v1"), ("v3", "v2")}  # every later/earlier pair, not only vs the first
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_runs_out_of_generation_order_are_refused(tmp_path):
    from cli_runner import assert_user_error, compat

    common = ["--data", "digits", "--backbone", "test_resnet", "--image-size", "8", "--embedding-dim", "8",
              "--epochs", "1", "--device", "cpu"]
    compat("train", "baseline", *common, "--classes", "0-4", "--out", tmp_path / "old")
    compat("train", "bct", *common, "--old", tmp_path / "old", "--out", tmp_path / "new")
    wrong = compat("eval", "matrix", tmp_path / "new", tmp_path / "old", "--data", "digits", check=False)
    assert_user_error(wrong, "not in generation order", "was trained against")

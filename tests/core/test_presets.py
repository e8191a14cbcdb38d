"""Presets: plain YAML recipes applied above a method's defaults and below a config file, --set and flags;
registered by core and by third-party plugins; shown by `compat plugins show`; usable from studies."""

import pytest
from compat_core.config import resolve_config
from compat_core.errors import CompatError
from compat_core.methods.configs import BaselineConfig
from compat_core.presets import preset_values

REQUIRED = {"data": "digits", "out": "runs/x"}


def test_the_face_preset_sets_the_repository_recipe():
    common, _ = resolve_config("baseline", BaselineConfig, flags={**REQUIRED, "preset": "mixbct-face"})
    assert (common.backbone, common.image_size, common.embedding_dim) == ("iresnet50", 112, None)
    assert (common.head, common.head_scale, common.head_margin) == ("arcface", 64, 0.5)
    assert (common.optimizer, common.lr, common.momentum, common.weight_decay) == ("sgd", 0.1, 0.9, 5e-4)
    assert (common.scheduler, common.poly_power, common.epochs, common.grad_clip, common.amp) == (
        "poly", 2, 35, 5, True)
    old, _ = resolve_config("baseline", BaselineConfig, flags={**REQUIRED, "preset": "mixbct-face-old"})
    assert old.backbone == "iresnet18"


def test_config_file_set_and_flags_override_the_preset(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 3\nhead_margin: 0.3\n")
    common, _ = resolve_config("baseline", BaselineConfig, config_file=str(config), set_options=["lr=0.02"],
                               flags={**REQUIRED, "preset": "mixbct-face", "backbone": "test_iresnet"})
    assert (common.epochs, common.head_margin, common.lr, common.backbone) == (3, 0.3, 0.02, "test_iresnet")
    assert common.head == "arcface"  # what nobody overrode comes from the preset
    by_set, _ = resolve_config("baseline", BaselineConfig, set_options=["preset=mixbct-face"], flags=REQUIRED)
    assert by_set.backbone == "iresnet50"


def test_an_unknown_preset_names_the_known_ones():
    with pytest.raises(CompatError, match="unknown preset 'face'.*mixbct-face"):
        resolve_config("baseline", BaselineConfig, flags={**REQUIRED, "preset": "face"})


def test_a_plugin_registers_its_own_preset_with_per_method_values(tmp_path):
    from compat_core.hookspecs import hookimpl
    from compat_core.testing import plugin_host_with

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("summary: tiny\ncommon: {epochs: 4}\nmethods: {baseline: {label_smoothing: 0.1}}\n")

    class Plugin:
        @hookimpl
        def compat_register_presets(self, register):
            register("tiny-recipe", path=str(recipe), summary="tiny")

    with plugin_host_with(Plugin(), "compat-tiny"):
        assert preset_values("tiny-recipe", "baseline") == {"epochs": 4, "label_smoothing": 0.1}
        common, _ = resolve_config("baseline", BaselineConfig, flags={**REQUIRED, "preset": "tiny-recipe"})
        assert (common.epochs, common.label_smoothing) == (4, 0.1)


def test_the_cli_trains_with_a_preset_and_shows_it(tmp_path):
    import yaml
    from cli_runner import assert_user_error, compat

    shown = compat("plugins", "show", "mixbct-face").stdout
    assert "--backbone iresnet50" in shown and "--amp" in shown and "--head-scale 64" in shown
    compat("train", "baseline", "--preset", "mixbct-face", "--data", "digits", "--backbone", "test_iresnet",
           "--image-size", "32", "--epochs", "1", "--batch-size", "32", "--no-amp", "--device", "cpu", "--out",
           tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["head"], saved["scheduler"], saved["backbone"], saved["amp"]) == (
        "arcface", "poly", "test_iresnet", False)
    unknown = compat("train", "baseline", "--preset", "nope", "--data", "digits", "--out", tmp_path / "x",
                     check=False)
    assert_user_error(unknown, "unknown preset 'nope'")


def test_study_entries_take_presets_and_an_unknown_one_is_refused_before_training(tmp_path):
    from cli_runner import assert_user_error, compat

    study = tmp_path / "study.yaml"
    text = ("name: preset-study\ndata: digits\ncommon: {preset: mixbct-face, backbone: test_iresnet, image_size: 32, "
            "epochs: 1, batch_size: 32, amp: false, device: cpu}\nold: {classes: 0-4, set: {preset: PRESET}}\n"
            "new: {}\nmethods:\n  independent: {method: baseline, reference: true, old_model: false}\n"
            "  bct: {method: bct}\nseeds: {old: [1], new: [2]}\n")
    study.write_text(text.replace("PRESET", "mixbct-face-old"))
    assert "bct-o1-n2" in compat("study", "run", study, "--out", tmp_path / "a", "--dry-run").stdout
    study.write_text(text.replace("PRESET", "nope"))
    assert_user_error(compat("study", "run", study, "--out", tmp_path / "b", "--dry-run", check=False),
                      "study run old-s1 (baseline): unknown preset 'nope'")

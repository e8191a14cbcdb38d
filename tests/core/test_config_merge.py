"""resolve_config: defaults < config file < --set < flags, and the errors of bad options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from compat_core.config import (
    MethodConfig,
    TrainConfig,
    dump_resolved,
    load_config_file,
    parse_set_options,
    resolve_config,
)
from compat_core.errors import CompatError
from compat_core.methods.configs import BaselineConfig
from pydantic import Field


class WeightedConfig(MethodConfig):
    weight: float = Field(1.0, description="Weight of the extra term.")
    tag: str = Field("plain", description="A string option.")


REQUIRED = {"data": "digits", "out": "runs/x"}


def write_yaml(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_defaults_only():
    common, own = resolve_config("baseline", BaselineConfig, flags=REQUIRED)
    assert common == TrainConfig(data="digits", out="runs/x")
    assert (common.lr, common.epochs, common.backbone, common.old) == (0.1, 10, "resnet18", [])
    assert own == BaselineConfig()


def test_precedence_defaults_file_set_flags(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"data": "digits", "out": "from-file", "lr": 0.5, "epochs": 3,
                                               "batch-size": 16, "weight": 2.0, "tag": "file"})
    common, own = resolve_config("weighted", WeightedConfig, config_file=config,
                                 set_options=["lr=0.25", "weight=3.5", "batch_size=32", "seed=7"],
                                 flags={"lr": 0.125, "out": "from-flag", "weight": None, "seed": None})
    assert common.lr == 0.125  # flag beats --set beats file
    assert common.out == "from-flag"  # flag beats file
    assert common.batch_size == 32  # --set beats file ("batch-size" in the file is normalized)
    assert common.seed == 7  # a None flag means "not given"
    assert common.epochs == 3  # file beats default
    assert common.momentum == 0.9  # default
    assert own.weight == 3.5 and own.tag == "file"
    assert isinstance(own, WeightedConfig)


class AdamConfig(MethodConfig):
    common_defaults = {"optimizer": "adamw", "lr": 5e-4}


def test_method_common_defaults_sit_between_defaults_and_the_config_file(tmp_path):
    common, _ = resolve_config("adam", AdamConfig, flags=REQUIRED)
    assert (common.optimizer, common.lr, common.momentum) == ("adamw", 5e-4, 0.9)
    config = write_yaml(tmp_path / "c.yaml", {"lr": 0.01})
    common, _ = resolve_config("adam", AdamConfig, config_file=config, flags=REQUIRED)
    assert (common.optimizer, common.lr) == ("adamw", 0.01)  # the file beats the method's default
    common, _ = resolve_config("adam", AdamConfig, set_options=["optimizer=sgd"], flags={**REQUIRED, "lr": 0.2})
    assert (common.optimizer, common.lr) == ("sgd", 0.2)
    assert resolve_config("baseline", BaselineConfig, flags=REQUIRED)[0].optimizer == "sgd"  # others unchanged


@pytest.mark.parametrize("defaults, message", [
    ({"learning_rate": 0.1}, "learning_rate, which are not common training options"),
    ({"lr": "fast"}, "invalid common_defaults (lr:"),
])
def test_bad_common_defaults_blame_the_plugin(defaults, message):
    bad = type("BadConfig", (MethodConfig,), {"common_defaults": defaults})
    with pytest.raises(CompatError, match=re.escape(message)):
        resolve_config("bad", bad, flags=REQUIRED)


def test_method_fields_and_common_fields_are_split():
    common, own = resolve_config("weighted", WeightedConfig, set_options=["weight=4", "tag=x"], flags=REQUIRED)
    assert own.model_dump() == {"weight": 4.0, "tag": "x"}
    assert "weight" not in common.model_dump()


@pytest.mark.parametrize("key, suggestion", [("lrr", "lr"), ("wieght", "weight"), ("epoch", "epochs")])
def test_unknown_key_suggests_close_name(key, suggestion):
    with pytest.raises(CompatError) as excinfo:
        resolve_config("weighted", WeightedConfig, set_options=[f"{key}=1"], flags=REQUIRED)
    message = str(excinfo.value)
    assert f"unknown option {key!r}" in message
    assert f"Did you mean {suggestion!r}?" in message
    assert "compat train weighted --help" in message


def test_unknown_key_without_close_match_has_no_suggestion():
    with pytest.raises(CompatError) as excinfo:
        resolve_config("baseline", BaselineConfig, set_options=["zzzzqqq=1"], flags=REQUIRED)
    assert "unknown option 'zzzzqqq'" in str(excinfo.value) and "Did you mean" not in str(excinfo.value)


def test_unknown_key_in_config_file(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {**REQUIRED, "bakcbone": "test_resnet"})
    with pytest.raises(CompatError, match=r"unknown option 'bakcbone'.*Did you mean 'backbone'\?"):
        resolve_config("baseline", BaselineConfig, config_file=config)


@pytest.mark.parametrize("options, field", [
    (["epochs=abc"], "epochs"),
    (["lr=fast"], "lr"),
    (["weight=heavy"], "weight"),
    (["head=softmax"], "head"),
    (["epochs=0"], "epochs"),
    (["lr=-1"], "lr"),
    (["step_epochs=3x"], "step_epochs"),
])
def test_wrong_type_names_the_field(options, field):
    with pytest.raises(CompatError) as excinfo:
        resolve_config("weighted", WeightedConfig, set_options=options, flags=REQUIRED)
    message = str(excinfo.value)
    assert message.startswith("invalid options: ")
    assert re.search(rf"{field}(\[\d+\])?: ", message)
    assert "Traceback" not in message


def test_missing_required_option_is_named():
    with pytest.raises(CompatError, match=r"invalid options: .*out: Field required"):
        resolve_config("baseline", BaselineConfig, flags={"data": "digits"})


def test_parse_set_options_values():
    parsed = parse_set_options(["lr=0.01", "warmup_epochs=1e-1", "epochs=5", "backbone=test_resnet",
                                "classes=0-4", "old=[a, b]", "step-epochs=[3, 6]", "amp=true",
                                "grad_clip=", "device=cuda:1", "note=a=b"])
    assert parsed == {"lr": 0.01, "warmup_epochs": "1e-1", "epochs": 5, "backbone": "test_resnet",
                      "classes": "0-4", "old": ["a", "b"], "step_epochs": [3, 6], "amp": True,
                      "grad_clip": None, "device": "cuda:1", "note": "a=b"}
    assert isinstance(parsed["lr"], float)


def test_set_values_validate_into_typed_fields():
    common, own = resolve_config("weighted", WeightedConfig, flags=REQUIRED, set_options=[
        "warmup_epochs=1e-1", "step_epochs=[3, 6]", "old=[runs/a, runs/b]", "weight=2", "tag=v7"])
    assert common.warmup_epochs == pytest.approx(0.1)  # YAML reads 1e-1 as a string; pydantic parses it
    assert common.step_epochs == [3, 6] and common.old == ["runs/a", "runs/b"]
    assert own.weight == 2.0 and isinstance(own.weight, float)
    assert own.tag == "v7"


@pytest.mark.parametrize("item", ["lr", "=3", "  =x"])
def test_set_without_key_value_is_an_error(item):
    with pytest.raises(CompatError, match=r"is not key=value"):
        parse_set_options([item])


@pytest.mark.parametrize("item, attribute, expected", [("classes=5", "classes", "5"), ("tag=007", "tag", "007")])
def test_set_numeric_looking_string_option(item, attribute, expected):
    common, own = resolve_config("weighted", WeightedConfig, set_options=[item], flags=REQUIRED)
    assert getattr(common if attribute == "classes" else own, attribute) == expected


def test_config_file_for_another_method(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"method": "bct", **REQUIRED})
    with pytest.raises(CompatError) as excinfo:
        resolve_config("baseline", BaselineConfig, config_file=config)
    message = str(excinfo.value)
    assert "'bct'" in message and "compat train baseline" in message and "compat train bct" in message


def test_config_file_naming_the_same_method_is_fine(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"method": "baseline", **REQUIRED, "epochs": 2})
    common, _ = resolve_config("baseline", BaselineConfig, config_file=config)
    assert common.epochs == 2


@pytest.mark.parametrize("content, fragment", [
    (None, "no such file"),
    ("lr: [unclosed\n", "is not valid YAML"),
    ("- a\n- b\n", "must hold a mapping"),
])
def test_bad_config_files(tmp_path, content, fragment):
    path = tmp_path / "c.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CompatError, match=fragment):
        load_config_file(path)


def test_empty_config_file_is_empty_mapping(tmp_path):
    (tmp_path / "c.yaml").write_text("")
    assert load_config_file(tmp_path / "c.yaml") == {}


def test_dump_resolved_round_trip(tmp_path):
    common, own = resolve_config("weighted", WeightedConfig, flags={
        **REQUIRED, "old": ["runs/a", "runs/b"], "step_epochs": [2, 4], "classes": "0-4", "head": "arcface",
        "head_margin": 0.3, "embedding_dim": None, "warmup_epochs": 0.5, "amp": True}, set_options=["weight=0.25"])
    text = dump_resolved("weighted", common, own)
    data = yaml.safe_load(text)
    assert data["method"] == "weighted" and list(data)[0] == "method"
    assert data["weight"] == 0.25 and data["old"] == ["runs/a", "runs/b"]
    (tmp_path / "config.yaml").write_text(text)
    loaded = load_config_file(tmp_path / "config.yaml")
    assert loaded == data
    again = resolve_config("weighted", WeightedConfig, config_file=str(tmp_path / "config.yaml"))
    assert again == (common, own)
    assert dump_resolved("weighted", *again) == text
    with pytest.raises(CompatError, match="for method 'weighted'"):
        resolve_config("baseline", BaselineConfig, config_file=str(tmp_path / "config.yaml"))


def test_embedding_dim_zero_means_no_projection_and_margins_have_ranges():
    assert TrainConfig(data="digits", out="x", embedding_dim=0).embedding_dim is None
    assert TrainConfig(data="digits", out="x", head="arcface", head_margin=1.5).head_margin == 1.5
    for head, margin in (("arcface", 10.0), ("cosface", 1.5)):
        with pytest.raises(ValueError, match="meaningful range"):
            TrainConfig(data="digits", out="x", head=head, head_margin=margin)
    with pytest.raises(ValueError):
        TrainConfig(data="digits", out="x", head="normface", head_scale=1000)

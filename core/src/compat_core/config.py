"""Configuration: the common training options, the base class of method options, and the merge
of defaults < config file < ``--set`` < explicit flags.

Pydantic gives typed validation with readable errors and a JSON schema from which the CLI builds
typed flags, so every option is declared exactly once.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from compat_core.errors import CompatError


class Options(BaseModel):
    """Base of every option model: unknown keys are errors, values are validated on assignment.

    Values from YAML files and ``--set`` are forgiving where the meaning is unambiguous: a number
    given to a text option is text (``classes: 5``), a single value given to a list option is a
    one-element list (``--set old=runs/a``).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _coerce_loose_values(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        coerced = dict(values)
        for name, value in values.items():
            field = cls.model_fields.get(name)
            if field is None or value is None:
                continue
            kind = field_kind(field.annotation)
            if kind == "text" and isinstance(value, (int, float)) and not isinstance(value, bool):
                coerced[name] = str(value)
            elif kind == "list" and not isinstance(value, (list, tuple)):
                coerced[name] = [value]
        return coerced


def field_kind(annotation: Any) -> str:
    """"text", "list" or "other" for a field annotation (``X | None`` counts as ``X``)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if annotation is str:
        return "text"
    if typing.get_origin(annotation) in (list, tuple, set):
        return "list"
    return "other"


class MethodConfig(Options):
    """Base class of a method's own options. Subclass it and add fields with descriptions; each field
    becomes a ``--flag`` of ``compat train METHOD``.

    Example:
        >>> class MyConfig(MethodConfig):
        ...     weight: float = Field(1.0, description="Weight of my loss term.")
        >>> MyConfig(weight=2).weight
        2.0

    ``common_defaults`` sets the method's own defaults for common options (FCT trains its small
    transformation with AdamW at 5e-4, not SGD at 0.1); the config file, ``--set`` and flags still
    override them, and ``compat train METHOD --help`` shows them.
    """

    common_defaults: ClassVar[dict[str, Any]] = {}


class OldSpaceOptions(MethodConfig):
    """Options of every method that compares new embeddings with the old model's (``compat_core.old_space``):
    where old embeddings come from and how a new embedding of another dimension meets them."""

    dim_policy: Literal["error", "truncate", "zero-pad"] = Field(
        "error", description="When the new embedding dim differs from the old one: error (default); truncate "
        "(new embedding cut to its first old-dim values, needs new >= old, as OpenBCT); zero-pad (new "
        "embedding padded with zeros to the old dim, needs new <= old). Applied to the new embedding before it "
        "meets old embeddings; recorded in model.json so evaluators align the same way.")
    old_features: str | None = Field(
        None, description="Optional .npz of old-model features of the training data (`compat features extract "
        "--model OLD --data DATA --split train`), looked up by sample index. Default (none): old embeddings are "
        "computed on the fly by the old model on each (augmented) training batch. A file holds un-augmented "
        "images, so methods that pair each image with its own old embedding need --augment none with it.")


class TrainConfig(Options):
    """Options shared by every method (``compat train METHOD --help`` lists them first)."""

    data: str = Field(..., description="Dataset path (format detected) or built-in name (digits, fashion-mnist).")
    split: str = Field("train", description="Split to train on.")
    classes: str | None = Field(None, description="Classes to train on: 0-4, 0,2,7 or @split.json:old.")
    out: str = Field(..., description="Run directory to write.")
    old: list[str] = Field(default_factory=list, description="Old-model run directory (repeat for several).")
    backbone: str = Field("resnet18", description="timm model name or a registered backbone.")
    backbone_weights: str | None = Field(None, description="Local weights file for the backbone (.safetensors or .pth).")
    embedding_dim: int | None = Field(128, ge=0, description="Projection to this dimension (0 or none: no projection, "
                                      "the backbone's features are the embedding).")
    head: Literal["linear", "normface", "cosface", "arcface"] = Field("linear", description="Classifier head.")
    head_scale: float | None = Field(None, gt=0, le=256, description="Scale s of normalized heads, in (0, 256] "
                                     "(default: normface 30, cosface/arcface 64).")
    head_margin: float | None = Field(None, ge=0, description="Margin m: cosface in [0, 1] (default 0.4), arcface "
                                      "in [0, pi/2] radians (default 0.5); normface and linear take none.")
    image_size: int = Field(32, ge=8, description="Images are resized to this square size.")
    augment: Literal["none", "flip", "crop-flip"] = Field("crop-flip", description="Training augmentation.")
    epochs: int = Field(10, ge=1, description="Training epochs.")
    batch_size: int = Field(128, ge=1, description="Global batch size (split across processes under torchrun).")
    lr: float = Field(0.1, gt=0, description="Peak learning rate.")
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="Optimizer.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    weight_decay: float = Field(5e-4, ge=0, description="Weight decay (not applied to biases and norms).")
    scheduler: Literal["cosine", "step", "poly", "constant"] = Field("cosine", description="Learning-rate schedule.")
    warmup_epochs: float = Field(0.0, ge=0, description="Linear warm-up epochs.")
    step_epochs: list[int] = Field(default_factory=list, description="Epochs at which `step` multiplies the lr by step_gamma (default: every third of training).")
    step_gamma: float = Field(0.1, gt=0, description="Decay factor of the step schedule.")
    poly_power: float = Field(2.0, gt=0, description="Power of the poly schedule.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the classification loss.")
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradient norm to this value.")
    seed: int = Field(0, description="Random seed (initialisation, data order, augmentation).")
    device: str = Field("auto", description="cpu, cuda, cuda:1 or auto.")
    workers: int = Field(0, ge=0, description="Data-loading worker processes (image files only).")
    amp: bool = Field(False, description="Mixed precision (bfloat16 on CPU, float16 on CUDA).")
    val_split: str | None = Field("auto", description="Split scored after every epoch (into history.jsonl): auto (the "
                                  "holdout's val part when --split is @split.json:train, else none), a split name or "
                                  "spec such as @split.json:val, or none.")
    val_metric: Literal["auto", "accuracy", "top1", "mAP", "old-top1", "old-mAP"] = Field(
        "auto", description="Validation metric: accuracy (the classifier head), top1 or mAP (leave-one-out retrieval "
        "within the split), old-top1 or old-mAP (new queries against the old model's gallery of the split, needs "
        "--old); auto: accuracy with a classifier head, else top1.")
    keep: Literal["last", "best"] = Field("last", description="Weights the run keeps: the last epoch's, or best (the "
                                          "epoch with the highest validation metric; needs a validation split).")

    @model_validator(mode="after")
    def _meaningful_head(self) -> TrainConfig:
        if self.embedding_dim == 0:
            self.embedding_dim = None
        # Margins outside these ranges push the target logit below every other: training "converges" to a
        # meaningless loss (ArcFace at m = 10 reached 0.0000). An ignored margin (linear, normface) is left alone.
        limits = {"cosface": 1.0, "arcface": math.pi / 2}
        margin = self.head_margin
        if margin is not None and self.head in limits and margin > limits[self.head]:
            raise ValueError(f"--head-margin {margin} is outside {self.head}'s meaningful range "
                             f"[0, {limits[self.head]:.4g}]: the target logit would be pushed below every other and "
                             f"the loss stops meaning anything (CosFace uses 0.35-0.4, ArcFace 0.5)")
        return self

    def common_keys(self) -> set[str]:
        return set(type(self).model_fields)


def parse_set_options(items: list[str] | None, text_keys: set[str] = frozenset()) -> dict[str, Any]:
    """Parse repeated ``--set key=value``; values are YAML scalars (``lr=0.01`` is a float), except
    for the keys in ``text_keys``, which keep the exact text (``tag=007`` stays ``"007"``).

    Example:
        >>> parse_set_options(["lr=0.01", "classes=0-4", "old=[a, b]"])
        {'lr': 0.01, 'classes': '0-4', 'old': ['a', 'b']}
    """
    parsed: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CompatError(f"--set {item!r} is not key=value. Write it like --set lr=0.01.")
        if key in text_keys:
            parsed[key] = None if value.strip() in ("", "null", "~") else value
        else:
            parsed[key] = _yaml_value(value, item) if value.strip() else None
    return parsed


def _yaml_value(value: str, item: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        raise CompatError(f"--set {item!r}: the value is not valid YAML. Quote it: --set 'key=\"text\"'.") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CompatError(f"--config {path}: no such file. Pass a YAML file of option: value lines.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CompatError(f"--config {path} is not valid YAML ({exc}). Fix the file and retry.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CompatError(f"--config {path} cannot be read ({exc}). Check its permissions and that it is a UTF-8 "
                          f"text file.") from None
    if not isinstance(data, dict):
        raise CompatError(f"--config {path} must hold a mapping of option: value, not {type(data).__name__}.")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def warn(message: str) -> None:
    """One warning line on stderr (an option that does nothing, or that another option overrides)."""
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)


def resolve_config(method_name: str, method_config_cls: type[MethodConfig], *, config_file: str | None = None,
                   set_options: list[str] | None = None, flags: dict[str, Any] | None = None
                   ) -> tuple[TrainConfig, MethodConfig]:
    """Merge defaults < preset < config file < --set < explicit flags into validated configs.

    ``flags`` holds only the options the user typed (``None`` values are ignored). The method's
    ``common_defaults`` sit between the defaults and the preset; ``preset`` (a flag, ``--set preset=NAME``
    or a config file key) names a registered preset (:mod:`compat_core.presets`).
    """
    check_common_defaults(method_name, method_config_cls)
    merged: dict[str, Any] = dict(method_config_cls.common_defaults)
    from_file = load_config_file(config_file) if config_file else {}
    text_keys = {name for model in (TrainConfig, method_config_cls)
                 for name, field in model.model_fields.items() if field_kind(field.annotation) == "text"}
    set_values = parse_set_options(set_options, text_keys | {"preset"})
    typed = {k: v for k, v in (flags or {}).items() if v is not None}
    preset = next((layer.pop("preset") for layer in (typed, set_values, from_file) if layer.get("preset")), None)
    for layer in (set_values, from_file):
        layer.pop("preset", None)
    if preset:  # above the method's defaults, below everything the user wrote
        from compat_core.presets import preset_values

        merged.update(preset_values(str(preset), method_name))
    merged.update(from_file)
    merged.update(set_values)
    for key in sorted(set(set_values) & set(typed)):
        if set_values[key] != typed[key]:  # the documented precedence, but rarely what was meant: say so
            warn(f"--set {key}={set_values[key]} is overridden by the flag --{key.replace('_', '-')} {typed[key]}")
    merged.update(typed)
    named = merged.pop("method", method_name)
    if named != method_name:
        raise CompatError(f"the config is for method {named!r} but you ran `compat train {method_name}`. "
                          f"Run `compat train {named}` or remove `method:` from the config.")
    common_fields = set(TrainConfig.model_fields)
    method_fields = set(method_config_cls.model_fields)
    unknown = set(merged) - common_fields - method_fields
    if unknown:
        key = sorted(unknown)[0]
        close = difflib.get_close_matches(key, sorted(common_fields | method_fields), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise CompatError(f"unknown option {key!r} for `compat train {method_name}`.{hint} "
                          f"See `compat train {method_name} --help` for the options.")
    common = {k: v for k, v in merged.items() if k in common_fields}
    own = {k: v for k, v in merged.items() if k in method_fields}
    return validate(TrainConfig, common), validate(method_config_cls, own)


def check_common_defaults(method_name: str, method_config_cls: type[MethodConfig]) -> None:
    """A plugin's ``common_defaults`` must name common options with valid values (a plugin defect otherwise)."""
    unknown = sorted(set(method_config_cls.common_defaults) - set(TrainConfig.model_fields))
    if unknown:
        raise CompatError(f"method {method_name!r} sets common_defaults for {', '.join(unknown)}, which are not "
                          f"common training options. The plugin must fix its config class.")
    try:  # the required options get placeholders: only the method's values are checked
        TrainConfig.model_validate({"data": "-", "out": "-", **method_config_cls.common_defaults})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CompatError(f"method {method_name!r} sets invalid common_defaults ({problems}). The plugin must fix "
                          f"its config class.") from None


def validate(model: type[BaseModel], values: dict[str, Any]) -> Any:
    """Validate ``values`` into ``model``; turn pydantic's report into one CompatError paragraph."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "config"
            problems.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
        raise CompatError("invalid options: " + "; ".join(problems) + ". Fix the flag, --set or config file value.") from None


def config_differences(saved: dict[str, Any], wanted: dict[str, Any], ignore: set[str] = frozenset()) -> list[str]:
    """Keys (outside ``ignore``) whose values differ between two resolved configs. A common option missing
    from one side (a run written before compat had it) counts as its default value.

    Example:
        >>> config_differences({"lr": 0.1}, {"lr": 0.1, "keep": "last"})
        []
    """
    defaults = _defaults(TrainConfig)
    method = wanted.get("method") or saved.get("method")
    if method:  # a method option added after the run was written counts as its default too
        try:
            from compat_core.plugins import get_host

            defaults.update(_defaults(get_host().methods.lookup(str(method)).get("config")))
        except CompatError:
            pass
    return sorted(k for k in set(saved) | set(wanted)
                  if k not in ignore and saved.get(k, defaults.get(k)) != wanted.get(k, defaults.get(k)))


def _defaults(model: type[BaseModel]) -> dict[str, Any]:
    return {name: field.get_default(call_default_factory=True)
            for name, field in model.model_fields.items() if not field.is_required()}


def dump_resolved(method_name: str, common: TrainConfig, own: MethodConfig) -> str:
    """The fully resolved config as YAML; ``compat train METHOD --config`` reads it back."""
    data = {"method": method_name, **common.model_dump(mode="json"), **own.model_dump(mode="json")}
    return yaml.safe_dump(data, sort_keys=False)

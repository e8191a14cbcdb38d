"""The study file: one protocol (data, old/new split, training options), many methods, many seeds.

A study is a YAML file such as ``studies/digits-smoke.yaml``::

    name: digits-smoke
    data: digits
    validation: {fraction: 0.15, seed: 0}    # stratified holdout carved from train: `val`
    common: {backbone: test_resnet, epochs: 2, image_size: 8, batch_size: 64}
    old: {classes: 0-4}                      # the old model: baseline on these classes
    new: {}                                  # every new model: all classes
    methods:
      independent: {method: baseline, reference: true, old_model: false}
      bct: {method: bct}
      bct-paper: {method: bct, set: {synthesize: new-only, fit_synthesized: false}}
    seeds: {old: [1, 3], new: [2]}
    evaluation: {splits: [val, test], metric: cosine}

``evaluation.task: classification`` (``studies/fashion-mnist-pct.yaml``) scores classifier updates
instead: each new model's accuracy and negative flips against its old model (NFR, NFI, BTC, BEC).

Every old seed is paired with every new seed; the reference (the independently trained new model,
the denominator of the update gain) trains once per new seed. An entry may also train against an
ensemble of teachers, models trained like the reference with seeds of their own (ELODI)::

      elodi: {method: elodi, old_model: false, teachers: [21, 22, 23, 24, 25, 26, 27, 28]}

A method option whose value is ``"{reference}"`` becomes the reference run of the same new seed
(BT^2's ``new_prime: "{reference}"``), and an entry may be a transformation between the old model and the reference of its new seed (FCT, an
adapter), scored as the reference's queries against the transformed old gallery::

      procrustes: {method: adapter, transforms: gallery, set: {kind: procrustes}}
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compat_core.errors import CompatError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SPLITS = ("val", "test")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Validation(_Strict):
    fraction: float = Field(0.1, description="Share of the training split held out as `val` (stratified).")
    seed: int = Field(0, description="Seed of the holdout.")


class Side(_Strict):
    """Options of the old model (or of every new model): method options and common training options."""

    classes: str | None = Field(None, description="Classes to train on (a --classes spec); none: all.")
    method: str = Field("baseline", description="Method that trains the old model.")
    set: dict[str, Any] = Field(default_factory=dict, description="Options of this side (common or method).")


class MethodEntry(_Strict):
    method: str = Field(..., description="Installed method name (`compat plugins list`).")
    set: dict[str, Any] = Field(default_factory=dict, description="The method's options and common overrides.")
    reference: bool = Field(False, description="The independently trained new model (update gain denominator).")
    old_model: bool = Field(True, description="Train against the old model (--old); false for independent runs.")
    transforms: Literal["gallery", "queries"] | None = Field(None, description=(
        "The run maps between the old model and the reference of its new seed, which the study passes as --new "
        "(fct, fastfill, adapter): `gallery` (old-to-new: the old gallery moved into the new space, scored as the "
        "reference's queries against it) or `queries` (new-to-old: the reference's queries moved into the old "
        "space, scored against the old gallery). New/new is the reference's own: the new model is unchanged."))
    teachers: list[int] = Field(default_factory=list, description=(
        "Seeds of independently trained models of the new architecture (the reference entry's options) that "
        "this method also trains against, as further --old runs after the old model (ELODI's ensemble of 8). "
        "Each trains once, shared by every entry that lists its seed; none may be an old or new seed."))


class Seeds(_Strict):
    old: list[int] = Field(..., min_length=1)
    new: list[int] = Field(..., min_length=1)


class Evaluation(_Strict):
    task: Literal["retrieval", "classification"] = Field(
        "retrieval", description="retrieval: old/old, new/old, new/new search (embedding updates); "
        "classification: accuracy and negative flips of each new classifier against its old one (NFR, NFI, BTC).")
    splits: list[Literal["val", "test"]] = Field(default_factory=lambda: list(SPLITS))
    metric: Literal["cosine", "l2"] = Field("cosine", description="Retrieval distance (retrieval only).")


class Generation(_Strict):
    classes: str | None = Field(None, description="Classes this generation trains on (a --classes spec).")
    set: dict[str, Any] = Field(default_factory=dict, description="Options of this generation (e.g. its backbone).")


class Chain(_Strict):
    """Model generations trained one after the other (compat_core.study.chain); generation 1 is the old model."""

    generations: list[Generation] = Field(..., min_length=2)


class StudySpec(_Strict):
    name: str
    data: str
    validation: Validation = Field(default_factory=Validation)
    common: dict[str, Any] = Field(default_factory=dict)
    old: Side = Field(default_factory=Side)
    new: Side = Field(default_factory=Side)
    methods: dict[str, MethodEntry]
    seeds: Seeds
    compare_to: str | None = None
    evaluation: Evaluation = Field(default_factory=Evaluation)
    chain: Chain | None = None

    @property
    def reference(self) -> str:
        return next(name for name, entry in self.methods.items() if entry.reference)

    @property
    def compatible_methods(self) -> list[str]:
        """The methods evaluated against the old model, in file order."""
        return [name for name, entry in self.methods.items() if not entry.reference]

    @property
    def comparison(self) -> str | None:
        """The method every other one is compared with pair by pair (default: the first listed)."""
        if self.compare_to:
            return self.compare_to
        paired = [n for n in self.compatible_methods if self.methods[n].old_model]
        return paired[0] if paired else None

    def fingerprint(self) -> str:
        """A hash of the protocol: everything every run shares (data, holdout, common, old and new options,
        seeds, evaluation), not the method entries, so methods can be added to a study later. Each run's
        own options are checked against its ``config.yaml`` instead."""
        protocol = self.model_dump(mode="json", exclude={"methods", "compare_to"})
        if protocol.get("chain") is None:  # studies written before chains existed keep their hash
            protocol.pop("chain", None)
        if protocol["evaluation"]["task"] == "retrieval":  # studies written before `task` existed keep their hash
            del protocol["evaluation"]["task"]
        text = json.dumps(protocol, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_study(path: str | Path, installed_methods: list[str] | None = None) -> StudySpec:
    """Read and check a study file; every problem is one :class:`CompatError` paragraph.

    Example:
        >>> spec = load_study("studies/digits-smoke.yaml")  # doctest: +SKIP
        >>> spec.reference  # doctest: +SKIP
        'independent'
    """
    path = Path(path)
    if not path.is_file():
        raise CompatError(f"study file {path} does not exist. Pass a YAML study file, e.g. "
                          f"studies/digits-smoke.yaml.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CompatError(f"study file {path} is not valid YAML ({exc}). Fix the file and retry.") from None
    if not isinstance(raw, dict):
        raise CompatError(f"study file {path} must hold a mapping (name, data, methods, seeds...), "
                          f"not {type(raw).__name__}.")
    spec = _validate(path, raw)
    check_study(path, spec, installed_methods)
    return spec


def _validate(path: Path, raw: dict[str, Any]) -> StudySpec:
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(map(str, err["loc"])) or "study"
            if err["type"] == "extra_forbidden":
                known = _known_keys(err["loc"][:-1])
                close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
                problems.append(f"unknown key {where}{hint}")
            else:
                problems.append(f"{where}: {err['msg']}")
        raise CompatError(f"study file {path}: " + "; ".join(problems) + ". Fix these keys; the format is "
                          "described in `compat study run --help` and studies/digits-smoke.yaml.") from None


def _known_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = StudySpec
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:  # a dict key (a method name) -> its entry model
            model = MethodEntry if model is StudySpec else model
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return sorted(model.model_fields)


def _check_transforms(where: str, spec: StudySpec) -> None:
    for name, entry in spec.methods.items():
        if entry.transforms is None:
            continue
        if entry.reference or not entry.old_model:
            raise CompatError(f"{where}: methods.{name}.transforms: a transformation maps between the old model and "
                              f"the reference, so it needs the old model and cannot be the reference. Remove "
                              f"`transforms`, or `old_model: false` / `reference: true`.")
        if spec.chain is not None or spec.evaluation.task != "retrieval":
            raise CompatError(f"{where}: methods.{name}.transforms is scored by retrieval between the old model and "
                              f"the reference; it does not fit a chain or classification study. Remove it.")
        if "new" in entry.set:
            raise CompatError(f"{where}: methods.{name}.set gives `new`, but with `transforms` the study passes the "
                              f"reference of each new seed as --new. Remove `new` from its set.")


def _check_teachers(where: str, spec: StudySpec) -> None:
    taken = set(spec.seeds.old) | set(spec.seeds.new)
    for name, entry in spec.methods.items():
        if not entry.teachers:
            continue
        if entry.reference:
            raise CompatError(f"{where}: the reference {name!r} lists teachers, but it is the independently "
                              f"trained new model. Remove `teachers` from it.")
        if spec.chain is not None:
            raise CompatError(f"{where}: methods.{name}.teachers: a chain study trains each generation against "
                              f"the one before; teachers are not supported there. Remove `teachers`.")
        clash = sorted(taken & set(entry.teachers))
        if clash or len(set(entry.teachers)) != len(entry.teachers):
            what = (f"seed(s) {', '.join(map(str, clash))} are also old or new seeds" if clash
                    else "a seed is listed twice")
            raise CompatError(f"{where}: methods.{name}.teachers: {what}. Each teacher is an independent draw: "
                              f"give it a seed of its own that no old or new model uses, e.g. 21-28.")


def check_study(path: Path, spec: StudySpec, installed: list[str] | None) -> None:
    """Cross-field rules that the schema alone cannot state."""
    where = f"study file {path}"
    if not NAME.match(spec.name):
        raise CompatError(f"{where}: name {spec.name!r} must be letters, digits, '.', '_' or '-'.")
    bad = [name for name in spec.methods if not NAME.match(name)]
    if bad:
        raise CompatError(f"{where}: method entry name {bad[0]!r} must be letters, digits, '.', '_' or '-' "
                          f"(it names run folders). Rename it.")
    references = [name for name, entry in spec.methods.items() if entry.reference]
    if len(references) != 1:
        raise CompatError(f"{where}: exactly one method entry must be the reference (`reference: true`, the "
                          f"independently trained new model), found {len(references)}"
                          f"{': ' + ', '.join(references) if references else ''}. Mark one entry.")
    if spec.methods[references[0]].old_model:
        raise CompatError(f"{where}: the reference {references[0]!r} is the independently trained new model, so "
                          f"it cannot train against the old model. Add `old_model: false` to it.")
    if spec.compare_to is not None and spec.compare_to not in spec.compatible_methods:
        raise CompatError(f"{where}: compare_to {spec.compare_to!r} is not one of the listed non-reference "
                          f"methods ({', '.join(spec.compatible_methods)}). Name one of them.")
    overlap = sorted(set(spec.seeds.old) & set(spec.seeds.new))
    if overlap:
        raise CompatError(f"{where}: seed(s) {', '.join(map(str, overlap))} appear in both seeds.old and "
                          f"seeds.new. Old and new seeds must never coincide (a new model seeded like its old "
                          f"model is not an independent draw); use e.g. odd old seeds and even new seeds.")
    if len(set(spec.seeds.old)) != len(spec.seeds.old) or len(set(spec.seeds.new)) != len(spec.seeds.new):
        raise CompatError(f"{where}: a seed is listed twice in seeds.old or seeds.new. List each seed once.")
    _check_teachers(where, spec)
    _check_transforms(where, spec)
    if spec.chain is not None:
        first = spec.chain.generations[0].classes
        if spec.evaluation.task != "retrieval":
            raise CompatError(f"{where}: a chain study evaluates retrieval between generations; remove "
                              f"`evaluation.task: {spec.evaluation.task}` or the `chain` section.")
        if spec.old.classes is not None and spec.old.classes != first:
            raise CompatError(f"{where}: the chain's generation 1 is the old model, so old.classes "
                              f"({spec.old.classes}) and chain.generations[0].classes ({first}) must agree. Give "
                              f"the classes once, in the chain.")
    if not 0 < spec.validation.fraction <= 0.5:
        raise CompatError(f"{where}: validation.fraction {spec.validation.fraction} must lie in (0, 0.5]: the "
                          f"share of the training split held out to choose on, e.g. 0.1.")
    for key in ("data", "out", "old", "seed", "split", "classes", "resume", "overwrite"):
        sides = {"common": spec.common, "old.set": spec.old.set, "new.set": spec.new.set,
                 **{f"methods.{n}.set": e.set for n, e in spec.methods.items()}}
        for side, values in sides.items():
            if key in values:
                raise CompatError(f"{where}: {side} sets {key!r}, which the study decides itself (data, splits, "
                                  f"seeds, old models and run folders). Remove it; use `data`, `seeds`, "
                                  f"`old.classes` or `new.classes` instead.")
    if installed is not None:
        wanted = {spec.old.method, *(e.method for e in spec.methods.values())}
        missing = sorted(wanted - set(installed))
        if missing:
            raise CompatError(f"{where}: method {missing[0]!r} is not installed (installed: "
                              f"{', '.join(sorted(installed))}). Install the plugin that provides it "
                              f"(`compat plugins list --all`), or fix the name.")

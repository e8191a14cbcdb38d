"""Class and sample selections: ``--classes`` specs and split manifests (``compat data split``).

A manifest is plain JSON, so the exact classes or samples an old model saw are on record::

    {"format": "compat-split/1", "data": "digits", "by": "class", "seed": 0, "old_fraction": 0.5,
     "old": {"classes": [2, 3, 4, 5, 7]}, "new": {"classes": [0, 1, 6, 8, 9]},
     "holdout": {"from": "train", "fraction": 0.1, "seed": 0, "train": [...], "val": [...]}}

``holdout`` (optional, ``--validation``) divides the base indices of the ``from`` split into a
training and a validation part, opened with the split specs ``@split.json:train`` and
``@split.json:val`` (choose on validation, report on test). By-sample ``old``/``new`` indices are
always of the whole ``from`` split; on a holdout part, ``--classes @split.json:old`` keeps the old
samples that lie in that part.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compat_core.data.base import Dataset, SubsetDataset
from compat_core.errors import CompatError

MANIFEST_FORMAT = "compat-split/1"
HOLDOUT_PARTS = ("train", "val")
MAX_VALIDATION = 0.5
SPEC_FORMS = "`0-4`, `0,2,7`, `0-2,5` (numeric labels) or `@split.json:old` / `@split.json:new`"
_TOKEN = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_classes(spec: str | None, dataset: Dataset) -> Dataset | SubsetDataset:
    """Select the classes (or manifest samples) named by ``spec``; None keeps ``dataset`` whole.

    A class selection relabels the kept classes ``0..k-1`` in ascending order of their original
    label; a sample manifest keeps labels and selects samples by base index.

    Example:
        >>> from compat_core.data import open_dataset
        >>> part = parse_classes("0-2,5", open_dataset("digits", "test", 8))
        >>> part.classes, sorted(set(part.labels.tolist()))
        (['0', '1', '2', '5'], [0, 1, 2, 3])
    """
    if spec is None:
        return dataset
    spec = spec.strip()
    if spec.startswith("@"):
        return _from_manifest(spec, dataset)
    return select_classes(dataset, _parse_labels(spec), spec)


def select_classes(dataset: Dataset, labels: list[int], spec: str = "") -> SubsetDataset:
    """The samples of ``labels``, relabelled ``0..k-1`` in ascending label order.

    Example:
        >>> from compat_core.data import open_dataset
        >>> select_classes(open_dataset("digits", "test", 8), [7, 3]).classes
        ['3', '7']
    """
    chosen = sorted(set(int(label) for label in labels))
    bad = [label for label in chosen if not 0 <= label < dataset.num_classes]
    if bad:
        raise CompatError(
            f"--classes {spec or chosen}: label(s) {', '.join(map(str, bad))} are outside the data "
            f"({dataset.name} has labels 0-{dataset.num_classes - 1}). Use labels 0-{dataset.num_classes - 1}."
        )
    label_map = np.full(dataset.num_classes, -1, dtype=np.int64)
    label_map[chosen] = np.arange(len(chosen))
    positions = np.flatnonzero(label_map[dataset.labels] >= 0)
    if positions.size == 0:
        raise CompatError(f"--classes {spec or chosen}: no images of these classes in {dataset.name}. "
                          f"Pick classes that this split contains.")
    return dataset.subset(positions, [dataset.classes[label] for label in chosen], label_map)


#: The MixBCT repository's four face scenarios (shared/reference/bct-family.md 2.2): the old model on the first
#: 30% of the identities (class30) or on 30% of every identity's images (data30, single-image identities in both
#: halves); the new model on the rest (open) or on everything (extended).
SCENARIOS: dict[str, dict[str, Any]] = {
    "open-class": {"by": "class", "order": "first", "new": "rest"},
    "open-data": {"by": "sample", "singletons": "both", "new": "rest"},
    "extended-class": {"by": "class", "order": "first", "new": "all"},
    "extended-data": {"by": "sample", "singletons": "both", "new": "all"},
}


def make_scenario_split(dataset: Dataset, scenario: str, old_fraction: float = 0.3, seed: int = 0,
                        validation: float | None = None, split: str = "train") -> dict[str, Any]:
    """A split manifest of one of :data:`SCENARIOS` (``old_fraction`` 0.3 as in the MixBCT repository).

    Example:
        >>> from compat_core.data import open_dataset
        >>> make_scenario_split(open_dataset("digits", "train", 8), "open-class")["old"]
        {'classes': [0, 1, 2]}
    """
    if scenario not in SCENARIOS:
        raise CompatError(f"--scenario {scenario}: unknown. Known: {', '.join(SCENARIOS)}.")
    settings = SCENARIOS[scenario]
    manifest = make_split(dataset, old_fraction, by=settings["by"], seed=seed, validation=validation, split=split,
                          order=settings.get("order", "random"), singletons=settings.get("singletons", "old"))
    if settings["new"] == "all":
        key = "classes" if settings["by"] == "class" else "indices"
        everything = range(dataset.num_classes) if key == "classes" else dataset.base_indices
        manifest["new"] = {key: sorted(int(i) for i in everything)}
    manifest["scenario"] = scenario
    return manifest


def make_split(dataset: Dataset, old_fraction: float, by: str = "class", seed: int = 0,
               validation: float | None = None, split: str = "train", order: str = "random",
               singletons: str = "old") -> dict[str, Any]:
    """A seeded old/new split manifest of ``dataset``'s classes or samples.

    By class, ``round(old_fraction * K)`` classes (at least 1, at most K-1) go to ``old``: drawn at random,
    or with ``order="first"`` the lowest labels (the MixBCT repository's class30). By sample, each class
    gives ``max(1, round(old_fraction * n_c))`` of its samples (base indices) to ``old``. ``new`` is the
    complement, except that with ``singletons="both"`` a class of one sample has it in both halves (so
    every identity exists on both sides, as the repository's data30/data70). The same seed gives the same manifest. With ``validation``,
    the manifest also holds a :func:`make_holdout` of ``dataset`` (the ``split`` it was opened as);
    old/new are computed exactly as without it, on the whole of ``dataset``.

    Example:
        >>> from compat_core.data import open_dataset
        >>> make_split(open_dataset("digits", "train", 8), 0.5, seed=0)["old"]
        {'classes': [2, 3, 4, 5, 7]}
    """
    if not 0 < old_fraction < 1:
        raise CompatError(f"--old-fraction {old_fraction}: must lie strictly between 0 and 1, e.g. 0.5.")
    rng = np.random.default_rng(seed)
    if order not in ("random", "first") or singletons not in ("old", "both"):
        raise CompatError(f"--order {order} / --singletons {singletons}: use --order random|first and "
                          f"--singletons old|both.")
    if by == "class":
        old, new = _split_classes(dataset, old_fraction, rng, first=order == "first")
    elif by == "sample":
        old, new = _split_samples(dataset, old_fraction, rng, singletons_in_both=singletons == "both")
    else:
        raise CompatError(f"--by {by}: unknown; use --by class or --by sample.")
    manifest = {"format": MANIFEST_FORMAT, "data": dataset.name, "by": by, "seed": seed,
                "old_fraction": old_fraction, "old": old, "new": new}
    if validation is not None:
        manifest["holdout"] = make_holdout(dataset, validation, seed, split=split)
    return manifest


def make_holdout(dataset: Dataset, fraction: float, seed: int, split: str = "train") -> dict[str, Any]:
    """A seeded, stratified train/validation division of ``dataset``'s base indices.

    Each class gives ``round(fraction * n_c)`` of its samples to ``val`` (at least 1 when it has
    2 or more); ``train`` is the rest. ``split`` is the name ``dataset`` was opened as, recorded
    as ``from`` so ``@split.json:val`` can reopen it. The same seed gives the same holdout.

    Example:
        >>> from compat_core.data import open_dataset
        >>> holdout = make_holdout(open_dataset("digits", "train", 8), 0.1, seed=0)
        >>> holdout["from"], len(holdout["train"]), len(holdout["val"])
        ('train', 968, 109)
    """
    _check_validation(fraction)
    if split.startswith("@"):
        raise CompatError(f"--split {split}: a validation holdout is carved from a named split of the data "
                          f"(e.g. train), not from a split spec. Pass --split train.")
    rng = np.random.default_rng(seed)
    base, val = dataset.base_indices, []
    for label in np.unique(dataset.labels):
        members = base[dataset.labels == label]
        count = round(fraction * len(members))
        count = max(1, count) if len(members) >= 2 else count
        val.extend(int(i) for i in rng.choice(members, size=count, replace=False))
    val_set = set(val)
    train = [int(i) for i in base if int(i) not in val_set]
    return {"from": split, "fraction": fraction, "seed": seed, "train": sorted(train), "val": sorted(val)}


def load_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check a split manifest written from :func:`make_split`.

    Example:
        >>> load_manifest("split.json")["by"]  # doctest: +SKIP
        'class'
    """
    manifest = _read_json(path, f"compat data split DATA --old-fraction 0.5 --out {path}")
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or not all(
            _is_part(manifest.get(key)) for key in ("old", "new")):
        raise CompatError(f"{path} is not a {MANIFEST_FORMAT} split manifest (it needs old and new "
                          f"parts with classes or indices). Recreate it with `compat data split`.")
    return manifest


def open_holdout_part(spec: str, open_split: Callable[[str], Dataset]) -> SubsetDataset:
    """The samples of the split spec ``@split.json:train`` or ``@split.json:val``.

    ``open_split(name)`` opens a named split of the data; the manifest's ``holdout.from`` split is
    opened and only the part's samples are kept, with their labels and base indices.

    Example:
        >>> from compat_core.data import open_dataset
        >>> val = open_holdout_part("@split.json:val", lambda name: open_dataset("digits", name, 8))  # doctest: +SKIP
        >>> len(val)  # doctest: +SKIP
        108
    """
    path, part = _parse_split_spec(spec)
    manifest, holdout = load_holdout(path)
    dataset = open_split(holdout["from"])
    if manifest.get("data") != dataset.name:
        raise CompatError(f"--split {spec}: {path} was made for {manifest.get('data')!r}, not for {dataset.name!r}. "
                          f"Make a split of this data with `{_remake(path)}`.")
    other = holdout[HOLDOUT_PARTS[1 - HOLDOUT_PARTS.index(part)]]
    wanted = np.asarray(holdout[part], dtype=np.int64)
    chosen = _select_indices(dataset, wanted, spec, flag="--split", remake=_remake(path))
    return HoldoutPart(dataset, chosen.positions, np.asarray(other, dtype=np.int64))


def load_holdout(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest at ``path`` and its checked ``holdout``.

    Example:
        >>> load_holdout("split.json")[1]["fraction"]  # doctest: +SKIP
        0.1
    """
    manifest = _read_json(path, _remake(path))
    holdout = manifest.get("holdout") if isinstance(manifest, dict) else None
    if not isinstance(holdout, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise CompatError(f"split manifest {path} has no validation holdout (train/val parts). Make one with "
                          f"`{_remake(path)}`.")
    named = isinstance(holdout.get("from"), str) and not holdout["from"].startswith("@")  # no spec loops
    if not named or not all(_is_index_list(holdout.get(key)) for key in HOLDOUT_PARTS):
        raise CompatError(f"split manifest {path}: its holdout is malformed (it needs `from` and integer `train` "
                          f"and `val` lists). Recreate it with `{_remake(path)}`.")
    return manifest, holdout


class HoldoutPart(SubsetDataset):
    """One part of a holdout; ``set_aside`` holds the base indices of the other part, which
    ``--classes @split.json:old`` drops instead of reporting them missing."""

    def __init__(self, parent: Dataset, positions: np.ndarray, set_aside: np.ndarray):
        super().__init__(parent, positions)
        self.set_aside = set_aside


def _parse_split_spec(spec: str) -> tuple[str, str]:
    path, _, part = spec.strip()[1:].rpartition(":")
    if not path or part not in HOLDOUT_PARTS:
        raise CompatError(f"--split {spec!r}: a split spec names a manifest's holdout part, `@split.json:train` or "
                          f"`@split.json:val` (old/new parts go to --classes). Pass one of these forms.")
    return path, part


def _remake(path: str | Path) -> str:
    return f"compat data split DATA --validation 0.1 --out {path}"


def _check_validation(fraction: float) -> None:
    if not 0 < fraction <= MAX_VALIDATION:
        raise CompatError(f"--validation {fraction}: the validation fraction must lie in (0, {MAX_VALIDATION}] "
                          f"(a share of every class of the train split). Pass e.g. --validation 0.1.")


def _read_json(path: str | Path, make: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompatError(f"split manifest {path} does not exist. Create it with `{make}`.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompatError(f"split manifest {path} is not readable JSON ({exc}). Recreate it with "
                          f"`compat data split`.") from None


def _parse_labels(spec: str) -> list[int]:
    labels: list[int] = []
    for token in spec.split(","):
        match = _TOKEN.match(token)
        if match is None or (match.group(2) and int(match.group(2)) < int(match.group(1))):
            raise CompatError(f"--classes {spec!r} is malformed. Accepted forms: {SPEC_FORMS}.")
        first = int(match.group(1))
        labels.extend(range(first, int(match.group(2) or first) + 1))
    return labels


def _from_manifest(spec: str, dataset: Dataset) -> SubsetDataset:
    path, _, key = spec[1:].rpartition(":")
    if not path or key not in ("old", "new"):
        raise CompatError(f"--classes {spec!r} is malformed: a manifest is named as "
                          f"`@split.json:old` or `@split.json:new`. Accepted forms: {SPEC_FORMS}.")
    part = load_manifest(path)[key]
    if "classes" in part:
        return select_classes(dataset, part["classes"], spec)
    indices = np.asarray(part["indices"], dtype=np.int64)
    if isinstance(dataset, HoldoutPart):  # old/new samples are of the whole split: keep this part's
        indices = np.setdiff1d(indices, dataset.set_aside)
        if indices.size == 0:
            raise CompatError(f"--classes {spec}: none of its samples lie in this holdout part. Train on "
                              f"another part, or make the split with a smaller --validation.")
    return _select_indices(dataset, indices, spec)


def _select_indices(dataset: Dataset, indices: np.ndarray, spec: str, flag: str = "--classes",
                    remake: str = "compat data split") -> SubsetDataset:
    mask = np.isin(dataset.base_indices, indices)
    missing = len(np.setdiff1d(indices, dataset.base_indices[mask]))
    if missing:
        raise CompatError(
            f"{flag} {spec}: {missing} sample(s) of the manifest are not in {dataset.name} "
            f"({len(dataset)} images); it was made for other data or another split. Make the split "
            f"again from this data with `{remake}`."
        )
    return dataset.subset(np.flatnonzero(mask))


def _split_classes(dataset: Dataset, fraction: float, rng: np.random.Generator, first: bool = False
                   ) -> tuple[dict, dict]:
    count = dataset.num_classes
    if count < 2:
        raise CompatError(f"{dataset.name} has {count} class; a class split needs at least 2. "
                          f"Use --by sample instead.")
    n_old = min(count - 1, max(1, round(fraction * count)))
    chosen = range(n_old) if first else rng.choice(count, size=n_old, replace=False)
    old = sorted(int(c) for c in chosen)
    new = sorted(set(range(count)) - set(old))
    return {"classes": old}, {"classes": new}


def _split_samples(dataset: Dataset, fraction: float, rng: np.random.Generator, singletons_in_both: bool = False
                   ) -> tuple[dict, dict]:
    base, labels = np.asarray(dataset.base_indices), np.asarray(dataset.labels)
    old, shared = [], []
    order = np.argsort(labels, kind="stable")  # one pass over the classes: fast at 93,000 identities
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for members in np.split(base[order], bounds):
        if not len(members):
            continue
        n_old = max(1, round(fraction * len(members)))
        old.extend(int(i) for i in rng.choice(members, size=n_old, replace=False))
        if singletons_in_both and len(members) == 1:
            shared.append(int(members[0]))
    old_set = set(old) - set(shared)
    new = [int(i) for i in base if int(i) not in old_set]
    return {"indices": sorted(old)}, {"indices": sorted(new)}


def _is_part(part: Any) -> bool:
    return isinstance(part, dict) and _is_index_list(part.get("classes", part.get("indices")))


def _is_index_list(values: Any) -> bool:
    return isinstance(values, list) and all(type(value) is int for value in values)

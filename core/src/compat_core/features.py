"""Feature files: embeddings of a model on a dataset, saved as ``.npz`` and accepted by every evaluator.

Arrays: ``features`` (N, D) float32, ``labels`` (N,) int64, ``index`` (N,) int64, and the strings
``model``, ``data``, ``split`` (which tell evaluators whether two files cover the same images),
``classes`` (the data's class names, indexed by label) and ``model_classes`` (the classes the model
was trained on: evaluators split queries into the classes a gallery model saw and the others); with
``--logits``, ``logits`` (N, C) and ``logit_classes`` (C names: the model's classes, in column order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compat_core.errors import CompatError
from compat_core.io import read_npz, write_atomic


@dataclass
class FeatureSet:
    features: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    model: str = ""
    data: str = ""
    split: str = ""
    classes: list[str] = field(default_factory=list)
    logits: np.ndarray | None = None
    logit_classes: list[str] = field(default_factory=list)  # the class of each logit column (the model's)
    dim_policy: str = ""  # how the model meets an old model of another dimension: truncate | zero-pad
    model_classes: list[str] = field(default_factory=list)  # the classes the model was trained on
    fingerprint: str = ""  # content fingerprint of the model that made the features (compat_core.provenance)

    def same_images_as(self, other: FeatureSet) -> bool:
        """True when both sets embed the same images in the same order (leave-one-out applies)."""
        return (bool(self.data) and self.data == other.data and self.split == other.split
                and len(self.index) == len(other.index) and np.array_equal(self.index, other.index))


def extract(model, dataset, *, batch_size: int = 256, device: str = "cpu", with_logits: bool = False,
            model_ref: str = "", data_ref: str = "", split: str = "") -> FeatureSet:
    """Embed every image of ``dataset`` (eval mode, no augmentation).

    Example:
        >>> feats = extract(load_model("runs/old"), open_dataset("digits", "test"))  # doctest: +SKIP
        >>> feats.features.shape  # doctest: +SKIP
        (450, 128)
    """
    import torch

    from compat_core.engine.batches import iterate

    model = model.to(device).eval()
    positions = np.arange(len(dataset))
    batches = [positions[i:i + batch_size] for i in range(0, len(dataset), batch_size)]
    feats, logits = [], []
    from compat_core.progress import track

    label = f"embed {Path(model_ref).name or 'model'} on {Path(str(data_ref)).name or 'data'}:{split or '?'}"
    with torch.inference_mode():
        for images, _, _ in track(iterate(dataset, batches), len(dataset), label, unit="images",
                                  weights=[len(b) for b in batches]):
            out = model(images.to(device))
            feats.append(out.embedding.float().cpu())
            if with_logits and out.logits is not None:
                logits.append(out.logits.float().cpu())
    return FeatureSet(
        features=torch.cat(feats).numpy() if feats else np.zeros((0, model.embedding_dim), np.float32),
        labels=np.asarray(dataset.labels, dtype=np.int64), index=np.asarray(dataset.base_indices, dtype=np.int64),
        model=model_ref, data=data_ref, split=split, classes=list(dataset.classes),
        logits=torch.cat(logits).numpy() if logits else None,
        logit_classes=[str(c) for c in model.spec.classes] if logits else [],
        dim_policy=str(model.spec.dim_policy or ""),
        model_classes=[str(c) for c in model.spec.classes or []], fingerprint=_fingerprint_of(model_ref))


def _fingerprint_of(model_ref: str) -> str:
    from compat_core.models.run import is_run_dir
    from compat_core.provenance import fingerprint

    return fingerprint(model_ref) if model_ref and is_run_dir(model_ref) else ""


def save(path: str | Path, feats: FeatureSet, extra: dict[str, np.ndarray] | None = None, *,
         fp16: bool = False) -> Path:
    """Write ``feats`` atomically (uncompressed, so big tables can be memory-mapped); ``extra`` adds arrays a
    plugin needs (e.g. FastFill's ``uncertainty``); ``fp16`` stores the features as float16 (half the size;
    readers convert to float32)."""
    arrays = {"features": feats.features.astype(np.float16 if fp16 else np.float32), "labels": feats.labels, "index": feats.index,
              "model": np.array(feats.model), "data": np.array(feats.data), "split": np.array(feats.split),
              "classes": np.array(feats.classes, dtype=str), "dim_policy": np.array(feats.dim_policy),
              "model_fingerprint": np.array(feats.fingerprint)}
    if feats.logits is not None:
        arrays["logits"] = feats.logits.astype(np.float32)
        if feats.logit_classes:  # a model trained on some classes: its columns are not the data's classes
            arrays["logit_classes"] = np.array(feats.logit_classes, dtype=str)
    if feats.model_classes:
        arrays["model_classes"] = np.array(feats.model_classes, dtype=str)
    arrays.update(extra or {})

    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file handle stops numpy from appending another .npz
            np.savez(handle, **arrays)

    return write_atomic(path, writer)


def require_file(path: str | Path, flag: str = "") -> Path:
    """``path`` as a Path when it is a file; else one error naming the option that gave it (``flag``) and the
    command that creates a feature file.

    Example:
        >>> require_file("missing.npz", "--old-features")  # doctest: +SKIP
        CompatError: --old-features missing.npz: no such file. Create it with `compat features extract ...`.
    """
    if not Path(path).is_file():
        named = f"{flag} {path}" if flag else str(path)
        raise CompatError(f"{named}: no such file. Create it with `compat features extract --model RUN --data DATA "
                          f"--split SPLIT --out {path}`.")
    return Path(path)


def load_file(path: str | Path, flag: str = "", *, mmap: bool = False) -> FeatureSet:
    """:func:`load` of a file a user named with ``flag``: a missing file is the error of :func:`require_file`."""
    return load(require_file(path, flag), mmap=mmap)


def check_finite(values: np.ndarray, path: str | Path, name: str) -> None:
    """A file whose numbers include NaN or Inf gives metrics that are silently wrong: refuse it."""
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1)) if values.ndim > 1 else np.flatnonzero(bad)
        raise CompatError(f"{path}: {name} hold NaN or infinite values in {len(rows)} of {len(values)} rows (first: row "
                          f"{int(rows[0])}). Re-extract the file; if the model itself produces them, its weights are "
                          f"broken (retrain it, e.g. with a lower --lr or --grad-clip).")


def load(path: str | Path, *, mmap: bool = False) -> FeatureSet:
    """A feature file; with ``mmap``, its features stay on disk as a read-only memory map (float32 or float16,
    as stored) and are read when used, for galleries larger than memory."""
    path = Path(path)
    arrays = read_npz(path, ("labels",) if mmap else ("features", "labels"), what="feature file",
                      unreadable_fix="Create one with `compat features extract`.",
                      missing_fix="A feature file needs features (N x D) and labels (N).",
                      skip=("features", "logits") if mmap else ())
    mapped = _mapped_features(path) if mmap else None
    features = mapped if mapped is not None else _read_features(path, arrays)
    labels = arrays["labels"].astype(np.int64)
    if features.ndim != 2 or len(features) != len(labels):
        raise CompatError(f"{path}: features {features.shape} and labels {labels.shape} do not match "
                          f"(need N x D and N).")
    for start in range(0, len(features), 2**18):  # in blocks: a memory map is never read whole
        check_finite(features[start:start + 2**18], path, "features")
    text = {k: str(arrays[k]) if k in arrays else "" for k in ("model", "data", "split", "dim_policy")}
    text["fingerprint"] = str(arrays["model_fingerprint"]) if "model_fingerprint" in arrays else ""
    return FeatureSet(features, labels, arrays.get("index", np.arange(len(labels))).astype(np.int64),
                      classes=[str(c) for c in arrays.get("classes", [])], logits=arrays.get("logits"),
                      logit_classes=[str(c) for c in arrays.get("logit_classes", [])],
                      model_classes=[str(c) for c in arrays.get("model_classes", [])], **text)


def _mapped_features(path: Path) -> np.ndarray | None:
    from compat_core.io import memmap_npz_member

    try:
        mapped = memmap_npz_member(path, "features")
    except (OSError, ValueError) as exc:
        raise CompatError(f"{path} is not a readable .npz feature file ({exc}). Create one with `compat features "
                          f"extract`.") from None
    return mapped if mapped is not None and mapped.dtype in (np.float32, np.float16) else None


def _read_features(path: Path, arrays) -> np.ndarray:
    if "features" in arrays:
        return arrays["features"].astype(np.float32)
    with np.load(path, allow_pickle=False) as npz:  # compressed or unusual dtype: read it after all
        if "features" not in npz.files:
            raise CompatError(f"{path} lacks the array 'features'. A feature file needs features (N x D) and "
                              f"labels (N).")
        return npz["features"].astype(np.float32)


def features_of(source: str, *, data: str | None, split: str, batch_size: int = 256, device: str = "cpu",
                with_logits: bool = False, scoring: bool = True, mmap: bool = False) -> FeatureSet:
    """Features from a ``.npz`` file (``mmap``: left on disk, see :func:`load`), or by running a run directory's
    model on ``data``. With ``scoring`` (evaluation, not caching), a warning says when the images are ones
    the model was trained on."""
    if source.endswith(".npz"):
        feats = load_file(source, mmap=mmap)
        if scoring:
            from compat_core.provenance import check_current

            check_current(feats.fingerprint, feats.model, f"feature file {source}")
            _warn_if_trained_on(feats.model, source, feats.data, feats.split)
        return feats
    model, dataset = open_model_on(source, data=data, split=split, device=device)
    if scoring:
        _warn_if_trained_on(source, source, data, split, getattr(model.spec, "trained_on", None))
    return extract(model, dataset, batch_size=batch_size, device=device, with_logits=with_logits,
                   model_ref=str(source), data_ref=data, split=split)


def _warn_if_trained_on(run: str | None, source: str, data: str | None, split: str | None,
                        trained_on: dict | None = None) -> None:
    """Scores on a model's own training images overstate it, silently: say so. The training split ``train``
    also holds every holdout part of it (``@split.json:val``), and a holdout's ``train`` part lies in ``train``."""
    if trained_on is None:
        from compat_core.models.run import is_run_dir, read_spec

        if not run or not is_run_dir(run):
            return
        trained_on = read_spec(run).trained_on
    trained_data, trained_split = (trained_on or {}).get("data"), (trained_on or {}).get("split")
    if not data or not split or not trained_data or not trained_split or not _same_data(trained_data, data):
        return
    holdout = str(split).startswith("@"), str(trained_split).startswith("@")
    overlap = split == trained_split or (trained_split == "train" and holdout[0]) or (split == "train" and holdout[1])
    if overlap:
        from compat_core.config import warn

        warn(f"{source} was trained on {trained_data} split {trained_split}, and is scored on split {split}, which "
             f"holds images it was trained on: the numbers overstate it. Score on the test split, or train on "
             f"@split.json:train and score on @split.json:val")


def _same_data(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


def open_model_on(source: str, *, data: str | None, split: str, device: str = "cpu"):
    """``(model, dataset)`` for embedding run directory ``source`` on ``data`` at the model's input size.

    Raises:
        CompatError: ``source`` is not a run directory, or ``data`` is missing.
    """
    from compat_core.models.run import is_run_dir

    if not is_run_dir(source):
        raise CompatError(f"{source} is neither a .npz feature file nor a compat run directory. Pass one of them.")
    if not data:
        raise CompatError(f"{source} is a model: pass --data so its features can be extracted, or pass a "
                          f".npz feature file instead.")
    from compat_core.data import open_dataset
    from compat_core.models.run import load_model

    model = load_model(source, device)
    return model, open_dataset(data, split=split, image_size=model.spec.input["size"])


DIM_POLICIES = ("truncate", "zero-pad")


def align_dims(query: FeatureSet, gallery: FeatureSet, policy: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Query and gallery features in one dimension.

    Equal dimensions pass through. Otherwise ``truncate`` keeps the first ``min(d_q, d_g)`` dimensions
    of both (BT^2's evaluation, OpenBCT's deployed slice) and ``zero-pad`` pads the shorter with zeros;
    ``auto`` uses the policy the model that was trained against the other recorded (``dim_policy`` in its
    ``model.json``).

    Example:
        >>> q = FeatureSet(np.ones((1, 3), np.float32), np.zeros(1, np.int64), np.zeros(1, np.int64))
        >>> g = FeatureSet(np.ones((1, 2), np.float32), np.zeros(1, np.int64), np.zeros(1, np.int64))
        >>> [a.shape for a in align_dims(q, g, "truncate")]
        [(1, 2), (1, 2)]
    """
    if policy == "auto":
        policy = query.dim_policy or gallery.dim_policy
    return align_arrays(query.features, gallery.features, policy, ("query", "gallery"))


def align_arrays(first: np.ndarray, second: np.ndarray, policy: str,
                 names: tuple[str, str] = ("query", "gallery")) -> tuple[np.ndarray, np.ndarray]:
    """Two feature arrays in one dimension by ``policy`` (``truncate`` | ``zero-pad``; anything else refuses
    unequal dimensions, naming the sides ``names``). Equal dimensions pass through.

    Example:
        >>> [a.shape for a in align_arrays(np.ones((2, 5)), np.ones((3, 4)), "zero-pad")]
        [(2, 5), (3, 5)]
    """
    if first.shape[1] == second.shape[1]:
        return first, second
    if policy not in DIM_POLICIES:
        raise CompatError(f"{names[0]} features are {first.shape[1]}-d but {names[1]} features are "
                          f"{second.shape[1]}-d, and neither model records how to align them. Pass --align "
                          f"truncate (compare the first {min(first.shape[1], second.shape[1])} dimensions) or "
                          f"--align zero-pad.")
    dim = min(first.shape[1], second.shape[1]) if policy == "truncate" else max(first.shape[1], second.shape[1])
    return _fit(first, dim), _fit(second, dim)


def _fit(features: np.ndarray, dim: int) -> np.ndarray:
    if features.shape[1] >= dim:
        return features[:, :dim]
    return np.pad(features, ((0, 0), (0, dim - features.shape[1])))

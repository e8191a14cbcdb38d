"""Transformed gallery features with their uncertainty: embedded from images by an FCT run, or
transformed from precomputed old (and side-info) feature files, when the old images are gone.

Feature files are compat's ``.npz`` (``compat_core.features``) plus, for FastFill runs, an array
``uncertainty`` (N,) holding sigma; other tools read such a file as a plain feature file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from compat_core.errors import CompatError
from compat_core.features import FeatureSet, open_model_on
from compat_core.features import load as load_features
from compat_core.features import save as save_features

UNCERTAINTY = "uncertainty"


def save_with_uncertainty(path: str | Path, feats: FeatureSet, sigma: np.ndarray | None) -> Path:
    """Write ``feats`` as a compat feature file, with ``uncertainty`` added when ``sigma`` is given.

    Example:
        >>> save_with_uncertainty("gallery-h.npz", feats, sigma)  # doctest: +SKIP
    """
    extra = None if sigma is None else {UNCERTAINTY: np.asarray(sigma, dtype=np.float32)}
    return save_features(path, feats, extra)


def read_uncertainty(path: str | Path) -> np.ndarray | None:
    """The ``uncertainty`` array of a feature file, or None."""
    with np.load(path, allow_pickle=False) as npz:
        return npz[UNCERTAINTY].astype(np.float64) if UNCERTAINTY in npz.files else None


def embed_gallery(source: str, *, data: str | None, split: str, batch_size: int = 256, device: str = "cpu"
                  ) -> tuple[FeatureSet, np.ndarray | None]:
    """Features and sigma (None without an uncertainty head) of a run on ``data``, or read from ``.npz``."""
    if source.endswith(".npz"):
        if not Path(source).is_file():
            raise CompatError(f"{source}: no such feature file. Create it with `compat fct transform` or "
                              f"`compat features extract`.")
        return load_features(source), read_uncertainty(source)
    model, dataset = open_model_on(source, data=data, split=split, device=device)
    features, sigma = _embed(model, dataset, batch_size, device)
    feats = FeatureSet(features, np.asarray(dataset.labels, np.int64), np.asarray(dataset.base_indices, np.int64),
                       model=source, data=data, split=split, classes=list(dataset.classes))
    return feats, sigma


def _embed(model, dataset, batch_size: int, device: str) -> tuple[np.ndarray, np.ndarray | None]:
    import torch
    from compat_core.engine.batches import iterate

    positions = np.arange(len(dataset))
    batches = [positions[i:i + batch_size] for i in range(0, len(dataset), batch_size)]
    with_sigma = getattr(model, "has_uncertainty", False)
    feats, sigmas = [], []
    with torch.inference_mode():
        for images, _, _ in iterate(dataset, batches):
            if with_sigma:
                embedding, sigma = model.embed_with_uncertainty(images.to(device))
                sigmas.append(sigma.float().cpu())
            else:
                embedding = model.embed(images.to(device))
            feats.append(embedding.float().cpu())
    features = torch.cat(feats).numpy() if feats else np.zeros((0, model.embedding_dim), np.float32)
    return features, (torch.cat(sigmas).double().numpy() if with_sigma and sigmas else None)


def transform_features(run: str, old: FeatureSet, side: FeatureSet | None, *, old_path: str = "--old-features",
                       side_path: str = "--side-info-features", device: str = "cpu"
                       ) -> tuple[FeatureSet, np.ndarray | None]:
    """Apply the transformation of FCT run ``run`` to precomputed old (and side-info) features.

    Example:
        >>> feats, sigma = transform_features("runs/fct", load("old-gallery.npz"), None)  # doctest: +SKIP
    """
    import torch

    from compat_fct.transformed import is_fct_run, load_transformation

    if not is_fct_run(Path(run)):  # an adapter run (compat-adapter): core maps stored vectors through it
        from compat_core.transform import transform_stored

        if side is not None:
            raise CompatError(f"{run} is not an FCT run and takes no side information; drop --side-info-features.")
        return transform_stored(run, old, flag=old_path, device=device), None
    transformation, fct = load_transformation(Path(run), device)
    spec = transformation.spec
    _check_dim(old, spec.old_dim, old_path, "old", fct["sources"].get("old"))
    if fct.get("side_info") is None:
        if side is not None:
            raise CompatError(f"{run} was trained without side information; drop --side-info-features.")
        side = old
    else:
        source = fct["sources"].get("side_info")
        if side is None:
            raise CompatError(f"{run} was trained with side information ({source}): pass its features of the same "
                              f"images with --side-info-features (`compat features extract --model {source} ...`).")
        _check_dim(side, spec.side_dim, side_path, "side-info", source)
        if len(side.labels) != len(old.labels) or not np.array_equal(side.index, old.index):
            raise CompatError(f"{old_path} has {len(old.labels)} rows and {side_path} {len(side.labels)}, or their "
                              f"sample indices differ: both must embed the same images in the same order. "
                              f"Extract both on the same --data and --split.")
    outputs, sigmas = [], []
    with torch.inference_mode():
        for start in range(0, len(old.labels), 4096):
            rows = slice(start, start + 4096)
            out = transformation(torch.from_numpy(old.features[rows]).to(device),
                                 torch.from_numpy(side.features[rows]).to(device))
            outputs.append(out.embedding.float().cpu())
            if out.sigma is not None:
                sigmas.append(out.sigma.double().cpu())
    features = torch.cat(outputs).numpy() if outputs else np.zeros((0, spec.new_dim), np.float32)
    sigma = torch.cat(sigmas).numpy() if sigmas else None
    return FeatureSet(features, old.labels, old.index, model=str(run), data=old.data, split=old.split,
                      classes=old.classes), sigma


def _check_dim(feats: FeatureSet, expected: int, flag: str, role: str, source: str | None) -> None:
    dim = feats.features.shape[1]
    if dim != expected:
        made_by = f" ({source})" if source else ""
        raise CompatError(f"{flag} has {dim}-dim features but the transformation takes {expected}-dim {role} "
                          f"embeddings. Extract the file with the run's {role} model{made_by}.")


def uncertainty_order(request) -> np.ndarray:
    """FastFill's backfill order for ``compat backfill plan --order uncertainty``: the index's items with
    the largest sigma first (ties: smaller id first), sigma from ``--old`` (the FastFill run that made the
    index's vectors, or its ``compat fct transform`` features with ``uncertainty``)."""
    source = request.need("old", "the FastFill run (or its transformed features) whose uncertainty orders "
                                 "the items")
    feats, sigma = embed_gallery(source, data=request.data, split=request.split, batch_size=request.batch_size,
                                 device=request.device)
    if sigma is None:
        raise CompatError(f"--old {source} gives no per-item uncertainty. Pass a `compat train fastfill` run (or its "
                          f"`compat fct transform` features), or use --order random.")
    from compat_core.lookup import rows_of

    rows, found = rows_of(feats.index, request.ids)
    if not found.all():
        raise CompatError(f"--old {source} does not cover every item of the index (other data or split). Pass the "
                          f"run or features of the images the index was built from.")
    return request.ids[np.argsort(-sigma[rows], kind="stable")]

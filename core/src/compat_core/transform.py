"""Map stored vectors through a run that transforms embeddings (an adapter run of compat-adapter), without
an image: in production the old gallery's images may be gone, only their vectors remain.

A run's model transforms stored vectors when it has ``transform_embeddings(*vectors)`` and
``transformation_inputs`` (a ``(name, dimension)`` per vector it takes: an adapter takes one, an FCT run
with side information two); :func:`transform_stored` applies a one-input transformation in blocks, and
``compat export --with-transformation`` exports any of them as a graph of its own.

Example:
    >>> feats = transform_stored("runs/adapter", load("old-gallery.npz"))  # doctest: +SKIP
    >>> save("gallery-in-new-space.npz", feats)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from compat_core.errors import CompatError
from compat_core.features import FeatureSet

BLOCK = 4096


def transform_stored(run: str, feats: FeatureSet, *, flag: str = "--features", device: str = "cpu") -> FeatureSet:
    """``model.transform_embeddings`` of every row of ``feats``; labels, ids and provenance of the data kept."""
    import torch

    from compat_core.models.run import is_run_dir, load_model

    if not is_run_dir(run):
        raise CompatError(f"--model {run}: no compat run directory there (needs model.json and model.safetensors). "
                          f"Pass the --out folder of `compat train adapter`.")
    model = load_model(run, device)
    if not hasattr(model, "transform_embeddings"):
        raise CompatError(f"--model {run} embeds images but does not map stored vectors (its model is a "
                          f"{type(model).__name__}). Pass an adapter run (`compat train adapter`); for an FCT or "
                          f"FastFill run use `compat fct transform`.")
    inputs = model.transformation_inputs
    if len(inputs) != 1:
        raise CompatError(f"--model {run} maps {' and '.join(n for n, _ in inputs)} vectors together; this command "
                          f"takes one kind. Use `compat fct transform --old-features F --side-info-features F`.")
    dim, wanted = feats.features.shape[1], inputs[0][1]
    if dim != wanted:
        raise CompatError(f"{flag} has {dim}-dim vectors but {run} maps {wanted}-dim {inputs[0][0]} ones. Pass the "
                          f"vectors of the model it maps from (its model.json names its sources).")
    blocks = []
    with torch.inference_mode():
        for start in range(0, len(feats.labels), BLOCK):
            rows = torch.from_numpy(np.asarray(feats.features[start:start + BLOCK], dtype=np.float32))
            blocks.append(model.transform_embeddings(rows.to(device)).float().cpu().numpy())
    out = np.concatenate(blocks) if blocks else np.zeros((0, model.embedding_dim), np.float32)
    return FeatureSet(out, feats.labels, feats.index, model=str(run), data=feats.data, split=feats.split,
                      classes=feats.classes, dim_policy=model.spec.dim_policy or "")

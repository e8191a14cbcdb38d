"""``compat features extract|transform|class-means|denoise``: feature files, stored vectors mapped into
another space, class prototypes, credible samples."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Extract and inspect feature files.", no_args_is_help=True)


@app.command("extract")
def extract(
    model: Annotated[str, typer.Option("--model", help="Run directory of the model.")],
    out: Annotated[str, typer.Option("--out", help="Output .npz file.")],
    data: Annotated[str | None, typer.Option("--data", help="Dataset path or built-in name.")] = None,
    ijbc_root: Annotated[str | None, typer.Option(
        "--ijbc-root", help="Instead of --data: an IJB folder (loose_crop/, meta/); writes the image features "
                            "that `compat eval ijbc --features` reads.")] = None,
    target: Annotated[str, typer.Option("--target", help="With --ijbc-root: ijbc or ijbb.")] = "ijbc",
    flip: Annotated[bool, typer.Option("--flip/--no-flip", help="With --ijbc-root: add the mirrored face's "
                                                                "embedding.")] = True,
    workers: Annotated[int, typer.Option("--workers", help="With --ijbc-root: image decoding processes.")] = 0,
    split: Annotated[str, typer.Option("--split", help="Split to embed.")] = "test",
    logits: Annotated[bool, typer.Option("--logits", help="Also store the classifier logits (array logits, N x C), e.g. for "
                                                  "`compat eval regression --old-logits/--new-logits`.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 256,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
    fp16: Annotated[bool, typer.Option("--fp16", help="Store the features as float16 (half the size; training "
                                                      "caches larger than 2 GiB are memory-mapped).")] = False,
) -> None:
    """Write features (N x D float32, or float16 with --fp16), labels and dataset indices of MODEL on DATA to
    OUT (.npz, uncompressed)."""
    from compat_core import features
    from compat_core.engine.distributed import resolve_device

    _check_out(out)  # before the (long) extraction
    if ijbc_root is not None or data is None:
        from compat_core.evaluators.ijbc.embed import extract_ijbc_features

        shape = extract_ijbc_features(model, ijbc_root, target, out, data=data, flip=flip, batch_size=batch_size,
                                      workers=workers, device=str(resolve_device(device)))
        Console(stderr=True).print(f"[green]wrote[/] {out}: {shape[0]} x {shape[1]}")
        return

    feats = features.features_of(model, data=data, split=split, batch_size=batch_size,
                                 device=str(resolve_device(device)), with_logits=logits, scoring=False)
    features.save(out, feats, fp16=fp16)  # with the model's fingerprint (compat_core.provenance)
    Console(stderr=True).print(f"[green]wrote[/] {out}: {feats.features.shape[0]} x {feats.features.shape[1]}"
                               + (" (float16)" if fp16 else ""))


@app.command("transform")
def transform(
    model: Annotated[str, typer.Option("--model", help="Adapter run directory (`compat train adapter`).")],
    features_file: Annotated[str, typer.Option("--features", help="Stored vectors of the space it maps from (.npz).")],
    out: Annotated[str, typer.Option("--out", help="Output .npz: the vectors in the space it maps into.")],
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "cpu",
) -> None:
    """Map stored vectors through an adapter run, reading no image (e.g. an old gallery whose images are gone);
    the output is a feature file every evaluator and `compat index build --features` reads."""
    from compat_core import features
    from compat_core.engine.distributed import resolve_device
    from compat_core.transform import transform_stored

    _check_out(out)
    feats = transform_stored(model, _read_features(features_file), device=str(resolve_device(device)))
    features.save(out, feats)
    Console(stderr=True).print(f"[green]wrote[/] {out}: {feats.features.shape[0]} x {feats.features.shape[1]}")


def _read_features(path: str):
    from compat_core.features import load_file

    return load_file(path)


def _check_out(out: str) -> None:
    from compat_core.errors import CompatError
    from compat_core.io import check_writable

    if not out.endswith(".npz"):
        raise CompatError(f"--out {out} must end in .npz.")
    check_writable(out, "--out")


@app.command("class-means")
def class_means(
    features_file: Annotated[str, typer.Argument(help="Feature file (.npz) with labels, e.g. old features of "
                                                      "the training split.")],
    out: Annotated[str, typer.Option("--out", help="Output .npz: means (C x D), classes, counts.")],
) -> None:
    """L2-normalised class prototypes: the mean of the L2-normalised features of each class, normalised again
    (BCT's synthesized classifier, UniBCT's initial prototypes). A class without samples gets a zero row and is
    named in a warning."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from compat_core.io import write_atomic
    from compat_core.old_space import class_means as means_of

    _check_out(out)
    feats = _read_features(features_file)
    names = feats.classes or [str(i) for i in range(int(feats.labels.max(initial=-1)) + 1)]
    means, counts = means_of(torch.from_numpy(feats.features), torch.from_numpy(feats.labels), len(names))
    prototypes = F.normalize(means, dim=1).numpy().astype(np.float32)  # a zero row stays zero

    def writer(tmp):
        with open(tmp, "wb") as handle:
            np.savez(handle, means=prototypes, classes=np.array(names, dtype=str), counts=counts.numpy())

    write_atomic(out, writer)
    err = Console(stderr=True, highlight=False)
    empty = [name for name, count in zip(names, counts.tolist(), strict=True) if count == 0]
    if empty:
        err.print(f"[yellow]warning:[/] {len(empty)} classes have no sample in {features_file} and get a zero row: "
                  f"{', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}")
    err.print(f"[green]wrote[/] {out}: {len(names)} classes x {prototypes.shape[1]}")


@app.command("denoise")
def denoise(
    features_file: Annotated[str, typer.Argument(help="Old features of the training split (.npz with labels).")],
    out: Annotated[str, typer.Option("--out", help="Output .npz: credible (N, bool), index, labels.")],
    keep: Annotated[float, typer.Option("--keep-ratio", "--keep", help="Keep ratio T in (0, 1]: per class, the ceil(T n_c) "
                                                     "samples nearest the class mean are credible (MixBCT 0.9).")] = 0.9,
    column_normalize: Annotated[bool, typer.Option(
        "--column-normalize/--no-column-normalize", help="After normalising rows, normalise each dimension over "
                                                         "the whole set first (the original code).")] = False,
) -> None:
    """MixBCT's credible samples: per class, the share --keep-ratio of the samples whose L2-normalised old features lie
    nearest their class mean. `compat train mixbct` reads the mask by dataset index."""
    import numpy as np
    from compat_core.io import write_atomic
    from compat_core.old_space import credible_mask

    _check_out(out)
    feats = _read_features(features_file)
    mask = credible_mask(feats.features, feats.labels, keep, column_normalize=column_normalize)

    def writer(tmp):
        with open(tmp, "wb") as handle:
            np.savez(handle, credible=mask, index=feats.index, labels=feats.labels, keep=np.array(keep),
                     classes=np.array(feats.classes, dtype=str), column_normalize=np.array(column_normalize))

    write_atomic(out, writer)
    Console(stderr=True, highlight=False).print(
        f"[green]wrote[/] {out}: {int(mask.sum())} of {len(mask)} samples credible (keep {keep})")


@app.command("info")
def info(features_file: Annotated[str, typer.Argument(help="Feature file (.npz).")]) -> None:
    """What a feature file holds: shape and dtype, the model, data and split it came from, classes, logits,
    and the fingerprint of the model's weights (when the run still exists) to tell whether it changed."""
    import numpy as np
    from compat_core.features import require_file
    from compat_core.io import read_npz
    from compat_core.models.run import is_run_dir

    require_file(features_file)
    arrays = read_npz(features_file, ("features",), what="feature file",
                      unreadable_fix="Create one with `compat features extract`.",
                      missing_fix="A feature file holds features (N x D) and labels (N).")
    features = arrays["features"]
    text = {k: str(arrays[k]) if k in arrays else "" for k in ("model", "data", "split", "dim_policy")}
    lines = [f"{features_file}: {features.shape[0]} x {features.shape[1] if features.ndim > 1 else '?'} "
             f"{features.dtype}, {'all finite' if np.isfinite(features).all() else 'HOLDS NaN OR Inf'}",
             f"model: {text['model'] or '-'}", f"data: {text['data'] or '-'} (split {text['split'] or '-'})"]
    classes = [str(c) for c in arrays.get("classes", [])]
    if "labels" in arrays:
        lines.append(f"labels: {len(np.unique(arrays['labels']))} distinct of {len(classes) or '?'} classes")
    if "model_classes" in arrays:
        lines.append(f"model trained on {len(arrays['model_classes'])} classes")
    if "logits" in arrays:
        lines.append(f"logits: {arrays['logits'].shape[1]} columns")
    if text["dim_policy"]:
        lines.append(f"dimension policy: {text['dim_policy']}")
    extra = sorted(set(arrays) - {"features", "labels", "index", "model", "data", "split", "classes", "logits",
                                  "logit_classes", "model_classes", "dim_policy", "model_fingerprint"})
    if extra:
        lines.append(f"other arrays: {', '.join(extra)}")
    stored = str(arrays["model_fingerprint"]) if "model_fingerprint" in arrays else ""
    if stored:
        lines.append(f"model fingerprint when extracted: {stored}")
    if text["model"] and is_run_dir(text["model"]):
        from compat_core.provenance import fingerprint

        now = fingerprint(text["model"])
        verdict = "" if not stored else (" (unchanged)" if now == stored else " (CHANGED since extraction: "
                                         "evaluators refuse this file)")
        lines.append(f"model fingerprint now: {now}{verdict}")
    console = Console(highlight=False)
    for line in lines:
        console.print(line, markup=False)

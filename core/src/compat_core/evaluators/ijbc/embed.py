"""Image features of a model on the IJB faces, and the ``.npz`` file that stores them.

Each face is read from ``loose_crop/``, aligned to 112x112 by its five landmarks (``align``), given
to the model as uint8 RGB (the model applies its own resizing and normalisation, as recorded in its
``model.json``), and embedded as it is and mirrored; the two embeddings are summed unless
``flip=False``. The image feature is not normalised here: pooling decides (``pooling``).

The feature file holds ``features`` (one row per line of ``<target>_face_tid_mid.txt``, in that
order), ``labels`` (the template id of each face), ``index`` and the strings ``model``, ``data``
(the root), ``split`` (the target) and ``flip``; ``compat eval ijbc --features`` reads it.
"""

from __future__ import annotations

import os
import struct
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from compat_core.errors import CompatError
from compat_core.evaluators.ijbc.meta import Faces, MetaFiles


def check_images(files: MetaFiles, faces: Faces, rows: np.ndarray) -> None:
    """Every image to embed exists; otherwise name the first missing one and its landmark line."""
    for row in rows:
        path = files.images / faces.names[row]
        if not path.is_file():
            raise CompatError(f"image {path} (face of {files.landmarks}:{faces.landmark_lines[row]}) does not exist. "
                              f"Restore the loose crops of the IJB release under {files.images}.")


class _AlignedBatches:
    """Item ``i`` is batch ``i``: aligned uint8 faces (B, 3, 112, 112) and an error message ('' if none).

    Errors are returned, not raised, so a corrupt image met in a loader worker still reaches the
    user as one clear paragraph instead of a worker traceback.
    """

    def __init__(self, files: MetaFiles, faces: Faces, batches: list[np.ndarray]):
        self.files, self.faces, self.batches = files, faces, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        import torch

        from compat_core.evaluators.ijbc.align import align_face

        out = np.empty((len(self.batches[i]), 112, 112, 3), np.uint8)
        for slot, row in enumerate(self.batches[i]):
            try:
                out[slot] = align_face(_read_rgb(self.files.images / self.faces.names[row]), self.faces.landmarks[row])
            except CompatError as exc:
                return torch.empty(0), f"{exc} (face of {self.files.landmarks}:{self.faces.landmark_lines[row]})"
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), ""


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise CompatError(f"image {path} does not exist. Restore the loose crops of the IJB release.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CompatError(f"image {path} cannot be read ({type(exc).__name__}: {exc}). Replace it with the file "
                          f"from the IJB release.") from None


def embed_faces(embed, files: MetaFiles, faces: Faces, rows: np.ndarray, *, flip: bool = True,
                batch_size: int = 128, workers: int = 0, device: str = "cpu", label: str = "model") -> np.ndarray:
    """Image features (len(faces), D) float32 of the faces at ``rows`` (other rows stay zero).

    ``embed`` maps a uint8 batch (B, 3, 112, 112) on ``device`` to float embeddings (B, D), e.g. an
    ``EmbeddingModel.embed``.

    Example:
        >>> feats = embed_faces(model.embed, files, faces, np.arange(len(faces)))  # doctest: +SKIP
    """
    import torch

    check_images(files, faces, rows)
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    source = _AlignedBatches(files, faces, batches)
    loader = (torch.utils.data.DataLoader(source, batch_size=None, shuffle=False, num_workers=workers)
              if workers > 0 else (source[i] for i in range(len(source))))
    features = None
    with _Progress(len(rows), f"embedding IJB faces ({label})") as progress, torch.inference_mode():
        for batch_rows, (images, error) in zip(batches, loader, strict=True):
            if error:
                raise CompatError(error)
            images = images.to(device)
            out = embed(images).float()
            if flip:
                out = out + embed(torch.flip(images, dims=[3])).float()
            if features is None:
                features = np.zeros((len(faces), out.shape[1]), np.float32)
            features[batch_rows] = out.cpu().numpy()
            progress.advance(len(batch_rows))
    return features if features is not None else np.zeros((len(faces), 0), np.float32)


class _Progress:
    """A rich progress bar on a terminal, a plain line every 10% otherwise (stderr)."""

    def __init__(self, total: int, title: str):
        self.total, self.title, self.done, self.bar, self.start = total, title, 0, None, time.perf_counter()

    def __enter__(self):
        if sys.stderr.isatty():
            try:
                from rich.progress import Progress

                self.bar = Progress(transient=False)
                self.bar.start()
                self.task = self.bar.add_task(self.title, total=self.total)
            except ImportError:
                self.bar = None
        if self.bar is None:
            print(f"compat: {self.title}: {self.total} faces", file=sys.stderr, flush=True)
        return self

    def advance(self, n: int) -> None:
        before, self.done = self.done, self.done + n
        if self.bar is not None:
            self.bar.update(self.task, advance=n)
        elif self.total and self.done * 10 // self.total > before * 10 // self.total:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            print(f"  {self.done}/{self.total} faces, {rate:.0f} faces/s", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def model_features(run_dir: str, files: MetaFiles, faces: Faces, rows: np.ndarray, *, flip: bool, batch_size: int,
                   workers: int, device: str) -> np.ndarray:
    """Image features of a compat run directory's model (its ``embed``: no classifier head)."""
    from compat_core.models.run import load_model

    model = load_model(run_dir, device)
    return embed_faces(model.embed, files, faces, rows, flip=flip, batch_size=batch_size, workers=workers,
                       device=device, label=str(run_dir))


def save_image_features(path: str | os.PathLike, features: np.ndarray, faces: Faces, *, model: str, root: str,
                        target: str, flip: bool, dim_policy: str = "") -> Path:
    """Write the feature file read by ``compat eval ijbc --features`` (atomically); ``dim_policy`` is how the
    model meets an old model of another dimension (``compat eval ijbc --align auto`` reads it)."""
    from compat_core.io import write_atomic

    arrays = {"features": features.astype(np.float32), "labels": faces.templates.astype(np.int64),
              "index": np.arange(len(faces), dtype=np.int64), "model": np.array(model), "data": np.array(root),
              "split": np.array(target), "flip": np.array(flip),
              "dim_policy": np.array(dim_policy)}

    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle keeps numpy from appending .npz to the temporary name
            np.savez(handle, **arrays)

    return write_atomic(path, writer)


def load_image_features(path: str, files: MetaFiles, n_faces: int, flag: str) -> np.ndarray:
    """The ``features`` array of a feature file, checked against the face file (one row per face)."""
    if not str(path).endswith(".npz") or not Path(path).is_file():
        raise CompatError(f"{flag} {path}: no such .npz file. Write one with `compat features extract --model RUN "
                          f"--ijbc-root {files.root} --target {files.target} --out F.npz`.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "features" not in npz.files:
                raise CompatError(f"{flag} {path} has no `features` array (has: {', '.join(npz.files) or 'none'}). "
                                  f"It needs one row of image features per face.")
            features = map_npz_member(path, "features")
            if features is None:  # compressed or unusual: read it the ordinary way
                features = npz["features"]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CompatError(f"{flag} {path} is not a readable .npz file ({exc}).") from None
    if features.ndim != 2 or len(features) != n_faces or features.shape[1] == 0:
        raise CompatError(f"{flag} {path}: features have shape {features.shape} but {files.faces} lists {n_faces} "
                          f"faces: the file needs one row per line of it, in order. Extract the features for this "
                          f"--root and --target.")
    return features if features.dtype == np.float32 else features.astype(np.float32)


def map_npz_member(path: str | os.PathLike, name: str) -> np.ndarray | None:
    """A read-only memory map of array ``name`` in an uncompressed ``.npz`` (what ``np.savez`` writes).

    Mapping the file's pages instead of copying 0.9 GB into fresh memory saves seconds on the full
    IJB-C. Returns None when the member is compressed or not a plain C-order numeric array.
    """
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)  # the local file header: its name and extra field lengths end it
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        reader = readers.get(np.lib.format.read_magic(handle))
        if reader is None:
            return None
        shape, fortran_order, dtype = reader(handle)
        offset = handle.tell()
    if fortran_order or dtype.hasobject or len(shape) != 2 or offset + dtype.itemsize * int(np.prod(shape)) > \
            Path(path).stat().st_size:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def extract_ijbc_features(model: str, root: str | None, target: str, out: str, *, data: str | None = None,
                          flip: bool = True, batch_size: int = 128, workers: int = 0,
                          device: str = "cpu") -> tuple[int, int]:
    """``compat features extract --ijbc-root``: embed every face of the face file and write the file.

    Example:
        >>> extract_ijbc_features("runs/face", "IJBC", "ijbc", "ijbc.npz")  # doctest: +SKIP
        (469375, 512)
    """
    from compat_core.evaluators.ijbc.meta import GALLERIES, read_faces
    from compat_core.models.run import is_run_dir

    if root is None:
        raise CompatError("compat features extract needs --data DATA (a dataset) or --ijbc-root DIR (the IJB faces).")
    if data is not None:
        raise CompatError("pass either --data (a dataset) or --ijbc-root (the IJB faces), not both.")
    if target not in GALLERIES:
        raise CompatError(f"--target {target}: choose one of {', '.join(GALLERIES)}.")
    if not is_run_dir(model):
        raise CompatError(f"--model {model} is not a compat run directory (model.json + model.safetensors).")
    files = MetaFiles.of(root, target)
    files.check(one_to_n=False, images=True)
    faces = read_faces(files)
    features = model_features(model, files, faces, np.arange(len(faces)), flip=flip, batch_size=batch_size,
                              workers=workers, device=device)
    from compat_core.models.run import read_spec

    save_image_features(out, features, faces, model=str(model), root=str(root), target=target, flip=flip,
                        dim_policy=str(read_spec(model).dim_policy or ""))
    return features.shape

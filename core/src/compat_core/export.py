"""Export a run's embedding model for serving (``compat export``): ONNX (read back with onnxruntime) or
TorchScript, checked against compat's own embeddings before the file is put in place.

The exported graph takes what compat's models take: uint8 RGB images, ``N x 3 x S x S`` at the model's input
size S, and returns the deployed embedding ``N x D`` (not normalised). The normalisation (mean, std) is inside
the graph, and recorded in the file's metadata with the rest a serving stack needs: input size, embedding
dimension, the alignment policy against the old model (``dim_policy``), the method, the run's fingerprint.
Whatever a run's model computes in ``embed`` is exported: an FCT or FastFill run exports the old model
composed with its transformation (the gallery side), an ordinary run its backbone and projection.

Example:
    >>> report = export_model("runs/new-bct", "new-bct.onnx", data="fashion-mnist")  # doctest: +SKIP
    >>> report["max_abs_difference"] < 1e-4  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from compat_core.errors import CompatError

FORMATS = ("onnx", "torchscript")
EXPORT_FORMAT = "compat-export/1"


def _embedder(model):
    import copy

    import torch
    from torch.nn.utils import parametrize

    # Parametrised weights (BT^2's orthogonal maps) are computed from other tensors at every call, through
    # operations the ONNX exporter lacks; for inference their current value is all that matters.
    model = copy.deepcopy(model)
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)

    class Embedder(torch.nn.Module):
        """``images -> model.embed(images)``: the one output a serving stack needs."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):
            return self.inner.embed(images)

    return Embedder(model).eval()


def metadata(run: str, model) -> dict[str, str]:
    """What the file records besides the graph (all values are strings, as ONNX metadata wants)."""
    from compat_core.provenance import fingerprint

    spec = model.spec
    return {"format": EXPORT_FORMAT, "run": str(run), "fingerprint": fingerprint(run), "method": spec.method,
            "input": "uint8 RGB, N x 3 x S x S", "input_size": str(spec.input["size"]),
            "mean": json.dumps(spec.input["mean"]), "std": json.dumps(spec.input["std"]),
            "embedding_dim": str(model.embedding_dim), "dim_policy": str(spec.dim_policy or ""),
            "normalized": "false"}


def sample_images(model, data: str | None, split: str, count: int = 16):
    """A batch of real images of ``data`` at the model's input size, or seeded random ones without data."""
    import torch

    size = int(model.spec.input["size"])
    if not data:
        return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8,
                             generator=torch.Generator().manual_seed(0)), "random uint8 images (no --data)"
    from compat_core.data import open_dataset

    dataset = open_dataset(data, split=split, image_size=size)
    positions = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).astype(np.int64)
    return dataset.load_images(positions), f"{len(positions)} images of {data}:{split}"


def export_model(run: str, out: str | Path, *, fmt: str = "onnx", opset: int = 18, dynamic_batch: bool = True,
                 data: str | None = None, split: str = "test", tolerance: float = 1e-4) -> dict[str, Any]:
    """Write ``out`` (atomically, only once the parity check has passed) and return the check's report."""
    import torch

    from compat_core.models.run import load_model

    if fmt not in FORMATS:
        raise CompatError(f"--format {fmt}: use one of {', '.join(FORMATS)}.")
    model = load_model(run).eval()
    embedder = _embedder(model)
    images, what = sample_images(model, data, split)
    with torch.no_grad():
        expected = embedder(images).numpy()
    info = metadata(run, model)
    return _write_checked(embedder, (images,), expected, out, info, fmt=fmt, opset=opset,
                          dynamic_batch=dynamic_batch, tolerance=tolerance, what=what, names=(["images"], "embedding"),
                          subject=f"model of {run}")


def export_transformation(run: str, out: str | Path, *, fmt: str = "onnx", opset: int = 18,
                          dynamic_batch: bool = True, tolerance: float = 1e-4) -> dict[str, Any]:
    """Export the transformation of an adapter or FCT run as a graph of its own: stored vectors in (one input
    per ``transformation_inputs`` entry, float32 ``N x d``), mapped vectors out; checked like the model.

    Example:
        >>> export_transformation("runs/adapter", "adapter.transformation.onnx")  # doctest: +SKIP
    """
    import torch

    from compat_core.models.run import load_model

    if fmt not in FORMATS:
        raise CompatError(f"--format {fmt}: use one of {', '.join(FORMATS)}.")
    model = load_model(run).eval()
    if not hasattr(model, "transform_embeddings"):
        raise CompatError(f"--with-transformation: {run} has no transformation of stored vectors (its model is a "
                          f"{type(model).__name__}); only adapter, FCT and FastFill runs have one. Drop the flag.")
    inputs = list(model.transformation_inputs)
    if not 1 <= len(inputs) <= 2:
        raise CompatError(f"--with-transformation: {run}'s transformation takes {len(inputs)} inputs; the export "
                          f"handles one or two (vectors, side information).")

    class Transformation(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, first, second=None):  # torch.export wants named arguments, not *args
            return self.inner.transform_embeddings(first) if second is None else \
                self.inner.transform_embeddings(first, second)

    module = Transformation(model).eval()
    generator = torch.Generator().manual_seed(0)
    vectors = tuple(torch.randn(16, dim, generator=generator) for _, dim in inputs)
    with torch.no_grad():
        expected = module(*vectors).numpy()
    info = {**metadata(run, model), "input": ", ".join(f"{name}: float32 N x {dim}" for name, dim in inputs),
            "graph": "transformation", "embeds_into": str(model.spec.embeds_into or "")}
    for key in ("input_size", "mean", "std"):
        info.pop(key)
    return _write_checked(module, vectors, expected, out, info, fmt=fmt, opset=opset, dynamic_batch=dynamic_batch,
                          tolerance=tolerance, what="16 seeded random vectors",
                          names=([name for name, _ in inputs], "mapped"), subject=f"transformation of {run}")


def _write_checked(module, args: tuple, expected: np.ndarray, out: str | Path, info: dict[str, str], *, fmt: str,
                   opset: int, dynamic_batch: bool, tolerance: float, what: str, names: tuple[list[str], str],
                   subject: str) -> dict[str, Any]:
    """Write ``out`` atomically, only once the file reproduces ``expected`` on ``args`` within ``tolerance``."""
    from compat_core.io import write_atomic

    writer = _write_onnx if fmt == "onnx" else _write_torchscript
    runner = _run_onnx if fmt == "onnx" else _run_torchscript
    report: dict[str, Any] = {}

    def write_and_check(tmp: Path) -> None:
        with _quiet():
            writer(module, args, tmp, info, opset=opset, dynamic_batch=dynamic_batch, names=names)
            got = runner(tmp, args)
            if dynamic_batch and len(args[0]) > 1:  # one row too: the batch dimension really is free
                got = np.concatenate([runner(tmp, tuple(a[:1] for a in args)), got[1:]])
        difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        report.update(max_abs_difference=difference, checked_on=what, tolerance=tolerance, format=fmt,
                      out=str(out), metadata=info)
        if not difference <= tolerance:
            raise CompatError(f"the exported {fmt} {subject} computes {what} up to {difference:.3g} away from "
                              f"compat's own results (tolerance {tolerance:g}, shapes {got.shape} and "
                              f"{expected.shape}), so {out} was not written. Try another --opset, or --format "
                              f"{'torchscript' if fmt == 'onnx' else 'onnx'}.")

    write_atomic(out, write_and_check)
    return report


def _write_onnx(module, args: tuple, path: Path, info: dict[str, str], *, opset: int, dynamic_batch: bool,
                names: tuple[list[str], str]) -> None:
    import torch

    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise CompatError("ONNX export needs onnx, onnxscript and onnxruntime. Install them with `pip install "
                          "'compat-core[export]'`, or use --format torchscript.") from None
    batch = torch.export.Dim("batch")
    shapes = tuple({0: batch} for _ in args) if dynamic_batch else None
    try:
        program = torch.onnx.export(module, args, dynamo=True, dynamic_shapes=shapes, opset_version=opset,
                                    input_names=names[0], output_names=[names[1]], verbose=False)
    except Exception as exc:
        culprit = failing_module(module, args, lambda sub, inputs: torch.onnx.export(sub, inputs, dynamo=True,
                                                                                     verbose=False))
        raise CompatError(f"torch could not export the model to ONNX ({_first_line(exc)}){culprit}. The method's "
                          f"model holds an operation the exporter does not support; try --format torchscript, or "
                          f"change that module.") from None
    program.save(str(path))
    proto = onnx.load(str(path))
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _run_onnx(path: Path, args: tuple) -> np.ndarray:
    try:
        import onnxruntime
    except ImportError:
        raise CompatError("checking an ONNX export needs onnxruntime. Install it with `pip install "
                          "'compat-core[export]'`.") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {entry.name: arg.numpy() for entry, arg in zip(session.get_inputs(), args, strict=True)}
    return session.run(None, feeds)[0]


def _write_torchscript(module, args: tuple, path: Path, info: dict[str, str], **_: Any) -> None:
    import torch

    try:
        traced = torch.jit.trace(module, args, check_trace=False)
    except Exception as exc:
        culprit = failing_module(module, args, lambda sub, inputs: torch.jit.trace(sub, inputs, check_trace=False))
        raise CompatError(f"torch could not trace the model ({_first_line(exc)}){culprit}. Try --format onnx, or "
                          f"change that module.") from None
    torch.jit.save(traced, str(path), _extra_files={"compat.json": json.dumps(info)})


def failing_module(module, args: tuple, attempt) -> str:
    """``", in module NAME (Type)"``: the smallest submodule that ``attempt(submodule, its inputs)`` fails on,
    found from the top down (a child that fails alone is searched further; a module none of whose children
    fails is the culprit), with the inputs each submodule received in one forward pass; ``""`` when even
    that pass fails. Names are relative to the run's model.

    Example:
        >>> failing_module(model, (images,), lambda sub, inputs: torch.jit.trace(sub, inputs))  # doctest: +SKIP
        ', in module backbone.blocks.1 (BranchyBlock)'
    """
    import torch

    calls: dict[str, tuple] = {}

    def recorder(name: str):
        def record(_module, inputs, _output) -> None:  # returns None: a hook's return value replaces the output
            calls.setdefault(name, inputs)
        return record

    hooks = [sub.register_forward_hook(recorder(name)) for name, sub in module.named_modules() if name]
    try:
        with torch.no_grad():
            module(*args)
    except Exception:
        return ""
    finally:
        for hook in hooks:
            hook.remove()

    def fails(sub, inputs) -> bool:
        try:
            with torch.no_grad():
                attempt(sub, inputs)
        except Exception:
            return True
        return False

    name, current, descended = "", module, True
    while descended:
        descended = False
        for child, sub in current.named_children():
            full = f"{name}.{child}" if name else child
            if full in calls and fails(sub, calls[full]):
                name, current, descended = full, sub, True
                break
    shown = name.removeprefix("inner.").removeprefix("inner")  # the export wrapper's own attribute
    return f", in module {shown or 'the model itself'} ({type(current).__name__})"


def _run_torchscript(path: Path, args: tuple) -> np.ndarray:
    import torch

    loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(*args).numpy()


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an exported file (ONNX or TorchScript)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        return {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    import torch

    files = {"compat.json": ""}
    with _quiet():
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return json.loads(files["compat.json"] or "{}")


def _quiet():
    """Silence the exporters' progress prints and deprecation warnings (the report says what matters)."""
    import contextlib
    import io
    import warnings

    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _first_line(exc: Exception) -> str:
    """The exception's type and its first line, plus the first line that names an operator or a module (the
    exporter's first line is generic)."""
    import re

    text = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    telling = next((line for line in text[1:] if re.search(r"aten::|aten\.|Unsupported|not supported|module", line)),
                   "")
    first = text[0][:300] if text else ""
    return f"{type(exc).__name__}: {first}" + (f" ({telling[:300]})" if telling else "")

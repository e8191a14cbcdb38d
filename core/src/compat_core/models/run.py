"""Run directories: ``model.safetensors`` + ``model.json`` (+ config.yaml, history.jsonl, checkpoint/)."""

from __future__ import annotations

import json
from pathlib import Path

from compat_core.errors import CompatError
from compat_core.io import write_atomic, write_json
from compat_core.models.embedding import MODEL_FORMAT, EmbeddingModel, ModelSpec

WEIGHTS = "model.safetensors"
SPEC = "model.json"


def is_run_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / SPEC).is_file() and (path / WEIGHTS).is_file()


def save_model(model: EmbeddingModel, run_dir: str | Path) -> None:
    """Write weights then spec atomically (a reader never sees a spec without its weights)."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_atomic(run_dir / WEIGHTS, lambda tmp: save_file(state, str(tmp), metadata={"format": MODEL_FORMAT}))
    write_json(run_dir / SPEC, model.spec.to_json())


def read_spec(run_dir: str | Path) -> ModelSpec:
    path = Path(run_dir) / SPEC
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CompatError(f"{path} is missing or unreadable ({exc}). Point to a run directory written by "
                          f"`compat train`.") from None
    if data.get("format") != MODEL_FORMAT:
        raise CompatError(f"{path} has format {data.get('format')!r}, expected {MODEL_FORMAT!r}. "
                          f"Re-export the model with this version of compat.")
    return ModelSpec.from_json(data)


def load_model(run_dir: str | Path, device: str = "cpu") -> EmbeddingModel:
    """Rebuild a model from its run directory (no download: the backbone is created empty)."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise CompatError(f"{run_dir} is not a compat run directory (needs {SPEC} and {WEIGHTS}). "
                          f"Pass the --out folder of a finished `compat train` run.")
    spec = read_spec(run_dir)
    model = EmbeddingModel(spec)
    state = load_file(str(run_dir / WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CompatError(f"{run_dir / WEIGHTS} does not match {SPEC} ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected tensors). The run directory is inconsistent: retrain "
                          f"or restore both files together.")
    return model.to(device).eval()

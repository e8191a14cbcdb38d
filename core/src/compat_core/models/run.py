"""Run directories: ``model.safetensors`` + ``model.json`` (+ config.yaml, history.jsonl, checkpoint/).

A run normally holds one :class:`EmbeddingModel`. A plugin whose deployable model is something else
(e.g. compat-fct's "old model + side-info model + transformation") names a *run loader* in
``model.json`` (``"loader": "package.module:function"``); :func:`load_model` then calls that function
instead of rebuilding an ``EmbeddingModel``, so every evaluator accepts the run like any other. Runs
without ``"loader"`` load exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from compat_core.errors import CompatError
from compat_core.io import write_atomic, write_json
from compat_core.models.embedding import MODEL_FORMAT, EmbeddingModel, ModelSpec

WEIGHTS = "model.safetensors"
SPEC = "model.json"
LOADER_KEY = "loader"
_LOADER_MARK = "compat_run_loader"


def is_run_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / SPEC).is_file() and (path / WEIGHTS).is_file()


def save_model(model: EmbeddingModel, run_dir: str | Path) -> None:
    """Write weights then spec atomically (a reader never sees a spec without its weights).

    ``model`` is an :class:`EmbeddingModel`, or any module with a ``spec`` (:class:`ModelSpec`) and a
    ``run_loader`` attribute naming the :func:`run_loader` function that rebuilds it; that name is
    written to ``model.json`` as ``"loader"``.
    """
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_atomic(run_dir / WEIGHTS, lambda tmp: save_file(state, str(tmp), metadata={"format": MODEL_FORMAT}))
    spec = model.spec.to_json()
    loader = getattr(model, "run_loader", None)
    if loader:
        spec[LOADER_KEY] = str(loader)
    write_json(run_dir / SPEC, spec)


def read_run_json(run_dir: str | Path) -> dict[str, Any]:
    """The parsed ``model.json`` of a run, with its format checked."""
    from compat_core.io import read_json

    path = Path(run_dir) / SPEC
    data = read_json(path, "Point to a run directory written by `compat train`.")
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CompatError(f"{path} has format {found!r}, expected {MODEL_FORMAT!r}. "
                          f"Re-export the model with this version of compat.")
    return data


def old_model_links(run_dir: str | Path) -> list[str]:
    """The runs a run was trained against (``old_model`` of its ``model.json``; a string or a list), as given.

    Example:
        >>> old_model_links("runs/new-bct")  # doctest: +SKIP
        ['runs/old']
    """
    olds = read_run_json(run_dir).get("old_model") or []
    return [olds] if isinstance(olds, str) else [str(o) for o in olds]


def read_spec(run_dir: str | Path) -> ModelSpec:
    return ModelSpec.from_json(read_run_json(run_dir))


def run_loader(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``function(run_dir, device) -> model`` as a loader that a ``model.json`` may name.

    The model it returns must behave like an :class:`EmbeddingModel` where evaluators use one:
    ``model(images)`` gives an object with ``.embedding`` (and ``.logits``, possibly None), and it has
    ``embed(images)``, ``embedding_dim``, ``head`` (possibly None) and a :class:`ModelSpec` ``spec``
    (``spec.input`` says the image size to feed). Only functions of installed compat plugins, marked
    with this decorator, are ever called: a ``model.json`` cannot make compat run arbitrary code.

    Example:
        >>> @run_loader
        ... def load_my_run(run_dir, device="cpu"):
        ...     return MyComposite.from_run(run_dir).to(device)  # doctest: +SKIP
        >>> # the model class sets  run_loader = "my_plugin.models:load_my_run"  so save_model records it
    """
    setattr(function, _LOADER_MARK, True)
    return function


def load_model(run_dir: str | Path, device: str = "cpu") -> EmbeddingModel:
    """Rebuild a model from its run directory (no download: the backbone is created empty).

    When ``model.json`` names a ``"loader"``, that plugin function rebuilds the model instead (see
    :func:`run_loader`); otherwise the run holds one :class:`EmbeddingModel`.

    Example:
        >>> model = load_model("runs/old")  # doctest: +SKIP
        >>> model(images).embedding.shape  # doctest: +SKIP
        torch.Size([8, 128])
    """
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise CompatError(f"{run_dir} is not a compat run directory (needs {SPEC} and {WEIGHTS}). "
                          f"Pass the --out folder of a finished `compat train` run.")
    data = read_run_json(run_dir)
    if data.get(LOADER_KEY):
        return _load_with_plugin_loader(str(data[LOADER_KEY]), run_dir, device)
    spec = ModelSpec.from_json(data)
    model = EmbeddingModel(spec)
    state = read_weights(run_dir / WEIGHTS)
    missing, unexpected = model.load_state_dict(state, strict=False) if _shapes_match(model, state, run_dir) else ((), ())
    if missing or unexpected:
        raise CompatError(f"{run_dir / WEIGHTS} does not match {SPEC} ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected tensors). The run directory is inconsistent: retrain "
                          f"or restore both files together.")
    return model.to(device).eval()


def read_weights(path: Path) -> dict[str, Any]:
    """A ``.safetensors`` file's tensors; a truncated, corrupt or unreadable file is one clear error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CompatError(f"{path} cannot be read as safetensors ({type(exc).__name__}: {str(exc)[:200]}): the file "
                          f"is truncated, corrupt or unreadable. Restore it from a copy, or retrain the run "
                          f"(`compat train ... --resume` re-exports it from the checkpoint).") from None


def _shapes_match(model, state: dict[str, Any], run_dir: Path) -> bool:
    expected = model.state_dict()
    wrong = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in state.items()
             if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        name, found, wanted = wrong[0]
        raise CompatError(f"{run_dir / WEIGHTS} holds {name} of shape {found} but {run_dir / SPEC} describes "
                          f"{wanted} ({len(wrong)} tensors differ). The two files come from different models: "
                          f"restore both from the same run, or retrain.")
    return True


def _load_with_plugin_loader(reference: str, run_dir: Path, device: str):
    """Call the run loader named in ``model.json``, after checking that an installed plugin owns it."""
    from compat_core.lazy import resolve

    where = f"{run_dir / SPEC} names the loader {reference!r}"
    module_name, sep, attribute = reference.partition(":")
    package = module_name.split(".")[0]
    allowed = _plugin_packages()
    if not sep or not attribute or package not in allowed:
        raise CompatError(f"{where}, which is not a function of an installed compat plugin (plugin packages: "
                          f"{', '.join(sorted(allowed))}). Install the plugin that wrote this run (see the run's "
                          f"`method` in {SPEC}) or check where the run came from.")
    try:
        loader = resolve(reference)
    except (ImportError, AttributeError) as exc:
        raise CompatError(f"{where}, which cannot be imported ({type(exc).__name__}: {exc}). Install the "
                          f"version of the plugin that wrote this run.") from None
    if not getattr(loader, _LOADER_MARK, False):
        raise CompatError(f"{where}, which is not marked as a run loader (compat_core.models.run.run_loader). "
                          f"The run directory is corrupt or was not written by compat.")
    return loader(run_dir, device=device).to(device).eval()


def _plugin_packages() -> set[str]:
    """Top-level packages of the loaded plugins (core's included)."""
    from compat_core.plugins import get_host

    packages = set()
    for plugin in get_host().pm.get_plugins():
        name = getattr(plugin, "__name__", None) or type(plugin).__module__
        packages.add(str(name).split(".")[0])
    return packages

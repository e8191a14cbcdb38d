"""Models: backbones (timm or registered), the embedding model with its head, old models and run
directories. Names are resolved lazily (torch is imported on first use)."""

_EXPORTS = {"EmbeddingModel": "embedding", "ModelOutput": "embedding", "ModelSpec": "embedding",
            "OldModel": "old", "load_old_model": "old", "load_model": "run", "save_model": "run"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"compat_core.models.{_EXPORTS[name]}"), name)
    raise AttributeError(name)

"""compat-adapter's plugin module. Kept light: no torch import; the method is a lazy reference."""

from __future__ import annotations

from compat_core.hookspecs import hookimpl


@hookimpl
def compat_register_methods(register):
    register("adapter", config="compat_adapter.config:AdapterConfig", factory="compat_adapter.method:Adapter",
             summary="Adapter: a map between two frozen spaces fitted on paired embeddings (procrustes, affine, "
                     "low-rank closed forms; residual mlp), old-to-new (gallery) or new-to-old (queries).")

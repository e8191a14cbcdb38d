"""compat-fct: forward-compatible model updates for compat.

The old gallery is not re-embedded: a learned transformation maps old embeddings (plus optional
side information) into the new model's space (FCT, Ramanujan et al., CVPR 2022), FastFill (Jaeckle
et al., ICLR 2023) adds an uncertainty head that orders the real backfill, and ``compat eval
backfill`` measures the backfilling curve. Registered through :mod:`compat_fct.plugin`; nothing
heavy is imported here.
"""

__version__ = "0.1.0"

"""Backfilling: re-embedding a gallery with the new model, simulated and for real.

* :mod:`compat_core.backfill.curve`: the simulated curve (``compat eval backfill``): cut-offs, orders
  and the area under the curve, on features held in memory.
* :mod:`compat_core.backfill.orders`: the registry of backfill orderings (``random`` and ``distance``
  here; plugins add theirs, e.g. compat-fct's FastFill ``uncertainty``) and plan files.
* :mod:`compat_core.backfill.journal`: the migration's state inside an index folder (committed batches,
  the old manifest kept for rollback, the lock).
* :mod:`compat_core.backfill.migrate`: ``compat backfill run``, the loop that re-embeds and commits.
"""

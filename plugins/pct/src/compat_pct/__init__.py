"""compat-pct: regression-free classifier updates for compat.

Methods ``pct`` (focal distillation), ``cna`` (contrastive neighbourhood alignment) and ``elodi``
(logit difference inhibition against one old model or an ensemble) are registered through
:mod:`compat_pct.plugin`; nothing heavy is imported here.
"""

__version__ = "0.1.0"

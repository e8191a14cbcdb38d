"""``compat eval ijbc``: the IJB-C / IJB-B face benchmark, self and cross-model.

The protocol is insightface's (arcface_torch ``eval_ijbc.py`` for 1:1, ``ijb_evals.py`` for 1:N) with
the cross-model test of MixBCT: the old model encodes the gallery side, the new model the probe side.

Modules, in the order the data flows:

* ``options``: the pydantic options (the CLI flags).
* ``meta``: readers of the meta files, with file-and-line errors.
* ``align``: five-point similarity alignment to 112x112 (numpy Umeyama + Pillow affine warp).
* ``embed``: a model over the aligned faces (and their mirror images); the feature file.
* ``pooling``: detector weighting, media mean, template sum, L2.
* ``roc``: scikit-learn's ROC (``drop_intermediate=True``) re-done with one float sort; TAR@FAR.
* ``verification``: 1:1 template-pair scores from template matrices.
* ``identification``: 1:N open-set search per gallery, their mean, and the merged closed-set search.
* ``run``: the evaluator entry point; ``render``: the tables.

Importing this package is light (no numpy work, no torch).
"""

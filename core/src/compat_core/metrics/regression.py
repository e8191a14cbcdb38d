"""Regression metrics of a classifier update: does the new model break what the old one got right?

All counts are over the same ``N`` labelled samples, ``old``/``new`` meaning "that model's top-1
prediction is the label":

* ``nfr`` negative flip rate = #(old right and new wrong) / N (Yan et al., "Positive-congruent
  training", CVPR 2021).
* ``nfi`` negative flip impact = negative flips / #(new wrong): the share of the new model's errors
  that are regressions.
* ``pfr`` positive flip rate = #(old wrong and new right) / N; ``pfi`` = positive flips / #(new right).
* ``btc`` backward trust compatibility = #(both right) / #(old right), and ``bec`` backward error
  compatibility = #(both wrong) / #(new wrong), as defined by Srivastava et al. (KDD 2020), the
  paper behind Microsoft's BackwardCompatibilityML. (That library's ``error_compatibility_score``
  divides by the *old* model's errors instead, and averages per batch; we follow the paper.)
* A ratio whose denominator is empty is 0 (its numerator is then 0 too), as in
  BackwardCompatibilityML and the PCT code.

Models may know different classes. Each model's logit columns carry class *names*, which are
matched to the evaluation labels by name, or through a label map ``{new class: old class}`` for an
old model whose names differ. A column whose class is not among the labels can still win the argmax
(and is then wrong). Top-k: the label's column must rank among the first ``k``; ties with the label's
score count in the label's favour (ranking = 1 + number of *strictly* higher scores).

Only numpy here: the evaluator and the compat-pct plugin share these functions. Label maps are read
by :func:`compat_core.data.label_map.read_label_map` (with ``one_to_one=True``).

Example:
    >>> import numpy as np
    >>> old = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])   # predicts 0, 0, 1
    >>> new = np.array([[0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])   # predicts 1, 0, 1
    >>> scores = regression_report(old, new, np.array([0, 0, 0]), ["a", "b"], ["a", "b"], ["a", "b"], topk=(1,))
    >>> scores["nfr"], scores["old_accuracy"], scores["new_accuracy"]
    (0.3333333333333333, 0.6666666666666666, 0.3333333333333333)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from compat_core.data.label_map import short_list
from compat_core.errors import CompatError

FLIP_KEYS = ("nfr", "nfi", "pfr", "pfi", "btc", "bec")


# -- class alignment ---------------------------------------------------------------------------------
def class_columns(model_classes: Sequence[str], label_names: Sequence[str],
                  label_map: dict[str, str] | None = None) -> np.ndarray:
    """The label index of each of a model's logit columns, or -1 for a class the labels lack.

    Without ``label_map`` a column matches the label of the same name. With a map
    ``{label/new class: model/old class}`` only the mapped classes match (as compat-bct's
    ``--label-map``).

    Example:
        >>> class_columns(["b", "z", "a"], ["a", "b", "c"]).tolist()
        [1, -1, 0]
        >>> class_columns(["x", "y"], ["a", "b"], {"b": "x"}).tolist()
        [1, -1]
    """
    if label_map is not None:
        target = {old: new for new, old in label_map.items()}
    else:
        target = {name: name for name in model_classes}
    position = {str(name): i for i, name in enumerate(label_names)}
    return np.array([position.get(target.get(str(name), "\0unmatched"), -1) for name in model_classes],
                    dtype=np.int64)


# -- per-sample correctness --------------------------------------------------------------------------
def predicted_labels(logits: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The label each row predicts (argmax column mapped through ``columns``; -1 when unmatched)."""
    return columns[np.argmax(logits, axis=1)]


def topk_correct(logits: np.ndarray, columns: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Whether each row's label ranks among its ``k`` best columns (False if the model lacks it).

    Example:
        >>> topk_correct(np.array([[3.0, 2.0, 1.0]]), np.array([0, 1, 2]), np.array([2]), 2).tolist()
        [False]
    """
    column_of_label = np.full(max(int(labels.max(initial=-1)), int(columns.max(initial=-1))) + 1, -1, np.int64)
    known = columns >= 0
    column_of_label[columns[known]] = np.flatnonzero(known)
    label_column = column_of_label[labels]
    has = label_column >= 0
    if k == 1:
        return has & (predicted_labels(logits, columns) == labels)
    rows = np.arange(len(labels))
    label_score = logits[rows, np.where(has, label_column, 0)]
    higher = (logits > label_score[:, None]).sum(axis=1)
    return has & (higher < k)


# -- flips -------------------------------------------------------------------------------------------
def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator) / denominator if denominator else 0.0


def flip_metrics(old_correct: np.ndarray, new_correct: np.ndarray) -> dict:
    """NFR, NFI, PFR, PFI, BTC, BEC and the counts behind them, from per-sample correctness.

    Example:
        >>> m = flip_metrics(np.array([True, True, False, False]), np.array([True, False, True, False]))
        >>> m["nfr"], m["nfi"], m["btc"], m["bec"]
        (0.25, 0.5, 0.5, 0.5)
    """
    old_correct, new_correct = np.asarray(old_correct, bool), np.asarray(new_correct, bool)
    n = len(old_correct)
    negative = int(np.sum(old_correct & ~new_correct))
    positive = int(np.sum(~old_correct & new_correct))
    both_right = int(np.sum(old_correct & new_correct))
    both_wrong = int(np.sum(~old_correct & ~new_correct))
    old_right, new_right = int(old_correct.sum()), int(new_correct.sum())
    new_wrong = n - new_right
    return {"n": n, "old_accuracy": _ratio(old_right, n), "new_accuracy": _ratio(new_right, n),
            "nfr": _ratio(negative, n), "nfi": _ratio(negative, new_wrong),
            "pfr": _ratio(positive, n), "pfi": _ratio(positive, new_right),
            "btc": _ratio(both_right, old_right), "bec": _ratio(both_wrong, new_wrong),
            "negative_flips": negative, "positive_flips": positive}


def per_class_flips(old_correct: np.ndarray, new_correct: np.ndarray, labels: np.ndarray,
                    label_names: Sequence[str]) -> list[dict]:
    """Accuracy and flips of each label present in ``labels``, in label order."""
    rows = []
    for label in np.unique(labels):
        mask = labels == label
        m = flip_metrics(old_correct[mask], new_correct[mask])
        rows.append({"class": str(label_names[label]) if label < len(label_names) else str(label),
                     "label": int(label), **{k: m[k] for k in (
                         "n", "old_accuracy", "new_accuracy", "nfr", "negative_flips", "positive_flips")}})
    return rows


def regression_report(old_logits: np.ndarray, new_logits: np.ndarray, labels: np.ndarray,
                      old_classes: Sequence[str], new_classes: Sequence[str], label_names: Sequence[str], *,
                      label_map: dict[str, str] | None = None, topk: Sequence[int] = (1, 5)) -> dict:
    """Every regression metric of an update from ``old_logits`` to ``new_logits`` on ``labels``.

    Args:
        old_logits: ``(N, C_old)`` scores of the old model (or the mean logits of an ensemble).
        new_logits: ``(N, C_new)`` scores of the new model.
        labels: ``(N,)`` label indices into ``label_names``.
        old_classes: class name of each old logit column; ``new_classes`` likewise.
        label_names: name of each label value.
        label_map: ``{label/new class: old class}`` for old models with other class names.
        topk: accuracies to report; 1 gives ``old_accuracy``/``new_accuracy``, k > 1 ``old_topk``/``new_topk``.

    Returns:
        ``flip_metrics`` keys (fractions) plus ``old_top5``/``new_top5``, ``per_class`` (list), and
        ``old_classes``: the same metrics on the samples of the classes the old model knows, when the
        new model knows more (else None).

    Raises:
        CompatError: different sample counts, or an old model sharing no class with the labels.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if not (len(old_logits) == len(new_logits) == len(labels)):
        raise CompatError(f"the old scores have {len(old_logits)} rows, the new ones {len(new_logits)} and the labels "
                          f"{len(labels)}. Score the same images with both models.")
    old_columns = class_columns(old_classes, label_names, label_map)
    new_columns = class_columns(new_classes, label_names)
    if not (old_columns >= 0).any():
        raise CompatError(f"the old model's classes ({short_list(old_classes)}) share no name with the evaluation "
                          f"labels ({short_list(label_names)}). Pass --label-map FILE.json "
                          f"{{\"new class\": \"old class\"}} to say which classes correspond.")
    if not (new_columns >= 0).any():  # every new prediction would count as wrong: 0% accuracy, silently
        raise CompatError(f"the new model's classes ({short_list(new_classes)}) share no name with the evaluation "
                          f"labels ({short_list(label_names)}), so none of its predictions could be right. Score "
                          f"the new model on the data it was trained for (--data).")
    old_correct = predicted_labels(old_logits, old_columns) == labels
    new_correct = predicted_labels(new_logits, new_columns) == labels
    result = flip_metrics(old_correct, new_correct)
    for k in topk:
        if k > 1:
            result[f"old_top{k}"] = float(topk_correct(old_logits, old_columns, labels, k).mean()) if len(labels) else 0.0
            result[f"new_top{k}"] = float(topk_correct(new_logits, new_columns, labels, k).mean()) if len(labels) else 0.0
    result["per_class"] = per_class_flips(old_correct, new_correct, labels, label_names)
    old_known = set(old_columns[old_columns >= 0].tolist())
    new_only = set(new_columns[new_columns >= 0].tolist()) - old_known
    result["old_classes"] = None
    if new_only:
        mask = np.isin(labels, sorted(old_known))
        result["old_classes"] = flip_metrics(old_correct[mask], new_correct[mask])
    return result

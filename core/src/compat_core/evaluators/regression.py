"""``compat eval regression``: accuracy and negative flips of a classifier update.

Scores come from run directories (the model's logits on ``--data``) or from ``.npz`` logit files
(``logits`` N x C and ``labels`` N, e.g. from ``compat features extract --logits``). Several old
sources form an ensemble by averaging their logits. Kept free of torch at import time.

Which class does each logit column mean? A run directory says so in its ``model.json``. A logit file
may carry ``logit_classes`` (C names); otherwise, when its ``model`` entry names a run directory that
still exists, that run's classes; otherwise the file's label ``classes`` when there are C of them,
or labels 0..C-1 in a file without class names (then two files must have the same C).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from compat_core.config import Options
from compat_core.errors import CompatError
from compat_core.io import read_npz
from compat_core.tables import add_column


class RegressionOptions(Options):
    data: str | None = Field(None, description="Dataset for run directories (path or built-in name).")
    split: str = Field("test", description="Split to score.")
    old: list[str] = Field(default_factory=list, description="Old model: run directory or .npz logit file; repeat "
                           "for an ensemble (mean of the logits).")
    new: str | None = Field(None, description="New model: run directory or .npz logit file.")
    old_logits: list[str] = Field(default_factory=list, description="Old model's .npz logit file (logits N x C, "
                                  "labels N); repeat for an ensemble. Same as --old with a file.")
    new_logits: str | None = Field(None, description="New model's .npz logit file. Same as --new with a file.")
    label_map: str | None = Field(None, description="JSON {new class: old class} for an old model whose class names "
                                  "differ from the new model's. Default: classes match by name.")
    batch_size: int = Field(256, ge=1, description="Images per forward pass when scoring runs.")
    device: str = Field("auto", description="cpu, cuda or auto.")


@dataclass
class Scores:
    """One model's logits on a labelled set."""

    logits: np.ndarray
    labels: np.ndarray
    index: np.ndarray | None
    classes: list[str]  # class of each logit column
    label_names: list[str]  # name of each label value ([] when unknown)
    source: str
    data: str = ""
    split: str = ""


def run_regression(options: RegressionOptions) -> dict:
    """Score the old source(s) and the new one and compute :func:`regression_report`."""
    from compat_core.data.label_map import read_label_map
    from compat_core.metrics.regression import regression_report

    old_sources, new_source = _sources(options)
    if options.label_map and not Path(options.label_map).is_file():  # before the (slow) scoring
        raise CompatError(f"--label-map {options.label_map}: no such file. Write a JSON object "
                          f"{{\"new class\": \"old class\"}}.")
    scored = {}
    for source in dict.fromkeys([*old_sources, new_source]):  # a source given twice is scored once
        scored[source] = load_scores(source, options)
    new = scored[new_source]
    old = ensemble([scored[s] for s in old_sources])
    check_same_samples(old, new)
    if not (new.label_names or old.label_names) and len(old.classes) != len(new.classes):
        raise CompatError(f"{old.source} has {len(old.classes)} logit columns and {new.source} has "
                          f"{len(new.classes)}, and neither file names its classes, so the columns cannot be matched. "
                          f"Add an array logit_classes (one class name per column) to each file.")
    label_names = new.label_names or old.label_names or _numbered(old, new)
    label_map = (read_label_map(options.label_map, label_names, old.classes, one_to_one=True)
                 if options.label_map else None)
    result = regression_report(old.logits, new.logits, new.labels, old.classes, new.classes, label_names,
                               label_map=label_map)
    return {"old": old_sources, "new": new_source, "split": new.split or options.split, **result}


def _sources(options: RegressionOptions) -> tuple[list[str], str]:
    old = [*options.old, *options.old_logits]
    if not old:
        raise CompatError("compat eval regression needs the old model: --old RUN (repeat for an ensemble) or "
                          "--old-logits FILE.npz.")
    news = [s for s in (options.new, options.new_logits) if s]
    if len(news) != 1:
        raise CompatError("compat eval regression needs exactly one new model: --new RUN or --new-logits FILE.npz"
                          + (f" (got both {news[0]} and {news[1]})." if news else "."))
    return old, news[0]


def load_scores(source: str, options: RegressionOptions) -> Scores:
    """Logits from a ``.npz`` file or by running a run directory's model on ``--data``."""
    from compat_core.models.run import is_run_dir

    if source.endswith(".npz"):
        return load_logit_file(source)
    if not is_run_dir(source):
        hint = " (a logit file must end in .npz)" if Path(source).is_file() else ""
        raise CompatError(f"{source} is neither a .npz logit file nor a compat run directory{hint}. Pass a run "
                          f"directory written by `compat train` or a file from `compat features extract --logits`.")
    from compat_core.engine.distributed import resolve_device
    from compat_core.features import features_of
    from compat_core.models.run import read_spec

    spec = read_spec(source)
    if not spec.num_classes or (spec.head or {}).get("type") == "none":
        raise CompatError(f"{source} has no classifier head, so it has no logits to compare. compat eval "
                          f"regression needs classifiers.")
    feats = features_of(source, data=options.data, split=options.split, batch_size=options.batch_size,
                        device=str(resolve_device(options.device)), with_logits=True)
    return Scores(feats.logits, feats.labels, feats.index, list(spec.classes), list(feats.classes), source,
                  feats.data, feats.split)


def load_logit_file(path: str) -> Scores:
    """Read ``logits`` (N x C) and ``labels`` (N) plus the optional ``classes``, ``logit_classes``,
    ``index``, ``model``, ``data`` and ``split`` of a ``.npz`` file (never unpickled)."""
    if not Path(path).is_file():
        raise CompatError(f"{path}: no such logit file. Create it with `compat features extract --model RUN "
                          f"--data DATA --logits --out {path}`.")
    arrays = read_npz(path, ("logits", "labels"), what="file",
                      unreadable_fix="Create it with `compat features extract --logits`.",
                      missing_fix="Extract it with `compat features extract --logits`, or save logits (N x C) and "
                      "labels (N).")
    logits, labels = arrays["logits"], arrays["labels"]
    if logits.ndim != 2 or labels.ndim != 1 or len(logits) != len(labels) or not logits.shape[1]:
        raise CompatError(f"{path}: logits {logits.shape} and labels {labels.shape} do not match (need N x C "
                          f"with C >= 1, and N).")
    if not np.issubdtype(labels.dtype, np.integer) or (len(labels) and labels.min() < 0):
        raise CompatError(f"{path}: labels must be non-negative integers (got {labels.dtype}).")
    from compat_core.features import check_finite

    check_finite(logits, path, "logits")
    text = {k: str(arrays[k]) if k in arrays else "" for k in ("model", "data", "split")}
    label_names = [str(c) for c in arrays.get("classes", [])]
    columns = _column_classes(path, arrays, logits.shape[1], label_names, text["model"])
    index = arrays["index"].astype(np.int64) if "index" in arrays else None
    return Scores(logits.astype(np.float32), labels.astype(np.int64), index, columns, label_names, path,
                  text["data"], text["split"])


def _column_classes(path: str, arrays: dict, num_columns: int, label_names: list[str], model: str) -> list[str]:
    from compat_core.models.run import is_run_dir, read_spec

    if "logit_classes" in arrays:
        columns = [str(c) for c in arrays["logit_classes"]]
        if len(columns) != num_columns:
            raise CompatError(f"{path}: logit_classes names {len(columns)} classes but logits have {num_columns} "
                              f"columns. Name one class per column.")
        return columns
    if model and is_run_dir(model):
        spec = read_spec(model)
        if spec.num_classes == num_columns:
            return list(spec.classes)
    if not label_names:  # a bare file: column c is label c
        return [str(i) for i in range(num_columns)]
    if num_columns != len(label_names):
        raise CompatError(f"{path}: logits have {num_columns} columns but the file names {len(label_names)} classes, "
                          f"so which class each column means is unknown. Add an array logit_classes (one class "
                          f"name per column), or extract the file from a run that still exists.")
    return list(label_names)


def ensemble(members: list[Scores]) -> Scores:
    """The mean logits of several models with one class list (a single model is returned as is)."""
    first = members[0]
    if len(members) == 1:
        return first
    for other in members[1:]:
        if other.classes != first.classes:
            raise CompatError(f"the old models of an ensemble must know the same classes in the same order: "
                              f"{first.source} has {first.classes[:5]}... ({len(first.classes)}), {other.source} has "
                              f"{other.classes[:5]}... ({len(other.classes)}). Ensemble models of one class list.")
        check_same_samples(first, other)
    logits = np.mean([m.logits.astype(np.float64) for m in members], axis=0).astype(np.float32)
    return Scores(logits, first.labels, first.index, first.classes, first.label_names,
                  " + ".join(m.source for m in members), first.data, first.split)


def check_same_samples(a: Scores, b: Scores) -> None:
    """Both score sets must cover the same images, in the same order, with the same labels."""
    if len(a.labels) != len(b.labels):
        raise CompatError(f"{a.source} scores {len(a.labels)} images but {b.source} scores {len(b.labels)} images. Score "
                          f"the same split of the same data with both models.")
    if a.data and b.data and (a.data, a.split) != (b.data, b.split):
        raise CompatError(f"{a.source} scores {a.data}:{a.split} but {b.source} scores {b.data}:{b.split}. Score "
                          f"the same split of the same data with both models.")
    if not np.array_equal(a.labels, b.labels) or (
            a.index is not None and b.index is not None and not np.array_equal(a.index, b.index)):
        raise CompatError(f"{a.source} and {b.source} do not list the same images in the same order (labels or "
                          f"indices differ). Extract both from the same data and split.")
    if a.label_names and b.label_names and a.label_names != b.label_names:
        raise CompatError(f"{a.source} and {b.source} name the labels differently ({short(a.label_names)} vs "
                          f"{short(b.label_names)}). Extract both from the same data.")


def short(names: list[str]) -> str:
    from compat_core.data.label_map import short_list

    return short_list(names, 5)


def _numbered(old: Scores, new: Scores) -> list[str]:
    top = max(int(new.labels.max(initial=-1)) + 1, len(old.classes), len(new.classes))
    return [str(i) for i in range(top)]


def render_regression(console, result: dict) -> None:
    """Tables: both models' accuracy, the flip metrics, the restriction to old classes, per class."""
    from rich.table import Table

    def pct(value) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    models = Table(title=f"regression of the update ({result['split']}, {result['n']} images; percent)")
    for column in ("model", "source", "top-1", "top-5"):
        add_column(models, column, right=column.startswith("top"))
    models.add_row("old", ", ".join(result["old"]), pct(result["old_accuracy"]), pct(result.get("old_top5")))
    models.add_row("new", result["new"], pct(result["new_accuracy"]), pct(result.get("new_top5")))
    console.print(models)
    flips = Table(title="flips (percent)")
    for column in ("samples", "n", "NFR", "NFI", "PFR", "PFI", "BTC", "BEC", "neg. flips", "pos. flips"):
        add_column(flips, column, right=column != "samples")
    parts = [("all", result)] + ([("old classes", result["old_classes"])] if result.get("old_classes") else [])
    for name, m in parts:
        flips.add_row(name, str(m["n"]), *(pct(m[k]) for k in ("nfr", "nfi", "pfr", "pfi", "btc", "bec")),
                      str(m["negative_flips"]), str(m["positive_flips"]))
    console.print(flips)
    per_class = Table(title="per class (percent)")
    for column in ("class", "n", "old acc", "new acc", "NFR", "neg. flips", "pos. flips"):
        add_column(per_class, column, right=column != "class")
    for row in result["per_class"]:
        per_class.add_row(row["class"], str(row["n"]), pct(row["old_accuracy"]), pct(row["new_accuracy"]),
                          pct(row["nfr"]), str(row["negative_flips"]), str(row["positive_flips"]))
    console.print(per_class)

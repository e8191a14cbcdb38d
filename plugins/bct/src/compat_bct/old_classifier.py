"""The old classifier of the BCT influence loss: real old-head rows plus synthesized rows.

The paper's recipe (confirmed by the OpenBCT maintainer in openBCT#1): keep the old classifier's
rows for the classes it knows and append, for each new class, a synthesized row = the mean of the
L2-normalised old-model embeddings of that class's training images. ``synthesize="all"`` (our
default) synthesizes a row for every training class and ignores the old head (OpenBCT ``-g``,
MixBCT, BT^2). ``fit_synthesized`` (our default) then fits the synthesized rows to the old
embeddings (:mod:`compat_bct.row_fit`), so that the old classifier labels the old model's own
embeddings correctly.

Rows are matched by class *name* (``"3"`` of the old run = ``"3"`` of the new data), or through an
explicit label-map JSON ``{new_class_name: old_class_name}``. The synthesis runs the old model once
over the training data in eval mode without augmentation (not under training augmentation, as BT^2 does).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from compat_core.data.label_map import read_label_map
from compat_core.errors import CompatError
from compat_core.old_space import class_means
from torch import nn

from compat_bct.row_fit import fit_and_measure, score

MIN_AUTO_SCALE = 1.0  # floor of --influence-scale adacos: sqrt(2) ln(C - 1) is 0 at C = 2
# --influence-scale auto keeps the reachable target probability of this validated setting (s 4, 10 rows)
REFERENCE_SCALE, REFERENCE_ROWS = 4.0, 10
# The row fit's subsample is seeded by a constant, not the run's seed: the old classifier is then a
# function of the old model, the data and the options, the same for every new-model seed of a study.
FIT_SEED = 0


class OldClassifier(nn.Module):
    """Frozen old classifier applied to (aligned) new embeddings.

    ``kind="linear"``: ``W f + b``; ``kind="cosine"``: ``scale * cos(f, w)`` (no margin). Buffers:
    ``weight`` (R, D), ``bias`` (R,), ``target_rows`` (C_new,) mapping a new label to its row, and
    ``synthesized`` (R,) marking synthesized rows. Rows may outnumber the new classes: old classes
    absent from the new data stay in the softmax as negatives.

    Example:
        >>> clf = OldClassifier(torch.eye(2), torch.zeros(2), torch.tensor([1, 0]), torch.tensor([False, True]))
        >>> clf(torch.tensor([[2.0, 3.0]])).tolist(), clf.targets(torch.tensor([0])).tolist()
        ([[2.0, 3.0]], [1])
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, target_rows: torch.Tensor,
                 synthesized: torch.Tensor, kind: str = "linear", scale: float = 1.0):
        super().__init__()
        if kind not in ("linear", "cosine", "feature-normalized"):
            raise ValueError(f"kind must be linear, cosine or feature-normalized, not {kind!r}")
        self.register_buffer("weight", weight.detach().float().clone())
        self.register_buffer("bias", bias.detach().float().clone())
        self.register_buffer("target_rows", target_rows.long().clone())
        self.register_buffer("synthesized", synthesized.bool().clone())
        self.kind, self.scale = kind, float(scale)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return score(embedding.float(), self.weight, self.bias, self.kind, self.scale)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        return self.target_rows[labels]


def assemble_rows(*, new_classes: list[str], old_classes: list[str], old_weight: torch.Tensor | None,
                  old_bias: torch.Tensor | None, means: torch.Tensor, synthesize: str = "new-only",
                  label_map: dict[str, str] | None = None, normalize: bool = False, scale_to_real: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Combine real old rows and synthesized rows (``means``, one per new class).

    Returns ``(weight, bias, target_rows, synthesized)``. With ``synthesize="new-only"`` the rows are
    all old-head rows followed by the synthesized rows of the new classes that have no old row;
    with ``"all"`` they are the synthesized rows of every new class, in new-class order.

    Example:
        >>> w, b, t, s = assemble_rows(new_classes=["a", "c"], old_classes=["a", "b"],
        ...     old_weight=torch.eye(2), old_bias=None, means=torch.tensor([[9.0, 9.0], [0.0, 2.0]]))
        >>> w.tolist(), t.tolist(), s.tolist()
        ([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]], [0, 2], [False, False, True])
    """
    synth = F.normalize(means, dim=1) if normalize else means.clone()
    if synthesize == "all":
        weight, bias = synth, torch.zeros(len(new_classes))
        target_rows = torch.arange(len(new_classes))
        synthesized = torch.ones(len(new_classes), dtype=torch.bool)
    else:
        if old_weight is None:
            raise ValueError("old_weight is required unless synthesize='all'")
        old_row = {name: i for i, name in enumerate(old_classes)}
        if label_map is not None:
            matched = {new: old_row[old] for new, old in label_map.items()}
        else:
            matched = {name: old_row[name] for name in new_classes if name in old_row}
        weight_rows = [old_weight.detach().float()]
        bias = old_bias.detach().float() if old_bias is not None else torch.zeros(len(old_weight))
        biases = [bias]
        target_rows, extra = [], []
        for c, name in enumerate(new_classes):
            if name in matched:
                target_rows.append(matched[name])
            else:
                target_rows.append(len(old_weight) + len(extra))
                extra.append(c)
        synth_rows = synth[extra]
        if scale_to_real and len(old_weight) and len(extra):
            target_norm = old_weight.detach().float().norm(dim=1).mean()
            synth_rows = F.normalize(synth_rows, dim=1) * target_norm
        weight_rows.append(synth_rows.to(weight_rows[0]))
        biases.append(torch.zeros(len(extra)))
        weight = torch.cat(weight_rows)
        bias = torch.cat(biases)
        target_rows = torch.tensor(target_rows, dtype=torch.long)
        synthesized = torch.cat([torch.zeros(len(old_weight), dtype=torch.bool), torch.ones(len(extra), dtype=torch.bool)])
    return weight, bias, target_rows, synthesized


def build_old_classifier(config, ctx, old_embeddings, method: str = "bct") -> OldClassifier:
    """Build the :class:`OldClassifier` of ``ctx.old_model`` for the training data ``ctx.data``."""
    old = ctx.old_model
    # Only features of the old model (--old-features without --old): every row is synthesized, none read.
    features_only = getattr(old, "features_only", False) and config.synthesize == "all"
    head = None if features_only else old.classifier
    head_spec = {} if features_only else (old.spec.head or {})
    new_classes = [str(c) for c in ctx.data.classes]
    old_classes = [str(c) for c in old.classes]
    if config.synthesize == "new-only" and head is None:
        raise CompatError(f"`compat train {method}`: the old model {old.source} has no classifier head, so its rows "
                          f"cannot be reused. Pass --synthesize all to build the whole old classifier from old "
                          f"embeddings.")
    label_map = None
    if config.label_map and config.synthesize == "all":
        raise CompatError(f"`compat train {method}`: --label-map {config.label_map} names which old-head row serves "
                          f"each new class, but --synthesize all (the default) builds every row from old embeddings "
                          f"and uses no old-head row. Pass --synthesize new-only to reuse the old head's rows, or "
                          f"drop --label-map.")
    if config.label_map:
        label_map = read_label_map(config.label_map, new_classes, old_classes)
    old_weight = None if head is None else head.weight.detach()
    old_bias = None
    if head is not None and head_spec.get("type", "linear") == "linear":
        old_bias = getattr(head, "bias", None)
    old_row = set(old_classes)
    needs_synthesis = config.synthesize == "all" or any(
        (label_map is not None and name not in label_map) or (label_map is None and name not in old_row)
        for name in new_classes)
    features = labels = None
    if needs_synthesis:
        features = old_embeddings.of_dataset(ctx.data)  # on the old model's device: the fit runs there
        labels = torch.as_tensor(ctx.data.labels, dtype=torch.long, device=features.device)
        means, _ = class_means(features, labels, len(new_classes))
    else:
        means = torch.zeros(len(new_classes), old_embeddings.dim)
    weight, bias, target_rows, synthesized = assemble_rows(
        new_classes=new_classes, old_classes=old_classes, old_weight=None if old_weight is None else old_weight.cpu(),
        old_bias=None if old_bias is None else old_bias.cpu(), means=means.cpu(), synthesize=config.synthesize,
        label_map=label_map, normalize=config.normalize_synthesized, scale_to_real=config.scale_synthesized)
    kind, scale = scoring(config, head_spec, num_rows=len(weight))
    report = None
    if features is not None:
        weight, bias, report = fit_and_measure(
            features, target_rows.to(labels.device)[labels], weight, bias, synthesized, fit=config.fit_synthesized,
            kind=kind, scale=scale, weight_decay=config.fit_weight_decay, max_samples=config.fit_max_samples,
            block=config.fit_block, max_iter=config.fit_max_iter, seed=FIT_SEED)
        report = {"rows": _row_names(old_classes, new_classes, target_rows, synthesized),
                  "synthesized": synthesized.tolist(), **report}
    clf = OldClassifier(weight, bias, target_rows, synthesized, kind=kind, scale=scale)
    clf.report = report
    return clf


def scoring(config, old_head: dict, num_rows: int) -> tuple[str, float]:
    """How the influence loss scores an embedding: ``("linear", 1)`` or ``("cosine", scale)``, with
    ``--influence-scale auto`` resolved for the old classifier's ``num_rows`` rows."""
    head_type = old_head.get("type", "linear")
    if config.normalized_classifier and not getattr(config, "normalize_rows", True):
        if config.fit_synthesized:
            from compat_core.errors import CompatError

            raise CompatError("`compat train bct`: --no-normalize-rows (BT^2's baseline: n(f) . w with the class "
                              "means as they are) cannot be combined with the row fit. Add --no-fit-synthesized.")
        return "feature-normalized", resolve_scale(config.influence_scale, num_rows)
    if config.normalized_classifier:
        return "cosine", resolve_scale(config.influence_scale, num_rows)
    if head_type == "linear":
        return "linear", 1.0
    return "cosine", float(old_head.get("scale") or 30.0)


def resolve_scale(option: float | str, num_rows: int) -> float:
    """``--influence-scale``: a number as given, ``"auto"`` = :func:`matched_scale` or ``"adacos"`` =
    :func:`adacos_scale` of ``num_rows``.

    Example:
        >>> resolve_scale(4.0, 1000), resolve_scale("auto", 10), round(resolve_scale("adacos", 10), 3)
        (4.0, 4.0, 3.107)
    """
    if option == "auto":
        return matched_scale(num_rows)
    if option == "adacos":
        return adacos_scale(num_rows)
    return float(option)


def matched_scale(num_classes: int) -> float:
    """The cosine-logit scale for ``num_classes`` rows that keeps the best reachable target probability of
    the validated setting (s = 4 with 10 rows).

    With the target at cosine 1 and the other rows orthogonal, the target's probability is
    ``e^s / (e^s + C - 1)``; holding it at its value for (s 4, C 10), 0.858, gives
    ``s = 4 + ln((C - 1) / 9)``. A fixed s would make the influence loss ever softer as C grows (s 4: 0.05
    at C = 1,000), so it would no longer pull new embeddings towards their old class.

    Example:
        >>> matched_scale(10), round(matched_scale(1000), 3), round(matched_scale(2), 3)
        (4.0, 8.71, 1.803)
    """
    if num_classes < 2:
        return REFERENCE_SCALE
    return REFERENCE_SCALE + math.log((num_classes - 1) / (REFERENCE_ROWS - 1))


def adacos_scale(num_classes: int, floor: float = MIN_AUTO_SCALE) -> float:
    """AdaCos's fixed scale ``sqrt(2) * ln(C - 1)`` (Zhang et al., "AdaCos", CVPR 2019), at least ``floor``.

    The formula gives 0 for C = 2 (ln 1) and less than 1 for C = 3 (0.98): cosine logits would then be
    nearly flat, so the scale never goes below ``floor`` (1: a target at cosine 1 against one at -1 still
    gets probability e / (e + 1/e) = 0.88 of two).

    Example:
        >>> round(adacos_scale(10), 4), adacos_scale(2)
        (3.1073, 1.0)
    """
    if num_classes <= 2:
        return floor
    return max(math.sqrt(2.0) * math.log(num_classes - 1), floor)


def influence_logits(clf: OldClassifier, config) -> dict:
    """What the influence loss scores with, for ``model.json``: kind, resolved scale, option, rows.

    Example:
        >>> from compat_bct.config import BCTConfig
        >>> clf = OldClassifier(torch.eye(2), torch.zeros(2), torch.tensor([0, 1]), torch.ones(2), "cosine", 1.0)
        >>> influence_logits(clf, BCTConfig(influence_scale="adacos"))
        {'kind': 'cosine', 'scale': 1.0, 'scale_option': 'adacos', 'rows': 2}
    """
    option = config.influence_scale if config.normalized_classifier else "old head"
    return {"kind": clf.kind, "scale": round(clf.scale, 6) if clf.kind != "linear" else None,
            "scale_option": option, "rows": len(clf.weight)}


def describe_logits(logits: dict) -> str:
    """One line on the influence logits and, for a fixed cosine scale, what ``auto`` would give.

    Example:
        >>> print(describe_logits({"kind": "cosine", "scale": 4.0, "scale_option": 4.0, "rows": 10}))
        influence logits: 4 * cos(f, w) over the old classifier's 10 rows (--influence-scale 4; auto would give 4).
    """
    if logits["kind"] == "feature-normalized":
        return (f"influence logits: {logits['scale']:g} * n(f) . w over the old classifier's {logits['rows']} rows, "
                f"the rows not normalised (BT^2's BCT baseline).")
    if logits["kind"] != "cosine":
        return f"influence logits: W f + b of the old classifier's {logits['rows']} rows (linear, like the old head)."
    option = logits["scale_option"]
    if option == "auto":
        how = "--influence-scale auto: 4 + ln((C - 1) / 9)"
    elif option == "adacos":
        how = "--influence-scale adacos: sqrt(2) ln(C - 1)" + (", floored at 1" if logits["scale"] == MIN_AUTO_SCALE else "")
    elif option == "old head":
        how = "the old head's scale"
    else:
        how = f"--influence-scale {option:g}; auto would give {matched_scale(logits['rows']):.4g}"
    return f"influence logits: {logits['scale']:g} * cos(f, w) over the old classifier's {logits['rows']} rows ({how})."


def _row_names(old_classes: list[str], new_classes: list[str], target_rows: torch.Tensor,
               synthesized: torch.Tensor) -> list[str]:
    new_of_row = {int(row): new_classes[c] for c, row in enumerate(target_rows.tolist())}
    return [new_of_row.get(r, "") if bool(synthesized[r]) else old_classes[r] for r in range(len(synthesized))]

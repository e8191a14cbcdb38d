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

import torch
import torch.nn.functional as F
from compat_core.data.label_map import read_label_map
from compat_core.errors import CompatError
from torch import nn

from compat_bct.row_fit import fit_and_measure, score


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of L2-normalised ``features`` per label; returns ``(means (C, D), counts (C,))``.

    A class without samples gets a zero row (never 0/0 = NaN, the BT^2 pitfall).

    Example:
        >>> means, counts = class_means(torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 0]), 2)
        >>> means.tolist(), counts.tolist()
        ([[0.5, 0.5], [0.0, 0.0]], [2, 0])
    """
    normed = F.normalize(features.float(), dim=1)
    sums = torch.zeros(num_classes, features.shape[1], dtype=normed.dtype, device=normed.device)
    sums.index_add_(0, labels.to(normed.device), normed)
    counts = torch.bincount(labels.to(normed.device), minlength=num_classes)
    return sums / counts.clamp_min(1)[:, None].to(sums.dtype), counts


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
        if kind not in ("linear", "cosine"):
            raise ValueError(f"kind must be linear or cosine, not {kind!r}")
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
    head = old.classifier
    head_type = (old.spec.head or {}).get("type", "linear")
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
    if head is not None and head_type == "linear":
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
    kind, scale = scoring(config, old.spec.head or {})
    report = None
    if features is not None:
        weight, bias, report = fit_and_measure(
            features, target_rows.to(labels.device)[labels], weight, bias, synthesized, fit=config.fit_synthesized,
            kind=kind, scale=scale, weight_decay=config.fit_weight_decay)
        report = {"rows": _row_names(old_classes, new_classes, target_rows, synthesized),
                  "synthesized": synthesized.tolist(), **report}
    clf = OldClassifier(weight, bias, target_rows, synthesized, kind=kind, scale=scale)
    clf.report = report
    return clf


def scoring(config, old_head: dict) -> tuple[str, float]:
    """How the influence loss scores an embedding: ``("linear", 1)`` or ``("cosine", scale)``."""
    head_type = old_head.get("type", "linear")
    if config.normalized_classifier:
        return "cosine", config.influence_scale
    if head_type == "linear":
        return "linear", 1.0
    return "cosine", float(old_head.get("scale") or 30.0)


def _row_names(old_classes: list[str], new_classes: list[str], target_rows: torch.Tensor,
               synthesized: torch.Tensor) -> list[str]:
    new_of_row = {int(row): new_classes[c] for c, row in enumerate(target_rows.tolist())}
    return [new_of_row.get(r, "") if bool(synthesized[r]) else old_classes[r] for r in range(len(synthesized))]

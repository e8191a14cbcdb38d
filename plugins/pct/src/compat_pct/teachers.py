"""The frozen old model(s) as one teacher: a weighted ensemble aligned to the new model's classes.

Every ``--old`` run is a member (the original code kept only the first of several paths). The
teacher's logits are ``sum_k w_k z_k / sum_k w_k`` with every member's weight applied (the original
never applied the first member's weight but still divided by the sum of all weights).

Class restriction: the old classes are matched to the new ones by name (or through a label map
``{new class: old class}``); logit distillation compares only the *shared* columns, and samples
whose label is not a shared class take no part in it. An old prediction of a class the new model
does not know counts as wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from compat_core.data.label_map import read_label_map, short_list
from compat_core.errors import CompatError
from compat_core.metrics.regression import class_columns


@dataclass
class TeacherOutput:
    logits: torch.Tensor | None  # (B, C_old), the weighted mean of the members' logits
    embeddings: list[torch.Tensor]  # one (B, D_k) per member


def ensemble_weights(weights: list[float], count: int, method: str = "elodi") -> torch.Tensor:
    """Normalised weights of ``count`` members (equal when ``weights`` is empty).

    Example:
        >>> ensemble_weights([3.0, 1.0], 2).tolist()
        [0.75, 0.25]
    """
    if not weights:
        return torch.full((count,), 1.0 / count)
    if len(weights) != count:
        raise CompatError(f"`compat train {method}`: --teacher-weights gives {len(weights)} weights for {count} --old "
                          f"models. Give one weight per --old run, in the same order.")
    values = torch.tensor(weights, dtype=torch.float32)
    if bool((values < 0).any()) or float(values.sum()) <= 0:
        raise CompatError(f"`compat train {method}`: --teacher-weights {weights} must be non-negative with a positive "
                          f"sum.")
    return values / values.sum()


def weighted_logits(logits: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k z_k`` for weights that sum to 1.

    Example:
        >>> weighted_logits([torch.tensor([[4.0]]), torch.tensor([[0.0]])], torch.tensor([0.75, 0.25])).tolist()
        [[3.0]]
    """
    total = torch.zeros_like(logits[0], dtype=torch.float32)
    for weight, member in zip(weights.tolist(), logits, strict=True):
        total = total + weight * member.float()
    return total


class Teachers:
    """The old models of ``ctx.old_models`` as one teacher for a new model with ``new_classes``."""

    def __init__(self, old_models: list, new_classes: list[str], *, weights: list[float] | None = None,
                 label_map: str | None = None, method: str = "pct", needs_logits: bool = True,
                 device: torch.device | str = "cpu"):
        if not old_models:
            raise CompatError(f"`compat train {method}` needs the old model: pass --old RUN_DIR (repeat --old for an "
                              f"ensemble of old models).")
        self.members, self.method, self.needs_logits = list(old_models), method, needs_logits
        self.weights = ensemble_weights(list(weights or []), len(self.members), method).to(device)
        self.old_classes = [str(c) for c in self.members[0].classes]
        self._check_members()
        new_classes = [str(c) for c in new_classes]
        mapping = read_label_map(label_map, new_classes, self.old_classes, one_to_one=True) if label_map else None
        columns = torch.as_tensor(class_columns(self.old_classes, new_classes, mapping))
        self.shared_old = torch.nonzero(columns >= 0).squeeze(1)
        if not len(self.shared_old):
            raise CompatError(f"`compat train {method}`: the old model {self.members[0].source} knows the classes "
                              f"{short_list(self.old_classes)}, none of which is a class of the training data "
                              f"({short_list(new_classes)}). Pass --label-map FILE.json {{\"new class\": \"old class\"}} "
                              f"to say which classes correspond.")
        self.shared_new = columns[self.shared_old]
        new_to_shared = torch.full((len(new_classes),), -1, dtype=torch.long)
        new_to_shared[self.shared_new] = torch.arange(len(self.shared_new))
        self.old_to_new, self.new_to_shared = columns.to(device), new_to_shared.to(device)
        self.shared_old, self.shared_new = self.shared_old.to(device), self.shared_new.to(device)

    def _check_members(self) -> None:
        first = self.members[0]
        for member in self.members[1:]:
            if [str(c) for c in member.classes] != self.old_classes:
                raise CompatError(f"`compat train {self.method}`: the --old models of an ensemble must know the same "
                                  f"classes in the same order; {first.source} knows {short_list(self.old_classes)} but "
                                  f"{member.source} knows {short_list(member.classes)}. Ensemble models trained on one "
                                  f"class list.")
        if self.needs_logits:
            for member in self.members:
                if member.classifier is None:
                    raise CompatError(f"`compat train {self.method}`: the old model {member.source} has no classifier "
                                      f"head, so it has no logits to distil. Use an old run trained with a head.")

    @property
    def num_shared(self) -> int:
        return len(self.shared_new)

    def __call__(self, images: torch.Tensor) -> TeacherOutput:
        outputs = [member(images) for member in self.members]
        logits = weighted_logits([o.logits for o in outputs], self.weights) if self.needs_logits else None
        return TeacherOutput(logits, [o.embedding.float() for o in outputs])

    def predicted_new_class(self, old_logits: torch.Tensor) -> torch.Tensor:
        """The new-class index each teacher prediction means (-1: a class the new model lacks)."""
        return self.old_to_new[old_logits.argmax(dim=1)]

    def restrict(self, new_logits: torch.Tensor, old_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both models' logits on the shared classes, columns aligned."""
        return new_logits[:, self.shared_new], old_logits[:, self.shared_old]

    def shared_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Each label's column among the shared classes (-1 when the old model does not know it)."""
        return self.new_to_shared[targets]

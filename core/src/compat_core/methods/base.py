"""The Method interface: what a compatible-update method implements, and nothing else.

A method is an ``nn.Module`` whose ``forward(batch)`` returns a dict of named loss terms with a
``total``. Everything it trains (the new model, extra heads, a discriminator, a transformation) is a
sub-module, so the engine's optimizer, checkpoint, AMP and DDP wrapping cover it without the method
doing anything. Frozen models (old models, teachers, side-information models) are held as
:class:`~compat_core.models.OldModel`, which is not a module, so they never reach the optimizer or
the checkpoint. State that must survive ``--resume`` (a feature queue, refined prototypes) is a
registered buffer. See ``core/METHODS.md`` for how each seed method maps onto this interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from compat_core.config import MethodConfig, TrainConfig


@dataclass
class Batch:
    """One training batch on the device: uint8 images, targets (indices into the model's class list),
    the samples' dataset indices (for cached features), the 0-based ``epoch`` and the global ``step``
    (0-based over the whole run, ``epoch * steps_per_epoch + step in epoch``: schedules and warm-ups)."""

    images: torch.Tensor
    targets: torch.Tensor
    indices: torch.Tensor
    epoch: int = 0
    step: int = 0

    def __len__(self) -> int:
        return len(self.targets)


@dataclass
class MethodContext:
    """What the engine hands a method when it is built."""

    config: TrainConfig
    data: Any  # compat_core.data.Dataset: the training data (after --classes)
    old_models: list = field(default_factory=list)  # list[OldModel], frozen, on the device
    device: torch.device = torch.device("cpu")
    method_name: str = "baseline"
    world_size: int = 1
    rank: int = 0
    steps_per_epoch: int = 0  # optimizer steps per epoch (global batches)
    total_steps: int = 0  # epochs x steps_per_epoch
    resumed: bool = False  # the run continues from a checkpoint (--resume); buffers are restored after __init__

    @property
    def old_model(self):
        """The single old model; a clear error when there is none or several."""
        from compat_core.errors import CompatError

        if len(self.old_models) != 1:
            raise CompatError(f"`compat train {self.method_name}` needs exactly one --old run "
                              f"(got {len(self.old_models)}). Pass --old RUN_DIR.")
        return self.old_models[0]

    def model_spec(self, **overrides: Any):
        """The :class:`ModelSpec` of the new model from the common flags (classes of the training data, the
        method's name, the old models, what it trains on); ``overrides`` set fields (``dim_policy``, ``extra``,
        ``embedding_dim``). For a method whose deployed model is not a plain ``EmbeddingModel``."""
        from compat_core.models.embedding import ModelSpec

        cfg = self.config
        spec = ModelSpec.from_options(
            backbone=cfg.backbone, embedding_dim=cfg.embedding_dim, classes=self.data.classes, head=cfg.head,
            head_scale=cfg.head_scale, head_margin=cfg.head_margin, image_size=cfg.image_size,
            method=self.method_name, old_model=[m.source for m in self.old_models] or None,
            trained_on={"data": cfg.data, "split": cfg.split, "classes": cfg.classes,
                        "num_images": len(self.data)})
        preferred = getattr(self.data, "preferred_input", None) or {}
        for key in ("mean", "std"):  # a format's own normalisation (RecordIO faces) beats ImageNet's
            if key in preferred:
                spec.input[key] = list(preferred[key])
        for key, value in overrides.items():
            setattr(spec, key, value)
        return spec

    def build_model(self, **overrides: Any):
        """The new :class:`EmbeddingModel` from the common flags (seeded, on the device)."""
        from compat_core.models.embedding import EmbeddingModel

        return EmbeddingModel(self.model_spec(**overrides), backbone_weights=self.config.backbone_weights).to(
            self.device)


class Method(nn.Module):
    """Base class of training methods.

    Subclasses set ``config_class`` and implement :meth:`forward` (or set ``fits_once`` and implement
    :meth:`fit`). Optional: :meth:`on_epoch_start`, :meth:`on_epoch_end`, :meth:`epoch_warnings`, :meth:`param_groups`,
    :meth:`export`.

    ``forward`` returns named scalars: ``total`` (what is backpropagated), the loss terms that make it up
    (logged per epoch under ``loss``), and the names listed in ``scalars``, logged under ``scalars`` and
    never mistaken for losses (a queue's fill, a credible ratio). A name may be missing on some steps or
    processes: each is averaged over the steps that returned it.

    Example:
        >>> class MyMethod(Method):
        ...     def __init__(self, config, ctx):
        ...         super().__init__(config, ctx)
        ...         self.model = ctx.build_model()
        ...     def forward(self, batch):
        ...         out = self.model(batch.images, batch.targets)
        ...         ce = torch.nn.functional.cross_entropy(out.logits, batch.targets)
        ...         return {"total": ce, "ce": ce}
    """

    config_class: type[MethodConfig] = MethodConfig
    model: nn.Module
    #: Set True when some trainable parameters get no gradient in some steps (DDP must then search
    #: the graph for them every step, which costs time).
    find_unused_parameters: bool = False
    #: False when the method never reads ``ctx.old_models`` (``baseline``): an ``--old`` given to it is then
    #: reported as ignored. None: unknown, nothing is said.
    uses_old_model: bool | None = None
    #: Names in ``forward``'s result that are logged-only values, not loss terms.
    scalars: tuple[str, ...] = ()
    #: Buffers (names as in ``named_buffers()``) that DDP must not broadcast from rank 0 before every
    #: forward: state each process keeps itself, identical by construction (a queue filled from
    #: gathered batches). They are checkpointed like every buffer.
    local_buffers: tuple[str, ...] = ()
    #: Buffers broadcast from rank 0 once per epoch, right after :meth:`on_epoch_start`, instead of every
    #: step (a feature table the method rebuilds at the start of an epoch).
    synced_buffers: tuple[str, ...] = ()
    #: True for a method that fits itself in one call of :meth:`fit` (a closed-form map between two frozen
    #: spaces, a short fit on cached embeddings) instead of epochs of batches: the engine then builds no
    #: optimizer, runs no epochs, writes ``fit``'s record as the run's history and exports the model.
    fits_once: bool = False

    def __init__(self, config: MethodConfig, ctx: MethodContext):
        super().__init__()
        self.config = config
        self.ctx = ctx
        #: Lines the engine prints once when training starts (rank 0 only): what the method found in
        #: its inputs that the user should know, e.g. an old classifier that mislabels old embeddings.
        self.notes: list[str] = []

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch (0-based) on every process, also after a resume."""

    def on_epoch_end(self, epoch: int) -> None:
        """Called after each epoch, before the checkpoint is written."""

    def epoch_warnings(self, epoch: int, means: Mapping[str, float]) -> list[str]:
        """Warnings about the epoch just trained, from its mean terms and scalars (the same on every process).

        The engine prints each on stderr (rank 0) and keeps them in the epoch's history record under
        ``warnings``, so a study can point at the runs that had them. For a state in which the method
        silently stops doing what it is for (a discriminator whose output no longer depends on its input).
        """
        return []

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; override to give a module its own lr (e.g. a discriminator)."""
        return default_param_groups(self, lr, weight_decay)

    def fit(self) -> dict[str, Any]:
        """Fit the method in one call (only when ``fits_once``); returns a JSON-safe record of the fit whose
        ``loss`` (the fit's objective) becomes the run's one history entry's ``loss.total``."""
        raise NotImplementedError

    def export(self) -> nn.Module:
        """The deployable model written to the run directory (the new embedding model by default)."""
        return self.model


def default_param_groups(module: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights only: biases, norm parameters and scalars are not decayed."""
    decay, no_decay = [], []
    for param in module.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lr": lr})
    return groups

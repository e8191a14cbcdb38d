"""Step 3: the method. ``__init__`` builds what is trained (``ctx.build_model()``) and what is fixed (the
old prototypes, from core's old-space toolkit); ``forward`` turns a batch into named terms with ``total``.

The rules it follows (core/TUTORIAL.md explains each):

* frozen models stay ``OldModel`` objects (never sub-modules): they are not optimised or checkpointed;
* state that ``--resume`` must find is a registered buffer (here the prototypes, so a resumed run does
  not recompute them from a possibly changed old model);
* term names are short and stable (they become history.jsonl keys); ``scalars`` lists logged-only values;
* nothing depends on the process: under ``torchrun`` every process computes the same prototypes.
"""

import torch
import torch.nn.functional as F
from compat_core.losses import cross_entropy_terms
from compat_core.methods.base import Batch, Method, MethodContext
from compat_core.old_space import OldEmbeddings, align_dim, check_dims, class_means

from compat_protopull.config import ProtoPullConfig


class ProtoPull(Method):
    """``CE + pull_weight * mean_i (1 - cos(f_i, p_{y_i}))`` with ``p_c`` the normalised mean of the old
    model's normalised embeddings of class c (classes the old model never saw included: their images
    still have old embeddings)."""

    config_class = ProtoPullConfig
    scalars = ("cosine",)

    def __init__(self, config: ProtoPullConfig, ctx: MethodContext):
        super().__init__(config, ctx)
        old = OldEmbeddings(ctx.old_model, config.old_features, ctx.data, augment=ctx.config.augment,
                            per_sample=False, method=ctx.method_name)  # only class means are read
        self.model = ctx.build_model(dim_policy=None if config.dim_policy == "error" else config.dim_policy)
        self.old_dim = old.dim
        check_dims(self.model.embedding_dim, self.old_dim, config.dim_policy, ctx.method_name)
        features = old.of_dataset(ctx.data)
        labels = torch.as_tensor(ctx.data.labels, dtype=torch.long, device=features.device)
        means, counts = class_means(features, labels, len(ctx.data.classes))
        self.register_buffer("prototypes", F.normalize(means, dim=1).cpu())
        self.notes.append(f"protopull: {int((counts > 0).sum())} class prototypes from the old model")

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.model(batch.images, batch.targets)
        ce = cross_entropy_terms(out.logits, batch.targets, self.ctx.config.label_smoothing)["ce"]
        aligned = align_dim(out.embedding, self.old_dim, self.config.dim_policy)
        cosine = F.cosine_similarity(aligned.float(), self.prototypes[batch.targets], dim=1)
        pull = (1 - cosine).mean()
        return {"total": ce + self.config.pull_weight * pull, "ce": ce, "pull": pull,
                "cosine": cosine.detach().mean()}

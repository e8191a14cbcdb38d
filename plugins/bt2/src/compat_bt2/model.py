"""The BT^2 model: a backbone feature of size d + d_old, two orthogonal basis transformations, and the
deployed embedding ``[bct ; extra]`` of size d + a whose first d_old dimensions are the old-compatible part.

With ``h`` the backbone's feature projected to d + d_old dimensions::

    u = fc3(ReLU(h)) in R^d_old,   v = n(h[:, :d]) in R^d            (v: the new model's own feature)
    z = [ n(u[:, :a]) ; O_new(C v) ] in R^(a + d)                   (O_new orthogonal d x d)
    bct = O_old(z[:, :d_old]),      extra = z[:, d_old:]               (O_old orthogonal d_old x d_old)
    embedding = [bct ; extra] in R^(d + a),   logits = head(v)

Both transformations are orthogonal (torch's ``orthogonal`` parametrisation), so the embedding's norm is
``sqrt(1 + C^2)`` for every image. ``model.json`` records ``dim_policy: truncate``: every evaluator compares a
BT^2 query with an old gallery on the first d_old dimensions and two BT^2 embeddings on all of them.

Example:
    >>> spec = bt2_spec(ModelSpec(backbone="test_resnet", embedding_dim=16, num_classes=3, classes=list("abc")),
    ...                 d=16, d_old=8, add=4, scale_c=2.0)
    >>> BT2Model(spec).embed(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape
    torch.Size([2, 20])
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from compat_core.errors import CompatError
from compat_core.models.backbone import create_backbone
from compat_core.models.embedding import ModelOutput, ModelSpec, Preprocess
from compat_core.models.heads import build_head
from compat_core.models.run import WEIGHTS, read_spec, read_weights, run_loader
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

LOADER = "compat_bt2.model:load_bt2_run"


def bt2_spec(spec: ModelSpec, *, d: int, d_old: int, add: int, scale_c: float) -> ModelSpec:
    """``spec`` made a BT^2 spec: embedding d + a, the first d_old dims old-compatible (``truncate``)."""
    if add > d_old or d + add < d_old:
        raise CompatError(f"`compat train bt2`: with new dimension d = {d} and old dimension {d_old}, --add-dim "
                          f"{add} must lie in [{max(0, d_old - d)}, {d_old}] (the old-compatible part takes the "
                          f"first {d_old} of the d + a dimensions).")
    spec.embedding_dim = d + add
    spec.dim_policy = "truncate"
    spec.extra = {**spec.extra, "bt2": {"d": d, "d_old": d_old, "add": add, "scale_c": scale_c}}
    return spec


class BT2Model(nn.Module):
    """The trained BT^2 model; ``embed`` gives the deployed ``[bct ; extra]``, ``parts`` every piece."""

    run_loader = LOADER
    head = None  # the classifier scores v, not the deployed embedding: evaluators must not feed it embeddings

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        cfg = spec.extra["bt2"]
        self.d, self.d_old, self.add, self.scale_c = cfg["d"], cfg["d_old"], cfg["add"], float(cfg["scale_c"])
        self.preprocess = Preprocess(spec.input["size"], spec.input["mean"], spec.input["std"])
        self.backbone = create_backbone(spec.backbone)
        spec.feature_dim = int(self.backbone.num_features)
        self.projection = nn.Linear(spec.feature_dim, self.d + self.d_old)
        self.fc3 = nn.Linear(self.d + self.d_old, self.d_old)
        self.rotate_new = orthogonal(nn.Linear(self.d, self.d, bias=False))
        self.rotate_old = orthogonal(nn.Linear(self.d_old, self.d_old, bias=False))
        self.classifier = build_head(spec.head["type"], self.d, spec.num_classes, spec.head.get("scale"),
                                     spec.head.get("margin"))

    @property
    def embedding_dim(self) -> int:
        return self.d + self.add

    def parts(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``logits`` (of v, with the head's margin when ``targets`` are given), ``bct``, ``v``, ``embedding``."""
        h = self.projection(self.backbone(self.preprocess(images)))
        u = self.fc3(F.relu(h))
        v = F.normalize(h[:, :self.d], dim=1)
        z = torch.cat([F.normalize(u[:, :self.add], dim=1), self.rotate_new(self.scale_c * v)], dim=1)
        bct = self.rotate_old(z[:, :self.d_old])
        return {"logits": self.classifier(v, targets), "bct": bct, "v": v,
                "embedding": torch.cat([bct, z[:, self.d_old:]], dim=1)}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.parts(images)["embedding"]

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> ModelOutput:
        parts = self.parts(images, targets)
        return ModelOutput(parts["embedding"], parts["logits"])


@run_loader
def load_bt2_run(run_dir: str | Path, device: str = "cpu") -> BT2Model:
    """Rebuild a BT^2 run's model (``model.json`` names this loader)."""
    run_dir = Path(run_dir)
    model = BT2Model(read_spec(run_dir))
    state = read_weights(run_dir / WEIGHTS)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CompatError(f"{run_dir / WEIGHTS} does not match the BT^2 model its model.json describes "
                          f"({str(exc).splitlines()[0][:200]}). Restore both files from the same run, or "
                          f"retrain.") from None
    return model.to(device)

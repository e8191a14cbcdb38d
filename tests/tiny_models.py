"""Tiny frozen models, datasets and a DDP-vs-one-process runner shared by the tests (importable from every
test folder: pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch
from compat_core.data.base import ArrayDataset
from compat_core.models.embedding import EmbeddingModel, ModelSpec
from compat_core.models.heads import head_settings
from compat_core.models.old import OldModel
from torch import nn


class FlatBackbone(nn.Module):
    num_features = 6

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 6)

    def forward(self, x):
        return self.fc(x.flatten(1))


def make_old(classes, head="linear", dim=3) -> OldModel:
    """A seeded 4x4-input old model with a ``head`` classifier over ``classes``."""
    torch.manual_seed(0)
    spec = ModelSpec(backbone="flat", embedding_dim=dim, num_classes=len(classes), classes=list(classes),
                     head=head_settings(head, None, None), input={"size": 4, "channels": 3,
                                                                  "mean": [0.5] * 3, "std": [0.5] * 3})
    return OldModel(EmbeddingModel(spec, backbone=FlatBackbone()), "old-run")


def make_data(classes=("0", "1", "2"), per_class=4) -> ArrayDataset:
    gen = torch.Generator().manual_seed(3)
    n = per_class * len(classes)
    images = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=gen)
    labels = np.repeat(np.arange(len(classes)), per_class)
    return ArrayDataset(images, labels, list(classes), 4)


def train_ddp_and_single(args: list[str], tmp_path) -> tuple[dict, dict]:
    """``compat ARGS`` under ``torchrun --nproc_per_node 2`` (gloo) and in one process; asserts both exported
    weights agree to 1e-4 of each tensor's scale (float summation order is the only difference for a method
    that gathers what it compares) and returns both state dicts."""
    from safetensors.torch import load_file

    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    for cmd in ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                 "compat_cli.main", *args, "--out", str(tmp_path / "ddp")],
                [sys.executable, "-m", "compat_cli.main", *args, "--out", str(tmp_path / "one")]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ddp, one = (load_file(tmp_path / name / "model.safetensors") for name in ("ddp", "one"))
    assert ddp.keys() == one.keys()
    for key, value in one.items():
        scale = max(float(value.abs().max()), 1e-3)
        assert float((ddp[key] - value).abs().max()) <= 1e-4 * scale, key
    return ddp, one

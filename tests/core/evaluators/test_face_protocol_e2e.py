"""The MixBCT repository's face protocol end to end, as a user runs it (docs/face-protocol.md), on a tiny
synthetic RecordIO face set and a tiny IJB-C folder: the open-class split, an old IResNet-style model on
class30 with the old recipe preset, a new model with each of the six methods on class70 with the new
recipe preset, and `compat eval ijbc` self and cross (old model on the gallery side) from the models.

The tiny sizes replace the presets' IResNet-50/18 at 112 px (`--backbone test_iresnet --image-size 32`),
35 epochs and batch 1024 on the command line, exactly as a flag overrides any preset value."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from ijbc_fixtures import make_ijbc
from recordio_files import encode, faces, pack, write_rec

pytestmark = pytest.mark.slow

TINY = ["--backbone", "test_iresnet", "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--no-amp",
        "--device", "cpu"]
METHODS = {"mixbct": [], "nccl": ["--queue-size", "64"], "unibct": ["--refine-epochs", "0"], "advbct": [],
           "bct": [], "l2": []}


def compat(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    proc = subprocess.run([sys.executable, "-m", "compat_cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, f"compat {' '.join(map(str, args))}:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def face_protocol(tmp_path_factory):
    root = tmp_path_factory.mktemp("face-protocol")
    identities, per_identity = 10, 6
    images = faces(identities * per_identity, seed=11)
    labels = np.repeat(np.arange(identities), per_identity)
    records = [(0, pack([len(labels) + 1.0, len(labels) + 1.0 + identities], b""))]
    records += [(k + 1, pack([float(label), 0.0], encode(images[k]))) for k, label in enumerate(labels)]
    rec = write_rec(root / "ms1m-tiny", records)
    ijbc = make_ijbc(root / "IJBC", subjects=8, seed=2)
    compat("data", "split", rec, "--scenario", "open-class", "--out", root / "split.json")
    compat("train", "baseline", "--preset", "mixbct-face-old", *TINY, "--data", rec, "--classes",
           f"@{root / 'split.json'}:old", "--out", root / "old")
    return root, rec, ijbc


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_method_trains_on_class70_and_is_scored_self_and_cross_on_ijbc(method, face_protocol):
    root, rec, ijbc = face_protocol
    new = root / f"new-{method}"
    compat("train", method, "--preset", "mixbct-face", *TINY, *METHODS[method], "--data", rec, "--classes",
           f"@{root / 'split.json'}:new", "--old", root / "old", "--out", new)
    spec = json.loads((new / "model.json").read_text())
    assert spec["head"]["type"] == "arcface" and spec["embedding_dim"] is None and spec["num_classes"] == 7
    for mode, extra in (("self", []), ("cross", ["--old-model", root / "old"])):
        out = root / f"{method}-{mode}.json"
        compat("eval", "ijbc", "--root", ijbc.root, "--model", new, *extra, "-N", "--device", "cpu", "--json", out)
        result = json.loads(out.read_text())
        assert result["mode"] == mode
        tar = result["verification"]["tar_at_far"]
        assert all(0.0 <= value <= 1.0 for value in tar.values())
        assert set(result["identification"]) >= {"G1", "G2"}

"""The fault-injection table: for each command and each fault of its files and folders, exit code 2 (130
for Ctrl-C), no traceback, a message naming the file, and every file that existed before byte-identical.

Rows are run by :func:`compat_core.testing.faults.check_fault`, in a fresh interpreter each; every
registered training method gets the standard rows (``train_fault_cases``) for free.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from compat_core.config import TrainConfig
from compat_core.engine import train
from compat_core.features import features_of, save
from compat_core.methods.configs import BaselineConfig
from compat_core.plugins import get_host
from compat_core.testing.faults import TINY_TRAIN, FaultCase, check_fault, train_fault_cases, weights_of

TINY = dict(data="digits", backbone="test_resnet", image_size=8, embedding_dim=8, batch_size=64, device="cpu",
            epochs=1, augment="none")
RUN = "{work}/run"
EVAL = ["eval", "retrieval", "--data", "digits", "--split", "test"]

CASES = [
    # training: its inputs, its output, its checkpoint, interruptions
    FaultCase("train-config-binary", ["train", "baseline", "--config", "{config}", "--out", RUN], "binary",
              "{config}"),
    FaultCase("train-config-empty-out-read-only", ["train", "baseline", *TINY_TRAIN, "--out", "{work}/ro/run"],
              "read-only", "{work}/ro", names=("ro/run",)),
    FaultCase("train-old-other-model", ["train", "bct", *TINY_TRAIN, "--old", "{old}", "--out", RUN], "other-model",
              "{old}", names=("model.safetensors",)),
    FaultCase("train-resume-corrupt-checkpoint", ["train", "baseline", "--config", "{old}/config.yaml",
                                                 "--epochs", "2", "--out", "{old}", "--resume"], "corrupt",
              "{old}/checkpoint/state.pt"),
    FaultCase("train-resume-truncated-checkpoint", ["train", "baseline", "--config", "{old}/config.yaml",
                                                   "--epochs", "2", "--out", "{old}", "--resume"], "truncated",
              "{old}/checkpoint/state.pt"),
    FaultCase("train-ctrl-c-after-an-epoch", ["train", "baseline", *TINY_TRAIN, "--epochs", "50", "--out", RUN],
              "sigint", RUN, names=("--resume", "after epoch"), trigger="{work}/run/checkpoint/state.pt"),
    FaultCase("train-overwrite-ctrl-c-keeps-the-old-run",
              ["train", "baseline", *TINY_TRAIN, "--epochs", "50", "--seed", "5", "--out", "{old}", "--overwrite"],
              "sigint", "{old}", names=("kept as it was", "--overwrite"), trigger="{old}/.overwrite/config.yaml"),
    FaultCase("train-overwrite-killed-keeps-the-old-run",
              ["train", "baseline", *TINY_TRAIN, "--epochs", "50", "--seed", "5", "--out", "{old}", "--overwrite"],
              "sigkill", "{old}", names=(), trigger="{old}/.overwrite/config.yaml"),
    # features
    FaultCase("features-extract-out-read-only", ["features", "extract", "--model", "{old}", "--data", "digits",
                                                "--out", "{work}/ro/f.npz"], "read-only", "{work}/ro",
              names=("ro/f.npz",)),
    FaultCase("features-extract-out-full-disk", ["features", "extract", "--model", "{old}", "--data", "digits",
                                                "--out", "{work}/full/f.npz"], "full-disk", "{work}/full",
              names=("No space left on device",)),
    FaultCase("features-extract-model-truncated", ["features", "extract", "--model", "{old}", "--data", "digits",
                                                  "--out", "{work}/f.npz"], "truncated", "{old}/model.safetensors"),
    FaultCase("features-info-truncated", ["features", "info", "{feats}"], "truncated", "{feats}"),
    FaultCase("features-info-not-a-zip", ["features", "info", "{feats}"], "corrupt", "{feats}"),
    FaultCase("features-class-means-nan", ["features", "class-means", "{feats}", "--out", "{work}/m.npz"], "nan",
              "{feats}"),
    # evaluation
    FaultCase("eval-retrieval-query-nan", [*EVAL, "--query", "{feats}", "--gallery", "{feats}"], "nan", "{feats}"),
    FaultCase("eval-retrieval-query-empty", [*EVAL, "--query", "{feats}", "--gallery", "{old}"], "empty",
              "{feats}"),
    FaultCase("eval-retrieval-gallery-truncated", [*EVAL, "--query", "{feats}", "--gallery", "{old}"],
              "truncated", "{old}/model.safetensors"),
    FaultCase("eval-retrieval-json-read-only", [*EVAL, "--query", "{old}", "--gallery", "{old}", "--json",
                                               "{work}/ro/r.json"], "read-only", "{work}/ro", names=("ro/r.json",)),
    FaultCase("eval-regression-new-spec-binary", ["eval", "regression", "--data", "digits", "--split", "test",
                                                 "--old", "{old}", "--new", "{old}"], "binary", "{old}/model.json"),
    # indexes
    FaultCase("index-build-features-truncated", ["index", "build", "--features", "{feats}", "--out", "{work}/idx"],
              "truncated", "{feats}"),
    FaultCase("index-build-out-read-only", ["index", "build", "--features", "{feats}", "--out", "{work}/ro/idx"],
              "read-only", "{work}/ro", names=("ro/idx",)),
    FaultCase("index-build-features-nan", ["index", "build", "--features", "{feats}", "--out", "{work}/idx"], "nan",
              "{feats}"),
    # runs
    FaultCase("runs-show-history-binary", ["runs", "show", "{old}"], "binary", "{old}/history.jsonl"),
    FaultCase("runs-show-config-binary", ["runs", "show", "{old}"], "binary", "{old}/config.yaml"),
    FaultCase("runs-diff-config-binary", ["runs", "diff", "{old}", "{other}"], "binary", "{other}/config.yaml"),
    # studies
    FaultCase("study-run-out-read-only", ["study", "run", "{study}", "--out", "{work}/ro/study"], "read-only",
              "{work}/ro", names=("ro/study",)),
    FaultCase("study-file-binary", ["study", "run", "{study}", "--out", "{work}/study"], "binary", "{study}"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fault-inputs")
    old = train("baseline", TrainConfig(**TINY, out=str(root / "old"), seed=1), BaselineConfig()).run_dir
    other = train("baseline", TrainConfig(**{**TINY, "embedding_dim": 12}, out=str(root / "other"), seed=2),
                  BaselineConfig()).run_dir
    feats = root / "feats.npz"
    save(feats, features_of(str(old), data="digits", split="test"))
    config = root / "config.yaml"
    config.write_text("data: digits\nbackbone: test_resnet\nepochs: 1\n")
    study = root / "study.yaml"
    study.write_text("name: tiny\ndata: digits\nold: {classes: 0-4}\nnew: {}\nmethods:\n  independent: {method: "
                     "baseline, reference: true, old_model: false}\nseeds: {old: [1], new: [2]}\n")
    return {"old": old, "other": other, "feats": feats, "config": config, "study": study}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_fault(case, tmp_path, inputs):
    check_fault(case, tmp_path, inputs, faults={"other-model": weights_of(inputs["other"])})


def _method_rows() -> list[FaultCase]:
    extra = {"fct": ("--new", "{old}"), "fastfill": ("--new", "{old}"), "adapter": ("--new", "{old}"),  # need more than --old
             "elodi": ("--recipe", "ldi"), "bt2": ("--new-prime", "{old}", "--add-dim", "4"),
             "unibct": ("--refine-epochs", "0")}
    rows = []
    for entry in get_host().methods:
        needs_old = entry.name != "baseline"
        rows += train_fault_cases(entry.name, extra.get(entry.name, ()), needs_old=needs_old)
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("case", _method_rows(), ids=lambda case: case.id)
def test_every_method_ends_faults_well(case, tmp_path, inputs):
    check_fault(case, tmp_path, {"old": inputs["old"]})

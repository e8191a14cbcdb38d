"""Per-epoch validation and --keep best, --resume with a larger --epochs (extension), and --overwrite that
replaces a run only once the new run's first epoch is saved."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from compat_core.config import TrainConfig
from compat_core.data import open_dataset
from compat_core.data.selection import make_split
from compat_core.engine import TrainingInterrupted, loop, train
from compat_core.engine.validation import EpochValidator, resolve_val_split
from compat_core.errors import CompatError
from compat_core.io import write_json
from compat_core.methods.configs import BaselineConfig
from compat_core.models.run import load_model
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("split") / "split.json"
    write_json(path, make_split(open_dataset("digits", "train", 8), 0.5, seed=0, validation=0.2))
    return path


def _config(out: Path, split: Path | None = None, **overrides) -> TrainConfig:
    values = dict(data="digits", out=str(out), backbone="test_resnet", embedding_dim=8, image_size=8, epochs=3,
                  batch_size=64, lr=0.05, augment="none", device="cpu", seed=1)
    if split is not None:
        values["split"] = f"@{split}:train"
    values.update(overrides)
    return TrainConfig(**values)


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_val_split_follows_the_holdout_by_default(split):
    assert resolve_val_split(_config(Path("r"), split)) == f"@{split}:val"
    assert resolve_val_split(_config(Path("r"))) is None
    assert resolve_val_split(_config(Path("r"), split, val_split="none")) is None
    assert resolve_val_split(_config(Path("r"), val_split="test")) == "test"


def test_every_epoch_is_scored_on_validation_without_changing_the_weights(tmp_path, split):
    scored = train("baseline", _config(tmp_path / "scored", split), BaselineConfig())
    plain = train("baseline", _config(tmp_path / "plain", split, val_split="none"), BaselineConfig())
    assert _same(_weights(scored.run_dir), _weights(plain.run_dir))  # scoring draws no random numbers
    records = _history(scored.run_dir)
    assert all(r["val"]["metric"] == "accuracy" and r["val"]["split"] == f"@{split}:val" for r in records)
    assert "val" not in _history(plain.run_dir)[0]
    # the last epoch's number is the accuracy of the saved model on the val part, computed independently
    model = load_model(scored.run_dir)
    val = open_dataset("digits", f"@{split}:val", 8)
    assert len(val) + 861 == len(open_dataset("digits", "train", 8))  # the holdout part the run never saw
    with torch.no_grad():
        logits = model(val.load_images(np.arange(len(val)))).logits
    expected = float((logits.argmax(1).numpy() == np.asarray(val.labels)).mean())
    assert records[-1]["val"]["value"] == pytest.approx(expected, abs=1e-6)


def test_keep_best_keeps_the_weights_of_the_best_epoch(tmp_path, split, monkeypatch):
    values = iter([0.5, 0.9, 0.7])  # epoch 2 is the best
    monkeypatch.setattr(EpochValidator, "__call__", lambda self, model: {"split": self.split, "metric": "top1",
                                                                        "value": next(values)})
    states = []
    original = loop._Trainer._validate

    def record_weights(self, record):
        original(self, record)
        states.append({k: v.clone() for k, v in self.method.export().state_dict().items()})

    monkeypatch.setattr(loop._Trainer, "_validate", record_weights)
    result = train("baseline", _config(tmp_path / "run", split, keep="best"), BaselineConfig())
    kept = _weights(result.run_dir)
    assert all(torch.equal(kept[k], states[1][k]) for k in kept)
    assert not all(torch.equal(kept[k], states[2][k]) for k in kept)
    spec = json.loads((result.run_dir / "model.json").read_text())
    assert spec["extra"]["kept_epoch"]["epoch"] == 2 and spec["extra"]["kept_epoch"]["value"] == 0.9
    assert [bool(r["val"].get("best")) for r in _history(result.run_dir)] == [True, True, False]


def test_keep_best_without_a_validation_split_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(CompatError, match="--keep best"):
        train("baseline", _config(tmp_path / "run", keep="best"), BaselineConfig())
    assert not (tmp_path / "run").exists()


def test_old_metrics_need_an_old_model(tmp_path, split):
    with pytest.raises(CompatError, match="--old"):
        train("baseline", _config(tmp_path / "run", split, val_metric="old-top1"), BaselineConfig())


def test_resume_with_more_epochs_extends_the_run(tmp_path):
    run = tmp_path / "run"
    train("baseline", _config(run, epochs=2), BaselineConfig())
    finished = _weights(run)
    result = train("baseline", _config(run, epochs=4), BaselineConfig(), resume=True)
    records = _history(run)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4] and records[-1]["epochs"] == 4
    assert records[2]["lr"] > records[1]["lr"]  # the lr follows the 4-epoch cosine, not the finished one's 0
    assert not _same(finished, _weights(result.run_dir))
    assert "epochs: 4" in (run / "config.yaml").read_text()
    with pytest.raises(CompatError, match="cannot be shortened"):
        train("baseline", _config(run, epochs=3), BaselineConfig(), resume=True)


def test_an_extended_run_killed_and_resumed_ends_like_one_that_was_not(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    for run in (first, second):
        train("baseline", _config(run, epochs=1), BaselineConfig())
    train("baseline", _config(first, epochs=3), BaselineConfig(), resume=True)
    original, calls = loop._Trainer._step, {"n": 0}

    def dies_in_epoch_3(self, batch):
        if batch.epoch == 2 and calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += batch.epoch == 2
        return original(self, batch)

    monkeypatch.setattr(loop._Trainer, "_step", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train("baseline", _config(second, epochs=3), BaselineConfig(), resume=True)
    monkeypatch.setattr(loop._Trainer, "_step", original)
    train("baseline", _config(second, epochs=3), BaselineConfig(), resume=True)
    assert _same(_weights(first), _weights(second))


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_overwrite_keeps_the_previous_run_until_the_new_one_has_an_epoch(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train("baseline", _config(run, epochs=1), BaselineConfig())
    (run / "retrieval.json").write_text("{}")  # an evaluation the user wrote next to the run
    before = _snapshot(run)
    original = loop._Trainer._step

    def interrupted(self, batch):
        if batch.step == 3:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(loop._Trainer, "_step", interrupted)
    with pytest.raises(TrainingInterrupted) as caught:
        train("baseline", _config(run, epochs=2, seed=9), BaselineConfig(), overwrite=True)
    assert caught.value.kept_previous
    assert _snapshot(run) == before  # nothing of the previous run lost, nothing of the new one left

    monkeypatch.setattr(loop._Trainer, "_step", original)
    train("baseline", _config(run, epochs=2, seed=9), BaselineConfig(), overwrite=True)
    assert "seed: 9" in (run / "config.yaml").read_text() and len(_history(run)) == 2
    assert (run / "retrieval.json").read_text() == "{}"  # not the new run's file: kept
    assert not (run / ".overwrite").exists() and not (run / ".replaced").exists()
    assert (run / "model.safetensors").read_bytes() != before["model.safetensors"]


def test_overwrite_that_fails_in_its_first_epoch_keeps_the_previous_run(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train("baseline", _config(run, epochs=1), BaselineConfig())
    before = _snapshot(run)
    monkeypatch.setattr(loop._Trainer, "_step", lambda self, batch: {"total": torch.tensor(float("nan"))})
    with pytest.raises(CompatError, match="NaN"):
        train("baseline", _config(run, epochs=1, seed=9), BaselineConfig(), overwrite=True)
    assert _snapshot(run) == before

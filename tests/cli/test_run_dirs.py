"""Run directories without dead ends: a run stopped before its first checkpoint is simply trained again
(with or without --resume), and Ctrl-C says what was kept and the exact command that continues."""

import os
import signal
import subprocess
import sys
import time

import pytest
from cli_runner import compat

TRAIN = ["train", "baseline", "--data", "digits", "--backbone", "test_resnet", "--image-size", "8",
         "--embedding-dim", "8", "--device", "cpu"]


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_stopped_before_its_first_checkpoint_is_trained_again(tmp_path, resume):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("data: digits\n")  # what a run killed in its first epoch leaves
    (out / "history.jsonl").write_text('{"epoch": 1, "partial": true}\n')
    proc = compat(*TRAIN, "--epochs", "1", "--out", out, *(["--resume"] if resume else []))
    assert (out / "model.safetensors").is_file()
    assert len((out / "history.jsonl").read_text().splitlines()) == 1 and "partial" not in (
        out / "history.jsonl").read_text()
    if resume:
        assert "from the start" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_ctrl_c_names_what_was_kept_and_the_command_that_continues(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "compat_cli.main", *TRAIN, "--epochs", "30", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    checkpoint = out / "checkpoint" / "state.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "keeps the checkpoint after epoch" in stderr
    assert f"--out {out} --resume" in stderr.replace("\n", " ")
    resumed = compat(*TRAIN, "--epochs", "30", "--out", out, "--resume")
    assert resumed.returncode == 0 and (out / "model.safetensors").is_file()


def test_an_output_that_is_an_input_is_refused_and_kept(tmp_path):
    from cli_runner import assert_user_error

    old = tmp_path / "old"
    compat(*TRAIN, "--epochs", "1", "--out", old)
    before = {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()}
    proc = compat("train", "l2", *TRAIN[2:], "--epochs", "1", "--old", old, "--out", old, "--overwrite", check=False)
    assert_user_error(proc, "is also an input of this run", "Choose another --out")
    assert {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()} == before


def test_a_moved_run_can_be_resumed(tmp_path, monkeypatch):
    import shutil

    from compat_core.config import TrainConfig
    from compat_core.engine import loop, train
    from compat_core.methods.configs import BaselineConfig

    first = tmp_path / "first"
    values = dict(data="digits", backbone="test_resnet", image_size=8, embedding_dim=8, device="cpu", epochs=2)
    original = loop._Trainer._train_epoch

    def stop_in_second(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(loop._Trainer, "_train_epoch", stop_in_second)
    with pytest.raises(KeyboardInterrupt):
        train("baseline", TrainConfig(out=str(first), **values), BaselineConfig())
    monkeypatch.setattr(loop._Trainer, "_train_epoch", original)
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(first), moved)
    train("baseline", TrainConfig(out=str(moved), **values), BaselineConfig(), resume=True)
    assert (moved / "model.safetensors").is_file()


def test_ignored_and_overridden_options_are_warned_about(tmp_path):
    old = tmp_path / "old"
    compat(*TRAIN, "--epochs", "1", "--out", old)
    proc = compat(*TRAIN, "--epochs", "1", "--old", old, "--set", "lr=0.01", "--lr", "0.05", "--out", tmp_path / "b")
    assert "warning: --set lr=0.01 is overridden by the flag --lr 0.05" in proc.stderr
    assert f"warning: --old {old} is ignored: baseline trains without an old model" in proc.stderr

"""Bad input ends with exit code 2, one message naming the problem, no traceback, nothing lost.

Most cases run ``compat_cli.main.main(argv)`` in-process; a few run the real console script.
None of them gets as far as training.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from compat_cli.main import main
from compat_core.plugins import reset_host

COMPAT = Path(sys.executable).with_name("compat")
TRAIN = ["train", "baseline", "--data", "digits", "--backbone", "test_resnet", "--epochs", "1"]
RUN_FILES = ("model.safetensors", "model.json", "config.yaml", "history.jsonl", "checkpoint")


@pytest.fixture(autouse=True)
def fresh_host(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reset_host(None)
    yield
    reset_host(None)


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    captured = capsys.readouterr()
    return excinfo.value.code, captured.out + captured.err


def run_subprocess(args: list[str], cwd: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "COMPAT_LOAD_PLUGINS"}
    result = subprocess.run([str(COMPAT), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    return result.returncode, result.stdout + result.stderr


def assert_user_error(code: int, output: str, *fragments: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output
    for fragment in fragments:
        assert fragment in output, output


def assert_no_run(path: Path) -> None:
    assert not any((path / name).exists() for name in RUN_FILES)


# -- in a subprocess -------------------------------------------------------------------------------
def test_unknown_set_key_subprocess(tmp_path):
    code, output = run_subprocess([*TRAIN, "--out", "X", "--set", "lrr=0.1"], tmp_path)
    assert_user_error(code, output, "unknown option 'lrr'", "Did you mean 'lr'?")
    assert output.count("error:") == 1
    assert not (tmp_path / "X").exists()


def test_eval_retrieval_missing_inputs_subprocess(tmp_path):
    code, output = run_subprocess(["eval", "retrieval", "--query", "/nope", "--gallery", "/nope"], tmp_path)
    assert_user_error(code, output, "/nope", "neither a .npz feature file nor a compat run directory")


# -- in-process ------------------------------------------------------------------------------------
def test_unknown_set_key_in_process(capsys, tmp_path):
    code, output = run_main([*TRAIN, "--out", "X", "--set", "lrr=0.1"], capsys)
    assert_user_error(code, output, "unknown option 'lrr'", "Did you mean 'lr'?", "compat train baseline --help")
    assert not (tmp_path / "X").exists()


def test_wrong_type_flag(capsys, tmp_path):
    code, output = run_main(["train", "baseline", "--data", "digits", "--out", "X", "--epochs", "abc"], capsys)
    assert_user_error(code, output, "'--epochs'")
    assert "integer" in output
    assert not (tmp_path / "X").exists()


def test_wrong_type_through_set(capsys, tmp_path):
    code, output = run_main([*TRAIN, "--out", "X", "--set", "batch_size=big"], capsys)
    assert_user_error(code, output, "batch_size", "'big'")
    assert not (tmp_path / "X").exists()


def test_malformed_set(capsys):
    code, output = run_main([*TRAIN, "--out", "X", "--set", "lr"], capsys)
    assert_user_error(code, output, "--set 'lr' is not key=value")


def test_missing_config_file(capsys):
    code, output = run_main([*TRAIN, "--out", "X", "--config", "nope.yaml"], capsys)
    assert_user_error(code, output, "--config nope.yaml: no such file")


def test_missing_data_path(capsys, tmp_path):
    code, output = run_main(["train", "baseline", "--data", "/nonexistent/path", "--out", "X",
                             "--backbone", "test_resnet", "--epochs", "1"], capsys)
    assert_user_error(code, output, "--data /nonexistent/path", "no such file")
    assert_no_run(tmp_path / "X")


def test_classes_outside_labels(capsys, tmp_path):
    code, output = run_main([*TRAIN, "--out", "X", "--classes", "42"], capsys)
    assert_user_error(code, output, "--classes 42", "outside the data", "labels 0-9")
    assert_no_run(tmp_path / "X")


def make_existing_run(path: Path) -> dict[str, bytes]:
    path.mkdir()
    (path / "model.json").write_text('{"format": "compat-model/1", "keep": true}\n')
    (path / "history.jsonl").write_text('{"epoch": 1}\n')
    return {p.name: p.read_bytes() for p in path.iterdir()}


def test_out_holding_a_run_is_not_touched(capsys, tmp_path):
    before = make_existing_run(tmp_path / "old")
    code, output = run_main([*TRAIN, "--out", "old"], capsys)
    assert_user_error(code, output, "--out old already holds a run", "--resume", "--overwrite")
    assert {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()} == before


def test_out_holding_other_files_is_refused(capsys, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"not really")
    code, output = run_main([*TRAIN, "--out", "photos"], capsys)
    assert_user_error(code, output, "--out photos already exists and holds other files")
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["cat.jpg"]


def test_out_is_a_file(capsys, tmp_path):
    (tmp_path / "file.txt").write_text("keep")
    code, output = run_main([*TRAIN, "--out", "file.txt"], capsys)
    assert_user_error(code, output, "--out file.txt is a file")
    assert (tmp_path / "file.txt").read_text() == "keep"


def test_overwrite_with_bad_input_keeps_the_existing_run(capsys, tmp_path):
    before = make_existing_run(tmp_path / "old")
    code, output = run_main([*TRAIN, "--out", "old", "--overwrite", "--classes", "42"], capsys)
    assert_user_error(code, output, "--classes 42")
    assert {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()} == before


@pytest.mark.parametrize("existing", [False, True])
def test_resume_without_checkpoint(capsys, tmp_path, existing):
    if existing:
        make_existing_run(tmp_path / "X")
    code, output = run_main([*TRAIN, "--out", "X", "--resume"], capsys)
    assert_user_error(code, output, "--resume: X has no checkpoint to resume", "Drop --resume")
    assert not (tmp_path / "X" / "checkpoint").exists()


def test_eval_retrieval_missing_inputs_in_process(capsys):
    code, output = run_main(["eval", "retrieval", "--query", "/nope", "--gallery", "/nope"], capsys)
    assert_user_error(code, output, "/nope is neither a .npz feature file nor a compat run directory")


def test_eval_retrieval_missing_npz(capsys):
    code, output = run_main(["eval", "retrieval", "--query", "q.npz", "--gallery", "g.npz"], capsys)
    assert_user_error(code, output, "q.npz: no such file", "compat features extract")


def test_plugins_show_unknown_method(capsys):
    code, output = run_main(["plugins", "show", "nosuchmethod"], capsys)
    assert_user_error(code, output, "unknown method 'nosuchmethod'", "baseline", "compat plugins list")


def test_features_extract_out_must_be_npz(capsys, tmp_path):
    code, output = run_main(["features", "extract", "--model", "X", "--data", "digits", "--out", "feats.txt"],
                            capsys)
    assert_user_error(code, output, "--out feats.txt must end in .npz")
    assert list(tmp_path.iterdir()) == []


def test_unknown_train_method(capsys):
    code, output = run_main(["train", "nosuchmethod", "--data", "digits", "--out", "X"], capsys)
    assert code == 2 and "Traceback" not in output
    assert "nosuchmethod" in output


@pytest.mark.parametrize("argv, fragment", [
    (["eval", "retrieval", "--data", "digits", "--query", "RUN", "--gallery", "RUN", "--json", "no/such/dir/m.json"], "does not exist"),
    (["features", "extract", "--model", "RUN", "--data", "digits", "--out", "no/such/dir/f.npz"], "does not exist"),
    (["features", "extract", "--model", "RUN", "--data", "digits", "--out", "."], "must end in .npz"),
    (["eval", "retrieval", "--data", "digits", "--query", "RUN", "--gallery", "RUN", "--json", "."], "is a folder"),
])
def test_unwritable_outputs_fail_before_the_work(capsys, tmp_path, monkeypatch, argv, fragment):
    """The output is checked before any model is loaded or any image embedded: RUN does not even exist,
    so the error must come from the output, not from the (missing) model."""
    code, output = run_main(argv, capsys)
    assert code == 2 and fragment in output and "Traceback" not in output


def test_plugins_show_prints_choices_and_plain_defaults(capsys):
    main_code = None
    try:
        main(["plugins", "show", "bct"])
    except SystemExit as exc:
        main_code = exc.code
    out = capsys.readouterr().out
    assert main_code in (None, 0)
    assert "ce|lwf" in out and "Literal" not in out and "'ce'" not in out and "None" not in out

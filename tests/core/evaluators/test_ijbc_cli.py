"""``compat eval ijbc`` and ``compat features extract --ijbc-root`` through the real CLI, on a
generated IJB-C folder with a tiny run directory (timm test_resnet at 16 px, 16-d embedding, seeded
random weights: training it would only add time, the evaluator's plumbing is what is tested).

Most calls run in-process (``compat_cli.main.main``: the same code path as the console script,
error handling included); one runs as a subprocess to check the real exit code and stderr.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from compat_cli.main import main
from compat_core.models.embedding import EmbeddingModel, ModelSpec
from compat_core.models.run import save_model
from ijbc_fixtures import make_ijbc


def compat(capsys, *args):
    """Run ``compat ARGS`` in-process: (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def user_error(capsys, *args, fragments=()):
    code, out, err = compat(capsys, *args)
    assert code == 2, out + err
    assert "Traceback" not in out + err
    text = " ".join((out + err).split())  # rich wraps long paragraphs
    for fragment in fragments:
        assert fragment in text, text
    return text


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ijbc-cli")
    fixture = make_ijbc(root / "IJBC", subjects=12, seed=4)
    run = root / "run"
    torch.manual_seed(0)
    spec = ModelSpec(backbone="test_resnet", embedding_dim=16, num_classes=0, classes=[],
                     input={"size": 16, "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3})
    save_model(EmbeddingModel(spec).eval(), run)
    return fixture, root, run


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich tables and help are not wrapped or cut


def test_help_lists_the_contract_flags(capsys):
    code, out, _ = compat(capsys, "eval", "ijbc", "--help")
    assert code == 0
    for flag in ("--root", "--target", "--model", "--features", "--old-model", "--old-features", "-N", "--one-to-n",
                 "--no-flip", "--no-detector-score", "--normalize-image-features", "--batch-size", "--workers",
                 "--align", "--json"):
        assert flag in out, flag


def test_model_and_its_feature_file_give_the_same_report(setup, capsys, tmp_path):
    fixture, _, run = setup
    by_model, by_file, feats = tmp_path / "model.json", tmp_path / "file.json", tmp_path / "ijbc.npz"
    code, out, err = compat(capsys, "eval", "ijbc", "--root", fixture.root, "--model", run, "-N", "--device", "cpu",
                            "--json", by_model)
    assert code == 0, err
    assert "1:1 verification" in out and "1:N identification" in out and "G1+G2 merged" in out
    code, _, err = compat(capsys, "features", "extract", "--model", run, "--ijbc-root", fixture.root, "--out", feats,
                          "--device", "cpu")
    assert code == 0, err
    with np.load(feats) as npz:
        assert npz["features"].shape == (len(fixture.face_template), 16)
        assert npz["labels"].tolist() == fixture.face_template.tolist() and bool(npz["flip"])
    code, _, err = compat(capsys, "eval", "ijbc", "--root", fixture.root, "--features", feats, "--one-to-n",
                          "--json", by_file)
    assert code == 0, err
    a, b = json.loads(by_model.read_text()), json.loads(by_file.read_text())
    assert a["mode"] == b["mode"] == "self"
    assert set(a) >= {"mode", "verification", "identification", "settings"}
    assert list(a["verification"]["tar_at_far"]) == ["1e-06", "1e-05", "1e-04", "1e-03", "1e-02", "1e-01"]
    assert set(a["identification"]) == {"G1", "G2", "mean", "merged"}
    assert list(a["identification"]["mean"]["tpir_at_fpir"]) == ["1e-04", "1e-03", "1e-02", "1e-01", "1e+00"]
    assert a["verification"] == b["verification"] and a["identification"] == b["identification"]


def test_cross_with_the_same_run_equals_self_and_flip_matters(setup, capsys, tmp_path):
    fixture, _, run = setup
    outputs = {}
    for name, extra in [("self", []), ("cross", ["--old-model", run]), ("noflip", ["--no-flip"])]:
        outputs[name] = tmp_path / f"{name}.json"
        code, _, err = compat(capsys, "eval", "ijbc", "--root", fixture.root, "--model", run, "--device", "cpu",
                              "--batch-size", "32", *extra, "--json", outputs[name])
        assert code == 0, err
    self_test, cross, no_flip = (json.loads(outputs[k].read_text()) for k in ("self", "cross", "noflip"))
    assert cross["mode"] == "cross" and cross["verification"] == self_test["verification"]
    assert no_flip["settings"]["flip"] is False and self_test["settings"]["flip"] is True
    plain, flipped = tmp_path / "plain.npz", tmp_path / "flipped.npz"
    for path, extra in [(plain, ["--no-flip"]), (flipped, [])]:
        code, _, err = compat(capsys, "features", "extract", "--model", run, "--ijbc-root", fixture.root, "--out",
                              path, "--device", "cpu", *extra)
        assert code == 0, err
    with np.load(plain) as a, np.load(flipped) as b:
        assert not bool(a["flip"]) and bool(b["flip"])
        assert not np.allclose(a["features"], b["features"])
        # the difference is the mirrored face's embedding: far from negligible
        assert np.linalg.norm(b["features"] - a["features"]) > 0.1 * np.linalg.norm(a["features"])


def test_loader_workers_give_the_same_features(setup, capsys, tmp_path):
    fixture, _, run = setup
    files = []
    for workers in (0, 2):
        files.append(tmp_path / f"w{workers}.npz")
        code, _, err = compat(capsys, "features", "extract", "--model", run, "--ijbc-root", fixture.root, "--out",
                              files[-1], "--device", "cpu", "--workers", workers, "--batch-size", "16")
        assert code == 0, err
    np.testing.assert_array_equal(np.load(files[0])["features"], np.load(files[1])["features"])


def test_bad_input_names_the_file_and_line(setup, capsys, tmp_path):
    fixture, root, run = setup
    broken = tmp_path / "IJBC"
    broken_fixture = make_ijbc(broken, subjects=12, seed=4, images=False)
    (broken / "loose_crop").symlink_to(fixture.root / "loose_crop")
    short = tmp_path / "short.npz"
    np.savez(short, features=np.zeros((5, 16), np.float32))
    user_error(capsys, "eval", "ijbc", "--root", broken, "--features", short,
               fragments=["short.npz", "(5, 16)", "ijbc_face_tid_mid.txt lists 84 faces"])
    # a missing image: named with its landmark line, before any embedding
    landmarks = broken_fixture.file("landmarks")
    faces = broken_fixture.file("faces")
    for path in (landmarks, faces):
        lines = path.read_text().splitlines()
        lines[6] = lines[6].replace("7.jpg", "missing.jpg", 1)
        path.write_text("\n".join(lines) + "\n")
    user_error(capsys, "eval", "ijbc", "--root", broken, "--model", run, "--device", "cpu",
               fragments=["missing.jpg", "ijbc_name_5pts_score.txt:7", "does not exist"])
    # a template in the pair file that no face belongs to
    pairs = broken_fixture.file("pairs")
    lines = pairs.read_text().splitlines()
    pairs.write_text("\n".join(lines[:20] + ["4242 1001 0"] + lines[21:]) + "\n")
    user_error(capsys, "eval", "ijbc", "--root", broken, "--features", short,
               fragments=["ijbc_template_pair_label.txt:21", "template 4242 has no face"])
    # a missing meta file (1:N only)
    broken_fixture.file("G2").unlink()
    user_error(capsys, "eval", "ijbc", "--root", broken, "--features", short, "-N",
               fragments=["missing meta file", "ijbc_1N_gallery_G2.csv"])


def test_user_error_from_a_real_process(setup, tmp_path):
    fixture, _, _ = setup
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, features=np.zeros((3, 4), np.float32))
    proc = subprocess.run([sys.executable, "-m", "compat_cli.main", "eval", "ijbc", "--root", str(fixture.root),
                           "--features", str(wrong)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "wrong.npz" in proc.stderr and "one row per line" in proc.stderr


def test_features_extract_needs_data_or_ijbc_root(setup, capsys, tmp_path):
    _, _, run = setup
    user_error(capsys, "features", "extract", "--model", run, "--out", tmp_path / "x.npz",
               fragments=["--data DATA", "--ijbc-root DIR"])


def test_cross_between_models_of_different_dimensions_uses_the_recorded_policy(setup, capsys, tmp_path):
    """A 24-d model that records ``dim_policy: truncate`` (as BT^2 does) against the 16-d run: the cross test
    runs on its first 16 dimensions, equal to the test on its feature file truncated by hand."""
    fixture, root, old = setup
    torch.manual_seed(1)
    spec = ModelSpec(backbone="test_resnet", embedding_dim=24, num_classes=0, classes=[], dim_policy="truncate",
                     input={"size": 16, "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3})
    wide = tmp_path / "wide"
    save_model(EmbeddingModel(spec).eval(), wide)
    files = {name: tmp_path / f"{name}.npz" for name in ("wide", "old")}
    for name, run in (("wide", wide), ("old", old)):
        code, _, err = compat(capsys, "features", "extract", "--model", run, "--ijbc-root", fixture.root, "--out",
                              files[name], "--device", "cpu")
        assert code == 0, err
    with np.load(files["wide"]) as npz:
        assert str(npz["dim_policy"]) == "truncate" and npz["features"].shape[1] == 24
        head = tmp_path / "head.npz"
        np.savez(head, features=npz["features"][:, :16])
    reports = {}
    for name, args in (("model", ["--model", wide, "--old-model", old, "--device", "cpu"]),
                       ("file", ["--features", files["wide"], "--old-features", files["old"]]),
                       ("hand", ["--features", head, "--old-features", files["old"]])):
        reports[name] = tmp_path / f"{name}.json"
        code, _, err = compat(capsys, "eval", "ijbc", "--root", fixture.root, *args, "--json", reports[name])
        assert code == 0, err
    model, file, hand = (json.loads(reports[k].read_text()) for k in ("model", "file", "hand"))
    assert model["mode"] == "cross" and model["verification"] == file["verification"] == hand["verification"]
    np.savez(tmp_path / "bare.npz", features=np.load(files["wide"])["features"])  # no policy recorded
    user_error(capsys, "eval", "ijbc", "--root", fixture.root, "--features", tmp_path / "bare.npz", "--old-features",
               files["old"], fragments=("the new features are 24-d but the old features are 16-d", "--align"))

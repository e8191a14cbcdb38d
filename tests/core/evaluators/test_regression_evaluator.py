"""`compat eval regression` on logit files: values, ensembles, class alignment and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from compat_core.errors import CompatError
from compat_core.evaluators.regression import RegressionOptions, run_regression

CLASSES = ["a", "b", "c"]
LABELS = np.array([0, 0, 1, 1, 2, 2])


def save(path, logits, labels=LABELS, **extra):
    np.savez(path, logits=np.asarray(logits, np.float32), labels=np.asarray(labels, np.int64), **extra)
    return str(path)


def one_hot(predictions, num_classes=3, value=5.0):
    logits = np.zeros((len(predictions), num_classes), np.float32)
    logits[np.arange(len(predictions)), predictions] = value
    return logits


def evaluate(**options):
    return run_regression(RegressionOptions(**options))


def test_files_give_the_hand_counted_metrics(tmp_path):
    old = save(tmp_path / "old.npz", one_hot([0, 1, 1, 1, 2, 0]), classes=np.array(CLASSES))  # right: 0, 2, 3, 4
    new = save(tmp_path / "new.npz", one_hot([0, 2, 1, 2, 2, 2]), classes=np.array(CLASSES))  # right: 0, 2, 4, 5
    r = evaluate(old_logits=[old], new_logits=new)
    assert r["old_accuracy"] == pytest.approx(4 / 6) and r["new_accuracy"] == pytest.approx(4 / 6)
    assert r["negative_flips"] == 1 and r["nfr"] == pytest.approx(1 / 6)  # sample 3
    assert r["pfr"] == pytest.approx(1 / 6) and r["nfi"] == pytest.approx(1 / 2)  # new errors: 1, 3
    assert r["btc"] == pytest.approx(3 / 4) and r["bec"] == pytest.approx(1 / 2)
    assert r["old_classes"] is None and [row["class"] for row in r["per_class"]] == CLASSES
    for key in ("old_accuracy", "new_accuracy", "nfr", "nfi", "pfr", "pfi", "btc", "bec"):
        assert 0.0 <= r[key] <= 1.0
    # --old accepts a file too, and gives the same result
    assert evaluate(old=[old], new=new)["nfr"] == r["nfr"]


def test_several_old_files_are_averaged_into_one_ensemble(tmp_path):
    # member 1 prefers class 0 by 1, member 2 prefers class 1 by 3: the mean logits pick class 1
    first = np.tile([[2.0, 1.0, 0.0]], (6, 1))
    second = np.tile([[0.0, 3.0, 0.0]], (6, 1))
    one, two = save(tmp_path / "o1.npz", first), save(tmp_path / "o2.npz", second)
    new = save(tmp_path / "new.npz", one_hot([1, 1, 1, 1, 1, 1]))
    r = evaluate(old_logits=[one, two], new_logits=new)
    assert r["old_accuracy"] == pytest.approx(2 / 6)  # predicts b everywhere: right on samples 2, 3
    assert r["negative_flips"] == 0 and r["old"] == [one, two]
    assert evaluate(old_logits=[one], new_logits=new)["old_accuracy"] == pytest.approx(2 / 6)  # predicts a


def test_old_file_with_fewer_classes_named_by_logit_classes(tmp_path):
    old = save(tmp_path / "old.npz", one_hot([0, 1, 1, 1, 0, 0], 2), classes=np.array(CLASSES),
               logit_classes=np.array(["a", "b"]))
    new = save(tmp_path / "new.npz", one_hot([0, 0, 1, 2, 2, 2]), classes=np.array(CLASSES))
    r = evaluate(old_logits=[old], new_logits=new)
    assert r["old_classes"]["n"] == 4 and r["old_classes"]["negative_flips"] == 1  # sample 3
    assert r["old_accuracy"] == pytest.approx(3 / 6) and r["old_top5"] == pytest.approx(4 / 6)


def test_label_map_aligns_an_old_model_with_other_class_names(tmp_path):
    old = save(tmp_path / "old.npz", one_hot([0, 0, 1, 1, 2, 2]), logit_classes=np.array(["x", "y", "z"]),
               classes=np.array(CLASSES))
    new = save(tmp_path / "new.npz", one_hot([0, 0, 1, 1, 2, 2]), classes=np.array(CLASSES))
    with pytest.raises(CompatError, match="share no name"):
        evaluate(old_logits=[old], new_logits=new)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"a": "x", "b": "y", "c": "z"}))
    assert evaluate(old_logits=[old], new_logits=new, label_map=str(mapping))["old_accuracy"] == 1.0


@pytest.mark.parametrize("case, fragment", [
    ("length", "scores 5 images"),
    ("labels", "same images in the same order"),
    ("columns", "neither file names its classes"),
    ("unnamed", "which class each column means"),
    ("keys", "lacks the arrays 'logits' and 'labels'"),
    ("shape", "do not match"),
    ("missing", "no such logit file"),
])
def test_mismatched_files_are_user_errors(tmp_path, case, fragment):
    old = save(tmp_path / "old.npz", one_hot([0, 1, 1, 1, 2, 0]))
    new = {
        "length": lambda p: save(p, one_hot([0, 0, 1, 2, 2]), LABELS[:5]),
        "labels": lambda p: save(p, one_hot([0, 0, 1, 2, 2, 2]), LABELS[::-1].copy()),
        "columns": lambda p: save(p, one_hot([0, 0, 1, 2, 2, 3], 4)),
        "unnamed": lambda p: save(p, one_hot([0, 0, 1, 2, 2, 3], 4), classes=np.array(CLASSES)),
        "keys": lambda p: (np.savez(p, features=np.zeros((6, 2)), labels=LABELS), str(p))[1],
        "shape": lambda p: save(p, np.zeros(6), LABELS),
        "missing": lambda p: str(p),
    }[case](tmp_path / "new.npz")
    with pytest.raises(CompatError, match=fragment):
        evaluate(old_logits=[old], new_logits=new)


def test_ensemble_members_with_other_classes_are_rejected(tmp_path):
    one = save(tmp_path / "o1.npz", one_hot([0] * 6), logit_classes=np.array(CLASSES))
    two = save(tmp_path / "o2.npz", one_hot([0] * 6), logit_classes=np.array(["a", "c", "b"]))
    new = save(tmp_path / "new.npz", one_hot([0] * 6))
    with pytest.raises(CompatError, match="same classes in the same order"):
        evaluate(old_logits=[one, two], new_logits=new)


def test_missing_or_double_new_model_and_missing_old():
    with pytest.raises(CompatError, match="needs the old model"):
        evaluate(new_logits="x.npz")
    with pytest.raises(CompatError, match="exactly one new model"):
        evaluate(old_logits=["x.npz"], new="a", new_logits="b.npz")
    with pytest.raises(CompatError, match="exactly one new model"):
        evaluate(old_logits=["x.npz"])


def compat(*args):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "compat_cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_writes_json_and_reports_bad_input_without_traceback(tmp_path):
    old = save(tmp_path / "old.npz", one_hot([0, 1, 1, 1, 2, 0]), classes=np.array(CLASSES))
    new = save(tmp_path / "new.npz", one_hot([0, 2, 1, 2, 2, 2]), classes=np.array(CLASSES))
    out = tmp_path / "r.json"
    proc = compat("eval", "regression", "--old-logits", old, "--new-logits", new, "--json", out)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["nfr"] == pytest.approx(1 / 6) and result["per_class"][0]["class"] == "a"
    assert "NFR" in proc.stdout and "16.67" in proc.stdout  # the table shows percentages
    short = save(tmp_path / "short.npz", one_hot([0, 0, 1]), LABELS[:3])
    bad = compat("eval", "regression", "--old-logits", old, "--new-logits", short, "--json", tmp_path / "bad.json")
    assert bad.returncode == 2 and "Traceback" not in bad.stdout + bad.stderr
    assert "scores 3 images" in bad.stdout + bad.stderr and not (tmp_path / "bad.json").exists()

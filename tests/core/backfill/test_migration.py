"""compat backfill: a real migration of a faiss index to a BCT model, through the CLI.

The real curve equals the simulated one (``compat eval backfill``) on the same data; a migration killed
at several points (one of them inside a commit) and resumed ends with the same index as one that ran
through, every id re-embedded exactly once; rollback restores the old index bit for bit; finalize leaves
one model; bad input ends in one paragraph with exit code 2 and nothing lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from cli_runner import assert_user_error, compat
from compat_core.backfill import journal
from compat_core.backfill.curve import backfill_curve
from compat_core.features import load
from compat_core.index import store

pytest.importorskip("faiss")
pytestmark = pytest.mark.slow

TINY = ["--data", "digits", "--backbone", "test_resnet", "--image-size", "8", "--epochs", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An old model, a BCT model trained against it, an unrelated one and one of another dimension; the old
    model's index of the digits test split (450 items) and a random plan."""
    root = tmp_path_factory.mktemp("backfill")
    compat("train", "baseline", *TINY, "--embedding-dim", "8", "--classes", "0-4", "--out", root / "old")
    compat("train", "bct", *TINY, "--embedding-dim", "8", "--old", root / "old", "--out", root / "bct")
    compat("train", "baseline", *TINY, "--embedding-dim", "8", "--seed", "7", "--out", root / "independent")
    compat("train", "baseline", *TINY, "--embedding-dim", "4", "--out", root / "narrow")
    for name in ("old", "bct"):
        compat("features", "extract", "--model", root / name, "--data", "digits", "--out", root / f"{name}.npz")
    compat("index", "build", "--features", root / "old.npz", "--out", root / "idx")
    compat("backfill", "plan", "--index", root / "idx", "--out", root / "plan.json", "--seed", "3")
    return root


def fresh_index(runs, tmp_path, name="idx"):
    shutil.copytree(runs / "idx", tmp_path / name)
    return tmp_path / name


def migrate(runs, index, *extra, check=True):
    return compat("backfill", "run", "--index", index, "--model", runs / "bct", "--plan", runs / "plan.json",
                  "--batch", "40", "--eval-every", "0.25", *extra, check=check)


def final_state(index):
    live = store.read(index)
    ids = np.sort(live.ids)
    return ids, store.vectors_of(live, ids), live.model_of_id[store.positions(live, ids)]


def test_plan_is_a_seeded_permutation_of_the_index_ids(runs, tmp_path):
    plan = json.loads((runs / "plan.json").read_text())
    compat("backfill", "plan", "--index", runs / "idx", "--out", tmp_path / "again.json", "--seed", "3")
    compat("backfill", "plan", "--index", runs / "idx", "--out", tmp_path / "other.json", "--seed", "4")
    assert sorted(plan["ids"]) == sorted(store.read(runs / "idx").ids.tolist())
    assert json.loads((tmp_path / "again.json").read_text())["ids"] == plan["ids"]
    assert json.loads((tmp_path / "other.json").read_text())["ids"] != plan["ids"]


def test_distance_order_puts_the_items_that_move_most_first(runs, tmp_path):
    compat("backfill", "plan", "--index", runs / "idx", "--order", "distance", "--new", runs / "bct", "--out",
           tmp_path / "distance.json")
    ids = np.array(json.loads((tmp_path / "distance.json").read_text())["ids"])
    old, new = load(runs / "old.npz"), load(runs / "bct.npz")
    cos = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    moved = 1 - (cos(old.features) * cos(new.features)).sum(1)
    assert np.all(np.diff(moved[np.searchsorted(old.index, ids)]) <= 1e-5)


def test_real_curve_equals_the_simulated_one_and_finalize_keeps_one_model(runs, tmp_path):
    index = fresh_index(runs, tmp_path)
    migrate(runs, index, "--json", tmp_path / "curve.json")
    curve = json.loads((tmp_path / "curve.json").read_text())
    old, new = load(runs / "old.npz"), load(runs / "bct.npz")
    plan = np.array(json.loads((runs / "plan.json").read_text())["ids"])
    simulated = backfill_curve(new.features, new.labels, old.features, new.features, new.labels,
                               np.searchsorted(new.index, plan), steps=4, exclude_self=True)
    assert curve["backfilled"] == simulated["backfilled"]
    for key in ("top1", "top5"):
        assert curve["curves"][key] == pytest.approx(simulated["curves"][key], abs=1e-9)
    status = json.loads(compat("backfill", "status", index, "--json").stdout)
    assert status["state"] == "complete" and status["done"] == 450 and status["held_by"] is None
    compat("backfill", "finalize", index)
    final = store.read(index)
    assert [m["run"] for m in final.models] == [str(runs / "bct")] and not (index / "backfill" / "batches").exists()
    ids = np.sort(final.ids)
    expected = new.features / np.linalg.norm(new.features, axis=1, keepdims=True)
    assert np.allclose(store.vectors_of(final, ids), expected[np.searchsorted(new.index, ids)], atol=1e-5)


def test_killed_migrations_resume_to_the_same_index_every_id_once(runs, tmp_path):
    through = fresh_index(runs, tmp_path, "through")
    migrate(runs, through)
    expected = final_state(through)
    killed = fresh_index(runs, tmp_path, "killed")
    args = [sys.executable, "-m", "compat_cli.main", "backfill", "run", "--index", str(killed), "--model",
            str(runs / "bct"), "--plan", str(runs / "plan.json"), "--batch", "40", "--eval-every", "0.25"]
    env = {**os.environ, "COMPAT_FAILPOINT": "backfill-commit:1"}  # dies inside a commit; same threads as the rest
    assert subprocess.run(args, env=env, capture_output=True).returncode == -signal.SIGKILL
    assert len(journal.committed(killed)) == 1  # the batch being written is not committed
    # Batch 2 ends at the first curve cut-off (112 of 450): killed after its commit, before its point is
    # measured, the resumed run measures it first. Then a kill inside a later commit.
    for point in ("backfill-after-commit:2", "backfill-commit:9"):
        done = subprocess.run([*args, "--resume"], env={**env, "COMPAT_FAILPOINT": point}, capture_output=True)
        assert done.returncode == -signal.SIGKILL, done.stderr
        live = store.read(killed)  # queryable, mixed, between the kills
        assert 0 < int((live.model_of_id == 1).sum()) < 450
    migrate(runs, killed, "--resume")
    ids, vectors, models = final_state(killed)
    assert np.array_equal(ids, expected[0]) and np.array_equal(vectors, expected[1])
    assert np.all(models == 1) and np.array_equal(models, expected[2])
    batches = [journal.read_batch(f) for f in journal.committed(killed)]
    seen = np.concatenate([b["ids"] for b in batches])
    assert len(seen) == len(np.unique(seen)) == 450  # every id re-embedded exactly once
    points = journal.curve_points(killed)
    assert sorted(points) == sorted(journal.curve_points(through))
    assert all(points[c]["top1"] == journal.curve_points(through)[c]["top1"] for c in points)


def test_rollback_restores_the_old_index_bit_for_bit(runs, tmp_path):
    index = fresh_index(runs, tmp_path)
    before = {p.name: p.read_bytes() for p in index.iterdir() if p.is_file()}
    migrate(runs, index)
    compat("backfill", "rollback", index)
    assert {p.name: p.read_bytes() for p in index.iterdir() if p.is_file()} == before
    assert_user_error(compat("backfill", "finalize", index, check=False), "no migration in progress")


def test_bad_input_is_one_paragraph_and_loses_nothing(runs, tmp_path):
    index = fresh_index(runs, tmp_path)
    before = {p.name: p.read_bytes() for p in index.iterdir() if p.is_file()}
    plan = json.loads((runs / "plan.json").read_text())
    edited = {**plan, "ids": plan["ids"][:-1] + [99999]}
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    assert_user_error(compat("backfill", "run", "--index", index, "--model", runs / "bct", "--plan",
                             tmp_path / "edited.json", check=False), "checksum")
    from compat_core.backfill.orders import ids_digest

    (tmp_path / "foreign.json").write_text(json.dumps({**edited, "ids_sha256": ids_digest(np.array(edited["ids"]))}))
    assert_user_error(compat("backfill", "run", "--index", index, "--model", runs / "bct", "--plan",
                             tmp_path / "foreign.json", check=False), "ids the index does not hold", "99999")
    assert_user_error(compat("backfill", "run", "--index", index, "--model", runs / "independent", "--plan",
                             runs / "plan.json", check=False), "not trained to be compatible", "--force")
    assert_user_error(compat("backfill", "run", "--index", index, "--model", runs / "narrow", "--plan",
                             runs / "plan.json", check=False), "4 dimensions", "8-d")
    assert_user_error(compat("backfill", "finalize", index, check=False), "no migration in progress")
    assert {p.name: p.read_bytes() for p in index.iterdir() if p.is_file()} == before
    migrate(runs, index)  # a migration not yet finalised, then a second process while one holds the lock
    with journal.locked(index, "test"):
        assert_user_error(migrate(runs, index, "--resume", check=False), "another compat process", "pid")
        assert_user_error(compat("backfill", "rollback", index, check=False), "another compat process")
    assert_user_error(migrate(runs, index, check=False), "already in progress", "--resume", "rollback")
    (index / "manifest.json").write_text(json.dumps({**json.loads((index / "manifest.json").read_text()),
                                                     "count": 7}))
    assert_user_error(compat("index", "info", index, check=False), "do not belong together")


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_replacing_vectors_in_approximate_indexes(kind, tmp_path):
    from compat_core.features import FeatureSet

    rng = np.random.default_rng(0)
    feats = FeatureSet(rng.normal(size=(300, 8)).astype(np.float32), np.arange(300) % 3, np.arange(1000, 1300),
                       data="toy", split="test", classes=["a", "b", "c"], fingerprint="aaaa")
    index = store.build(feats, kind=kind)
    ids = np.array([1005, 1200, 1299])
    fresh = store.prepare(rng.normal(size=(3, 8)), "cosine")
    store.replace_vectors(index, ids, fresh, 1)
    assert index.faiss_index.ntotal == 300 and np.allclose(store.vectors_of(index, ids), fresh)
    assert np.array_equal(np.flatnonzero(index.model_of_id), ids - 1000)
    _, found = index.faiss_index.search(fresh, 1)
    assert found[:, 0].tolist() == ids.tolist()

"""compat-fct through the CLI on digits with test_resnet: old/new/side-info baselines -> fct / fastfill ->
retrieval, backfilling curves, feature transformation, and bad input (exit code 2, no traceback).

Commands run in-process through ``compat_cli.main.main`` (the console script's entry point).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from compat_cli.main import main

TINY = ["--data", "digits", "--image-size", "16", "--batch-size", "64", "--device", "cpu"]
BASE = ["train", "baseline", *TINY, "--backbone", "test_resnet", "--embedding-dim", "16", "--epochs", "2"]
FCT_FLAGS = [*TINY, "--epochs", "2", "--mixer-width", "64", "--optimizer", "adamw", "--lr", "0.002"]
EVAL = ["--data", "digits", "--device", "cpu"]


def compat(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as excinfo:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return excinfo.value.code, captured.out + captured.err


def ok(capsys, *args) -> str:
    code, output = compat(capsys, *args)
    assert code == 0, output
    return output


def user_error(capsys, *args, fragments=()) -> str:
    code, output = compat(capsys, *args)
    assert code == 2, output
    assert "Traceback" not in output and output.count("error:") == 1
    for fragment in fragments:
        assert fragment in " ".join(output.split()), output
    return output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fct-cli")
    paths = {name: root / name for name in ("old", "new", "side", "fct", "fastfill")}
    for name, extra in (("old", ["--classes", "0-4", "--seed", "1"]), ("new", ["--seed", "2"]),
                        ("side", ["--seed", "3", "--embedding-dim", "12", "--epochs", "1"])):
        with pytest.raises(SystemExit) as excinfo:
            main([str(a) for a in (*BASE, *extra, "--out", paths[name])])
        assert excinfo.value.code == 0
    for method, extra in (("fct", []), ("fastfill", ["--side-info", paths["side"]])):
        with pytest.raises(SystemExit) as excinfo:
            main([str(a) for a in ("train", method, *FCT_FLAGS, "--old", paths["old"], "--new", paths["new"],
                                   *extra, "--out", paths[method])])
        assert excinfo.value.code == 0
    paths["root"] = root
    return paths


def read(path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_fct_run_is_a_gallery_model_for_retrieval_and_the_curve_starts_there(runs, capsys, tmp_path):
    spec = read(runs["fct"] / "model.json")
    assert spec["loader"] == "compat_fct.transformed:load_transformed_run" and spec["method"] == "fct"
    ok(capsys, "eval", "retrieval", "--query", runs["new"], "--gallery", runs["fct"], *EVAL, "--json",
       tmp_path / "nt.json")
    ok(capsys, "eval", "retrieval", "--query", runs["new"], "--gallery", runs["new"], *EVAL, "--json",
       tmp_path / "nn.json")
    ok(capsys, "eval", "retrieval", "--query", runs["new"], "--gallery", runs["old"], *EVAL, "--json",
       tmp_path / "no.json")
    output = ok(capsys, "eval", "backfill", "--query", runs["new"], "--transformed", runs["fct"], "--new", runs["new"],
                "--old", runs["old"], "--steps", "4", *EVAL, "--json", tmp_path / "curve.json")
    assert "area under the curve" in output
    curve, first, last = read(tmp_path / "curve.json"), read(tmp_path / "nt.json"), read(tmp_path / "nn.json")
    assert curve["fractions"] == [0.0, 0.24888888888888888, 0.5, 0.7488888888888889, 1.0]  # floor(i 450 / 4)
    assert set(curve["auc"]) == {"mean", "trapezoid"} and curve["order"] == "random" and curve["leave_one_out"]
    for key in ("top1", "top5", "mAP"):
        assert curve["curves"][key][0] == pytest.approx(first[key], abs=1e-12)
        assert curve["curves"][key][-1] == pytest.approx(last[key], abs=1e-12)
        assert curve["auc"]["mean"][key] == pytest.approx(np.mean(curve["curves"][key]))
    assert curve["reference"]["new/old"]["top1"] == pytest.approx(read(tmp_path / "no.json")["top1"])
    # the transformation learned something: new/h(old) far above new/old (independent models)
    assert first["top1"] > read(tmp_path / "no.json")["top1"] + 0.1


@pytest.mark.slow
def test_fastfill_uncertainty_order_from_the_run_and_from_transformed_features(runs, capsys, tmp_path):
    for name, model in (("old", runs["old"]), ("side", runs["side"]), ("new", runs["new"])):
        ok(capsys, "features", "extract", "--model", model, "--data", "digits", "--out", tmp_path / f"{name}.npz",
           "--device", "cpu")
    ok(capsys, "fct", "transform", "--model", runs["fastfill"], "--old-features", tmp_path / "old.npz",
       "--side-info-features", tmp_path / "side.npz", "--out", tmp_path / "h.npz", "--device", "cpu")
    with np.load(tmp_path / "h.npz") as npz:
        assert npz["features"].shape == (450, 16) and npz["uncertainty"].shape == (450,)
    ok(capsys, "eval", "backfill", "--query", runs["new"], "--transformed", runs["fastfill"], "--new", runs["new"],
       "--order", "uncertainty", "--steps", "3", *EVAL, "--json", tmp_path / "from-run.json")
    ok(capsys, "eval", "backfill", "--query", tmp_path / "new.npz", "--transformed", tmp_path / "h.npz", "--new",
       tmp_path / "new.npz", "--order", "uncertainty", "--steps", "3", "--json", tmp_path / "from-files.json")
    from_run, from_files = read(tmp_path / "from-run.json"), read(tmp_path / "from-files.json")
    assert from_run["order"] == "uncertainty" and from_run["seed"] is None
    for key in ("top1", "top5", "mAP"):
        assert from_files["curves"][key] == pytest.approx(from_run["curves"][key], abs=1e-6)


@pytest.mark.slow
def test_training_on_precomputed_old_features(runs, capsys, tmp_path):
    ok(capsys, "features", "extract", "--model", runs["old"], "--data", "digits", "--split", "train", "--out",
       tmp_path / "old-train.npz", "--device", "cpu")
    args = ["train", "fct", *FCT_FLAGS, "--epochs", "1", "--old", runs["old"], "--new", runs["new"], "--old-features",
            tmp_path / "old-train.npz"]
    user_error(capsys, *args, "--out", tmp_path / "a", fragments=["--augment none"])
    assert not (tmp_path / "a").exists()
    ok(capsys, *args, "--augment", "none", "--out", tmp_path / "b")
    assert read(tmp_path / "b" / "model.json")["extra"]["fct"]["sources"]["old_features"] == str(tmp_path / "old-train.npz")


@pytest.mark.slow
def test_bad_runs_are_user_errors_that_write_nothing(runs, capsys, tmp_path):
    common = ["train", "fct", *FCT_FLAGS, "--out", tmp_path / "x"]
    user_error(capsys, *common, "--old", runs["old"], "--new", runs["new"], "--side-info", tmp_path / "missing",
               fragments=["--side-info"])
    user_error(capsys, *common, "--old", runs["old"], "--new", tmp_path / "missing", fragments=["--new"])
    user_error(capsys, *common, "--old", runs["fct"], "--new", runs["new"], fragments=["not a plain embedding model"])
    user_error(capsys, *common, "--new", runs["new"], fragments=["--old"])
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_bad_feature_files_are_user_errors(runs, capsys, tmp_path):
    for name, model, split in (("old", runs["old"], "test"), ("side", runs["side"], "test"),
                               ("side-train", runs["side"], "train"), ("new", runs["new"], "test")):
        ok(capsys, "features", "extract", "--model", model, "--data", "digits", "--split", split, "--out",
           tmp_path / f"{name}.npz", "--device", "cpu")
    transform = ["fct", "transform", "--model", runs["fastfill"], "--out", tmp_path / "h.npz"]
    user_error(capsys, *transform, "--old-features", tmp_path / "old.npz", fragments=["--side-info-features"])
    user_error(capsys, *transform, "--old-features", tmp_path / "side.npz", "--side-info-features",
               tmp_path / "side.npz", fragments=["12-dim features but the transformation takes 16-dim old"])
    user_error(capsys, *transform, "--old-features", tmp_path / "old.npz", "--side-info-features",
               tmp_path / "side-train.npz", fragments=["450 rows", "1077"])
    user_error(capsys, "fct", "transform", "--model", runs["new"], "--old-features", tmp_path / "old.npz", "--out",
               tmp_path / "h.npz", fragments=["not an FCT run"])
    assert not (tmp_path / "h.npz").exists()
    ok(capsys, "fct", "transform", "--model", runs["fct"], "--old-features", tmp_path / "old.npz", "--out",
       tmp_path / "h.npz")
    backfill = ["eval", "backfill", "--query", tmp_path / "new.npz", "--json", tmp_path / "out.json"]
    user_error(capsys, *backfill, "--transformed", tmp_path / "h.npz", "--new", tmp_path / "side-train.npz",
               fragments=["450 items", "1077"])
    user_error(capsys, *backfill, "--transformed", tmp_path / "h.npz", "--new", tmp_path / "side.npz",
               fragments=["outputs 16-dim embeddings but --new"])
    user_error(capsys, *backfill, "--transformed", tmp_path / "h.npz", "--new", tmp_path / "new.npz",
               "--order", "uncertainty", fragments=["needs per-item uncertainties"])
    assert not (tmp_path / "out.json").exists()


@pytest.mark.slow
def test_old_reference_of_another_dimension_is_a_user_error(runs, capsys, tmp_path):
    user_error(capsys, "eval", "backfill", "--query", runs["new"], "--transformed", runs["fct"], "--new", runs["new"],
               "--old", runs["side"], *EVAL, "--json", tmp_path / "c.json",
               fragments=["--old", "embeds in 12 dims but the transformation", "takes 16-dim old embeddings"])
    assert not (tmp_path / "c.json").exists()


@pytest.mark.slow
def test_plot_is_written_with_matplotlib(runs, capsys, tmp_path):
    import matplotlib  # noqa: F401  -- the [plot] extras are part of the test environment: never skip
    ok(capsys, "eval", "backfill", "--query", runs["new"], "--transformed", runs["fct"], "--new", runs["new"],
       "--steps", "2", *EVAL, "--plot", tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_plot_without_matplotlib_is_a_user_error_before_any_work(runs, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import matplotlib -> ImportError
    user_error(capsys, "eval", "backfill", "--query", runs["new"], "--transformed", tmp_path / "missing.npz",
               "--new", runs["new"], *EVAL, "--plot", tmp_path / "c.png", "--json", tmp_path / "c.json",
               fragments=["--plot needs matplotlib", "pip install"])
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "c.png").exists()


def test_help_lists_the_options(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # wide help tables: flags are not cut
    output = ok(capsys, "train", "fastfill", "--help")
    for flag in ("--new", "--side-info", "--old-features", "--freeze-bn-second-half", "--uncertainty-weight",
                 "--disc-label-smoothing", "--mixer-width"):
        assert flag in output
    # the paper's optimizer is the method's default for the common options, and help says so
    assert "[default for this method: adamw]" in output and "[default for this method: 0.0005]" in output
    assert "[default: 0.9]" in output  # common options the method leaves alone keep theirs


def test_fct_methods_default_to_the_papers_optimizer():
    from compat_core.config import resolve_config
    from compat_fct.config import FastFillConfig, FCTConfig

    for config_cls in (FCTConfig, FastFillConfig):
        common, _ = resolve_config("fct", config_cls, flags={"data": "digits", "out": "x", "new": "runs/new"})
        assert (common.optimizer, common.lr, common.weight_decay) == ("adamw", 5e-4, 2 ** -15)


def test_plugins_show_marks_required_options(capsys):
    out = ok(capsys, "plugins", "show", "fct")
    assert "(required)" in out and "PydanticUndefined" not in out


def test_uncertainty_backfill_order_puts_the_least_certain_items_first(tmp_path):
    """compat-fct registers FastFill's order for `compat backfill plan`; ties keep id order."""
    pytest.importorskip("faiss")

    from compat_core.backfill.orders import OrderRequest, make_plan
    from compat_core.errors import CompatError
    from compat_core.features import FeatureSet
    from compat_core.index import store
    from compat_fct.gallery import save_with_uncertainty

    feats = FeatureSet(np.eye(4, dtype=np.float32), np.arange(4), np.array([7, 3, 9, 5]), data="toy", split="test",
                       classes=list("abcd"), fingerprint="aaaa")
    save_with_uncertainty(tmp_path / "t.npz", feats, np.array([0.1, 0.5, 0.5, 0.9]))
    index = store.build(feats)
    request = OrderRequest(index, np.sort(index.ids), "toy", "test", old=str(tmp_path / "t.npz"))
    assert make_plan("uncertainty", request, "idx")["ids"] == [5, 3, 9, 7]
    with pytest.raises(CompatError, match="needs --old"):
        make_plan("uncertainty", OrderRequest(index, np.sort(index.ids), "toy", "test"), "idx")


@pytest.mark.slow
def test_a_fastfill_gallery_index_is_migrated_for_real_in_uncertainty_order(runs, capsys, tmp_path):
    """The index of a FastFill gallery records that its vectors live in the new model's space: the new model
    may query and backfill it; the real curve equals `eval backfill`'s simulated one (top-1, top-5)."""
    pytest.importorskip("faiss")
    ok(capsys, "features", "extract", "--model", runs["fastfill"], "--data", "digits", "--out", tmp_path / "h.npz",
       "--device", "cpu")
    ok(capsys, "index", "build", "--features", tmp_path / "h.npz", "--out", tmp_path / "idx")
    assert "through fastfill" in ok(capsys, "index", "info", tmp_path / "idx")
    ok(capsys, "index", "search", tmp_path / "idx", "--query", runs["new"], *EVAL, "--json", tmp_path / "found.json")
    assert read(tmp_path / "found.json")["relation"] == "target"
    ok(capsys, "backfill", "plan", "--index", tmp_path / "idx", "--order", "uncertainty", "--old", runs["fastfill"],
       "--out", tmp_path / "plan.json", "--device", "cpu")
    ok(capsys, "backfill", "run", "--index", tmp_path / "idx", "--model", runs["new"], "--plan", tmp_path / "plan.json",
       "--batch", "100", "--eval-every", "0.3333", "--json", tmp_path / "real.json", "--device", "cpu")
    ok(capsys, "eval", "backfill", "--query", runs["new"], "--transformed", runs["fastfill"], "--new", runs["new"],
       "--order", "uncertainty", "--steps", "3", *EVAL, "--json", tmp_path / "simulated.json")
    real, simulated = read(tmp_path / "real.json"), read(tmp_path / "simulated.json")
    assert real["backfilled"] == [0, 150, 300, 450]
    for key in ("top1", "top5"):
        assert real["curves"][key] == pytest.approx(simulated["curves"][key], abs=1e-9)


@pytest.mark.slow
def test_the_transformation_exports_as_its_own_graph_and_maps_stored_vectors_as_fct_transform(runs, capsys, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    for name in ("old", "side"):
        ok(capsys, "features", "extract", "--model", runs[name], "--data", "digits", "--out", tmp_path / f"{name}.npz",
           "--device", "cpu")
    ok(capsys, "fct", "transform", "--model", runs["fastfill"], "--old-features", tmp_path / "old.npz",
       "--side-info-features", tmp_path / "side.npz", "--out", tmp_path / "h.npz", "--device", "cpu")
    output = ok(capsys, "export", runs["fastfill"], "--out", tmp_path / "ff.onnx", "--with-transformation")
    assert "old: float32 N x 16, side_info: float32 N x 12" in " ".join(output.split())
    session = onnxruntime.InferenceSession(str(tmp_path / "ff.transformation.onnx"))
    assert [i.name for i in session.get_inputs()] == ["old", "side_info"]
    with np.load(tmp_path / "old.npz") as old, np.load(tmp_path / "side.npz") as side, np.load(tmp_path / "h.npz") as h:
        mapped = session.run(None, {"old": old["features"], "side_info": side["features"]})[0]
        assert np.abs(mapped - h["features"]).max() < 1e-4  # every stored vector, not only the checked ones
    assert (tmp_path / "ff.onnx").is_file()
    user_error(capsys, "export", runs["old"], "--out", tmp_path / "o.onnx", "--with-transformation",
               fragments=["has no transformation of stored vectors"])
    assert not (tmp_path / "o.onnx").exists()

"""The synthesized old classifier, the label map, dimension policies and cached old features."""

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from compat_bct.config import BCTConfig
from compat_bct.old_classifier import assemble_rows, build_old_classifier, read_label_map
from compat_bct.row_fit import describe_fit
from compat_core.errors import CompatError
from compat_core.old_space import OldEmbeddings
from tiny_models import make_data, make_old

# the paper's recipe: the old head's rows + class-mean rows for new classes, scored like the old head
PAPER = {"synthesize": "new-only", "normalized_classifier": False, "fit_synthesized": False}


def make_ctx(old, data):
    return SimpleNamespace(old_model=old, data=data)


# -- pure pieces ------------------------------------------------------------------------------------
def test_assemble_keeps_real_rows_and_appends_new_only():
    old_w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    old_b = torch.tensor([0.5, -0.5])
    means = torch.tensor([[9.0, 9.0], [3.0, 4.0], [0.0, 2.0]])
    w, b, t, s = assemble_rows(new_classes=["a", "x", "y"], old_classes=["b", "a"], old_weight=old_w,
                               old_bias=old_b, means=means)
    assert w.tolist() == [[1.0, 0.0], [0.0, 1.0], [3.0, 4.0], [0.0, 2.0]]
    assert b.tolist() == [0.5, -0.5, 0.0, 0.0]
    assert t.tolist() == [1, 2, 3]  # "a" uses the old row 1; x and y their synthesized rows
    assert s.tolist() == [False, False, True, True]


def test_assemble_normalise_and_scale_synthesized_rows():
    old_w = torch.tensor([[2.0, 0.0], [0.0, 4.0]])  # mean norm 3
    means = torch.tensor([[3.0, 4.0]])
    w, *_ = assemble_rows(new_classes=["n"], old_classes=["a", "b"], old_weight=old_w, old_bias=None,
                          means=means, normalize=True)
    assert w[2].tolist() == pytest.approx([0.6, 0.8])
    w, *_ = assemble_rows(new_classes=["n"], old_classes=["a", "b"], old_weight=old_w, old_bias=None,
                          means=means, scale_to_real=True)
    assert w[2].tolist() == pytest.approx([1.8, 2.4])
    assert w[:2].tolist() == old_w.tolist()


def test_assemble_with_label_map_and_synthesize_all():
    old_w = torch.eye(2)
    means = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    _, _, t, s = assemble_rows(new_classes=["p", "q"], old_classes=["a", "b"], old_weight=old_w, old_bias=None,
                               means=means, label_map={"q": "a"})
    assert t.tolist() == [2, 0] and s.tolist() == [False, False, True]
    w, b, t, s = assemble_rows(new_classes=["a", "b"], old_classes=["a", "b"], old_weight=old_w, old_bias=None,
                               means=means, synthesize="all")
    assert w.tolist() == means.tolist() and t.tolist() == [0, 1] and s.all() and b.tolist() == [0.0, 0.0]


def test_label_map_rejects_unknown_classes(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"3": "zebra"}))
    with pytest.raises(CompatError, match="old class 'zebra'"):
        read_label_map(str(path), ["3", "4"], ["0", "1"])
    path.write_text(json.dumps({"9": "0"}))
    with pytest.raises(CompatError, match="new class '9'"):
        read_label_map(str(path), ["3", "4"], ["0", "1"])
    path.write_text("[1, 2]")
    with pytest.raises(CompatError, match="JSON object"):
        read_label_map(str(path), ["3"], ["0"])
    with pytest.raises(CompatError, match="no such file"):
        read_label_map(str(tmp_path / "missing.json"), ["3"], ["0"])
    path.write_text(json.dumps({"3": "1"}))
    assert read_label_map(str(path), ["3", "4"], ["0", "1"]) == {"3": "1"}


# -- building from an old model ---------------------------------------------------------------------
def test_build_synthesizes_new_classes_from_old_embeddings():
    old = make_old(["0", "1"])
    data = make_data(("0", "1", "2"))
    clf = build_old_classifier(BCTConfig(**PAPER, scale_synthesized=False), make_ctx(old, data), OldEmbeddings(old))
    head = old.classifier.fc
    assert clf.weight.shape == (3, 3) and clf.kind == "linear"
    assert torch.equal(clf.weight[:2], head.weight) and torch.equal(clf.bias[:2], head.bias)
    expected = F.normalize(old.embed(data.load_images(list(range(8, 12)))), dim=1).mean(0)
    assert torch.allclose(clf.weight[2], expected, atol=1e-6)
    scaled = build_old_classifier(BCTConfig(**PAPER), make_ctx(old, data), OldEmbeddings(old))  # scaled by default
    assert torch.allclose(scaled.weight[2], F.normalize(expected, dim=0) * head.weight.norm(dim=1).mean(), atol=1e-6)
    assert clf.bias[2].item() == 0.0 and clf.target_rows.tolist() == [0, 1, 2]
    f = torch.randn(2, 3)
    assert torch.allclose(clf(f), f @ clf.weight.T + clf.bias, atol=1e-6)


def test_build_follows_cosine_old_head_or_normalized_option():
    old = make_old(["0", "1", "2"], head="cosface")
    data = make_data()
    clf = build_old_classifier(BCTConfig(**PAPER), make_ctx(old, data), OldEmbeddings(old))
    assert clf.kind == "cosine" and clf.scale == 64.0
    f = torch.randn(2, 3)
    expected = 64.0 * F.normalize(f, dim=1) @ F.normalize(old.classifier.weight, dim=1).T
    assert torch.allclose(clf(f), expected, atol=1e-4)
    linear_old = make_old(["0", "1", "2"])
    clf = build_old_classifier(BCTConfig(**{**PAPER, "normalized_classifier": True}, influence_scale=10.0),
                               make_ctx(linear_old, data), OldEmbeddings(linear_old))
    assert clf.kind == "cosine" and clf.scale == 10.0


def test_build_without_old_head_needs_synthesize_all():
    old = make_old([])
    assert old.classifier is None
    data = make_data()
    with pytest.raises(CompatError, match="--synthesize all"):
        build_old_classifier(BCTConfig(synthesize="new-only"), make_ctx(old, data), OldEmbeddings(old))
    clf = build_old_classifier(BCTConfig(), make_ctx(old, data), OldEmbeddings(old))  # all rows synthesized
    assert clf.weight.shape == (3, 3) and clf.synthesized.all()


def test_build_with_label_map(tmp_path):
    old = make_old(["cat", "dog"])
    data = make_data(("0", "1", "2"))
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"1": "dog"}))
    clf = build_old_classifier(BCTConfig(**PAPER, label_map=str(path)), make_ctx(old, data), OldEmbeddings(old))
    assert clf.target_rows.tolist() == [2, 1, 3]
    path.write_text(json.dumps({"1": "horse"}))
    with pytest.raises(CompatError, match="horse"):
        build_old_classifier(BCTConfig(**PAPER, label_map=str(path)), make_ctx(old, data), OldEmbeddings(old))
    with pytest.raises(CompatError, match="--synthesize new-only"):  # all rows synthesized: no head row to map
        build_old_classifier(BCTConfig(label_map=str(path)), make_ctx(old, data), OldEmbeddings(old))



def test_build_fits_synthesized_rows_and_reports_accuracy_on_old_embeddings():
    old = make_old(["0", "1"])
    data = make_data(("0", "1", "2", "3"), per_class=8)
    plain = build_old_classifier(BCTConfig(**PAPER), make_ctx(old, data), OldEmbeddings(old))
    fitted = build_old_classifier(BCTConfig(**{**PAPER, "fit_synthesized": True}), make_ctx(old, data),
                                  OldEmbeddings(old))
    assert torch.equal(fitted.weight[:2], plain.weight[:2]) and torch.equal(fitted.bias[:2], plain.bias[:2])
    assert not torch.allclose(fitted.weight[2:], plain.weight[2:])
    feats = old.embed(data.load_images(list(range(len(data))))).detach()
    targets = fitted.targets(torch.as_tensor(data.labels))

    def mean_accuracy(clf):
        return (clf(feats).argmax(1) == targets).float().mean().item()

    assert mean_accuracy(fitted) >= mean_accuracy(plain)
    report = fitted.report
    assert report["rows"] == ["0", "1", "2", "3"] and report["synthesized"] == [False, False, True, True]
    assert len(report["accuracy_before_fit"]) == 4
    per_row = [(fitted(feats).argmax(1)[targets == r] == r).float().mean().item() for r in range(4)]
    assert report["accuracy_on_old_embeddings"] == pytest.approx(per_row, abs=1e-4)
    assert "fitted synthesized rows" in describe_fit(report, fitted=True)


def test_describe_fit_names_the_rows_the_old_classifier_mislabels():
    report = {"rows": ["shirt", "shoe"], "accuracy_on_old_embeddings": [0.2, 0.9]}
    line = describe_fit(report, fitted=False)
    assert "'shirt' 20%" in line and "shoe" not in line and "--fit-synthesized" in line
    assert "--fit-synthesized" not in describe_fit({"rows": ["a"], "accuracy_on_old_embeddings": [0.8]}, False)

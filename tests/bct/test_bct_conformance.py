"""compat's conformance kit on every compat-bct method, plus option variants."""

from pathlib import Path

import compat_bct.plugin
import pytest
from compat_core.testing import run_conformance, train_old_model


@pytest.fixture(scope="module")
def shared_old(tmp_path_factory):
    """One tiny old model for the module, reused by every check (saves retraining)."""
    return Path(train_old_model(tmp_path_factory.mktemp("conformance-old")))


def conformance(method, tmp_path, shared_old, options=None):
    run_conformance(compat_bct.plugin, method, tmp_path, needs_old=True, options=options,
                    distribution="compat-bct", old_run=shared_old)


@pytest.mark.parametrize("method", ["bct", "l2", "triplet", "contrastive"])
def test_conformance(method, tmp_path, shared_old):
    conformance(method, tmp_path, shared_old)


@pytest.mark.parametrize("method, options", [
    ("bct", {"influence": "lwf", "fit_synthesized": False}),
    ("bct", {"synthesize": "new-only", "normalized_classifier": False, "fit_synthesized": False,
             "influence_weight": 10.0}),  # the paper's recipe
    ("bct", {"synthesize": "new-only", "normalized_classifier": False, "normalize_synthesized": True}),
    ("l2", {"l2_form": "squared", "no_ce": True}),
    ("l2", {"embedding_dim": 24, "dim_policy": "truncate", "l2_threshold": 0.2}),
    ("contrastive", {"embedding_dim": 8, "dim_policy": "zero-pad"}),
])
def test_conformance_with_options(method, options, tmp_path, shared_old):
    conformance(method, tmp_path, shared_old, options)

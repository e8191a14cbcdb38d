"""compat's conformance kit on every compat-pct method, plus option variants."""

from pathlib import Path

import compat_pct.plugin
import pytest
from compat_core.testing import run_conformance, train_old_model


@pytest.fixture(scope="module")
def shared_old(tmp_path_factory):
    """One tiny old model for the module, reused by every check."""
    return Path(train_old_model(tmp_path_factory.mktemp("pct-conformance-old")))


def conformance(method, tmp_path, shared_old, options=None):
    run_conformance(compat_pct.plugin, method, tmp_path, needs_old=True, options=options,
                    distribution="compat-pct", old_run=shared_old)


@pytest.mark.parametrize("method, options", [("pct", None), ("cna", None),
                                             ("elodi", {"min_teachers": 1})])  # the kit has one old run
def test_conformance(method, options, tmp_path, shared_old):
    conformance(method, tmp_path, shared_old, options)


@pytest.mark.parametrize("method, options", [
    ("pct", {"kd_mode": "l2", "mixing": "sum", "kd_filter": "neg_flip"}),
    ("cna", {"cna_form": "in", "cna_neighbors": 3, "kd_filter": "new_incorrect", "embedding_dim": 8}),
    ("elodi", {"ldi_topk": 3, "ldi_p_norm": True, "ldi_p": 3.0, "ldi_topk_by": "old", "head": "cosface",
               "min_teachers": 1}),
    ("elodi", {"recipe": "ldi"}),
])
def test_conformance_with_options(method, options, tmp_path, shared_old):
    conformance(method, tmp_path, shared_old, options)

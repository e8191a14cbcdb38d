"""The optional PNG plot: drawn when matplotlib is installed, a clear CompatError when it is not."""

from __future__ import annotations

import sys

import pytest
from compat_core.errors import CompatError
from compat_fct.plot import require_matplotlib, save_plot

RESULT = {"fractions": [0.0, 0.5, 1.0], "order": "uncertainty", "transformed": "runs/fastfill", "new": "runs/new",
          "curves": {"top1": [0.5, 0.7, 0.8], "top5": [0.7, 0.8, 0.9], "mAP": [0.3, 0.4, 0.5]},
          "auc": {"mean": {"top1": 0.667, "top5": 0.8, "mAP": 0.4}},
          "reference": {"old/old": {"top1": 0.6, "top5": 0.8, "mAP": 0.3}}}


def test_plot_is_a_png_file(tmp_path):
    import matplotlib  # noqa: F401  -- the [plot] extras are part of the test environment: never skip
    path = save_plot(RESULT, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temporary file left behind


def test_missing_matplotlib_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(CompatError, match=r"--plot needs matplotlib.*compat-fct\[plot\]"):
        require_matplotlib()
    with pytest.raises(CompatError, match="--plot needs matplotlib"):
        save_plot(RESULT, tmp_path / "curve.png")
    assert not (tmp_path / "curve.png").exists()

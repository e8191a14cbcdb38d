"""The dry run's time estimate: honest about a busy machine."""


def test_the_estimate_warns_when_the_machine_was_busy(monkeypatch):
    import os

    from compat_core.study import estimate

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    assert "load 3.0 on 2 cores" in estimate._busy()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.0, 0.0))
    assert estimate._busy() == ""

"""compat_core.progress.track: plain lines at most every 10% off a terminal, nothing for quick work or off."""

from compat_core.progress import track


def test_plain_lines_every_tenth_with_weights(capsys, monkeypatch):
    monkeypatch.setenv("COMPAT_PROGRESS", "plain")
    items = list(track(range(20), total=100, label="embed x", unit="images", weights=[5] * 20, quiet_seconds=0))
    assert items == list(range(20))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[0].startswith("  embed x: 10/100 images (10%")
    assert lines[-1].startswith("  embed x: 100/100 images (100%")


def test_quick_work_and_off_are_silent(capsys, monkeypatch):
    monkeypatch.setenv("COMPAT_PROGRESS", "plain")
    assert list(track(range(3), total=3, label="x")) == [0, 1, 2]  # under quiet_seconds
    monkeypatch.setenv("COMPAT_PROGRESS", "off")
    assert list(track(range(3), total=3, label="x", quiet_seconds=0)) == [0, 1, 2]
    assert capsys.readouterr().err == ""

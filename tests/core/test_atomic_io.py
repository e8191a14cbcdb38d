"""Atomic writes: the old file survives a failed write, no temporary is left, modes follow the umask."""

import os
import stat

import pytest
from compat_core.io import write_atomic, write_json, write_text


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        import importlib

        import compat_core.io as io_module

        io_module = importlib.reload(io_module)  # FILE_MODE is read from the umask at import
        path = io_module.write_text(tmp_path / "config.yaml", "a: 1\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(previous)
        importlib.reload(io_module)


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = write_json(tmp_path / "model.json", {"ok": True})

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, broken)
    assert path.read_text() == '{\n  "ok": true\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


def test_write_text_replaces_content(tmp_path):
    path = write_text(tmp_path / "a.txt", "one")
    write_text(path, "two")
    assert path.read_text() == "two"

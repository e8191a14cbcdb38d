"""Atomic writes: the old file survives a failed write, no temporary is left, modes follow the umask."""

import os
import stat
from pathlib import Path

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


def test_a_full_disk_is_one_message_and_the_previous_file_is_kept(tmp_path):
    import errno

    import pytest
    from compat_core.errors import CompatError
    from compat_core.io import write_atomic

    path = tmp_path / "model.json"
    path.write_text("previous")

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CompatError, match="No space left on device; the previous version is kept"):
        write_atomic(path, full)

    def wrapped(tmp):  # what torch.save / safetensors raise
        raise RuntimeError("[enforce fail] write failed: No space left on device")

    with pytest.raises(CompatError, match="No space left on device"):
        write_atomic(path, wrapped)
    assert path.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


def test_corrupt_truncated_or_mismatched_weights_are_one_message(tmp_path):
    import pytest
    from compat_core.errors import CompatError
    from compat_core.models.embedding import EmbeddingModel, ModelSpec
    from compat_core.models.run import load_model, save_model

    spec = ModelSpec(backbone="test_resnet", embedding_dim=8, num_classes=3, classes=["a", "b", "c"])
    save_model(EmbeddingModel(spec), tmp_path / "run")
    weights = tmp_path / "run" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CompatError, match="truncated, corrupt or unreadable"):
        load_model(tmp_path / "run")
    other = ModelSpec(backbone="test_resnet", embedding_dim=16, num_classes=3, classes=["a", "b", "c"])
    save_model(EmbeddingModel(other), tmp_path / "other")
    weights.write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(CompatError, match="of shape .* describes"):
        load_model(tmp_path / "run")


def test_writability_probes_of_two_processes_do_not_collide(tmp_path, monkeypatch):
    """Each probe has a name of its own: one process removing its probe never removes another's."""
    import compat_core.io as io

    names = []
    real_write = Path.write_bytes

    def record(self, data):
        names.append(self.name)
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", record)
    io.check_writable_folder(tmp_path, "--out")
    io.check_writable_folder(tmp_path, "--out")
    assert len(names) == 2 and names[0] != names[1]
    assert not list(tmp_path.iterdir())  # nothing left behind

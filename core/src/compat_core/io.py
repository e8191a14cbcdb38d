"""Atomic file writes: a crash never leaves a half-written artifact in place of a good one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from compat_core.errors import CompatError

# mkstemp creates 0600 files; artifacts get the mode a plain open() would give them (0666 & ~umask),
# so that a team's shared run folders stay readable. Read once: os.umask can only be read by setting it.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path in the same folder; rename it onto ``path`` on success.

    Example:
        >>> with atomic_path("out.json") as tmp:  # doctest: +SKIP
        ...     Path(tmp).write_text("{}")
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):
            os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except OSError as exc:  # full disk, quota, permissions: the old file (if any) is untouched
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise _write_error(path, exc) from None
    except Exception as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if "No space left on device" in str(exc):  # torch.save and safetensors wrap the OSError
            import errno

            raise _write_error(path, OSError(errno.ENOSPC, "No space left on device")) from None
        raise
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_error(path: Path, exc: OSError):
    import errno

    from compat_core.errors import CompatError

    reason = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "disk quota exceeded",
              errno.EACCES: "permission denied", errno.EROFS: "read-only file system"}.get(exc.errno,
                                                                                        exc.strerror or str(exc))
    kept = "the previous version is kept" if path.exists() else "nothing was written"
    return CompatError(f"cannot write {path}: {reason}; {kept}. Free space or choose a writable place, then "
                       f"run the command again.")


def write_atomic(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and fsync, so a killed run keeps every finished line."""
    with open(path, "a") as handle:
        handle.write(line.rstrip("\n") + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_json(path: str | os.PathLike, fix: str) -> Any:
    """The parsed JSON file ``path``; a user-facing error ending with ``fix`` when it is missing or unreadable.

    Example:
        >>> read_json("runs/old/model.json", "Point to a run directory.")["format"]  # doctest: +SKIP
        'compat-model/1'
    """
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CompatError(f"{path}: no such file. {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompatError(f"{path} is missing or unreadable ({exc}). {fix}") from None


def read_npz(path: str | os.PathLike, required: tuple[str, ...], *, what: str, unreadable_fix: str,
             missing_fix: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every array of a ``.npz`` file but those in ``skip`` (never unpickled), with a user-facing error when the
    file cannot be read or lacks one of ``required``.

    Example:
        >>> read_npz("old.npz", ("features", "labels"), what="feature file",  # doctest: +SKIP
        ...          unreadable_fix="Create one with `compat features extract`.", missing_fix="...")
    """
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files if k not in skip}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # cut, corrupt, not a zip
        raise CompatError(f"{path} is not a readable .npz {what} ({exc}). {unreadable_fix}") from None
    if any(name not in arrays for name in required):
        names = " and ".join(f"'{name}'" for name in required)
        raise CompatError(f"{path} lacks the arrays {names} (has: {', '.join(arrays) or 'none'}). {missing_fix}")
    return arrays


def memmap_npz_member(path: str | os.PathLike, name: str) -> np.ndarray | None:
    """Array ``name`` of an uncompressed ``.npz`` (``np.savez``, what compat writes) as a read-only memory map,
    without reading it; None when the member is compressed or absent. Never unpickles (object arrays are
    refused by the header check).

    Example:
        >>> table = memmap_npz_member("old-train.npz", "features")  # doctest: +SKIP
        >>> table[[3, 7]].shape  # reads two rows from disk  # doctest: +SKIP
        (2, 128)
    """
    import struct
    import zipfile

    member = f"{name}.npy"
    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            return None
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(handle)
        if dtype.hasobject:
            return None
        offset = handle.tell()
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def check_writable(path: str | os.PathLike, flag: str) -> Path:
    """Fail fast, before any long work, when ``path`` cannot be written: its folder is missing or not
    writable, or the path is a folder. Writes nothing that stays (a probe file is created and removed).

    Example:
        >>> check_writable("runs/matrix.json", "--json")  # doctest: +SKIP
    """
    from compat_core.errors import CompatError

    target = Path(path)
    if target.is_dir():
        raise CompatError(f"{flag} {path} is a folder. Give a file name, e.g. {target / 'out.json'}.")
    parent = target.parent
    if not parent.is_dir():
        raise CompatError(f"{flag} {path}: the folder {parent} does not exist. Create it or write elsewhere.")
    _probe(parent, target.name, flag, path)
    return target


def check_writable_folder(path: str | os.PathLike, flag: str) -> Path:
    """Fail fast when the folder ``path`` (which may not exist yet) cannot be created or written in: the probe
    goes to ``path`` itself when it exists, else to its nearest existing parent. Leaves nothing behind.

    Example:
        >>> check_writable_folder("runs/new-model", "--out")  # doctest: +SKIP
    """
    from compat_core.errors import CompatError

    folder = Path(path)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == folder and not folder.is_dir():
        raise CompatError(f"{flag} {path} is a file. Choose a folder path (it is created if needed).")
    if not existing.is_dir():
        raise CompatError(f"{flag} {path}: {existing} is a file, not a folder. Choose another path.")
    _probe(existing, folder.name or "folder", flag, path)
    return folder


def _probe(folder: Path, name: str, flag: str, path) -> None:
    """Create and remove an empty file in ``folder``; a CompatError naming ``flag path`` when that fails."""
    import errno
    import uuid

    from compat_core.errors import CompatError

    # a name of this process alone: two processes checking one folder (two `compat study run --only`
    # into one --out) must not remove each other's probe
    probe = folder / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = "read-only file system" if exc.errno == errno.EROFS else exc.strerror
        raise CompatError(f"{flag} {path}: cannot write in {folder} ({reason}). Choose a folder you can "
                          f"write.") from None

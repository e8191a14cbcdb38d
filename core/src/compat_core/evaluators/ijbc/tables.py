"""Fast readers of the IJB meta text tables, with file-and-line errors.

Each reader first tries one vectorised pass (a regular expression and ``np.fromstring``, all in C:
15.7 million pair lines parse in about a second and a half). Only when that pass sees something
unexpected (a blank line, a bad field) does a line-by-line scan run, which either learns the line
numbers or stops at the first faulty line and names it.
"""

from __future__ import annotations

import re
import warnings
from itertools import chain
from pathlib import Path

import numpy as np

from compat_core.errors import CompatError

_FIRST_TOKEN = re.compile(r"^\S+", re.M)
_FIRST_TWO_FIELDS = re.compile(r"^([^,\n]*),([^,\n]*)", re.M)


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing or unreadable file is a user error naming it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CompatError(f"missing meta file {path}. Check --root and --target.") from None
    except OSError as exc:
        raise CompatError(f"cannot read {path} ({exc}). Check the file's permissions.") from None


def parse_numbers(text: bytes | str, dtype) -> np.ndarray | None:
    """All whitespace-separated numbers of ``text`` in one C pass; None when the text does not parse.

    Example:
        >>> parse_numbers("1 2\\n3 4\\n", np.int64).tolist(), parse_numbers("1 x", np.int64)
        ([1, 2, 3, 4], None)
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # numpy warns on trailing unparsable data
            return np.fromstring(text, dtype=dtype, sep=" ")
    except (DeprecationWarning, ValueError):
        return None


def count_lines(text: bytes | str) -> int:
    """Lines up to the last non-blank character (a trailing newline or blank lines do not count).

    Example:
        >>> count_lines("a\\nb\\n\\n"), count_lines("")
        (2, 0)
    """
    end = len(text)
    blank = b" \t\r\n" if isinstance(text, bytes) else " \t\r\n"
    while end and text[end - 1] in blank:  # index from the end: no copy of a 200 MB text
        end -= 1
    newline = b"\n" if isinstance(text, bytes) else "\n"
    return text.count(newline, 0, end) + 1 if end else 0


def read_number_lines(path: Path, n_values: int, layout: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``n_values`` integers per line: the table (N, n_values) int64, and line numbers only when the
    file has blank lines (otherwise row ``i`` is line ``i + 1``).

    Example:
        >>> read_number_lines(Path("meta/ijbc_template_pair_label.txt"), 3, "pairs")[0].shape  # doctest: +SKIP
        (15658489, 3)
    """
    raw = read_bytes(path)
    values = parse_numbers(raw, np.int64)
    if values is not None and len(values) == n_values * count_lines(raw):
        return values.reshape(-1, n_values), None
    rows, lines = [], []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != n_values:
                raise ValueError
            rows.append([int(f) for f in fields])
        except ValueError:
            raise CompatError(f"{path}:{number}: expected {layout}, found {line.strip()[:80]!r}. Fix or remove "
                              f"the line.") from None
        lines.append(number)
    return np.asarray(rows, dtype=np.int64).reshape(-1, n_values), np.asarray(lines, dtype=np.int64)


def read_named_lines(path: Path, n_values: int, dtype, layout: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``<name> <n_values numbers>`` per line: names (str), values (N, n_values) and line numbers.

    Example:
        >>> names, values, lines = read_named_lines(Path("meta/ijbc_face_tid_mid.txt"), 2, np.int64,
        ...                                         "faces")  # doctest: +SKIP
    """
    text = read_bytes(path).decode("utf-8", errors="replace")
    names = _FIRST_TOKEN.findall(text)
    if names and len(names) == count_lines(text):  # no blank line: row i is line i + 1
        values = parse_numbers(_FIRST_TOKEN.sub("", text), dtype)
        if values is not None and len(values) == n_values * len(names):
            return np.asarray(names), values.reshape(-1, n_values), np.arange(1, len(names) + 1)
    return _scan_named_lines(path, text, n_values, dtype, layout)


def _scan_named_lines(path: Path, text: str, n_values: int, dtype, layout: str):
    convert = int if np.issubdtype(dtype, np.integer) else float
    names, rows, lines = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != n_values + 1:
                raise ValueError
            rows.append([convert(f) for f in fields[1:]])
        except ValueError:
            raise CompatError(f"{path}:{number}: expected {layout}, found {len(fields)} fields "
                              f"({line.strip()[:60]!r}). Fix or remove the line.") from None
        names.append(fields[0])
        lines.append(number)
    if not names:
        raise CompatError(f"{path} lists no faces. Restore the file from the IJB release.")
    return np.asarray(names), np.asarray(rows, dtype=dtype), np.asarray(lines)


def read_csv_ids(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first two integer columns of a CSV with an optional header row: (R, 2) int64, line numbers.

    Example:
        >>> table, lines = read_csv_ids(Path("meta/ijbc_1N_gallery_G1.csv"))  # doctest: +SKIP
    """
    text = read_bytes(path).decode("utf-8", errors="replace")
    first_line = text.split("\n", 1)[0]
    header = parse_numbers(" ".join(first_line.split(",", 2)[:2]), np.int64) is None
    body = text[len(first_line) + 1:] if header else text
    start = 2 if header else 1
    fields = _FIRST_TWO_FIELDS.findall(body)
    rows = len(fields)
    if rows and rows == count_lines(body):  # every line has two leading fields and none is blank
        values = parse_numbers(" ".join(chain.from_iterable(fields)), np.int64)
        if values is not None and len(values) == 2 * rows:
            return values.reshape(-1, 2), np.arange(start, start + rows)
    ids, lines = [], []
    for number, line in enumerate(body.splitlines(), start=start):
        if not line.strip():
            continue
        fields = line.split(",", 2)
        try:
            ids.append((int(fields[0]), int(fields[1])))
        except (ValueError, IndexError):
            raise CompatError(f"{path}:{number}: {line.strip()[:80]!r} does not start with an integer template id "
                              f"and subject id. Rows are `TEMPLATE_ID,SUBJECT_ID,FILENAME,...` after one "
                              f"header row.") from None
        lines.append(number)
    return np.asarray(ids, dtype=np.int64).reshape(-1, 2), np.asarray(lines, dtype=np.int64)

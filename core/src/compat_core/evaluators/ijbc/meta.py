"""Readers of the IJB-C / IJB-B meta files (insightface's IJB release layout).

``<root>/meta`` holds, for ``--target ijbc`` (``ijbb`` likewise, with galleries ``S1``/``S2``):

* ``ijbc_face_tid_mid.txt``: ``<image> <template id> <media id>`` per face;
* ``ijbc_name_5pts_score.txt``: ``<image> x1 y1 ... x5 y5 <detector score>``, same faces, same order;
* ``ijbc_template_pair_label.txt``: ``<gallery template> <probe template> <1 genuine | 0 impostor>``;
* ``ijbc_1N_gallery_G1.csv``, ``..._G2.csv``, ``ijbc_1N_probe_mixed.csv``: a header row, then
  ``TEMPLATE_ID,SUBJECT_ID,...`` per face (only the first two columns are used).

Every problem is reported as a :class:`CompatError` naming the file and the line (parsing itself
is in ``tables``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compat_core.errors import CompatError
from compat_core.evaluators.ijbc.tables import read_csv_ids, read_named_lines, read_number_lines

GALLERIES = {"ijbc": ("G1", "G2"), "ijbb": ("S1", "S2")}
_DENSE_LOOKUP_LIMIT = 50_000_000  # template ids below this map to rows through a dense table


@dataclass(frozen=True)
class MetaFiles:
    """Paths of one benchmark's files under ``--root``.

    Example:
        >>> MetaFiles.of("IJBC", "ijbc").pairs.name
        'ijbc_template_pair_label.txt'
    """

    root: Path
    target: str
    images: Path
    faces: Path
    landmarks: Path
    pairs: Path
    galleries: tuple[Path, Path]
    probes: Path

    @classmethod
    def of(cls, root: str | Path, target: str) -> MetaFiles:
        root = Path(root)
        meta = root / "meta"
        g1, g2 = GALLERIES[target]
        return cls(root=root, target=target, images=root / "loose_crop",
                   faces=meta / f"{target}_face_tid_mid.txt", landmarks=meta / f"{target}_name_5pts_score.txt",
                   pairs=meta / f"{target}_template_pair_label.txt",
                   galleries=(meta / f"{target}_1N_gallery_{g1}.csv", meta / f"{target}_1N_gallery_{g2}.csv"),
                   probes=meta / f"{target}_1N_probe_mixed.csv")

    def check(self, one_to_n: bool, images: bool) -> None:
        """Fail early, before any work, when the root or a needed file is missing."""
        if not self.root.is_dir():
            raise CompatError(f"--root {self.root}: no such folder. Pass the folder that holds loose_crop/ and "
                              f"meta/ (e.g. IJB_release/{self.target.upper()}).")
        nested = self.root / self.target.upper()
        if not (self.root / "meta").is_dir() and (nested / "meta").is_dir():
            raise CompatError(f"--root {self.root} has no meta/ folder but {nested} has one: pass --root {nested}.")
        needed = [self.faces, self.landmarks, self.pairs]
        if one_to_n:
            needed += [*self.galleries, self.probes]
        for path in needed:
            if not path.is_file():
                raise CompatError(f"missing meta file {path}. The IJB release puts it under <root>/meta/; check "
                                  f"--root and --target ({self.target}), or drop -N if only 1:N files are missing.")
        if images and not self.images.is_dir():
            raise CompatError(f"missing image folder {self.images}. --model reads the loose crops from "
                              f"<root>/loose_crop/; pass --features instead if you have image features.")


@dataclass
class Faces:
    """One row per face, in the order of the face file."""

    names: np.ndarray  # (N,) str, image file names under loose_crop/
    templates: np.ndarray  # (N,) int64
    media: np.ndarray  # (N,) int64
    landmarks: np.ndarray  # (N, 5, 2) float32, (x, y) in loose-crop pixels
    scores: np.ndarray  # (N,) float32 detector scores
    landmark_lines: np.ndarray  # (N,) line numbers in the landmark file, for messages about images

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class Pairs:
    """Template pairs: column 0 is the gallery (enrolment) side, column 1 the probe side."""

    first: np.ndarray  # (P,) int64 template ids
    second: np.ndarray  # (P,) int64
    labels: np.ndarray  # (P,) bool, True for genuine
    lines: np.ndarray | None = None  # line numbers when the file has blank lines, else line = index + 1

    def line(self, index: int) -> int:
        return int(self.lines[index]) if self.lines is not None else index + 1


@dataclass
class Enrolment:
    """Templates of a 1:N gallery or probe file, ascending, with the subject of each (from its first row)."""

    path: Path
    templates: np.ndarray  # (T,) int64 unique, ascending
    subjects: np.ndarray  # (T,) int64
    lines: np.ndarray  # (T,) line of each template's first row


def read_faces(files: MetaFiles) -> Faces:
    """The face file and the landmark file, checked against each other row by row.

    Example:
        >>> faces = read_faces(MetaFiles.of("IJBC", "ijbc"))  # doctest: +SKIP
        >>> faces.landmarks.shape  # doctest: +SKIP
        (469375, 5, 2)
    """
    names, ids, _ = read_named_lines(files.faces, 2, np.int64, "`<image> <template id> <media id>`")
    marks, values, lines = read_named_lines(files.landmarks, 11, np.float32,
                                            "`<image> x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 <detector score>`")
    if len(marks) != len(names):
        raise CompatError(f"{files.faces} lists {len(names)} faces but {files.landmarks} lists {len(marks)}. "
                          f"Both files describe the same faces in the same order: use the pair from one IJB release.")
    mismatch = np.flatnonzero(marks != names)
    if len(mismatch):
        i = int(mismatch[0])
        raise CompatError(f"{files.landmarks}:{lines[i]} is for image {str(marks[i])!r} but face {i + 1} of "
                          f"{files.faces} is {str(names[i])!r}. Both files must list the same faces in the same "
                          f"order: use the pair from one IJB release.")
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):  # a NaN detector score silently zeroes its template's pooled feature (TAR 100 -> 83)
        i = int(bad[0])
        raise CompatError(f"{files.landmarks}:{lines[i]} (image {str(marks[i])!r}) holds a NaN or infinite landmark "
                          f"or detector score, as do {len(bad) - 1} other lines. Fix or restore the file from the IJB "
                          f"release.")
    return Faces(names=names, templates=ids[:, 0].copy(), media=ids[:, 1].copy(),
                 landmarks=values[:, :10].reshape(-1, 5, 2).copy(), scores=values[:, 10].copy(),
                 landmark_lines=lines)


def read_pairs(path: Path) -> Pairs:
    """The template pair file: three integers per line, the last one 0 or 1.

    Example:
        >>> read_pairs(Path("meta/ijbc_template_pair_label.txt")).labels.sum()  # doctest: +SKIP
        19557
    """
    table, lines = read_number_lines(path, 3, "`<gallery template> <probe template> <label>`")
    if not len(table):
        raise CompatError(f"{path} lists no template pairs. Restore the file from the IJB release.")
    pairs = Pairs(first=table[:, 0], second=table[:, 1], labels=table[:, 2] == 1, lines=lines)  # views: no copies
    bad = np.flatnonzero((table[:, 2] != 0) & (table[:, 2] != 1))
    if len(bad):
        i = int(bad[0])
        raise CompatError(f"{path}:{pairs.line(i)}: label {table[i, 2]} is neither 1 (genuine) nor 0 (impostor). "
                          f"Fix the line; each line is `<gallery template> <probe template> <0|1>`.")
    return pairs


def read_enrolment(path: Path) -> Enrolment:
    """A 1:N gallery or probe CSV: one header row, then ``TEMPLATE_ID,SUBJECT_ID,...`` per face.

    Example:
        >>> read_enrolment(Path("meta/ijbc_1N_gallery_G1.csv")).templates.shape  # doctest: +SKIP
        (1772,)
    """
    table, lines = read_csv_ids(path)
    if not len(table):
        raise CompatError(f"{path} lists no templates. Restore the file from the IJB release.")
    templates, first = np.unique(table[:, 0], return_index=True)
    return Enrolment(path=path, templates=templates, subjects=table[first, 1], lines=lines[first])


def check_unique_subjects(gallery: Enrolment) -> None:
    """A 1:N gallery enrols each subject once (the mated template of a probe must be unique)."""
    order = np.argsort(gallery.subjects, kind="stable")
    repeated = np.flatnonzero(np.diff(gallery.subjects[order]) == 0)
    if len(repeated):
        i = int(order[repeated[0] + 1])
        raise CompatError(f"{gallery.path}:{gallery.lines[i]}: subject {gallery.subjects[i]} is enrolled in a second "
                          f"template ({gallery.templates[i]}). A 1:N gallery holds one template per subject.")


class TemplateIndex:
    """Rows of the templates that own faces (ascending template ids), and id -> row lookups.

    Example:
        >>> index = TemplateIndex(np.array([7, 3, 7, 9]), Path("faces.txt"))
        >>> index.ids.tolist(), index.face_rows.tolist()
        ([3, 7, 9], [1, 0, 1, 2])
    """

    def __init__(self, face_templates: np.ndarray, faces_path: Path):
        self.ids, self.face_rows = np.unique(face_templates, return_inverse=True)
        self.faces_path = faces_path
        top = int(self.ids[-1]) if len(self.ids) else -1
        self._table = None
        if 0 <= self.ids[0] and top < _DENSE_LOOKUP_LIMIT:
            self._table = np.full(top + 1, -1, dtype=np.int32)
            self._table[self.ids] = np.arange(len(self.ids), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids: np.ndarray, path: Path, line_of=lambda i: i + 1) -> np.ndarray:
        """Rows (int32) of ``ids`` read from ``path``; an id no face belongs to is an error naming its line."""
        if self._table is not None and len(ids) and ids.min() >= 0 and ids.max() < len(self._table):
            rows = self._table[ids]  # one gather: the common case, 15.7 million pair ids in a blink
        elif self._table is not None:
            inside = (ids >= 0) & (ids < len(self._table))
            rows = np.where(inside, self._table[np.where(inside, ids, 0)], -1)
        else:
            rows = np.searchsorted(self.ids, ids).clip(0, len(self.ids) - 1)
            rows = np.where(self.ids[rows] == ids, rows, -1).astype(np.int32)
        unknown = np.flatnonzero(rows < 0)
        if len(unknown):
            i = int(unknown[0])
            raise CompatError(f"{path}:{line_of(i)}: template {ids[i]} has no face in {self.faces_path} "
                              f"({len(unknown)} such entries in all). The meta files come from different releases "
                              f"or targets: use the files of one IJB release (and the matching --target).")
        return rows

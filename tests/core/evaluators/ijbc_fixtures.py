"""Tiny IJB-C-format folders written by the tests (no real faces; the layout and the columns are real).

Per subject, a smooth random 112x112 "face" pattern; each face is that pattern plus noise, warped into
a 160x160 loose crop by a known random similarity transform ``A`` (scale 0.9-1.2, rotation up to 15
degrees, a few pixels of shift), and its landmark line holds ``A`` applied to insightface's five
reference points, so a correct alignment inverts ``A``. The warp here is written independently of
the evaluator's (numpy bilinear, grey outside).

Templates: one gallery template per subject (two stills, distinct media ids, template ids 1..S) and
two probe templates per subject with large sparse ids: a single still, and a "video" of three frames
sharing one media id plus one still. Ten percent of the faces get a low detector score. G1 holds
the first half of the subjects, G2 the second; the pair file pairs every gallery template with every
probe template (gallery in column 0). Subject ids are not contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REFERENCE_POINTS = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])
CSV_HEADER = "TEMPLATE_ID,SUBJECT_ID,FILENAME,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT"
CANVAS = 160


@dataclass
class IjbcFixture:
    root: Path
    target: str
    subjects: np.ndarray  # subject id per subject index
    face_template: np.ndarray  # per face
    face_media: np.ndarray
    face_subject: np.ndarray
    scores: np.ndarray
    aligned: np.ndarray  # (N, 112, 112, 3) uint8: each face before warping
    transforms: np.ndarray  # (N, 3, 3): aligned -> loose crop
    gallery_templates: dict = field(default_factory=dict)  # "G1"/"G2" -> template ids
    probe_templates: np.ndarray | None = None
    template_subject: dict = field(default_factory=dict)

    @property
    def meta(self) -> Path:
        return self.root / "meta"

    def file(self, kind: str) -> Path:
        names = {"faces": "face_tid_mid.txt", "landmarks": "name_5pts_score.txt",
                 "pairs": "template_pair_label.txt", "probes": "1N_probe_mixed.csv"}
        g1, g2 = ("G1", "G2") if self.target == "ijbc" else ("S1", "S2")
        names.update(G1=f"1N_gallery_{g1}.csv", G2=f"1N_gallery_{g2}.csv")
        return self.meta / f"{self.target}_{names[kind]}"


def similarity(scale: float, angle: float, shift: tuple[float, float]) -> np.ndarray:
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[cos, -sin, shift[0]], [sin, cos, shift[1]], [0.0, 0.0, 1.0]])


def warp_into(image: np.ndarray, matrix: np.ndarray, size: int, fill: float) -> np.ndarray:
    """``out(p) = image(matrix^-1 p)`` on integer pixel centres, bilinear, ``fill`` outside (numpy only)."""
    inverse = np.linalg.inv(matrix)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    height, width = image.shape[:2]

    def at(y, x):
        inside = ((x >= 0) & (x < width) & (y >= 0) & (y < height))[..., None]
        return np.where(inside, image[y.clip(0, height - 1), x.clip(0, width - 1)].astype(np.float64), fill)

    out = (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
           + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)
    return out.round().clip(0, 255).astype(np.uint8)


def _pattern(rng: np.random.Generator, cells: int) -> np.ndarray:
    """A random RGB pattern: a grid of cells x cells colours, bilinearly enlarged to 112x112."""
    grid = rng.integers(40, 216, size=(cells, cells, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(grid).resize((112, 112), Image.Resampling.BILINEAR), dtype=np.float64)


def make_ijbc(root: Path, *, subjects: int = 24, seed: int = 0, target: str = "ijbc",
              images: bool = True, cells: int = 4, noise: float = 6.0) -> IjbcFixture:
    """Write a tiny IJB folder under ``root`` (``loose_crop/`` and ``meta/``) and return the truth."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    if images:
        (root / "loose_crop").mkdir(exist_ok=True)
    subject_ids = 100 + 7 * np.arange(subjects)  # not contiguous
    patterns = [_pattern(rng, cells) for _ in range(subjects)]
    faces = []  # (template, media, subject index)
    gallery_tids = np.arange(1, subjects + 1)
    probe_tids = []
    media = iter(range(5000, 100000, 3))
    for s in range(subjects):
        faces += [(gallery_tids[s], next(media), s), (gallery_tids[s], next(media), s)]
        single, video = 1001 + 10 * s, 1006 + 10 * s
        probe_tids += [single, video]
        faces.append((single, next(media), s))
        frames = next(media)
        faces += [(video, frames, s)] * 3 + [(video, next(media), s)]
    n = len(faces)
    template, media_ids, subject = (np.array(col) for col in zip(*faces, strict=True))
    scores = np.where(rng.random(n) < 0.1, rng.uniform(0.05, 0.2, n), rng.uniform(0.95, 1.0, n))
    aligned = np.empty((n, 112, 112, 3), np.uint8)
    transforms = np.empty((n, 3, 3))
    names, landmark_lines = [], []
    for k in range(n):
        aligned[k] = (patterns[subject[k]] + rng.normal(0, noise, (112, 112, 3))).round().clip(0, 255)
        scale, angle = rng.uniform(0.9, 1.2), rng.uniform(-1, 1) * np.pi / 12
        centre = np.array([56.0, 56.0])
        moved = similarity(scale, angle, (0.0, 0.0))[:2, :2] @ centre
        shift = np.array([CANVAS / 2, CANVAS / 2]) + rng.uniform(-6, 6, 2) - moved
        transforms[k] = similarity(scale, angle, tuple(shift))
        name = f"{k + 1}.jpg"
        names.append(name)
        if images:
            loose = warp_into(aligned[k], transforms[k], CANVAS, fill=128.0)
            Image.fromarray(loose).save(root / "loose_crop" / name, quality=95)
        points = (transforms[k][:2, :2] @ REFERENCE_POINTS.T).T + transforms[k][:2, 2]
        landmark_lines.append(" ".join([name, *(f"{v:.3f}" for v in points.ravel()), f"{scores[k]:.3f}"]))
    scores = np.round(scores, 3)
    fixture = IjbcFixture(root=root, target=target, subjects=subject_ids, face_template=template,
                          face_media=media_ids, face_subject=subject_ids[subject], scores=scores, aligned=aligned,
                          transforms=transforms, probe_templates=np.array(probe_tids))
    fixture.template_subject = {int(t): int(subject_ids[s]) for t, _, s in faces}
    half = subjects // 2
    fixture.gallery_templates = {"G1": gallery_tids[:half], "G2": gallery_tids[half:]}
    _write_meta(fixture, names, landmark_lines)
    return fixture


def _write_meta(fixture: IjbcFixture, names: list[str], landmark_lines: list[str]) -> None:
    faces = [f"{name} {t} {m}" for name, t, m in zip(names, fixture.face_template, fixture.face_media, strict=True)]
    fixture.file("faces").write_text("\n".join(faces) + "\n")
    fixture.file("landmarks").write_text("\n".join(landmark_lines) + "\n")
    gallery = np.concatenate(list(fixture.gallery_templates.values()))
    pairs = [f"{g} {p} {int(fixture.template_subject[g] == fixture.template_subject[p])}"
             for p in fixture.probe_templates for g in gallery]
    fixture.file("pairs").write_text("\n".join(pairs) + "\n")
    for kind, templates in [("G1", fixture.gallery_templates["G1"]), ("G2", fixture.gallery_templates["G2"]),
                            ("probes", fixture.probe_templates)]:
        rows = [CSV_HEADER] + [f"{t},{fixture.template_subject[int(t)]},img/{k + 1}.jpg,0,0,{CANVAS},{CANVAS}"
                               for k, t in enumerate(fixture.face_template) if t in set(templates.tolist())]
        fixture.file(kind).write_text("\n".join(rows) + "\n")


def identity_features(fixture: IjbcFixture, dim: int = 32, noise: float = 0.3, seed: int = 1) -> np.ndarray:
    """Image features without images: a random centre per subject plus noise (float32, one row per face)."""
    rng = np.random.default_rng(seed)
    centres = {int(s): rng.normal(size=dim) for s in fixture.subjects}
    rows = np.stack([centres[int(s)] for s in fixture.face_subject]) + noise * rng.normal(size=(len(fixture.face_subject), dim))
    return rows.astype(np.float32)


def write_features(path: Path, features: np.ndarray) -> Path:
    np.savez(path, features=features)
    return path

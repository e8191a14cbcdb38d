"""Hand-made feature sets whose retrieval metrics are known by hand.

Every image is a unit vector at an angle (degrees), so cosine retrieval ranks gallery items by angular
distance. Eight images, two per class a, b, c, d (labels 0 0 1 1 2 2 3 3); no two distances tie where
it matters. The values below are worked out in the comments of each model, with leave-one-out (each
query's own image is not in its gallery).
"""

from __future__ import annotations

import numpy as np
from compat_core.features import FeatureSet

LABELS = np.array([0, 0, 1, 1, 2, 2, 3, 3])
CLASSES = ["a", "b", "c", "d"]

# old/old: a1, a2, b1, d1, d2 find their class mate first; b2 (137) finds c1 (180, 43 deg) before b1
# (90, 47 deg): AP 1/2; c1 (180) ranks d1 (10), d2 (14) before c2 (20): AP 1/3; c2 (200) ranks d2 (6),
# d1 (10) before c1 (20): AP 1/3.  top-1 5/8, mAP (5 + 1/2 + 2/3) / 8 = 37/48.
OLD = [0, 1, 90, 137, 180, 200, 190, 194]
# new/old (new queries, old gallery without the query's own image): only c2 (186) misses, finding old
# d1 (190, 4 deg) before old c1 (180, 6 deg): AP 1/2.  top-1 7/8, mAP 7.5/8 = 45/48.
# new/new: c1 (205) ranks d1 (196), d2 (192) before c2 (186): AP 1/3; c2 (186) ranks d2 (192), d1 (196)
# before c1 (205): AP 1/3; the rest hit.  top-1 6/8, mAP (6 + 2/3) / 8 = 40/48.
NEW = [0, 1, 90, 92, 205, 186, 196, 192]
# ref/ref (the independently trained model): tight, separate classes.  top-1 1, mAP 1.
REF = [0, 1, 90, 91, 180, 181, 270, 271]

EXPECTED = {("old", "old"): (5 / 8, 37 / 48), ("new", "old"): (7 / 8, 45 / 48),
            ("new", "new"): (6 / 8, 40 / 48), ("ref", "ref"): (1.0, 1.0)}


def unit_vectors(degrees) -> np.ndarray:
    radians = np.deg2rad(np.asarray(degrees, np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], 1).astype(np.float32)


def angle_set(degrees, *, data: str = "toy", model_classes=(), model: str = "") -> FeatureSet:
    """A FeatureSet of the eight images; ``data=""`` makes one without provenance."""
    return FeatureSet(unit_vectors(degrees), LABELS.copy(), np.arange(len(LABELS)), model=model, data=data,
                      split="test" if data else "", classes=list(CLASSES), model_classes=list(model_classes))

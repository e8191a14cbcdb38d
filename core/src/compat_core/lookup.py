"""Finding rows by key: where each of some ids (dataset indices, index ids) sits in a table of unique keys."""

from __future__ import annotations

import numpy as np


def rows_of(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The row of each ``wanted`` value in ``keys`` (unique, in any order), and which were found at all
    (a row is 0 where its value was not found).

    Example:
        >>> rows, found = rows_of(np.array([30, 10, 20]), np.array([20, 99, 30]))
        >>> rows.tolist(), found.tolist()
        ([2, 0, 0], [True, False, True])
    """
    keys, wanted = np.asarray(keys), np.asarray(wanted)
    if len(keys) == 0:
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    order = np.argsort(keys, kind="stable")
    place = np.minimum(np.searchsorted(keys[order], wanted), len(keys) - 1)
    found = keys[order][place] == wanted
    return np.where(found, order[place], 0), found

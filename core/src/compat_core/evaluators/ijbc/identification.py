"""1:N identification, as insightface's ``ijb_evals.py`` and MixBCT report it.

Each gallery (G1, G2; S1, S2 for IJB-B) is searched separately with every probe template: about
half the probes are *mated* (their subject is enrolled), the rest are *non-mated* (open set).

* top-k: a mated search is a hit when fewer than k other gallery templates score at least as high
  as the mate (ties count against the probe: rank 1 needs ``mate > every other``, strictly).
* TPIR@FPIR: the threshold is the ``max(int(n * fpir) - 1, 0)``-th largest of the non-mated
  searches' best scores; TPIR is the share of mated searches that are rank-1 correct AND whose mate
  scores strictly above that threshold. FPIR 1.0 uses the lowest non-mated best score.
* mean: top-k over both galleries' hits divided by the number of probes; TPIR averaged.
* merged: the closed-set search of every probe in G1+G2 (top-1/5/10), MixBCT's addition.
"""

from __future__ import annotations

import numpy as np

from compat_core.evaluators.ijbc.roc import far_key

TOP_K = (1, 5, 10)
FPIRS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
_PROBE_CHUNK = 4096


def search_stats(probes: np.ndarray, probe_subjects: np.ndarray, gallery: np.ndarray,
                 gallery_subjects: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per probe: mated?, mate score, how many other gallery templates score >= it, best score.

    Gallery subjects must be unique. Unmated probes get NaN mate score and -1 as count.

    Example:
        >>> g = np.eye(2, dtype=np.float32)
        >>> mated, mate, others, best = search_stats(g[::-1], np.array([2, 3]), g, np.array([1, 2]))
        >>> mated.tolist(), mate.tolist(), others.tolist(), best.tolist()
        ([True, False], [1.0, nan], [0, -1], [1.0, 1.0])
    """
    return grouped_search_stats(probes, probe_subjects, gallery, gallery_subjects, [slice(None)])[0]


def grouped_search_stats(probes: np.ndarray, probe_subjects: np.ndarray, gallery: np.ndarray,
                         gallery_subjects: np.ndarray, groups: list[slice]) -> list[tuple]:
    """:func:`search_stats` for several galleries made of column ranges of one gallery matrix, from a
    single product (G1, G2 and G1+G2 share the probe x gallery scores).

    Example:
        >>> g = np.eye(3, dtype=np.float32)
        >>> stats = grouped_search_stats(g, np.array([1, 2, 3]), g, np.array([1, 2, 3]), [slice(0, 1), slice(None)])
        >>> [s[0].tolist() for s in stats]
        [[True, False, False], [True, True, True]]
    """
    mates = []
    for group in groups:  # each gallery's mate column per probe (its subjects are unique)
        subjects = gallery_subjects[group]
        order = np.argsort(subjects)
        position = np.searchsorted(subjects[order], probe_subjects).clip(0, len(order) - 1)
        mated = subjects[order][position] == probe_subjects
        mates.append((mated, np.where(mated, order[position], 0)))
    out = [(mated, np.full(len(probes), np.nan, np.float32), np.full(len(probes), -1, np.int64),
            np.empty(len(probes), np.float32)) for mated, _ in mates]
    gallery_t = np.ascontiguousarray(gallery.T, dtype=np.float32)
    for begin in range(0, len(probes), _PROBE_CHUNK):
        rows = slice(begin, begin + _PROBE_CHUNK)
        scores = np.asarray(probes[rows], dtype=np.float32) @ gallery_t
        for group, (mated, mate_column), (_, mate, others, best) in zip(groups, mates, out, strict=True):
            part = scores[:, group]
            best[rows] = part.max(axis=1)
            own = part[np.arange(len(part)), mate_column[rows]]
            count = np.count_nonzero(part >= own[:, None], axis=1) - 1  # minus the mate itself
            mate[rows] = np.where(mated[rows], own, np.nan)
            others[rows] = np.where(mated[rows], count, -1)
    return out


def open_set_metrics(mated: np.ndarray, mate: np.ndarray, others: np.ndarray, best: np.ndarray) -> dict:
    """top-k and TPIR@FPIR of one gallery from :func:`search_stats` (fractions; None when undefined).

    Example:
        >>> m = open_set_metrics(np.array([True, False]), np.array([0.9, np.nan]), np.array([0, -1]),
        ...                      np.array([0.9, 0.5]))
        >>> m["top1"], m["tpir_at_fpir"]["1e+00"], m["thresholds"]["1e+00"]
        (1.0, 1.0, 0.5)
    """
    n_mated = int(np.count_nonzero(mated))
    hits = {f"top{k}": int(np.count_nonzero(mated & (others < k) & (others >= 0))) for k in TOP_K}
    result: dict = {name: (count / n_mated if n_mated else None) for name, count in hits.items()}
    non_mated = np.sort(best[~mated])[::-1]
    correct = mated & (others == 0)
    tpir, thresholds = {}, {}
    for fpir in FPIRS:
        if not len(non_mated) or not n_mated:
            tpir[far_key(fpir)], thresholds[far_key(fpir)] = None, None
            continue
        threshold = non_mated[max(int(len(non_mated) * fpir) - 1, 0)]
        thresholds[far_key(fpir)] = float(threshold)
        tpir[far_key(fpir)] = int(np.count_nonzero(correct & (mate > threshold))) / n_mated
    result.update(tpir_at_fpir=tpir, thresholds=thresholds, n_mated=n_mated, n_nonmated=int(len(non_mated)),
                  hits=hits)
    return result


def mean_metrics(first: dict, second: dict, n_probes: int) -> dict:
    """insightface's "[Mean]": both galleries' hits over all probes; TPIR averaged over the galleries.

    Example:
        >>> g = {"hits": {"top1": 3, "top5": 4, "top10": 4}, "tpir_at_fpir": {"1e-01": 0.5}}
        >>> mean_metrics(g, g, 10)["top1"], mean_metrics(g, g, 10)["tpir_at_fpir"]
        (0.6, {'1e-01': 0.5})
    """
    result: dict = {name: (first["hits"][name] + second["hits"][name]) / n_probes for name in first["hits"]}
    result["tpir_at_fpir"] = {key: None if first["tpir_at_fpir"][key] is None or second["tpir_at_fpir"][key] is None
                              else (first["tpir_at_fpir"][key] + second["tpir_at_fpir"][key]) / 2
                              for key in first["tpir_at_fpir"]}
    return result


def closed_set_metrics(mated: np.ndarray, others: np.ndarray) -> dict:
    """top-k of the merged gallery over every probe (a probe without a mate counts as a miss).

    Example:
        >>> closed_set_metrics(np.array([True, True, False]), np.array([0, 7, -1]))["top10"]
        0.6666666666666666
    """
    n_probes = len(mated)
    result: dict = {f"top{k}": int(np.count_nonzero(mated & (others < k) & (others >= 0))) / n_probes
                    for k in TOP_K}
    result.update(n_probes=n_probes, n_unmated=int(n_probes - np.count_nonzero(mated)))
    return result

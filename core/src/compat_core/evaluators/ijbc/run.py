"""``compat eval ijbc``: read the meta files, get image features (from models or files), pool them
into templates per side, and report 1:1 verification and (with ``-N``) 1:N identification.

Sides: the gallery side is pair column 0 and the 1:N galleries; the probe side is pair column 1 and
the 1:N probes. In the self test one model encodes both; in the cross test the OLD model encodes
the gallery side and the NEW model the probe side (MixBCT's protocol).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from compat_core.errors import CompatError
from compat_core.evaluators.ijbc.align import ALIGNED_SIZE
from compat_core.evaluators.ijbc.meta import (
    Enrolment,
    Faces,
    MetaFiles,
    TemplateIndex,
    check_unique_subjects,
    read_enrolment,
    read_faces,
    read_pairs,
)
from compat_core.evaluators.ijbc.options import IjbcOptions


@dataclass
class Protocol:
    """The parsed meta files, with every template id already mapped to its template row."""

    files: MetaFiles
    faces: Faces
    index: TemplateIndex
    genuine: np.ndarray  # per pair (the pair file's ids are dropped once mapped to rows: 0.4 GB on IJB-C)
    first_rows: np.ndarray  # gallery-side template row of each pair (int32)
    second_rows: np.ndarray  # probe-side template row of each pair
    galleries: list[tuple[Enrolment, np.ndarray]]  # empty without -N
    probes: tuple[Enrolment, np.ndarray] | None

    def side_templates(self, side: str) -> np.ndarray:
        """Template rows the gallery side (or the probe side) needs, as a boolean mask."""
        needed = np.zeros(len(self.index), bool)
        if side == "gallery":
            needed[self.first_rows] = True
            for _, rows in self.galleries:
                needed[rows] = True
        else:
            needed[self.second_rows] = True
            if self.probes is not None:
                needed[self.probes[1]] = True
        return needed


def run_ijbc(options: IjbcOptions) -> dict:
    """Evaluate; returns the metrics dict (fractions) that the CLI renders and writes as JSON."""
    _check_sources(options)
    clock = {"start": time.perf_counter()}
    protocol = read_protocol(options)
    clock["meta"] = time.perf_counter()
    cross = bool(options.old_model or options.old_features)
    new, old = _both_sides(options, protocol, cross)
    if cross and old.shape[1] != new.shape[1]:
        new, old = _aligned(new, old, options)
    clock["features"] = time.perf_counter()
    gallery_side = _templates(old, protocol, options, "old" if cross else "new")
    probe_side = _templates(new, protocol, options, "new") if cross else gallery_side
    embedding_dim = new.shape[1]
    del new, old  # the image features (0.9 GB on IJB-C) are not needed past pooling
    clock["pooling"] = time.perf_counter()
    from compat_core.evaluators.ijbc.verification import pair_scores, verification_metrics

    scores = pair_scores(gallery_side, probe_side, protocol.first_rows, protocol.second_rows)
    result = {"mode": "cross" if cross else "self",
              "verification": verification_metrics(scores, protocol.genuine, str(protocol.files.pairs))}
    clock["verification"] = time.perf_counter()
    if options.one_to_n:
        result["identification"] = identification(protocol, gallery_side, probe_side)
        clock["identification"] = time.perf_counter()
    result["settings"] = _settings(options, protocol, embedding_dim)
    result["seconds"] = _durations(clock)
    return result


def read_protocol(options: IjbcOptions) -> Protocol:
    """Parse and cross-check every meta file the run needs (before any model work)."""
    files = MetaFiles.of(options.root, options.target)
    files.check(options.one_to_n, images=bool(options.model or options.old_model))
    faces = read_faces(files)
    index = TemplateIndex(faces.templates, files.faces)
    pairs = read_pairs(files.pairs)
    first_rows = index.rows(pairs.first, files.pairs, pairs.line)
    second_rows = index.rows(pairs.second, files.pairs, pairs.line)
    galleries, probes = [], None
    if options.one_to_n:
        for path in files.galleries:
            gallery = read_enrolment(path)
            check_unique_subjects(gallery)
            galleries.append((gallery, _enrolled_rows(index, gallery)))
        (first, _), (second, _) = galleries
        shared = np.intersect1d(first.subjects, second.subjects)
        if len(shared):
            raise CompatError(f"subject {shared[0]} is enrolled in both {first.path} and {second.path}. The two 1:N "
                              f"galleries must be disjoint: use the files of one IJB release.")
        probe_file = read_enrolment(files.probes)
        probes = (probe_file, _enrolled_rows(index, probe_file))
    return Protocol(files, faces, index, pairs.labels, first_rows, second_rows, galleries, probes)


def _enrolled_rows(index: TemplateIndex, enrolment: Enrolment) -> np.ndarray:
    return index.rows(enrolment.templates, enrolment.path, lambda i: int(enrolment.lines[i]))


def _check_sources(options: IjbcOptions) -> None:
    from compat_core.models.run import is_run_dir

    if bool(options.model) == bool(options.features):
        raise CompatError("compat eval ijbc needs exactly one of --model RUN (faces are embedded) and --features "
                          "F.npz (image features, one row per face).")
    if options.old_model and options.old_features:
        raise CompatError("pass at most one of --old-model and --old-features (the old side of the cross test).")
    for flag, run in (("--model", options.model), ("--old-model", options.old_model)):
        if run and not is_run_dir(run):
            raise CompatError(f"{flag} {run} is not a compat run directory (model.json + model.safetensors). Pass "
                              f"the --out folder of `compat train`, or use --features with a .npz file.")


def _both_sides(options: IjbcOptions, protocol: Protocol, cross: bool) -> tuple[np.ndarray, np.ndarray]:
    """(new, old) image features; feature files are read and checked before any model runs."""
    from compat_core.evaluators.ijbc.embed import check_images, load_image_features

    n_faces = len(protocol.faces)
    new = load_image_features(options.features, protocol.files, n_faces, "--features") if options.features else None
    old = (load_image_features(options.old_features, protocol.files, n_faces, "--old-features")
           if options.old_features else None)
    jobs = []  # (which, run directory, face rows its side needs)
    if new is None:
        jobs.append(("new", options.model, _face_rows(protocol, "probe" if cross else "both")))
    if cross and old is None:
        jobs.append(("old", options.old_model, _face_rows(protocol, "gallery")))
    if jobs:  # every image either model reads must exist before the first one starts
        check_images(protocol.files, protocol.faces, np.unique(np.concatenate([rows for _, _, rows in jobs])))
    for which, run, rows in jobs:
        features = _model_features(run, protocol, rows, options)
        new, old = (features, old) if which == "new" else (new, features)
    return new, (old if cross else new)


def _aligned(new: np.ndarray, old: np.ndarray, options: IjbcOptions) -> tuple[np.ndarray, np.ndarray]:
    """The cross test's two sides in one dimension, as every other evaluator aligns them
    (:func:`compat_core.features.align_dims`): by ``--align``, or (``auto``) by the policy the new side
    recorded, else the old side's (BT^2: its first d_old dimensions are the old-compatible part). Aligned
    before pooling, so template features and their normalisation see only those dimensions."""
    from compat_core.features import align_arrays

    policy = options.align
    if policy == "auto":
        policy = (_recorded_policy(options.model, options.features)
                  or _recorded_policy(options.old_model, options.old_features))
    return align_arrays(new, old, policy, ("the new", "the old"))


def _recorded_policy(run: str | None, features: str | None) -> str:
    """One side's ``dim_policy``: from its run's model.json, or from its feature file ("" when none)."""
    if run:
        from compat_core.models.run import read_spec

        return str(read_spec(run).dim_policy or "")
    with np.load(features, allow_pickle=False) as npz:
        return str(npz["dim_policy"]) if "dim_policy" in npz.files else ""


def _face_rows(protocol: Protocol, side: str) -> np.ndarray:
    """Faces whose template one side needs (``both``: either side)."""
    needed = (protocol.side_templates("gallery") | protocol.side_templates("probe") if side == "both"
              else protocol.side_templates(side))
    return np.flatnonzero(needed[protocol.index.face_rows])


def _model_features(run: str, protocol: Protocol, rows: np.ndarray, options: IjbcOptions) -> np.ndarray:
    """Image features of a run directory's model on the faces at ``rows`` (others stay zero)."""
    from compat_core.engine.distributed import resolve_device
    from compat_core.evaluators.ijbc.embed import model_features

    return model_features(run, protocol.files, protocol.faces, rows, flip=options.flip,
                          batch_size=options.batch_size, workers=options.workers,
                          device=str(resolve_device(options.device)))


def _templates(features: np.ndarray, protocol: Protocol, options: IjbcOptions, which: str) -> np.ndarray:
    from compat_core.evaluators.ijbc.pooling import face_weights, template_features

    faces = protocol.faces
    weights = face_weights(features, faces.scores, detector_score=options.detector_score,
                           normalize=options.normalize_image_features, source=f"{which} image features")
    return template_features(features, protocol.index.face_rows, faces.media, weights, len(protocol.index))


def identification(protocol: Protocol, gallery_side: np.ndarray, probe_side: np.ndarray) -> dict:
    """Open-set search of each gallery, their mean, and the merged closed-set search."""
    from compat_core.evaluators.ijbc.identification import (
        closed_set_metrics,
        grouped_search_stats,
        mean_metrics,
        open_set_metrics,
    )

    probe_file, probe_rows = protocol.probes
    (first, first_rows), (second, second_rows) = protocol.galleries
    # one product of the probes with G1+G2; G1 and G2 are its two column ranges
    g1, g2, merged = grouped_search_stats(
        probe_side[probe_rows], probe_file.subjects, gallery_side[np.r_[first_rows, second_rows]],
        np.r_[first.subjects, second.subjects],
        [slice(0, len(first_rows)), slice(len(first_rows), None), slice(None)])
    result = {"G1": open_set_metrics(*g1), "G2": open_set_metrics(*g2)}
    result["mean"] = mean_metrics(result["G1"], result["G2"], len(probe_rows))
    result["merged"] = closed_set_metrics(merged[0], merged[2])
    return result


def _settings(options: IjbcOptions, protocol: Protocol, dim: int) -> dict:
    files = protocol.files
    settings = {key: getattr(options, key) for key in ("target", "root", "model", "features", "old_model",
                                                       "old_features", "one_to_n", "detector_score",
                                                       "normalize_image_features")}
    settings["flip"] = options.flip if options.model or options.old_model else "as in the feature files"
    settings.update(n_faces=len(protocol.faces), n_templates=len(protocol.index), embedding_dim=int(dim),
                    pair_file=str(files.pairs), gallery_side="old" if options.old_model or options.old_features
                    else "new", alignment=f"similarity (Umeyama) to insightface's 5 points, {ALIGNED_SIZE}x"
                    f"{ALIGNED_SIZE}, bilinear")
    if options.one_to_n:
        settings.update(galleries=[str(path) for path in files.galleries], probes=str(files.probes))
    return settings


def _durations(clock: dict) -> dict:
    """Seconds per stage, from the timestamps taken in order."""
    names = list(clock)
    return {name: round(clock[name] - clock[previous], 3) for previous, name in zip(names, names[1:], strict=False)}

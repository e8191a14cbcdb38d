"""Benchmark of ``compat eval ijbc`` from features on a synthetic full-size IJB-C (a script, not a test).

The synthetic set has the real counts: 469,375 faces, 23,124 templates (3,531 gallery templates
in G1 1,772 + G2 1,759, one per subject; 19,593 probe templates), 15,658,489 template pairs of
which 19,557 genuine, 512-d image features, media with several frames, low detector scores on
10% of the faces, and the real file names and columns. It is written once to ``--data-dir``.

Each measurement runs in a fresh child process (peak RSS from ``ru_maxrss``), 1 BLAS thread:

* ``ours``: ``run_ijbc`` (1:1 + 1:N) from the meta files and the feature file;
* ``reference``: a straightforward implementation of the same protocol, as insightface writes it:
  ``np.loadtxt`` readers, a Python loop over templates and their media (float64), a per-pair
  gather of template rows in chunks of 100,000 pairs, ``sklearn.metrics.roc_curve``, and a loop
  over probes with an ``argsort`` per probe for 1:N.

It prints both wall times, the ratio, the peak memory, and how far the two sets of metrics are
apart (the number of values that differ when printed as percentages with two decimals).

Usage:
    python bench/ijbc.py                        # writes bench/results/ijbc.json
    python bench/ijbc.py --skip-reference       # ours only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_FACES, N_G1, N_G2, N_PROBES = 469_375, 1_772, 1_759, 19_593
N_PAIRS, N_GENUINE, DIM = 15_658_489, 19_557, 512
DEFAULT_DATA = Path(os.environ.get("TMPDIR", "/tmp")) / "compat-bench-ijbc" / "IJBC"
DEFAULT_OUT = Path(__file__).parent / "results" / "ijbc.json"
CSV_HEADER = "TEMPLATE_ID,SUBJECT_ID,FILENAME,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT"


# ------------------------------------------------------------------------------ synthetic data


def generate(root: Path, seed: int = 0) -> None:
    """Write meta/ and features.npz for the synthetic full-size set (about 20 s and 1.2 GB)."""
    rng = np.random.default_rng(seed)
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    n_gallery = N_G1 + N_G2
    n_templates = n_gallery + N_PROBES
    tids = rng.permutation(np.arange(1, 200_000))[:n_templates]  # sparse, unordered ids
    subject_ids = rng.permutation(np.arange(1, 100_000))[:n_gallery]
    template_subject = np.r_[np.arange(n_gallery), rng.integers(0, n_gallery, N_PROBES)]
    # every template has a face; the rest are spread at random (about 20 per template)
    face_template = np.r_[np.arange(n_templates), rng.integers(0, n_templates, N_FACES - n_templates)]
    face_template.sort()
    face_media = face_template * 8 + rng.integers(0, 8, N_FACES)  # ~8 media per template, frames share ids
    media_ids = rng.permutation(np.arange(1, 200_000))[:n_templates * 8][face_media]
    scores = np.where(rng.random(N_FACES) < 0.1, rng.uniform(0.05, 0.3, N_FACES), rng.uniform(0.9, 1.0, N_FACES))
    names = [f"{k}.jpg" for k in range(1, N_FACES + 1)]
    _write_lines(meta / "ijbc_face_tid_mid.txt", (f"{n} {t} {m}" for n, t, m in
                                                  zip(names, tids[face_template], media_ids, strict=True)))
    points = rng.uniform(30, 90, (N_FACES, 10))
    _write_lines(meta / "ijbc_name_5pts_score.txt", (
        n + " " + " ".join(f"{v:.3f}" for v in p) + f" {s:.3f}" for n, p, s in zip(names, points, scores, strict=True)))
    for name, templates in [("G1", np.arange(N_G1)), ("G2", np.arange(N_G1, n_gallery)),
                            ("probe_mixed", np.arange(n_gallery, n_templates))]:
        rows = np.flatnonzero(np.isin(face_template, templates))
        lines = (f"{tids[face_template[k]]},{subject_ids[template_subject[face_template[k]]]},img/{k + 1}.jpg,0,0,"
                 f"100,100" for k in rows)
        _write_lines(meta / f"ijbc_1N_{'gallery_' + name if name != 'probe_mixed' else name}.csv",
                     [CSV_HEADER, *lines])
    _write_pairs(meta / "ijbc_template_pair_label.txt", rng, tids, template_subject, n_gallery)
    _write_features(root / "features.npz", rng, face_template, template_subject)


def _write_lines(path: Path, lines) -> None:
    with open(path, "w") as handle:
        for line in lines:
            handle.write(line + "\n")


def _write_pairs(path: Path, rng, tids, template_subject, n_gallery) -> None:
    probes = n_gallery + rng.permutation(N_PROBES)[:N_GENUINE]
    genuine = np.stack([template_subject[probes], probes], 1)  # each probe's subject = its gallery row
    first = rng.integers(0, n_gallery, 2 * N_PAIRS)
    second = rng.integers(n_gallery, n_gallery + N_PROBES, 2 * N_PAIRS)
    keep = np.flatnonzero(template_subject[first] != template_subject[second])[:N_PAIRS - N_GENUINE]
    pairs = np.r_[genuine, np.stack([first[keep], second[keep]], 1)]
    pairs = pairs[rng.permutation(len(pairs))]
    labels = (template_subject[pairs[:, 0]] == template_subject[pairs[:, 1]]).astype(np.int64)
    table = np.stack([tids[pairs[:, 0]], tids[pairs[:, 1]], labels], 1)
    with open(path, "w") as handle:
        for begin in range(0, len(table), 1_000_000):
            np.savetxt(handle, table[begin:begin + 1_000_000], fmt="%d")


def _write_features(path: Path, rng, face_template, template_subject) -> None:
    """Subject centre + a template-specific offset of random strength + per-face noise."""
    centres = rng.standard_normal((template_subject.max() + 1, DIM), dtype=np.float32)
    strength = rng.uniform(0.3, 2.5, len(template_subject)).astype(np.float32)[:, None]
    offsets = strength * rng.standard_normal((len(template_subject), DIM), dtype=np.float32)
    features = centres[template_subject[face_template]]
    features += offsets[face_template]
    features += 2.0 * rng.standard_normal(features.shape, dtype=np.float32)
    with open(path, "wb") as handle:
        np.savez(handle, features=features)


# ------------------------------------------------------------------- the straightforward version


def reference(root: Path) -> dict:
    """The protocol written plainly, as insightface's scripts do it (float64 pooling, gathers, loops)."""
    from sklearn.metrics import auc, roc_curve

    meta = root / "meta"
    templates, media = np.loadtxt(meta / "ijbc_face_tid_mid.txt", usecols=(1, 2), dtype=np.int64).T
    scores = np.loadtxt(meta / "ijbc_name_5pts_score.txt", usecols=11, dtype=np.float32)
    pairs = np.loadtxt(meta / "ijbc_template_pair_label.txt", dtype=np.int64)
    feats = np.load(root / "features.npz")["features"] * scores[:, None]
    unique = np.unique(templates)
    pooled = np.zeros((len(unique), feats.shape[1]))
    for i, t in enumerate(unique):
        rows = np.where(templates == t)[0]
        for m in np.unique(media[rows]):
            pooled[i] += feats[rows[media[rows] == m]].mean(axis=0)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    row_of = np.zeros(unique.max() + 1, np.int64)
    row_of[unique] = np.arange(len(unique))
    score = np.empty(len(pairs))
    for begin in range(0, len(pairs), 100_000):
        chunk = pairs[begin:begin + 100_000]
        score[begin:begin + 100_000] = np.sum(pooled[row_of[chunk[:, 0]]] * pooled[row_of[chunk[:, 1]]], axis=1)
    fpr, tpr, _ = roc_curve(pairs[:, 2], score)
    result = {"verification": {"auc": auc(fpr, tpr)}}
    fpr, tpr = fpr[::-1], tpr[::-1]
    result["verification"]["tar_at_far"] = {f"{x:.0e}": float(tpr[np.argmin(np.abs(fpr - x))])
                                            for x in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)}
    enrol = {}
    for name in ("gallery_G1", "gallery_G2", "probe_mixed"):
        table = np.loadtxt(meta / f"ijbc_1N_{name}.csv", dtype=str, delimiter=",", skiprows=1)[:, :2].astype(np.int64)
        ids, first = np.unique(table[:, 0], return_index=True)
        enrol[name] = (pooled[row_of[ids]], table[first, 1])
    probes, probe_subjects = enrol["probe_mixed"]
    result["identification"] = {g: _reference_search(probes, probe_subjects, *enrol[f"gallery_{g}"])
                                for g in ("G1", "G2")}
    merged = _reference_search(probes, probe_subjects, np.r_[enrol["gallery_G1"][0], enrol["gallery_G2"][0]],
                               np.r_[enrol["gallery_G1"][1], enrol["gallery_G2"][1]])
    result["identification"]["merged"] = {k: merged[k] * merged["n_mated"] / len(probes) for k in ("top1", "top5",
                                                                                                   "top10")}
    return result


def _reference_search(probes, probe_subjects, gallery, gallery_subjects) -> dict:
    similarity = probes @ gallery.T
    hits, mated_scores, correct, best_non_mated = np.zeros(3), [], [], []
    for i in range(len(probes)):
        where = np.flatnonzero(gallery_subjects == probe_subjects[i])
        if not len(where):
            best_non_mated.append(similarity[i].max())
            continue
        rank = int(np.flatnonzero(np.argsort(-similarity[i]) == where[0])[0])
        hits += [rank < 1, rank < 5, rank < 10]
        others = np.delete(similarity[i], where)
        mated_scores.append(similarity[i, where[0]])
        correct.append(similarity[i, where[0]] > others.max())
    n = len(mated_scores)
    mated_scores, correct = np.array(mated_scores), np.array(correct)
    ordered = np.sort(best_non_mated)[::-1]
    tpir = {}
    for fpir in (1e-4, 1e-3, 1e-2, 1e-1, 1.0) if len(ordered) else ():  # the merged gallery is closed-set
        threshold = ordered[max(int(len(ordered) * fpir) - 1, 0)]
        tpir[f"{fpir:.0e}"] = float(np.sum(correct & (mated_scores > threshold)) / n)
    return {"top1": hits[0] / n, "top5": hits[1] / n, "top10": hits[2] / n, "tpir_at_fpir": tpir, "n_mated": n}


# ------------------------------------------------------------------------------- measurements


def ours(root: Path) -> dict:
    from compat_core.evaluators.ijbc.options import IjbcOptions
    from compat_core.evaluators.ijbc.run import run_ijbc

    return run_ijbc(IjbcOptions(root=str(root), features=str(root / "features.npz"), one_to_n=True))


def child(task: str, root: Path) -> None:
    start, cpu = time.perf_counter(), time.process_time()
    result = {"ours": ours, "reference": reference}[task](root)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    # CPU seconds next to wall seconds: on a shared machine the difference is time spent waiting for a core
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_bytes": peak, "result": result}))


def measure(task: str, root: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    load = os.getloadavg()[0]
    done = subprocess.run([sys.executable, __file__, "--child", task, "--data-dir", str(root)], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{task} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"load_average_1min": [load, os.getloadavg()[0]]}


def compare(a: dict, b: dict) -> dict:
    """Largest absolute difference of the metrics both report, and how many differ at %.2f percent."""
    pairs = [(a["verification"]["auc"], b["verification"]["auc"])]
    pairs += [(a["verification"]["tar_at_far"][k], b["verification"]["tar_at_far"][k])
              for k in b["verification"]["tar_at_far"]]
    for gallery in ("G1", "G2"):
        ours_g, ref_g = a["identification"][gallery], b["identification"][gallery]
        pairs += [(ours_g[k], ref_g[k]) for k in ("top1", "top5", "top10")]
        pairs += [(ours_g["tpir_at_fpir"][k], ref_g["tpir_at_fpir"][k]) for k in ref_g["tpir_at_fpir"]]
    pairs += [(a["identification"]["merged"][k], b["identification"]["merged"][k]) for k in ("top1", "top5", "top10")]
    return {"values": len(pairs), "max_abs_difference": max(abs(x - y) for x, y in pairs),
            "differ_at_2_decimals_percent": sum(f"{100 * x:.2f}" != f"{100 * y:.2f}" for x, y in pairs)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="where the synthetic set is (made once)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.data_dir)
        return
    if not (args.data_dir / "features.npz").is_file():
        start = time.perf_counter()
        generate(args.data_dir)
        print(f"synthetic IJB-C written to {args.data_dir} in {time.perf_counter() - start:.0f} s", flush=True)
    report = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "blas_threads": 1,
                          "python": platform.python_version(), "numpy": np.__version__,
                          "load_average_at_start": list(os.getloadavg())},
              "data": {"faces": N_FACES, "templates": N_G1 + N_G2 + N_PROBES, "pairs": N_PAIRS,
                       "genuine": N_GENUINE, "dim": DIM}}
    report["ours"] = measure("ours", args.data_dir)
    print(f"ours: {report['ours']['seconds']:.1f} s ({report['ours']['cpu_seconds']:.1f} s CPU), peak {report['ours']['peak_rss_bytes'] / 2**30:.2f} GiB, "
          f"stages {report['ours']['result']['seconds']}", flush=True)
    if not args.skip_reference:
        report["reference"] = measure("reference", args.data_dir)
        report["speedup"] = report["reference"]["seconds"] / report["ours"]["seconds"]
        report["speedup_cpu"] = report["reference"]["cpu_seconds"] / report["ours"]["cpu_seconds"]
        report["agreement"] = compare(report["ours"]["result"], report["reference"]["result"])
        print(f"reference: {report['reference']['seconds']:.1f} s ({report['reference']['cpu_seconds']:.1f} s CPU), peak "
              f"{report['reference']['peak_rss_bytes'] / 2**30:.2f} GiB; speed-up {report['speedup']:.1f}x; "
              f"agreement {report['agreement']}", flush=True)
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

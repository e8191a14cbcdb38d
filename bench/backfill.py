"""Benchmark of ``compat backfill run``: items re-embedded per second, against a bare loop (a script, not a test).

Set-up (outside the timings): an old and a BCT model (``--backbone``, one epoch on digits at 32 px: the
throughput does not depend on how well they are trained), the old model's flat index of the
``--data`` ``--split`` images, and a random plan. Then, in this process, alternately ``--repeat`` times:

* ``bare``: the same batches through the data loader, the model's forward pass and faiss updates of an
  in-memory index (``remove_ids`` + ``add_with_ids``), nothing else: the floor;
* ``compat``: ``compat backfill run`` on a fresh copy of the index (the journal, one atomically written
  and fsynced batch file per commit, the lock), without ``--eval-every``.

It prints the throughputs and their ratio and writes JSON to ``--out``.

Usage:
    python bench/backfill.py                           # fashion-mnist test (10,000 items), resnet18
    python bench/backfill.py --backbone test_resnet --batch 500
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from child import machine, write_report

DEFAULT_OUT = Path(__file__).parent / "results" / "backfill.json"


def compat(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "compat_cli.main", *map(str, args)], check=True, capture_output=True,
                   env={**os.environ, "COMPAT_PROGRESS": "off"})


def set_up(work: Path, backbone: str, data: str, split: str) -> None:
    common = ["--data", "digits", "--backbone", backbone, "--image-size", "32", "--embedding-dim", "128",
              "--epochs", "1", "--device", "cpu", "--val-split", "none"]
    compat("train", "baseline", *common, "--out", work / "old")
    compat("train", "bct", *common, "--old", work / "old", "--out", work / "new")
    compat("features", "extract", "--model", work / "old", "--data", data, "--split", split, "--out",
           work / "old.npz")
    compat("index", "build", "--features", work / "old.npz", "--out", work / "base")
    compat("backfill", "plan", "--index", work / "base", "--out", work / "plan.json")


def bare_loop(work: Path, data: str, batch: int) -> float:
    """Seconds of: load each batch of images, forward pass, replace its vectors in the in-memory index."""
    import numpy as np
    import torch
    from compat_core.backfill.orders import positions_of
    from compat_core.data import open_dataset
    from compat_core.engine.batches import iterate
    from compat_core.index import store
    from compat_core.models.run import load_model

    index = store.read(work / "base")
    ids = np.array(json.loads((work / "plan.json").read_text())["ids"], np.int64)
    start = time.perf_counter()
    model = load_model(work / "new").eval()
    dataset = open_dataset(data, split=index.manifest["split"], image_size=model.spec.input["size"])
    positions = positions_of(dataset, ids, data)
    batches = [positions[i:i + batch] for i in range(0, len(ids), batch)]
    with torch.inference_mode():
        for number, (images, _, _) in enumerate(iterate(dataset, batches)):
            vectors = store.prepare(model(images).embedding.numpy(), "cosine")
            store.replace_vectors(index, ids[number * batch:(number + 1) * batch], vectors, 1)
    return time.perf_counter() - start


def compat_run(work: Path, data: str, batch: int) -> float:
    from compat_core.backfill.migrate import BackfillRun, run

    target = work / "idx"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(work / "base", target)
    start = time.perf_counter()
    run(BackfillRun(str(target), str(work / "new"), str(work / "plan.json"), data, batch), say=lambda line: None)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    os.environ["COMPAT_PROGRESS"] = "off"
    import torch

    with tempfile.TemporaryDirectory(prefix="compat-bench-backfill-") as folder:
        work = Path(folder)
        set_up(work, args.backbone, args.data, args.split)
        items = len(json.loads((work / "plan.json").read_text())["ids"])
        bare, ours = [], []
        for _ in range(args.repeat):
            bare.append(bare_loop(work, args.data, args.batch))
            ours.append(compat_run(work, args.data, args.batch))
    report = {"machine": machine() | {"torch_threads": torch.get_num_threads()}, "backbone": args.backbone,
              "data": f"{args.data}:{args.split}", "items": items, "batch": args.batch,
              "bare_seconds": bare, "compat_seconds": ours, "bare_items_per_second": items / min(bare),
              "compat_items_per_second": items / min(ours), "ratio": min(ours) / min(bare)}
    print(f"{items} items, {args.backbone}, batch {args.batch}: compat backfill run "
          f"{report['compat_items_per_second']:.0f} items/s, bare loop {report['bare_items_per_second']:.0f} items/s "
          f"(time ratio {report['ratio']:.2f})")
    write_report(args.out, report)


if __name__ == "__main__":
    main()

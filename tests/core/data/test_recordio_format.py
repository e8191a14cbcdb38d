"""MXNet RecordIO face sets: files written here byte by byte (dmlc framing, mxnet's IRHeader) and
read back without mxnet, in both insightface layouts, with records split into parts."""

import io
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from compat_core.data import open_dataset
from compat_core.data.detect import is_imagefolder, is_recordio
from compat_core.errors import CompatError
from PIL import Image
from recordio_files import MAGIC, encode, faces, frame, pack, write_rec  # noqa: E402


def test_the_test_writer_splits_at_the_magic():
    payload = b"abcd" + MAGIC + b"efgh" + MAGIC + b"ij"
    framed = frame(payload)
    assert framed.count(MAGIC) == 3 and len(framed) % 4 == 0
    assert struct.unpack("<I", framed[4:8])[0] >> 29 == 1 and struct.unpack("<I", framed[4:8])[0] & 0xFFFF == 4


def test_plain_layout_with_split_records(tmp_path):
    images = faces(5)
    labels = [3, 0, 3, 7, 0]
    # the id fields hold the magic word: records 1 and 3 are split inside their header (2 and 3 parts)
    ids = [(0, 0), (0xCED7230A, 0), (0, 0), (0xCED7230A, 0xCED7230A), (0, 0)]
    records = [(k, pack(labels[k], encode(images[k]), *ids[k])) for k in range(5)]
    root = write_rec(tmp_path / "faces", records)
    assert is_recordio(root) and is_recordio(root / "train.rec") and not is_imagefolder(root)
    ds = open_dataset(str(root), split="train", image_size=112)
    assert ds.classes == ["0", "3", "7"] and ds.labels.tolist() == [1, 0, 1, 2, 0]
    assert torch.equal(ds.load_images([3, 1]), torch.from_numpy(images[[3, 1]]).permute(0, 3, 1, 2))
    image, label, index = ds[4]
    assert image.shape == (3, 112, 112) and label == 0 and index == 4
    assert ds.preferred_input == {"size": 112, "mean": [0.5] * 3, "std": [0.5] * 3}


def test_header_record_layout_with_array_labels(tmp_path):
    images = faces(4, seed=1)
    classes = [1, 0, 1, 2]
    # key 0: flag 2, labels [5, 8] -> images are keys 1..4; keys 5..7 describe identities (ignored)
    records = [(0, pack([5.0, 8.0], b""))]
    records += [(k + 1, pack([classes[k], 99.0], encode(images[k], "JPEG"))) for k in range(4)]
    records += [(5 + c, pack([float(c), float(c + 1)], b"")) for c in range(3)]
    root = write_rec(tmp_path / "ms1m", records[::-1])  # the .idx order does not matter
    ds = open_dataset(str(root / "train.rec"), split="test", image_size=16)  # a lone .rec serves any split
    assert len(ds) == 4 and ds.keys.tolist() == [1, 2, 3, 4]
    assert ds.labels.tolist() == classes and ds.classes == ["0", "1", "2"]
    batch = ds.load_images([0, 1, 2, 3])
    assert batch.shape == (4, 3, 16, 16) and batch.dtype == torch.uint8
    decoded = np.array(Image.open(io.BytesIO(encode(images[2], "JPEG"))).convert("RGB").resize(
        (16, 16), Image.Resampling.BILINEAR))
    assert torch.equal(batch[2], torch.from_numpy(decoded).permute(2, 0, 1))


def test_splits_of_a_folder(tmp_path):
    root = write_rec(tmp_path / "sets", [(0, pack(1, encode(faces(1)[0])))])
    write_rec(root, [(0, pack(2, encode(faces(1, 3)[0]))), (1, pack(1, encode(faces(1, 4)[0])))], name="val")
    assert len(open_dataset(str(root), split="test", image_size=8)) == 2  # val stands in for test
    assert len(open_dataset(str(root), split="train", image_size=8)) == 1


def test_bad_files_name_the_problem(tmp_path):
    root = write_rec(tmp_path / "bad", [(0, pack(1, encode(faces(1)[0]))), (1, pack(2, encode(faces(1)[0])))])
    (root / "train.idx").write_text("0\t0\n1\t12\n")  # offset 12 is inside record 0
    with pytest.raises(CompatError, match="record 1 at byte 12 does not start with the RecordIO magic"):
        open_dataset(str(root), image_size=8)
    (root / "train.idx").write_text("0\t0\nfoo bar\n")
    with pytest.raises(CompatError, match=r"train.idx:2: 'foo bar' is not a `<key> <offset>` line"):
        open_dataset(str(root), image_size=8)
    (root / "train.idx").write_text("0\t0\n1\t999999\n")
    with pytest.raises(CompatError, match="beyond the end of the file"):
        open_dataset(str(root), image_size=8)
    broken = write_rec(tmp_path / "broken", [(0, pack(1, b"not an image"))])
    with pytest.raises(CompatError, match="record 0 cannot be decoded"):
        open_dataset(str(broken), image_size=8).load_images([0])


@pytest.mark.slow
def test_trains_from_the_cli_with_an_arcface_head(tmp_path):
    images = faces(24, seed=5)
    root = write_rec(tmp_path / "rec", [(k, pack(k % 3, encode(images[k], "JPEG"))) for k in range(24)])
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "compat_cli.main", "train", "baseline", "--data", str(root),
                           "--backbone", "test_resnet", "--embedding-dim", "16", "--image-size", "16", "--epochs", "1",
                           "--batch-size", "8", "--head", "arcface", "--device", "cpu", "--out", str(run)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (run / "model.safetensors").is_file() and '"arcface"' in (run / "model.json").read_text()
    spec = json.loads((run / "model.json").read_text())
    assert spec["input"]["mean"] == [0.5] * 3 and spec["input"]["std"] == [0.5] * 3  # the face normalisation


def face_set(tmp_path, counts=(5, 1, 3, 4, 2, 1, 6, 3, 2, 3)):
    """A header-layout face set whose identity c has ``counts[c]`` images (two single-image identities)."""
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    images = faces(len(labels), seed=7)
    records = [(0, pack([len(labels) + 1.0, len(labels) + 1.0 + len(counts)], b""))]
    records += [(k + 1, pack([float(label), 0.0], encode(images[k]))) for k, label in enumerate(labels)]
    return write_rec(tmp_path / "faces", records), np.asarray(labels)


def test_the_four_face_scenarios_split_identities_and_images_as_the_repository(tmp_path):
    from compat_core.data.selection import make_scenario_split, parse_classes

    root, labels = face_set(tmp_path)
    data = open_dataset(str(root), image_size=8)
    open_class = make_scenario_split(data, "open-class")  # the first 30% of the identities, the rest
    assert open_class["old"] == {"classes": [0, 1, 2]} and open_class["new"] == {"classes": list(range(3, 10))}
    extended = make_scenario_split(data, "extended-class")
    assert extended["old"] == open_class["old"] and extended["new"] == {"classes": list(range(10))}
    new = parse_classes("@" + str(_write(tmp_path / "oc.json", open_class)) + ":new", data)
    assert sorted(set(new.labels.tolist())) == list(range(7))  # class70 relabelled from 0
    assert len(new) == int(np.isin(labels, range(3, 10)).sum())

    open_data = make_scenario_split(data, "open-data")
    old_idx, new_idx = set(open_data["old"]["indices"]), set(open_data["new"]["indices"])
    for identity, n in enumerate((5, 1, 3, 4, 2, 1, 6, 3, 2, 3)):
        members = set(np.flatnonzero(labels == identity).tolist())
        assert len(members & old_idx) == max(1, round(0.3 * n))
        if n == 1:  # single-image identities are in both halves
            assert members <= old_idx and members <= new_idx
        else:
            assert members & old_idx and members & new_idx and not (members & old_idx & new_idx)
    assert make_scenario_split(data, "extended-data")["new"] == {"indices": list(range(len(labels)))}


def _write(path, manifest):
    path.write_text(json.dumps(manifest))
    return path


def test_the_scenario_split_through_the_cli_and_an_unknown_scenario(tmp_path):
    root, _ = face_set(tmp_path)
    run = [sys.executable, "-m", "compat_cli.main", "data", "split", str(root)]
    done = subprocess.run([*run, "--scenario", "open-class", "--out", str(tmp_path / "s.json")], capture_output=True,
                          text=True)
    assert done.returncode == 0 and json.loads((tmp_path / "s.json").read_text())["scenario"] == "open-class"
    bad = subprocess.run([*run, "--scenario", "open", "--out", str(tmp_path / "t.json")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "open-class, open-data" in bad.stderr


def test_a_header_that_does_not_match_the_index_is_an_error(tmp_path):
    images = faces(3, seed=2)
    records = [(0, pack([7.0, 9.0], b""))]  # claims images 1..6, the index holds 1..3
    records += [(k + 1, pack([float(k), 0.0], encode(images[k]))) for k in range(3)]
    root = write_rec(tmp_path / "short", records)
    with pytest.raises(CompatError, match="header"):
        open_dataset(str(root), image_size=8)


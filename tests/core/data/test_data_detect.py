"""Format detectors: each recognises its own layout only, and never raises."""

from __future__ import annotations

import subprocess
import sys

import pytest
from compat_core.data import detect
from compat_core.data.detect import is_cifar, is_idx, is_imagefolder, is_imagelist, parse_list_line

DETECTORS = {"imagefolder": is_imagefolder, "imagelist": is_imagelist, "cifar": is_cifar, "idx": is_idx}


@pytest.fixture
def layouts(tmp_path, imagelist, build):
    build.idx_folder(tmp_path / "idx", gz=False)
    return {
        "imagefolder": build.imagefolder(tmp_path / "folder"),
        "imagelist": imagelist,
        "cifar": build.cifar10(tmp_path / "c10"),
        "idx": tmp_path / "idx",
    }


def test_each_detector_matches_only_its_own_layout(layouts):
    for format_name, path in layouts.items():
        matches = {name for name, detector in DETECTORS.items() if detector(path)}
        assert matches == {format_name}, path


@pytest.mark.parametrize("detector", DETECTORS.values())
def test_missing_path_and_empty_folder_are_false(detector, tmp_path):
    assert detector(tmp_path / "missing") is False
    assert detector(tmp_path) is False
    (tmp_path / "file.bin").write_bytes(b"\x00\x01")
    assert detector(tmp_path / "file.bin") is False


def test_imagefolder_needs_class_folders_and_an_evaluation_split(tmp_path, build):
    (tmp_path / "train").mkdir()
    (tmp_path / "test" / "a").mkdir(parents=True)
    assert not is_imagefolder(tmp_path)  # train/ without class folders
    (tmp_path / "test" / "a").rmdir()
    build.png(tmp_path / "train" / "a" / "0.png", 1)
    assert not is_imagefolder(tmp_path)  # no val/ or test/
    (tmp_path / "val").mkdir()
    assert not is_imagefolder(tmp_path)  # val/ without class folders
    (tmp_path / "val" / "a").mkdir()
    assert is_imagefolder(tmp_path)


def test_imagelist_single_file_and_folder_rules(tmp_path):
    good = tmp_path / "all.txt"
    good.write_text("# header\n\nimg/a.png 3\nimg/b c.png 12\n")
    assert is_imagelist(good)
    prose = tmp_path / "notes.txt"
    prose.write_text("this is not a list\n")
    assert not is_imagelist(prose)
    renamed = tmp_path / "all.csv"
    renamed.write_text(good.read_text())
    assert not is_imagelist(renamed)
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "train.txt").write_text("a.png 0\n")
    assert not is_imagelist(folder)  # no test.txt or val.txt
    (folder / "val.txt").write_text("b.png 1\n")
    assert is_imagelist(folder)
    (folder / "val.txt").write_text("")
    assert not is_imagelist(folder)  # an empty list is not a list


def test_cifar_folder_parent_and_both_kinds(tmp_path, build):
    c10 = build.cifar10(tmp_path / "a")
    c100 = build.cifar100(tmp_path / "b")
    assert is_cifar(c10) and is_cifar(tmp_path / "a")
    assert is_cifar(c100) and is_cifar(tmp_path / "b")
    (c10 / "batches.meta").unlink()
    assert not is_cifar(c10) and not is_cifar(tmp_path / "a")


@pytest.mark.parametrize("gz", [True, False])
def test_idx_plain_gzip_and_missing_file(tmp_path, gz, build):
    build.idx_folder(tmp_path, gz=gz)
    assert is_idx(tmp_path)
    suffix = ".gz" if gz else ""
    (tmp_path / f"t10k-labels-idx1-ubyte{suffix}").unlink()
    assert not is_idx(tmp_path)


def test_idx_dotted_file_names(tmp_path, build):
    build.idx_folder(tmp_path, gz=False)
    for path in tmp_path.iterdir():
        path.rename(path.with_name(path.name.replace("-idx", ".idx")))
    assert is_idx(tmp_path)


def test_parse_list_line():
    assert parse_list_line("a/b c.png 7\n") == ("a/b c.png", 7)
    assert parse_list_line("a.png -1") == ("a.png", -1)
    assert parse_list_line("a.png") is None
    assert parse_list_line("a.png cat") is None


def test_detect_module_imports_only_the_standard_library():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('detect_alone', {detect.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "heavy = {'torch', 'numpy', 'PIL', 'sklearn'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

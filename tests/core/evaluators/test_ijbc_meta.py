"""Readers of the IJB meta files: what they return on the generated folder, and the file-and-line
messages on every kind of bad input the issue lists."""

import numpy as np
import pytest
from compat_core.errors import CompatError
from compat_core.evaluators.ijbc.meta import (
    MetaFiles,
    TemplateIndex,
    check_unique_subjects,
    read_enrolment,
    read_faces,
    read_pairs,
)
from ijbc_fixtures import make_ijbc


@pytest.fixture
def fixture(tmp_path):
    return make_ijbc(tmp_path / "IJBC", subjects=6, images=False)


def test_readers_return_the_generated_truth(fixture):
    files = MetaFiles.of(fixture.root, "ijbc")
    faces = read_faces(files)
    assert faces.templates.tolist() == fixture.face_template.tolist()
    assert faces.media.tolist() == fixture.face_media.tolist()
    np.testing.assert_allclose(faces.scores, fixture.scores, atol=5e-4)
    expected = np.einsum("nij,kj->nki", fixture.transforms[:, :2, :2], np.array(
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]))
    np.testing.assert_allclose(faces.landmarks, expected + fixture.transforms[:, None, :2, 2], atol=5e-4)
    pairs = read_pairs(files.pairs)
    assert len(pairs.first) == 6 * 12 and pairs.labels.sum() == 12
    assert set(pairs.first.tolist()) == set(range(1, 7))  # gallery templates in column 0
    gallery = read_enrolment(files.galleries[0])
    assert gallery.templates.tolist() == [1, 2, 3]
    assert gallery.subjects.tolist() == [fixture.template_subject[t] for t in (1, 2, 3)]
    assert gallery.lines.tolist() == [2, 4, 6]  # a header row, then two faces per template


def test_ijbb_file_names(tmp_path):
    fixture = make_ijbc(tmp_path / "IJBB", subjects=4, images=False, target="ijbb")
    files = MetaFiles.of(fixture.root, "ijbb")
    assert files.galleries[0].name == "ijbb_1N_gallery_S1.csv" and files.galleries[0].is_file()
    files.check(one_to_n=True, images=False)


def test_blank_lines_are_skipped_but_counted(fixture):
    path = fixture.file("pairs")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n\n")
    pairs = read_pairs(path)
    assert len(pairs.first) == len(lines) and pairs.line(3) == 5


def expect(match, call, *args):
    with pytest.raises(CompatError, match=match):
        call(*args)


def test_face_and_landmark_files_with_different_row_counts(fixture):
    path = fixture.file("landmarks")
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    expect(r"lists 42 faces but .*ijbc_name_5pts_score.txt lists 41", read_faces, MetaFiles.of(fixture.root, "ijbc"))


def test_face_and_landmark_files_with_different_names(fixture):
    path = fixture.file("landmarks")
    lines = path.read_text().splitlines()
    lines[4] = "99.jpg" + lines[4][len("5.jpg"):]
    path.write_text("\n".join(lines) + "\n")
    expect(r"ijbc_name_5pts_score.txt:5 is for image '99.jpg' but face 5 of .*ijbc_face_tid_mid.txt is '5.jpg'",
           read_faces, MetaFiles.of(fixture.root, "ijbc"))


def test_malformed_landmark_line(fixture):
    path = fixture.file("landmarks")
    lines = path.read_text().splitlines()
    lines[6] = lines[6].rsplit(" ", 1)[0]  # the detector score is missing
    path.write_text("\n".join(lines) + "\n")
    expect(r"ijbc_name_5pts_score.txt:7: expected", read_faces, MetaFiles.of(fixture.root, "ijbc"))


def test_template_in_the_pair_file_without_a_face(fixture):
    files = MetaFiles.of(fixture.root, "ijbc")
    lines = files.pairs.read_text().splitlines()
    lines[9] = "777 1001 0"
    files.pairs.write_text("\n".join(lines) + "\n")
    index = TemplateIndex(read_faces(files).templates, files.faces)
    pairs = read_pairs(files.pairs)
    expect(r"ijbc_template_pair_label.txt:10: template 777 has no face in .*ijbc_face_tid_mid.txt", index.rows,
           pairs.first, files.pairs, pairs.line)


def test_bad_pair_label_and_bad_pair_line(fixture):
    path = fixture.file("pairs")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ["1 1001 2"] + lines[3:]) + "\n")
    expect(r"template_pair_label.txt:3: label 2", read_pairs, path)
    path.write_text("\n".join(lines[:4] + ["1 1001 x"] + lines[5:]) + "\n")
    expect(r"template_pair_label.txt:5: expected", read_pairs, path)


def test_csv_template_without_a_face_and_repeated_subject(fixture):
    files = MetaFiles.of(fixture.root, "ijbc")
    index = TemplateIndex(read_faces(files).templates, files.faces)
    path = fixture.file("G1")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + ["555,100,img/x.jpg,0,0,160,160"]) + "\n")
    gallery = read_enrolment(path)
    expect(r"ijbc_1N_gallery_G1.csv:8: template 555 has no face", index.rows, gallery.templates, path,
           lambda i: int(gallery.lines[i]))
    expect(r"ijbc_1N_gallery_G1.csv:8: subject 100 is enrolled in a second template", check_unique_subjects, gallery)


def test_missing_meta_file_and_wrong_root(fixture, tmp_path):
    fixture.file("probes").unlink()
    files = MetaFiles.of(fixture.root, "ijbc")
    files.check(one_to_n=False, images=False)  # 1:1 does not need the 1:N files
    expect(r"missing meta file .*ijbc_1N_probe_mixed.csv", files.check, True, False)
    expect(r"missing image folder", MetaFiles.of(fixture.root, "ijbc").check, False, True)
    expect(r"pass --root .*IJBC", MetaFiles.of(fixture.root.parent, "ijbc").check, False, False)
    expect(r"no such folder", MetaFiles.of(tmp_path / "nowhere", "ijbc").check, False, False)


def test_windows_line_endings_and_a_csv_without_header(fixture):
    files = MetaFiles.of(fixture.root, "ijbc")
    expected = read_faces(files)
    for path in (files.faces, files.landmarks, files.pairs):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    faces = read_faces(files)
    assert faces.names.tolist() == expected.names.tolist() and faces.templates.tolist() == expected.templates.tolist()
    assert read_pairs(files.pairs).lines is None  # the fast path read it
    gallery = fixture.file("G1")
    rows = gallery.read_text().splitlines()
    gallery.write_text("\n".join(rows[1:]) + "\n")  # no header row: the first line is data
    headless = read_enrolment(gallery)
    assert headless.templates.tolist() == [1, 2, 3] and headless.lines.tolist() == [1, 3, 5]
    gallery.write_text("\n".join(rows[:3] + ["", "  "] + rows[3:]) + "\n")  # blank lines: the careful path
    assert read_enrolment(gallery).lines.tolist() == [2, 6, 8]


def test_blank_line_in_the_face_file_keeps_line_numbers(fixture):
    files = MetaFiles.of(fixture.root, "ijbc")
    lines = files.landmarks.read_text().splitlines()
    files.landmarks.write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n")
    faces = read_faces(files)
    assert faces.landmark_lines[:4].tolist() == [1, 2, 4, 5] and len(faces) == len(lines)


def test_a_nan_detector_score_is_an_error_not_a_lower_tar(fixture):
    path = fixture.file("landmarks")
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0] + " nan"
    path.write_text("\n".join(lines) + "\n")
    expect(r"ijbc_name_5pts_score.txt:4 \(image '4.jpg'\) holds a NaN or infinite", read_faces,
           MetaFiles.of(fixture.root, "ijbc"))

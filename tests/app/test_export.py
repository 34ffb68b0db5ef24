"""LaPa export: layout, byte-exact JPEG copies, landmarks, splits, read back with LapaDataset."""

from __future__ import annotations

import errno
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import faceparse_app.export as export_mod
from faceparse_app.export import export_name, export_project
from faceparse_app.landmarks import derive_landmarks
from faceparse_app.project import Project, ProjectError
from tests.conftest import synthetic_face
from trainer.data.imageio import encode_label_png, read_image, read_label, write_image
from trainer.data.lapa import LapaDataset, read_landmarks
from trainer.labels import celebamask_to_lapa

SPLITS = ("train", "val", "test")


def _project(
    root: Path, n: int = 6, statuses: tuple[str, ...] = ("labeled",), accepted: int = 0
) -> dict[str, np.ndarray]:
    """A project of n synthetic faces (even: .jpg, odd: .png), labeled; the first ``accepted``
    of them (face0, face1, ...) are a model's pre-labels accepted as they were. relpath -> label."""
    root.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i in range(n):
        image, label = synthetic_face(64, seed=i)
        relpath = f"face{i}.{'jpg' if i % 2 == 0 else 'png'}"
        write_image(root / relpath, image)
        labels[relpath] = label
    with Project.open(root) as project:
        for k, rec in enumerate(project.images()):
            status = statuses[k % len(statuses)]
            if k < accepted:
                rec = project.save_label(rec, labels[rec.relpath], model_version="v0001")
                project.set_status(rec, status)
            else:
                project.save_label(rec, labels[rec.relpath], status=status)
    return labels


def _read_all(out: Path) -> dict[str, tuple[str, object]]:
    found = {}
    for split in SPLITS:
        for sample in LapaDataset(out, split, require_labels=True):
            found[sample.name] = (split, sample)
    return found


def test_export_layout_reads_back_identically(tmp_path: Path) -> None:
    labels = _project(tmp_path / "proj", n=8)
    progress: list[tuple[int, int]] = []
    out = tmp_path / "lapa"
    counts = export_project(
        tmp_path / "proj", out, seed=3, on_progress=lambda d, t: progress.append((d, t))
    )
    assert counts == {"train": 6, "val": 1, "test": 1, "skipped": 0}
    assert progress[-1] == (8, 8)
    for split in SPLITS:
        assert {p.name for p in (out / split).iterdir()} == {"images", "labels", "landmarks"}
        for image_path in (out / split / "images").iterdir():
            assert image_path.suffix == ".jpg"
            with Image.open(image_path) as im:
                assert im.format == "JPEG"
            with Image.open(out / split / "labels" / f"{image_path.stem}.png") as lab:
                assert lab.mode == "L" and lab.size == (64, 64)
    found = _read_all(out)
    assert sorted(found) == sorted(Path(r).stem for r in labels)
    for relpath, label in labels.items():
        split, sample = found[Path(relpath).stem]
        np.testing.assert_array_equal(sample.label, label)  # pixel for pixel
        assert sample.landmarks.shape == (106, 2)
        exported = out / split / "images" / f"{Path(relpath).stem}.jpg"
        if relpath.endswith(".jpg"):  # a JPEG original: the very same bytes
            assert exported.read_bytes() == (tmp_path / "proj" / relpath).read_bytes()
        else:  # a PNG original: encoded as JPEG, close to the original pixels
            original = read_image(tmp_path / "proj" / relpath).astype(int)
            assert np.abs(sample.image.astype(int) - original).mean() < 6
    readme = (out / "README.txt").read_text()
    assert "derived" in readme.lower() and "landmarks/face0.txt" in readme
    assert not any(p.name.startswith(".lapa") for p in tmp_path.iterdir())  # no temp left


def test_landmark_files_are_lapa_106_with_key_points_in_their_parts(tmp_path: Path) -> None:
    labels = _project(tmp_path / "proj", n=4)
    out = tmp_path / "lapa"
    export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0)
    for relpath, label in labels.items():
        path = out / "train" / "landmarks" / f"{Path(relpath).stem}.txt"
        lines = path.read_text().splitlines()
        assert lines[0] == "106" and len(lines) == 107
        assert all(len(line.split()) == 2 for line in lines[1:])
        points = read_landmarks(path)
        _assert_key_points(points, label)


def _assert_key_points(points: np.ndarray, label: np.ndarray) -> None:
    assert points.shape == (106, 2) and np.isfinite(points).all()

    def cls_at(i: int) -> int:
        x, y = points[i]
        return int(label[int(round(y)), int(round(x))])

    assert cls_at(74) == 4 and cls_at(104) == 4  # viewer's-left eye
    assert cls_at(83) == 5 and cls_at(105) == 5  # viewer's-right eye
    assert cls_at(54) == 6  # nose tip
    assert cls_at(84) in (7, 8, 9) and cls_at(90) in (7, 8, 9)  # mouth corners
    assert points[84, 0] < points[90, 0]
    mouth_x = np.nonzero(np.isin(label, (7, 8, 9)))[1]
    assert points[84, 0] == mouth_x.min() and points[90, 0] == mouth_x.max()
    assert points[74, 0] < points[83, 0]
    # The outline runs from the left over the chin to the right, below the eyes.
    assert points[0, 0] < points[16, 0] < points[32, 0]
    assert points[16, 1] > points[54, 1] > points[74, 1]


@pytest.mark.parametrize(
    "label",
    [
        np.zeros((40, 50), np.uint8),  # nothing labeled
        np.ones((40, 50), np.uint8),  # skin only
        np.ones((1, 1), np.uint8),
        np.pad(np.full((10, 10), 4, np.uint8), 20),  # one eye only
    ],
)
def test_derived_landmarks_have_a_sane_fallback(label: np.ndarray) -> None:
    points = derive_landmarks(label)
    h, w = label.shape
    assert points.shape == (106, 2) and points.dtype == np.float32
    assert np.isfinite(points).all()
    assert (points[:, 0] >= 0).all() and (points[:, 0] <= w - 1).all()
    assert (points[:, 1] >= 0).all() and (points[:, 1] <= h - 1).all()
    assert points[84, 0] <= points[90, 0] and points[74, 0] <= points[83, 0]


def test_absent_eyes_are_placed_from_the_parts_that_are_there() -> None:
    # e.g. sunglasses, labeled background: the eyes still go above the nose, either side of it.
    _, label = synthetic_face(128, seed=2)
    label[np.isin(label, (2, 3, 4, 5))] = 1
    points = derive_landmarks(label)
    nose_tip, left, right = points[54], points[74], points[83]
    assert left[0] < nose_tip[0] < right[0]
    assert left[1] < nose_tip[1] < points[84, 1] and right[1] < nose_tip[1]
    assert np.isfinite(points).all()


def test_reviewed_only_and_unfinished_are_left_out(tmp_path: Path) -> None:
    _project(tmp_path / "proj", n=6, statuses=("reviewed", "labeled", "in_progress"))
    counts = export_project(tmp_path / "proj", tmp_path / "all", val_fraction=0, test_fraction=0)
    assert counts["train"] == 4  # reviewed + labeled, not in progress
    counts = export_project(
        tmp_path / "proj", tmp_path / "rev", reviewed_only=True, val_fraction=0, test_fraction=0
    )
    assert counts["train"] == 2
    with Project.open(tmp_path / "proj") as project:
        reviewed = {Path(r.relpath).stem for r in project.images("reviewed")}
    assert {s.name for s in LapaDataset(tmp_path / "rev", "train")} == reviewed


def test_seeded_split_is_reproducible(tmp_path: Path) -> None:
    _project(tmp_path / "proj", n=20)

    def split_of(out: Path) -> dict[str, str]:
        return {name: split for name, (split, _) in _read_all(out).items()}

    export_project(tmp_path / "proj", tmp_path / "a", val_fraction=0.2, test_fraction=0.2, seed=7)
    export_project(tmp_path / "proj", tmp_path / "b", val_fraction=0.2, test_fraction=0.2, seed=7)
    export_project(tmp_path / "proj", tmp_path / "c", val_fraction=0.2, test_fraction=0.2, seed=8)
    a, b, c = split_of(tmp_path / "a"), split_of(tmp_path / "b"), split_of(tmp_path / "c")
    assert a == b
    assert a != c
    assert sorted(a.values()).count("val") == 4 and sorted(a.values()).count("test") == 4


def test_names_are_flat_and_unique(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "a").mkdir(parents=True)
    image, label = synthetic_face(64, seed=0)
    for relpath in ("a/x.jpg", "a__x.jpg", "x.jpg", "x.png", "a/we ird#name.jpeg"):
        write_image(root / relpath, image)
    with Project.open(root) as project:
        for rec in project.images():
            project.save_label(rec, label, status="labeled")
    export_project(root, tmp_path / "out", val_fraction=0, test_fraction=0)
    names = sorted(p.stem for p in (tmp_path / "out" / "train" / "images").iterdir())
    assert len(names) == 5 and len(set(n.lower() for n in names)) == 5
    assert "a__we_ird_name" in names
    assert len(LapaDataset(tmp_path / "out", "train")) == 5
    assert export_name("../x/.hidden.jpg") == "x__hidden"


def test_exif_rotated_jpeg_is_re_encoded_upright(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    image, _ = synthetic_face(64, seed=0)
    stored = np.ascontiguousarray(image[:, :48])  # 48 wide, 64 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="JPEG", exif=exif, quality=95)
    (root / "rotated.jpg").write_bytes(buf.getvalue())
    with Project.open(root) as project:
        rec = project.images()[0]
        assert (rec.width, rec.height) == (64, 48)  # as displayed
        upright = project.load_image(rec)
        label = np.zeros(upright.shape[:2], np.uint8)
        label[:, :20] = 1  # marks the displayed left side
        project.save_label(rec, label, status="labeled")
    export_project(root, tmp_path / "out", val_fraction=0, test_fraction=0)
    exported = tmp_path / "out" / "train" / "images" / "rotated.jpg"
    with Image.open(exported) as im:
        assert im.size == (64, 48)  # upright in the pixels themselves, as loaders read them
        assert im.getexif().get(0x0112, 1) == 1
        raw = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(raw - upright.astype(int)).mean() < 6
    sample = LapaDataset(tmp_path / "out", "train")[0]
    assert sample.label.shape == sample.image.shape[:2]


def test_bad_images_and_labels_are_skipped_and_reported(tmp_path: Path) -> None:
    _project(tmp_path / "proj", n=4)
    good = (tmp_path / "proj" / "face0.jpg").read_bytes()
    with Project.open(tmp_path / "proj") as project:
        # Damaged while the app is open (no rescan): the export must skip, not crash.
        (tmp_path / "proj" / "face0.jpg").write_bytes(good[: len(good) // 2])
        bad = np.full((64, 64), 11, np.uint8)
        project.label_path(project.find("face1.png")).write_bytes(encode_label_png(bad))
        counts = export_project(project, tmp_path / "out", val_fraction=0, test_fraction=0)
    assert counts == {"train": 2, "val": 0, "test": 0, "skipped": 2}
    readme = (tmp_path / "out" / "README.txt").read_text()
    assert "face0.jpg" in readme and "face1.png" in readme
    assert not (tmp_path / "out" / "train" / "images" / "face0.jpg").exists()
    assert len(LapaDataset(tmp_path / "out", "train")) == 2


def disk_full_on_third_label(monkeypatch: pytest.MonkeyPatch, module) -> None:
    """The disk fills up as the export encodes its third label (``module.encode_label_png``)."""
    calls = {"n": 0}
    real = module.encode_label_png

    def fails_on_third(label: np.ndarray) -> bytes:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(label)

    monkeypatch.setattr(module, "encode_label_png", fails_on_third)


def test_full_disk_midway_leaves_no_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _project(tmp_path / "proj", n=4)
    disk_full_on_third_label(monkeypatch, export_mod)
    with pytest.raises(ProjectError, match="disk full"):
        export_project(tmp_path / "proj", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]


def test_re_export_replaces_only_its_own_files(tmp_path: Path) -> None:
    """Issue 28 §3: re-exporting deleted everything in the folder, another project's store too."""
    _project(tmp_path / "proj", n=3)
    out = tmp_path / "out"
    export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0)
    foreign = {
        "notes.txt": b"keep me",
        "train/images/mine.jpg": b"someone else's photo",
        ".faceparse/project.sqlite": b"another project's store",
        "other/deep/file.bin": b"\x00\x01",
    }
    for rel, data in foreign.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    # face1 is no longer labeled: its files from the first export go, nothing else.
    with Project.open(tmp_path / "proj") as project:
        project.set_status(project.find("face1.png"), "in_progress")
    counts = export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0)
    assert counts["train"] == 2
    for rel, data in foreign.items():
        assert (out / rel).read_bytes() == data, rel
    assert not (out / "train" / "images" / "face1.jpg").exists()
    assert sorted(p.name for p in (out / "train" / "labels").iterdir()) == [
        "face0.png",
        "face2.png",
    ]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_re_export_keeps_empty_folders_and_links_it_did_not_make(tmp_path: Path) -> None:
    """Only files were carried over: an empty folder or a link to a folder in the export folder
    was deleted with the previous export."""
    _project(tmp_path / "proj", n=2)
    out = tmp_path / "out"
    export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept.txt").write_text("kept")
    (out / "drafts").mkdir()
    (out / "drafts" / "later").mkdir()
    (out / "val" / "mine").mkdir()  # in a folder of the layout, which this export left empty
    (out / "shared").symlink_to(elsewhere, target_is_directory=True)
    (out / "train" / "link.txt").symlink_to(elsewhere / "kept.txt")
    (out / "dangling").symlink_to(tmp_path / "gone")
    export_project(tmp_path / "proj", out, val_fraction=0.5, test_fraction=0)
    assert (out / "drafts" / "later").is_dir()
    assert (out / "val" / "mine").is_dir()
    assert (out / "shared").is_symlink() and (out / "shared" / "kept.txt").read_text() == "kept"
    assert (out / "train" / "link.txt").is_symlink() and (out / "dangling").is_symlink()
    assert len(list((out / "val" / "images").iterdir())) == 1  # the new export is all there
    assert (elsewhere / "kept.txt").read_text() == "kept"


def test_re_export_never_overwrites_an_exported_file_someone_changed(tmp_path: Path) -> None:
    _project(tmp_path / "proj", n=2)
    out = tmp_path / "out"
    export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0)
    edited = out / "train" / "labels" / "face0.png"
    edited.write_bytes(encode_label_png(np.full((64, 64), 3, np.uint8)))
    before = edited.read_bytes()
    with pytest.raises(ProjectError, match="changed since"):
        export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0)
    assert edited.read_bytes() == before
    assert not list(tmp_path.glob(".out.*")), "no temp folder is left behind"


def test_a_non_empty_foreign_folder_or_one_inside_the_project_is_refused(tmp_path: Path) -> None:
    _project(tmp_path / "proj", n=1)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ProjectError, match="not empty"):
        export_project(tmp_path / "proj", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ProjectError, match="inside the project"):
        export_project(tmp_path / "proj", tmp_path / "proj" / "export")


def test_an_export_made_before_manifests_keeps_what_is_not_in_its_layout(tmp_path: Path) -> None:
    _project(tmp_path / "proj", n=2)
    out = tmp_path / "out"
    export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0)
    for name in (export_mod.MANIFEST_NAME, export_mod.NAMES_CSV, export_mod.EFFORT_CSV):
        (out / name).unlink()  # as the exports of earlier versions were
    (out / "notes.txt").write_text("keep me")
    (out / "train" / "images" / "face9.jpg").write_bytes(b"old export's")
    export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0)
    assert (out / "notes.txt").read_text() == "keep me"
    assert not (out / "train" / "images" / "face9.jpg").exists()  # the layout was ours


def test_unicode_names_survive_and_a_csv_maps_them_back(tmp_path: Path) -> None:
    import csv

    root = tmp_path / "proj"
    (root / "séance").mkdir(parents=True)
    image, label = synthetic_face(64, seed=0)
    for relpath in ("ünï 顔.jpg", "séance/Zoë.png"):
        write_image(root / relpath, image)
    with Project.open(root) as project:
        for rec in project.images():
            project.save_label(rec, label, status="labeled")
    export_project(root, tmp_path / "out", val_fraction=0, test_fraction=0)
    names = sorted(p.stem for p in (tmp_path / "out" / "train" / "images").iterdir())
    assert names == ["séance__Zoë", "ünï_顔"]
    with open(tmp_path / "out" / export_mod.NAMES_CSV, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["original"]: (r["split"], r["name"]) for r in rows} == {
        "ünï 顔.jpg": ("train", "ünï_顔"),
        "séance/Zoë.png": ("train", "séance__Zoë"),
    }


def test_export_files_follow_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    _project(tmp_path / "proj", n=1)
    old = os.umask(0o002)
    try:
        export_project(tmp_path / "proj", tmp_path / "out", val_fraction=0, test_fraction=0)
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o775
    assert stat.S_IMODE((out / "train" / "labels").stat().st_mode) == 0o775
    assert stat.S_IMODE((out / "train" / "labels" / "face0.png").stat().st_mode) == 0o664


def test_export_reads_a_project_open_in_another_window(tmp_path: Path) -> None:
    _project(tmp_path / "proj", n=2)
    with Project.open(tmp_path / "proj"):  # the annotator's window holds the folder
        counts = export_project(tmp_path / "proj", tmp_path / "out", val_fraction=0)
    assert counts["train"] + counts["test"] == 2


def test_real_face_exports_byte_for_byte_with_landmarks_in_its_parts(
    tmp_path: Path, shared_data: Path
) -> None:
    src = shared_data / "celebamask-hq-dev"
    image_path = sorted((src / "images").glob("*.jpg"))[0]
    label = celebamask_to_lapa(read_label(src / "masks" / f"{image_path.stem}.png"))
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copyfile(image_path, root / image_path.name)
    with Project.open(root) as project:
        project.save_label(project.images()[0], label, status="reviewed")
    export_project(root, tmp_path / "out", val_fraction=0, test_fraction=0)
    exported = tmp_path / "out" / "train" / "images" / image_path.name
    assert exported.read_bytes() == image_path.read_bytes()
    sample = LapaDataset(tmp_path / "out", "train")[0]
    np.testing.assert_array_equal(sample.label, label)
    points = sample.landmarks
    for i, cls in ((74, 4), (104, 4), (83, 5), (105, 5), (54, 6)):
        x, y = np.round(points[i]).astype(int)
        assert label[y, x] == cls, (i, cls, label[y, x])
    assert points[84, 0] < points[90, 0]


def test_known_landmarks_are_used_and_not_called_derived(tmp_path: Path) -> None:
    _project(tmp_path / "proj", n=2)
    known = np.stack([np.linspace(1, 60, 106), np.linspace(2, 61, 106)], axis=1)
    path = tmp_path / "proj" / ".faceparse" / "landmarks" / "face0.jpg.txt"
    path.parent.mkdir(parents=True)
    path.write_text("106\n" + "\n".join(f"{x} {y}" for x, y in known) + "\n")
    export_project(tmp_path / "proj", tmp_path / "out", val_fraction=0, test_fraction=0)
    np.testing.assert_allclose(
        read_landmarks(tmp_path / "out" / "train" / "landmarks" / "face0.txt"), known, atol=0.01
    )
    readme = (tmp_path / "out" / "README.txt").read_text()
    derived_part, known_part = readme.split("Landmark files from the project's own landmarks")
    assert "train/landmarks/face1.txt" in derived_part and "face0" not in derived_part
    assert "train/landmarks/face0.txt" in known_part


def test_the_export_says_what_each_label_cost(tmp_path: Path) -> None:
    import csv

    root = tmp_path / "proj"
    _project(root, n=3)
    with Project.open(root) as project:
        for k, rec in enumerate(project.images()):
            project.save_label(rec, project.load_label(rec), add_seconds=60.0 * (k + 1), add_actions=10 * (k + 1))
    export_project(root, tmp_path / "out", val_fraction=0, test_fraction=0)
    with open(tmp_path / "out" / "effort.csv", encoding="utf-8", newline="") as f:
        rows = {r["original"]: r for r in csv.DictReader(f)}
    assert {k: (float(r["active_seconds"]), int(r["actions"])) for k, r in rows.items()} == {
        "face0.jpg": (60.0, 10), "face1.png": (120.0, 20), "face2.jpg": (180.0, 30),
    }  # fmt: skip
    assert {r["name"] for r in rows.values()} == {"face0", "face1", "face2"}
    readme = (tmp_path / "out" / "README.txt").read_text()
    assert "6.0 min of active labeling" in readme and "median 120 s and 20 edits" in readme


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_exporting_through_a_link_to_a_folder_updates_the_folder_and_keeps_the_link(
    tmp_path: Path,
) -> None:
    """A team keeps `current` pointing at its dataset folder: exporting into `current` replaced
    the link with a new folder, so the linked dataset stayed at the old export and everything
    else reading it saw stale labels."""
    _project(tmp_path / "proj", n=2)
    real = tmp_path / "datasets" / "faces-v1"
    export_project(tmp_path / "proj", real, val_fraction=0, test_fraction=0)
    (real / "notes.txt").write_text("mine")
    link = tmp_path / "current"
    link.symlink_to(real, target_is_directory=True)
    _project(tmp_path / "proj", n=4)  # two more faces labeled since
    counts = export_project(tmp_path / "proj", link, val_fraction=0, test_fraction=0)
    assert counts["train"] == 4
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert len(list((real / "train" / "images").iterdir())) == 4
    assert (real / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "datasets", "proj"]


def test_a_second_export_into_a_new_folder_of_a_new_parent_is_refused_while_one_runs(
    tmp_path: Path,
) -> None:
    """The first export into exports/2026/faces took no lock (its parent did not exist yet),
    so a second one into the same folder ran alongside it and took its unfinished folder for a
    killed export's leftovers."""
    from faceparse_app.export_recovery import one_export_at_a_time

    _project(tmp_path / "proj", n=2)
    out = tmp_path / "exports" / "2026" / "faces"
    with one_export_at_a_time(out):
        with pytest.raises(ProjectError, match="another export into .*faces is running"):
            export_project(tmp_path / "proj", out)
    assert export_project(tmp_path / "proj", out)["skipped"] == 0


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_a_link_into_the_project_folder_is_refused_like_the_folder_itself(tmp_path: Path) -> None:
    _project(tmp_path / "proj", n=2)
    (tmp_path / "proj" / "out").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "proj" / "out", target_is_directory=True)
    with pytest.raises(ProjectError, match="lies inside the project folder"):
        export_project(tmp_path / "proj", tmp_path / "link")
    assert list((tmp_path / "proj" / "out").iterdir()) == []


@pytest.mark.parametrize("mode", ["CMYK", "L"])
def test_a_cmyk_or_grayscale_jpeg_is_exported_as_rgb(tmp_path: Path, mode: str) -> None:
    """A CMYK JPEG was copied byte for byte, so a LaPa loader (np.array(Image.open(f))) got 4
    channels, or 1 for a grayscale one, where every other image has 3."""
    root = tmp_path / "proj"
    root.mkdir()
    image, label = synthetic_face(64, seed=1)
    Image.fromarray(image).convert(mode).save(root / "face.jpg", format="JPEG", quality=95)
    with Project.open(root) as project:
        project.save_label(project.images()[0], label, status="labeled")
    out = tmp_path / "lapa"
    export_project(root, out, val_fraction=0, test_fraction=0)
    with Image.open(out / "train" / "images" / "face.jpg") as im:
        assert im.mode == "RGB"
        exported = np.asarray(im)
    assert exported.shape == (64, 64, 3)
    # the same picture (re-encoding noise only; an inverted CMYK would be off by ~100)
    assert np.abs(exported.astype(int) - read_image(root / "face.jpg").astype(int)).mean() < 8


def test_the_readme_warns_when_val_or_test_hold_accepted_pre_labels(tmp_path: Path) -> None:
    """Accepted pre-labels in val/ or test/ score the model that made them (and any model
    fine-tuned from it) too well; the export said nothing of it outside effort.csv."""
    root = tmp_path / "proj"
    _project(root, n=10, accepted=5)
    out = tmp_path / "lapa"
    export_project(root, out, val_fraction=0.3, test_fraction=0.3, seed=1)
    names = {}
    for split in SPLITS:
        names[split] = {p.stem for p in (out / split / "labels").iterdir()}
    held = [f"{s}/{n}" for s in ("val", "test") for n in sorted(names[s]) if int(n[-1]) < 5]
    text = (out / "README.txt").read_text(encoding="utf-8")
    assert held, "the draw must put an accepted pre-label into val or test"
    assert f"{len(held)} of the {len(names['val']) + len(names['test'])} val/test labels" in text
    for name in held:
        assert f"  {name}" in text

"""LaPa export, one image per face: a group photo becomes one LaPa sample per face (LaPa, its
loaders and most face-parsing trainers expect one face per image, with its landmarks)."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from faceparse_app.export import export_message, export_project
from faceparse_app.faces import user_face
from faceparse_app.project import Project
from tests.app.test_export import _assert_key_points, _project, disk_full_on_third_label
from tests.conftest import synthetic_face
from trainer.data.imageio import read_image, read_label, write_image
from trainer.data.lapa import read_landmarks
from trainer.faces import faces_from_label, invert
from trainer.labels import celebamask_to_lapa

SPLITS = ("train", "val", "test")
GAP = 256  # px between the two pasted faces: neither's crop reaches the other's face parts


def two_face_photo(shared_data: Path, gap: int = GAP) -> tuple[np.ndarray, np.ndarray]:
    """Two CelebAMask-HQ faces pasted side by side, ``gap`` apart (a 512×1280 group photo) and
    its LaPa label map."""
    src = shared_data / "celebamask-hq-dev"
    paths = sorted((src / "images").glob("*.jpg"))[:2]
    image = np.zeros((512, 1024 + gap, 3), np.uint8)
    label = np.zeros((512, 1024 + gap), np.uint8)
    for k, path in enumerate(paths):
        x = k * (512 + gap)
        image[:, x : x + 512] = read_image(path)
        label[:, x : x + 512] = celebamask_to_lapa(read_label(src / "masks" / f"{path.stem}.png"))
    return image, label


def group_project(
    root: Path, shared_data: Path, faces: str = "boxes", gap: int = GAP
) -> tuple[np.ndarray, np.ndarray]:
    """A project holding the two-face photo, labeled, its faces kept in the store as the app
    keeps them: drawn boxes ("boxes", framed upright) or faces with eye and mouth points
    ("points", framed level with the eyes, as the face finder's are)."""
    root.mkdir(parents=True)
    image, label = two_face_photo(shared_data, gap)
    write_image(root / "group.png", image)
    found = faces_from_label(label)
    kept = [user_face(f.box) for f in found] if faces == "boxes" else found
    with Project.open(root) as project:
        rec = project.images()[0]
        rec = project.save_label(rec, label, status="labeled")
        project.set_faces(rec, kept[::-1])  # stored right to left: the export orders them
    return image, label


def names_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "names.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_a_two_face_photo_exports_one_sample_per_face_cut_from_its_label(tmp_path, shared_data):
    from faceparse_app.export_faces import crop_transform

    image, label = group_project(tmp_path / "proj", shared_data)
    out = tmp_path / "lapa"
    counts = export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0, per_face=True)
    assert counts["train"] == 2 and counts["skipped"] == 0
    names = sorted(p.stem for p in (out / "train" / "images").iterdir())
    assert names == ["group__face1", "group__face2"]
    rows = {r["name"]: r for r in names_rows(out)}
    assert set(rows) == set(names) and {r["original"] for r in rows.values()} == {"group.png"}
    boxes = {n: [float(rows[n][k]) for k in ("face_x0", "face_y0", "face_x1", "face_y1")] for n in names}
    assert boxes["group__face1"][2] < boxes["group__face2"][0]  # face 1 is the left one
    for name in names:
        crop = read_image(out / "train" / "images" / f"{name}.jpg")
        crop_label = read_label(out / "train" / "labels" / f"{name}.png")
        assert crop.shape[:2] == crop_label.shape and crop_label.shape[0] == crop_label.shape[1]
        assert crop_label.shape[0] > 512  # the photo's own pixels, with a margin: no resize
        # One face in each label, the one named in names.csv.
        (face,) = faces_from_label(crop_label)
        # An upright (box) crop is a cut of the photo, padded where it runs past the photo:
        # the label is the project's, pixel for pixel, background outside the photo.
        m, side = crop_transform(user_face(tuple(boxes[name])))
        assert side == crop_label.shape[0]
        assert (m[:, :2] == np.eye(2)).all() and (m[:, 2] == np.round(m[:, 2])).all()
        x0, y0 = int(-m[0, 2]), int(-m[1, 2])  # the crop's top-left pixel in the photo
        padded = np.zeros((512 + 2 * side, label.shape[1] + 2 * side), np.uint8)
        padded[side : side + 512, side : side + label.shape[1]] = label
        np.testing.assert_array_equal(crop_label, padded[side + y0 : 2 * side + y0, side + x0 : 2 * side + x0])
        # The image is the same cut of the photo (JPEG: close, not exact).
        ys, xs = np.nonzero(crop_label)
        photo = image[ys + y0, xs + x0].astype(int)
        assert np.abs(crop[ys, xs].astype(int) - photo).mean() < 4
        points = read_landmarks(out / "train" / "landmarks" / f"{name}.txt")
        assert ((points >= 0) & (points < side)).all()
        _assert_key_points(points, crop_label)
        fx0, fy0, fx1, fy1 = face.box  # the landmarks are this face's, not the photo's largest
        assert (points[:, 0] > fx0 - 20).all() and (points[:, 0] < fx1 + 20).all()


def test_a_face_framed_from_its_eyes_is_turned_upright_and_keeps_its_label(tmp_path, shared_data):
    from faceparse_app.export_faces import crop_transform

    image, label = group_project(tmp_path / "proj", shared_data, faces="points")
    out = tmp_path / "lapa"
    export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0, per_face=True)
    with Project.open(tmp_path / "proj", read_only=True) as project:
        faces = sorted(project.faces(project.images()[0]), key=lambda f: f.box[0])
    for k, face in enumerate(faces, 1):
        crop_label = read_label(out / "train" / "labels" / f"group__face{k}.png")
        m, side = crop_transform(face)
        assert crop_label.shape == (side, side)
        # Each crop pixel holds the photo's class at the point it came from (nearest
        # neighbour), background past the photo.
        ys, xs = np.mgrid[0:side, 0:side]
        pts = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5, np.ones(side * side)], 1) @ invert(m).T
        px, py = np.floor(pts[:, 0]).astype(int), np.floor(pts[:, 1]).astype(int)
        ok = (px >= 0) & (px < label.shape[1]) & (py >= 0) & (py < label.shape[0])
        expected = np.zeros(side * side, np.uint8)
        expected[ok] = label[py[ok], px[ok]]
        assert (crop_label.ravel() == expected).mean() > 0.99
        assert len(faces_from_label(crop_label)) == 1
        _assert_key_points(read_landmarks(out / "train" / "landmarks" / f"group__face{k}.txt"), crop_label)


def test_faces_of_a_photo_share_its_split_and_keep_it_when_exported_again(tmp_path, shared_data):
    root = tmp_path / "proj"
    group_project(root, shared_data)
    for i in range(5):  # single faces beside the group photo
        write_image(root / f"solo{i}.png", synthetic_face(64, seed=i)[0])
    with Project.open(root) as project:
        for rec in project.images():
            if rec.relpath.startswith("solo"):
                project.save_label(rec, synthetic_face(64, seed=int(rec.relpath[4]))[1], status="labeled")
    out = tmp_path / "lapa"
    export_project(root, out, val_fraction=0.3, test_fraction=0.3, seed=2, per_face=True)
    rows = names_rows(out)
    split_of = {}
    for row in rows:
        assert split_of.setdefault(row["original"], row["split"]) == row["split"], row
        assert (out / row["split"] / "labels" / f"{row['name']}.png").is_file()
    assert sum(r["original"] == "group.png" for r in rows) == 2
    (out / "notes.txt").write_text("mine")  # a file of the user's in the export
    (out / "train" / "mine").mkdir()
    (out / "train" / "mine" / "a.txt").write_text("mine too")
    write_image(root / "solo9.png", synthetic_face(64, seed=9)[0])  # a photo added since
    with Project.open(root) as project:
        rec = next(r for r in project.images() if r.relpath == "solo9.png")
        project.save_label(rec, synthetic_face(64, seed=9)[1], status="labeled")
    export_project(root, out, val_fraction=0.3, test_fraction=0.3, seed=2, per_face=True)
    again = {r["name"]: r["split"] for r in names_rows(out)}
    assert all(again[r["name"]] == r["split"] for r in rows)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "train" / "mine" / "a.txt").read_text() == "mine too"
    effort = list(csv.DictReader(open(out / "effort.csv", encoding="utf-8", newline="")))
    assert sorted(r["original"] for r in effort) == sorted(["group.png", *[f"solo{i}.png" for i in (0, 1, 2, 3, 4, 9)]])


def _digest(out: Path) -> str:
    """Every file of an export, the README's date line and the manifest's README hash aside."""
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(out).as_posix()
        data = p.read_bytes()
        if rel == "README.txt":
            data = b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"Written by"))
        if rel == "export-manifest.json":
            manifest = json.loads(data)
            manifest["files"].pop("README.txt")
            data = json.dumps(manifest, sort_keys=True).encode()
        h.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def test_a_whole_photo_export_comes_back_unchanged_after_a_per_face_one(tmp_path):
    """Per-face and whole-photo exports into one folder replace each other's files: the whole
    photos exported again are the first whole export, file for file (no crop left behind)."""
    _project(tmp_path / "proj", n=6)
    out = tmp_path / "out"
    export_project(tmp_path / "proj", out, seed=1)
    first = _digest(out)
    export_project(tmp_path / "proj", out, seed=1, per_face=True)
    assert {p.stem for p in (out / "train" / "images").iterdir()} == {
        f"face{i}__face1" for i in range(6) if (out / "train" / "labels" / f"face{i}__face1.png").exists()
    }
    assert _digest(out) != first
    export_project(tmp_path / "proj", out, seed=1)
    assert _digest(out) == first


def test_a_photo_without_a_face_exports_nothing_and_the_readme_names_it(tmp_path):
    _project(tmp_path / "proj", n=2)
    write_image(tmp_path / "proj" / "wall.png", np.full((64, 64, 3), 90, np.uint8))
    with Project.open(tmp_path / "proj") as project:
        rec = next(r for r in project.images() if r.relpath == "wall.png")
        rec = project.save_label(rec, np.zeros((64, 64), np.uint8), status="labeled")
        project.set_faces(rec, [])
    out = tmp_path / "out"
    counts = export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0, per_face=True)
    assert counts["train"] == 2 and counts["no_face"] == 1
    assert sorted(p.stem for p in (out / "train" / "images").iterdir()) == ["face0__face1", "face1__face1"]
    readme = (out / "README.txt").read_text(encoding="utf-8")
    assert "  wall.png" in readme and "no face" in readme.lower()
    effort = next(line for line in readme.splitlines() if line.startswith("Effort"))
    assert "per photo" in effort and "per image" not in effort  # the crops are not what it cost
    from faceparse_app.export import export_message

    said = export_message(out, counts, {})
    assert "one image per face" in said and "1 labeled photo has no face" in said


def test_readme_warnings_name_the_crops_of_accepted_and_unreviewed_labels(tmp_path):
    root = tmp_path / "proj"
    _project(root, n=4, accepted=4)
    out = tmp_path / "lapa"
    export_project(root, out, val_fraction=0.5, test_fraction=0.5, seed=1, per_face=True)
    text = (out / "README.txt").read_text(encoding="utf-8")
    for row in names_rows(out):
        assert f"  {row['split']}/{row['name']}" in text
        assert row["name"].endswith("__face1")


def test_the_cli_exports_one_image_per_face(tmp_path, capsys):
    from faceparse_app.cli import main

    _project(tmp_path / "proj", n=2)
    assert main(["export", str(tmp_path / "proj"), str(tmp_path / "out"), "--per-face"]) == 0
    names = {r["name"] for r in names_rows(tmp_path / "out")}
    assert names == {"face0__face1", "face1__face1"}
    with pytest.raises(SystemExit):
        from faceparse_app.cli import build_parser

        build_parser().parse_args(["export", "--help"])
    assert "--per-face" in capsys.readouterr().out


def test_the_forms_choice_reaches_the_export_and_is_remembered(qtbot, tmp_path):
    from faceparse_app.widgets.export_dialog import ExportDialog, export_job

    _project(tmp_path / "proj", n=2)
    dialog = ExportDialog(tmp_path / "proj", counts={"labeled": 2})
    qtbot.addWidget(dialog)
    assert not dialog.per_face_box.isChecked()  # whole photos unless asked
    dialog.folder_edit.setText(str(tmp_path / "out"))
    dialog.per_face_box.setChecked(True)
    request = dialog.request()
    export_job(tmp_path / "proj", request)
    assert {r["name"] for r in names_rows(tmp_path / "out")} == {"face0__face1", "face1__face1"}
    again = ExportDialog(tmp_path / "proj", last=request.form())
    qtbot.addWidget(again)
    assert again.per_face_box.isChecked()


def test_the_projects_own_landmarks_are_mapped_into_their_faces_crop(tmp_path):
    from faceparse_app.export_faces import crop_transform

    labels = _project(tmp_path / "proj", n=2)
    known = np.stack([np.linspace(20, 44, 106), np.linspace(22, 46, 106)], axis=1)
    path = tmp_path / "proj" / ".faceparse" / "landmarks" / "face0.jpg.txt"
    path.parent.mkdir(parents=True)
    path.write_text("106\n" + "\n".join(f"{x} {y}" for x, y in known) + "\n")
    out = tmp_path / "out"
    export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0, per_face=True)
    (face,) = faces_from_label(labels["face0.jpg"])  # no faces kept: those of its label
    m, _side = crop_transform(face)
    np.testing.assert_allclose(
        read_landmarks(out / "train" / "landmarks" / "face0__face1.txt"), known @ m[:, :2].T + m[:, 2], atol=0.01
    )
    readme = (out / "README.txt").read_text()
    derived_part, known_part = readme.split("Landmark files from the project's own landmarks")
    assert "train/landmarks/face1__face1.txt" in derived_part and "face0" not in derived_part
    assert "train/landmarks/face0__face1.txt" in known_part


def test_faces_cheek_to_cheek_each_get_their_own_landmarks(tmp_path, shared_data):
    """Each crop also shows part of the neighbour: its labels stay (they are in the image), but
    the landmarks are placed from the crop's own face alone, not from both faces' parts."""
    from faceparse_app.export_faces import crop_transform

    group_project(tmp_path / "proj", shared_data, faces="points", gap=0)
    out = tmp_path / "lapa"
    export_project(tmp_path / "proj", out, val_fraction=0, test_fraction=0, per_face=True)
    with Project.open(tmp_path / "proj", read_only=True) as project:
        faces = sorted(project.faces(project.images()[0]), key=lambda f: f.box[0])
    reached = []
    for k in (1, 2):
        crop_label = read_label(out / "train" / "labels" / f"group__face{k}.png")
        side = crop_label.shape[1]
        edge = crop_label[:, int(side * 0.85) :] if k == 1 else crop_label[:, : int(side * 0.15)]
        reached.append(np.isin(edge, (1, 2, 3, 4, 5)).sum() > 1000)  # the neighbour's face
        points = read_landmarks(out / "train" / "landmarks" / f"group__face{k}.txt")
        _assert_key_points(points, crop_label)
        # Every point lies on this face (its box, mapped into the crop), none on the neighbour.
        x0, y0, x1, y1 = faces[k - 1].box
        m, _side = crop_transform(faces[k - 1])
        xs = (np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) @ m[:, :2].T + m[:, 2])[:, 0]
        assert (points[:, 0] > xs.min() - 10).all() and (points[:, 0] < xs.max() + 10).all(), k
    assert any(reached)  # the case this is about: a crop holding two faces' parts


def test_a_full_disk_midway_through_the_crops_leaves_the_earlier_export_as_it_was(tmp_path, monkeypatch):

    import faceparse_app.export_faces as export_faces
    from faceparse_app.project import ProjectError

    _project(tmp_path / "proj", n=4)
    out = tmp_path / "out"
    export_project(tmp_path / "proj", out, seed=1)
    (out / "notes.txt").write_text("mine")
    before = _digest(out)
    disk_full_on_third_label(monkeypatch, export_faces)
    with pytest.raises(ProjectError, match="disk full"):
        export_project(tmp_path / "proj", out, seed=1, per_face=True)
    assert _digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "proj"]  # no temp left


def test_a_face_with_no_labeled_part_is_not_exported_and_the_readme_names_it(tmp_path, shared_data):
    """A face left unlabeled (a passer-by, a box over the wall) would be a crop whose label says
    all background: a model trained on the export would learn that a face is background."""
    root = tmp_path / "proj"
    image, label = group_project(root, shared_data)
    with Project.open(root) as project:
        rec = project.images()[0]
        false = user_face((512 + GAP / 2 - 40, 10, 512 + GAP / 2 + 40, 90))  # wall between them
        project.set_faces(rec, [*project.faces(rec), false])
    out = tmp_path / "lapa"
    counts = export_project(root, out, val_fraction=0, test_fraction=0, per_face=True)
    names = sorted(p.stem for p in (out / "train" / "labels").iterdir())
    assert names == ["group__face1", "group__face3"]  # the wall's was the middle one
    assert counts["train"] == 2 and counts["unlabeled_faces"] == 1
    assert "1 face with no labeled part of its own left out" in export_message(out, counts, {})
    assert sorted(p.stem for p in (out / "train" / "images").iterdir()) == names
    assert [r["name"] for r in names_rows(out)] == names
    readme = (out / "README.txt").read_text(encoding="utf-8")
    assert "  train/group__face2" in readme.split("Faces not exported")[1]
    assert "No landmark file" not in readme


def test_a_face_at_the_photos_edge_is_padded_black_where_its_label_is_background(tmp_path, shared_data):
    """Past the photo's edge the crop holds no photo: its label is background there, and the
    image must not show the edge pixels smeared out as streaks of skin or hair that a model
    trained on the export would learn as background."""
    root = tmp_path / "proj"
    root.mkdir()
    image, label = two_face_photo(shared_data)
    image, label = image[:, 100:], label[:, 100:]  # the left face's crop now reaches past the photo
    write_image(root / "group.png", image)
    with Project.open(root) as project:
        rec = project.save_label(project.images()[0], label, status="labeled")
        project.set_faces(rec, [user_face(f.box) for f in faces_from_label(label)])
    out = tmp_path / "lapa"
    export_project(root, out, val_fraction=0, test_fraction=0, per_face=True)
    from faceparse_app.export_faces import crop_transform

    with Project.open(root) as project:
        face = min(project.faces(project.images()[0]), key=lambda f: f.box[0])
    m, side = crop_transform(face)  # a box face: an upright cut, photo x = crop x - m[0, 2]
    crop = read_image(out / "train" / "images" / "group__face1.jpg")
    crop_label = read_label(out / "train" / "labels" / "group__face1.png")
    outside = np.arange(side) - m[0, 2] < 0  # the crop's columns left of the photo
    assert outside.sum() > 20, "the test's face must reach past the photo's left edge"
    assert (crop_label[:, outside] == 0).all()
    # Black, not the photo's edge repeated (the 8 columns beside the photo: JPEG's ringing).
    assert crop[:, outside][:, :-8].max() <= 8


def test_the_readme_says_what_lies_past_the_photos_edge_in_a_crop(tmp_path):
    """The README is what a user of the dataset reads: it must describe the crops as written
    (black past the photo's edge), not the trainer's repeated edge pixels."""
    _project(tmp_path / "proj", n=2)
    out = tmp_path / "out"
    export_project(tmp_path / "proj", out, per_face=True)
    readme = " ".join((out / "README.txt").read_text(encoding="utf-8").split())
    assert "repeats its edge pixels" not in readme
    assert "Past the photo's edge the image is black and the label is background" in readme


def test_the_projects_landmarks_go_to_one_face_where_two_face_boxes_overlap(tmp_path, shared_data):
    """A box drawn by hand may reach over a neighbour's face: the project's landmarks (one face's)
    belong to that one face's crop, not also to the neighbour's as 'known' landmarks."""
    root = tmp_path / "proj"
    group_project(root, shared_data, faces="boxes", gap=0)
    with Project.open(root) as project:
        rec = project.images()[0]
        left, right = sorted(project.faces(rec), key=lambda f: f.box[0])
        cx, cy = (left.box[0] + left.box[2]) / 2, (left.box[1] + left.box[3]) / 2
        y0, y1 = min(left.box[1], right.box[1]), max(left.box[3], right.box[3])
        wide = user_face((cx - 20, y0, right.box[2], y1))  # over the left face's centre
        project.set_faces(rec, [left, wide])
    known = np.stack([np.linspace(cx - 12, cx + 12, 106), np.linspace(cy - 12, cy + 12, 106)], axis=1)
    path = root / ".faceparse" / "landmarks" / "group.png.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("106\n" + "\n".join(f"{x} {y}" for x, y in known) + "\n")
    out = tmp_path / "lapa"
    export_project(root, out, val_fraction=0, test_fraction=0, per_face=True)
    readme = (out / "README.txt").read_text(encoding="utf-8")
    derived_part, known_part = readme.split("Landmark files from the project's own landmarks")
    assert "train/landmarks/group__face1.txt" in known_part
    assert "train/landmarks/group__face2.txt" in derived_part
    second = read_landmarks(out / "train" / "landmarks" / "group__face2.txt")
    assert not np.allclose(second.std(0), known.std(0), atol=0.5)  # not the left face's points


def test_faces_painted_where_the_face_finder_saw_none_are_exported(tmp_path, shared_data):
    """The face finder may miss a face (turned away, half hidden) that the annotator then labels
    by hand: the project keeps no face, or only the other, for the photo. Every face the label
    holds is exported, not dropped with the README calling the photo 'labeled all background'."""
    root = tmp_path / "proj"
    group_project(root, shared_data)
    with Project.open(root) as project:
        rec = project.images()[0]
        left, right = sorted(project.faces(rec), key=lambda f: f.box[0])
        project.set_faces(rec, [right])  # only the right face was found
    out = tmp_path / "one_found"
    counts = export_project(root, out, val_fraction=0, test_fraction=0, per_face=True)
    assert counts["train"] == 2
    first = read_label(out / "train" / "labels" / "group__face1.png")
    assert np.isin(first, (4, 5)).sum() > 100  # the left face's eyes: its own crop
    with Project.open(root) as project:
        project.set_faces(project.images()[0], [])  # looked for, none found
    out = tmp_path / "none_found"
    counts = export_project(root, out, val_fraction=0, test_fraction=0, per_face=True)
    assert counts["train"] == 2 and counts["no_face"] == 0
    assert "group.png" not in (out / "README.txt").read_text(encoding="utf-8")


def test_a_photo_with_no_face_keeps_its_split_through_a_per_face_export(tmp_path):
    """A photo labeled with no face (a background-only negative) is in every whole export but
    gives no crop: a per-face export in between must not forget its split, or the next whole
    export may draw a photo of the first one's test set into train."""
    root = tmp_path / "proj"
    _project(root, n=6)
    write_image(root / "wall.png", np.full((64, 64, 3), 90, np.uint8))
    with Project.open(root) as project:
        rec = project.save_label(project.find("wall.png"), np.zeros((64, 64), np.uint8), status="labeled")
        project.set_faces(rec, [])
    out = tmp_path / "out"
    shares = {"val_fraction": 0.3, "test_fraction": 0.3, "seed": 2}
    export_project(root, out, **shares)
    first = {r["original"]: r["split"] for r in names_rows(out)}
    assert export_project(root, out, per_face=True, **shares)["no_face"] == 1
    write_image(root / "new.png", synthetic_face(64, seed=9)[0])  # a photo labeled since
    with Project.open(root) as project:
        project.save_label(project.find("new.png"), synthetic_face(64, seed=9)[1], status="labeled")
    export_project(root, out, **shares)
    again = {r["original"]: r["split"] for r in names_rows(out)}
    assert {p: again[p] for p in first} == first

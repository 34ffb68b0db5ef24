"""Importing existing labels into a project (``faceparse_app.import_labels`` and
``faceparse-studio import-labels``): LaPa label folders and trees, our own export, CelebAMask-HQ
masks. Real faces from ../shared/data, copied into temporary folders."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceparse_app.__main__ import main
from faceparse_app.export import export_project
from faceparse_app.import_labels import import_labels
from faceparse_app.project import Project, ProjectError
from tests.conftest import ROOT
from trainer.data.imageio import read_label
from trainer.labels import celebamask_to_lapa

HELEN = "lapa-format-helen/test"
CELEB = "celebamask-hq-dev"


@pytest.fixture
def helen(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(a project folder of the 6 HELEN photos, a copy of their LaPa labels folder)."""
    photos, labels = tmp_path / "proj", tmp_path / "labels"
    shutil.copytree(shared_data / HELEN / "images", photos)
    shutil.copytree(shared_data / HELEN / "labels", labels)
    return photos, labels


def test_lapa_labels_are_imported_as_a_persons_labels_to_review(helen) -> None:
    photos, labels = helen
    with Project.open(photos) as project:
        report = import_labels(project, labels)
        assert sorted(report.imported) == sorted(p.name for p in photos.glob("*.png"))
        assert not report.kept and not report.skipped
        for rec in project.images():
            assert np.array_equal(project.load_label(rec), read_label(labels / rec.relpath))
            assert rec.status == "labeled" and rec.needs_review
            assert project.label_by_hand(rec)
            # A later pre-label pass (any model) may not replace it.
            assert not project.may_prelabel(rec)
            with pytest.raises(ProjectError):
                project.save_label(rec, np.zeros((rec.height, rec.width), np.uint8), model_version="m1")
        assert project.counts()["needs_review"] == 6
        with pytest.raises(ProjectError, match="own store"):  # its own label files are no source
            import_labels(project, project.labels_dir)


def test_a_hand_label_is_never_replaced_and_is_named(helen) -> None:
    photos, labels = helen
    with Project.open(photos) as project:
        recs = {r.relpath: r for r in project.images()}
        a, b, c, d = sorted(recs)[:4]
        blank = lambda rec: np.zeros((rec.height, rec.width), np.uint8)  # noqa: E731
        project.save_label(recs[a], blank(recs[a]) + 1)  # in progress, edited by hand
        project.save_label(recs[b], blank(recs[b]) + 1, status="reviewed")
        project.save_label(recs[c], blank(recs[c]), model_version="m1")  # a model's pre-label
        project.save_label(recs[d], blank(recs[d]), model_version="m1")
        project.set_status(project.get(recs[d].id), "labeled")  # accepted as it was: labeled
        before = {p: project.label_file(p).read_bytes() for p in (a, b, d)}
        report = import_labels(project, labels)
        assert sorted(report.kept) == sorted([a, b, d])
        for p in (a, b, d):
            assert project.label_file(p).read_bytes() == before[p]
        assert c in report.imported  # a pre-label is the model's: the imported label replaces it
        assert np.array_equal(project.load_label(project.get(recs[c].id)), read_label(labels / c))
        assert project.get(recs[a].id).status == "in_progress"
        text = report.message("labels")
        assert a in text and b in text and d in text and "kept" in text


def test_our_export_imported_into_a_fresh_project_lands_on_each_photo(helen, tmp_path: Path) -> None:
    photos, labels = helen
    # Two photos of the same name in two folders (exported as a__x and b__x): only names.csv
    # says which is which.
    names = sorted(p.name for p in photos.glob("*.png"))
    for folder, name in (("a", names[0]), ("b", names[1])):
        (photos / folder).mkdir()
        shutil.move(photos / name, photos / folder / "x.png")
        shutil.copy(labels / name, labels / f"{folder}_x.png")
    fresh = tmp_path / "fresh"
    shutil.copytree(photos, fresh)
    later = names[2]  # not labeled before the export: a colleague adds its label by name
    with Project.open(photos) as project:
        for rec in project.images():
            name = rec.relpath.replace("/", "_") if "/" in rec.relpath else rec.relpath
            if rec.relpath != later:
                project.save_label(rec, read_label(labels / name), status="labeled")
        kept = {r.relpath: project.label_path(r).read_bytes() for r in project.images() if r.relpath != later}
    out = tmp_path / "export"
    counts = export_project(photos, out, val_fraction=0.2, test_fraction=0.2)
    assert sum(counts[s] for s in ("train", "val", "test")) == 5
    shutil.copy(labels / later, out / "train" / "labels" / later)
    with Project.open(fresh) as project:
        report = import_labels(project, out)
        assert sorted(report.imported) == sorted([*kept, later]) and not report.skipped
        for rec in project.images():
            if rec.relpath == later:  # found by its name
                assert np.array_equal(project.load_label(rec), read_label(labels / later))
            else:
                assert project.label_path(rec).read_bytes() == kept[rec.relpath], rec.relpath


def test_celebamask_masks_convert_with_the_left_right_swap(shared_data: Path, tmp_path: Path) -> None:
    ids = sorted(p.stem for p in (shared_data / CELEB / "masks").glob("*.png"))[:3]
    photos, source = tmp_path / "proj", tmp_path / "celeb"
    photos.mkdir()
    (source / "masks").mkdir(parents=True)
    for i in ids:
        shutil.copy(shared_data / CELEB / "images" / f"{i}.jpg", photos / f"{i}.jpg")
        shutil.copy(shared_data / CELEB / "masks" / f"{i}.png", source / "masks" / f"{i}.png")
    with Project.open(photos) as project:
        report = import_labels(project, source)
        assert report.source == "celebamask" and len(report.imported) == 3
        for rec in project.images():
            mask = read_label(source / "masks" / f"{Path(rec.relpath).stem}.png")
            label = project.load_label(rec)
            assert np.array_equal(label, celebamask_to_lapa(mask))
            w = label.shape[1]
            xs_left_eye = np.nonzero(label == 4)[1]  # LaPa's left eye: the viewer's left
            assert xs_left_eye.size and xs_left_eye.mean() < w / 2
            assert np.nonzero(mask == 5)[1].mean() < w / 2  # the person's right eye (5)


def test_wrong_size_colour_unreadable_and_out_of_range_labels_are_skipped_by_name(helen) -> None:
    photos, labels = helen
    names = sorted(p.name for p in labels.glob("*.png"))
    small, colour, broken, high = names[:4]
    lab = read_label(labels / small)
    Image.fromarray(lab[::2, ::2]).save(labels / small)
    rgb = np.stack([read_label(labels / colour) * 25, np.full(lab.shape, 7, np.uint8), np.zeros(lab.shape, np.uint8)], -1)
    Image.fromarray(rgb[: read_label(labels / colour).shape[0]], "RGB").save(labels / colour)
    (labels / broken).write_bytes(b"not a png at all")
    over = read_label(labels / high)
    over[0, 0] = 200
    Image.fromarray(over).save(labels / high)
    shutil.copy(labels / names[5], labels / "nobody.png")  # for a photo not in the project
    with Project.open(photos) as project:
        report = import_labels(project, labels)
        skipped = dict(report.skipped)
        assert sorted(skipped) == sorted([small, colour, broken, high, "nobody.png"])
        assert "no photo" in skipped["nobody.png"]
        assert "but its image is" in skipped[small]
        assert "colour" in skipped[colour]
        assert "200" in skipped[high]
        assert sorted(report.imported) == names[4:]
        for name in (small, colour, broken, high):
            assert project.load_label(project.find(name)) is None
        text = report.message("labels")
        assert all(n in text for n in (small, colour, broken, high)) and "skipped 4" in text
        assert "no photo in this project for 1 more (nobody.png)" in text


HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from faceparse_app.project import Project
    project = Project.open(sys.argv[2])
    print("open", flush=True)
    time.sleep(30)
    project.close()
    """
)


def test_import_labels_command_and_its_refusal_while_a_window_holds_the_project(
    helen, tmp_path: Path, capsys
) -> None:
    photos, labels = helen
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    child = subprocess.Popen([sys.executable, str(script), str(ROOT), str(photos)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "open"
        code = main(["import-labels", str(photos), str(labels)])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("faceparse-studio import-labels: error: ")
        assert str(child.pid) in err and len(err.strip().splitlines()) == 1
    finally:
        child.kill()
        child.wait()
    assert not any((photos / ".faceparse" / "labels").glob("*.png"))
    code = main(["import-labels", str(photos), str(labels)])
    out = capsys.readouterr().out
    assert code == 0 and "imported 6" in out and "needs review" in out
    with Project.open(photos) as project:
        assert all(r.status == "labeled" and r.needs_review for r in project.images())


def test_a_lapa_tree_opened_as_a_project_lists_only_its_images(shared_data: Path, tmp_path: Path) -> None:
    tree = tmp_path / "helen"
    shutil.copytree(shared_data / "lapa-format-helen", tree)
    (tree / "test" / "landmarks").mkdir()
    stem = sorted(p.stem for p in (tree / "test" / "labels").glob("*.png"))[0]
    points = "106\n" + "".join(f"{100 + i % 50} {120 + i // 50}\n" for i in range(106))
    (tree / "test" / "landmarks" / f"{stem}.txt").write_text(points)
    # A folder of the user's own photos named "labels", with no images/ beside it, stays listed.
    (tree / "mine" / "labels").mkdir(parents=True)
    shutil.copy(tree / "test" / "images" / f"{stem}.png", tree / "mine" / "labels" / "me.png")
    with Project.open(tree) as project:
        relpaths = sorted(r.relpath for r in project.images())
        assert relpaths == sorted(
            [f"test/images/{p.name}" for p in (tree / "test" / "images").glob("*.png")] + ["mine/labels/me.png"]
        )
        assert project.dataset_labels == {"test/labels": 6}
        report = import_labels(project, tree)
        assert sorted(report.imported) == [r for r in relpaths if r.startswith("test/images/")]
        assert report.landmarks == 1
        kept = project.store_dir / "landmarks" / f"test/images/{stem}.png.txt"
        assert kept.read_text().splitlines()[0] == "106"


def test_a_per_face_export_is_refused_with_its_reason_and_nothing_changes(helen, tmp_path: Path) -> None:
    """A per-face export holds crops, not the photos' labels: importing it must say so, not
    skip every crop as 'wrong size' (or as two labels for one photo) and leave the user guessing."""
    photos, labels = helen
    with Project.open(photos) as project:
        for rec in project.images():
            project.save_label(rec, read_label(labels / rec.relpath), status="labeled")
    out = tmp_path / "export"
    export_project(photos, out, val_fraction=0, test_fraction=0, per_face=True)
    fresh = tmp_path / "fresh"
    shutil.copytree(photos, fresh, ignore=shutil.ignore_patterns(".faceparse"))
    with Project.open(fresh) as project:
        with pytest.raises(ProjectError, match="one image per face") as err:
            import_labels(project, out)
        assert "whole photos" in str(err.value)
        assert all(project.may_prelabel(r) for r in project.images())


def test_labels_copied_into_the_project_folder_are_not_taken_for_their_own_photos(
    shared_data: Path, tmp_path: Path
) -> None:
    """A labels folder put inside the project (no images/ beside it) is listed as photos by the
    scan; importing it must still land each label on its photo, not refuse every one as fitting
    two photos (its photo and the label file itself)."""
    root = tmp_path / "proj"
    shutil.copytree(shared_data / HELEN / "images", root / "photos")
    shutil.copytree(shared_data / HELEN / "labels", root / "labels")
    with Project.open(root) as project:
        report = import_labels(project, root / "labels")
        assert sorted(report.imported) == sorted(f"photos/{p.name}" for p in (root / "labels").glob("*.png"))
        assert not report.skipped
        rec = project.find(report.imported[0])
        assert np.array_equal(project.load_label(rec), read_label(root / "labels" / rec.relpath.split("/")[1]))


def test_an_imported_label_over_a_pre_label_is_not_recorded_as_that_models(helen, tmp_path: Path) -> None:
    """The store records who wrote a label: an imported label that replaced a model's pre-label
    is a person's, not one started from that model (effort.csv's model_version stays empty)."""
    import csv

    photos, labels = helen
    with Project.open(photos) as project:
        rec = project.images()[0]
        project.save_label(rec, np.zeros((rec.height, rec.width), np.uint8), model_version="m7")
        report = import_labels(project, labels)
        assert rec.relpath in report.imported
        assert project.get(rec.id).model_version is None
    export_project(photos, tmp_path / "out", val_fraction=0, test_fraction=0)
    with open(tmp_path / "out" / "effort.csv", encoding="utf-8", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["original"] == rec.relpath)
    assert row["label_source"] == "hand" and row["model_version"] == ""


def test_imported_landmarks_follow_their_photo_when_it_is_renamed(helen, tmp_path: Path) -> None:
    """A photo renamed in the folder keeps its row and label (the scan relinks it by content);
    its imported LaPa landmarks must follow too, not be replaced by derived ones in the export."""
    from trainer.data.lapa import read_landmarks

    photos, labels = helen
    stem = sorted(p.stem for p in labels.glob("*.png"))[0]
    (tmp_path / "landmarks").mkdir()
    points = np.array([[100 + i % 50, 120 + i // 50] for i in range(106)], float)
    (tmp_path / "landmarks" / f"{stem}.txt").write_text("106\n" + "".join(f"{x} {y}\n" for x, y in points))
    with Project.open(photos) as project:
        assert import_labels(project, labels).landmarks == 1
    (photos / f"{stem}.png").rename(photos / "renamed.png")
    with Project.open(photos) as project:  # the open scan relinks it
        assert project.find("renamed.png").status == "labeled"
    out = tmp_path / "out"
    export_project(photos, out, val_fraction=0, test_fraction=0)
    readme = (out / "README.txt").read_text(encoding="utf-8")
    assert "train/landmarks/renamed.txt" in readme.split("Landmark files from the project's own landmarks")[1]
    np.testing.assert_allclose(read_landmarks(out / "train" / "landmarks" / "renamed.txt"), points, atol=0.01)


def test_an_export_of_imported_labels_says_they_were_imported_not_recovered(helen, tmp_path: Path) -> None:
    """Imported labels are flagged 'needs review'; the export's README and message must say why
    truthfully (they were imported), not that a store was recovered or a file changed outside."""
    from faceparse_app.export import export_message

    photos, labels = helen
    assert len(import_labels(photos, labels).imported) == 6
    out = tmp_path / "export"
    counts = export_project(photos, out, val_fraction=0, test_fraction=0)
    readme = (out / "README.txt").read_text(encoding="utf-8")
    section = readme[readme.index("NEEDS REVIEW") :].split("\n\n")[0]
    assert "imported" in section
    with Project.open(photos) as project:
        text = export_message(out, counts, project.counts())
    assert "imported" in text.split("still need review")[1]

"""Project store: scanning, statuses, progress, label saving and every bad input."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import faceparse_app.project as project_mod
from faceparse_app.project import FINISHED, SCHEMA_VERSION, Project, ProjectError
from tests.conftest import synthetic_face
from trainer.data.imageio import write_image, write_label
from trainer.errors import ImageReadError, LabelMapError


def _make_folder(root: Path, n: int = 3, ext: str = "jpg") -> list[np.ndarray]:
    labels = []
    for i in range(n):
        image, label = synthetic_face(64, seed=i)
        write_image(root / f"face{i}.{ext}", image)
        labels.append(label)
    return labels


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    _make_folder(tmp_path)
    return tmp_path


def test_create_and_reopen_keep_rows_and_schema(folder: Path) -> None:
    with Project.open(folder) as project:
        recs = project.images()
        assert [r.relpath for r in recs] == ["face0.jpg", "face1.jpg", "face2.jpg"]
        assert all(r.status == "new" and (r.width, r.height) == (64, 64) for r in recs)
        assert project.schema_version == SCHEMA_VERSION
        assert (folder / ".faceparse" / "project.sqlite").is_file()
        ids = [r.id for r in recs]
    with Project.open(folder) as project:
        assert [r.id for r in project.images()] == ids
        assert project.counts()["total"] == 3


def test_a_store_from_a_newer_app_is_refused_clearly(folder: Path) -> None:
    Project.open(folder).close()
    conn = sqlite3.connect(folder / ".faceparse" / "project.sqlite")
    with conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.close()
    with pytest.raises(ProjectError, match="newer FaceParse Studio"):
        Project.open(folder)


def test_a_damaged_store_is_a_project_error(folder: Path) -> None:
    Project.open(folder).close()
    (folder / ".faceparse" / "project.sqlite").write_bytes(b"this is not sqlite" * 100)
    for side in ("-wal", "-shm"):
        (folder / ".faceparse" / f"project.sqlite{side}").unlink(missing_ok=True)
    with pytest.raises(ProjectError, match="project.sqlite"):
        Project.open(folder)


def test_missing_folder_is_a_project_error(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not found"):
        Project.open(tmp_path / "nope")


def test_new_images_are_picked_up_on_reopen(folder: Path) -> None:
    Project.open(folder).close()
    image, _ = synthetic_face(64, seed=9)
    (folder / "more").mkdir()
    write_image(folder / "more" / "late.png", image)
    with Project.open(folder) as project:
        assert project.find("more/late.png") is not None
        assert project.scan().added == []  # already added by open's scan
        assert project.counts()["new"] == 4


def test_moved_image_is_relinked_with_its_label(folder: Path) -> None:
    _, label = synthetic_face(64, seed=0)
    with Project.open(folder) as project:
        rec = project.find("face0.jpg")
        assert rec is not None
        project.save_label(rec, label, status="labeled", add_seconds=5)
    (folder / "sorted").mkdir()
    os.replace(folder / "face0.jpg", folder / "sorted" / "face0.jpg")
    with Project.open(folder, scan=False) as project:
        report = project.scan()
        assert report.moved == [("face0.jpg", "sorted/face0.jpg")]
        assert report.missing == [] and report.added == []
        moved = project.find("sorted/face0.jpg")
        assert moved is not None and moved.id == rec.id
        assert moved.status == "labeled" and moved.active_seconds == 5
        np.testing.assert_array_equal(project.load_label(moved), label)
        assert project.label_path(moved).is_file() and not project.label_path(rec).exists()


def test_deleted_image_is_reported_missing_not_fatal(folder: Path) -> None:
    with Project.open(folder) as project:
        project.set_status(project.find("face1.jpg"), "labeled")
    (folder / "face1.jpg").unlink()
    with Project.open(folder, scan=False) as project:
        assert project.scan().missing == ["face1.jpg"]
        rec = project.find("face1.jpg")
        assert rec is not None and rec.missing
        counts = project.counts()
        assert counts["missing"] == 1 and counts["total"] == 2 and counts["labeled"] == 0
        with pytest.raises(ImageReadError, match="face1.jpg"):
            project.load_image(rec)
        assert project.load_image(project.find("face0.jpg")).shape == (64, 64, 3)
    # The file comes back: the row is present again, with its status.
    image, _ = synthetic_face(64, seed=1)
    write_image(folder / "face1.jpg", image)
    with Project.open(folder) as project:
        rec = project.find("face1.jpg")
        assert not rec.missing and project.counts()["missing"] == 0


def test_status_counts_and_next_unfinished_wrap_around(folder: Path) -> None:
    with Project.open(folder) as project:
        r0, r1, r2 = project.images()
        project.set_status(r0, "labeled")
        project.set_status(r2, "reviewed")
        counts = project.counts()
        assert counts == {**counts, "new": 1, "labeled": 1, "reviewed": 1, "total": 3}
        assert project.next_unfinished(None).id == r1.id
        assert project.next_unfinished(r1.id).id == r1.id  # the only one left: itself
        project.set_status(r0, "in_progress")
        assert project.next_unfinished(r1.id).id == r0.id  # wraps past the end
        assert project.next_unfinished(r2.id).id == r0.id
        assert [r.id for r in project.images("in_progress")] == [r0.id]
        for r in (r0, r1):
            project.set_status(r, "labeled")
        assert project.next_unfinished(r0.id) is None
        assert {r.status for r in project.images()} <= FINISHED
        with pytest.raises(ValueError):
            project.set_status(r0, "done")


def test_save_label_sets_status_and_accumulates_seconds(folder: Path) -> None:
    _, label = synthetic_face(64, seed=0)
    with Project.open(folder) as project:
        rec = project.find("face0.jpg")
        assert project.load_label(rec) is None
        rec = project.save_label(rec, label, model_version="tiny-001")
        assert rec.status == "pre-labeled" and rec.model_version == "tiny-001"
        rec = project.save_label(rec, label, add_seconds=2.5)
        assert rec.status == "in_progress"
        rec = project.add_active_seconds(rec, 1.5)
        assert rec.active_seconds == pytest.approx(4.0)
        project.add_active_seconds(rec, float("nan"))
    with Project.open(folder) as project:
        rec = project.find("face0.jpg")
        assert rec.active_seconds == pytest.approx(4.0)
        np.testing.assert_array_equal(project.load_label(rec), label)


def test_corrupt_truncated_and_unsupported_images_name_the_file(folder: Path) -> None:
    good = (folder / "face0.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    (folder / "document.jpg").write_bytes(b"%PDF-1.4\n" + b"0" * 200)  # not an image at all
    (folder / "photo.heic").write_bytes(b"\x00" * 64)  # a format the app does not read
    with Project.open(folder) as project:
        report_names = {r.relpath for r in project.images()}
        assert "photo.heic" not in report_names  # skipped with a warning, not fatal
        for name in ("truncated.jpg", "corrupt.png", "document.jpg"):
            rec = project.find(name)
            assert rec is not None
            with pytest.raises(ImageReadError, match=name.replace(".", r"\.")):
                project.load_image(rec)
        ok = project.find("face1.jpg")
        assert project.load_image(ok).shape == (64, 64, 3)  # the rest keeps working


def test_bad_label_files_name_the_file(folder: Path) -> None:
    _, label = synthetic_face(64, seed=0)
    with Project.open(folder) as project:
        r0, r1, r2 = project.images()
        write_label(project.label_path(r0), np.zeros((32, 32), np.uint8))
        eleven = label.copy()
        eleven[0, 0] = 11
        write_label(project.label_path(r1), eleven)
        with pytest.raises(LabelMapError, match=r"face0\.jpg\.png.*32×32.*64×64"):
            project.load_label(r0)
        with pytest.raises(LabelMapError, match=r"face1\.jpg\.png.*11"):
            project.load_label(r1)
        project.save_label(r2, label)
        np.testing.assert_array_equal(project.load_label(r2), label)


def test_saving_a_bad_label_writes_nothing(folder: Path) -> None:
    _, label = synthetic_face(64, seed=0)
    with Project.open(folder) as project:
        rec = project.save_label(project.find("face0.jpg"), label)
        before = project.label_path(rec).read_bytes()
        with pytest.raises(LabelMapError):
            project.save_label(rec, np.zeros((32, 32), np.uint8))
        with pytest.raises(LabelMapError):
            project.save_label(rec, np.full((64, 64), 12, np.uint8))
        assert project.label_path(rec).read_bytes() == before


def test_full_disk_on_save_keeps_the_old_label(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, label = synthetic_face(64, seed=0)
    with Project.open(folder) as project:
        rec = project.save_label(project.find("face0.jpg"), label, status="labeled")
        before = project.label_path(rec).read_bytes()

        def no_space(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", no_space)  # the temp file is written, then fails
        with pytest.raises(ProjectError, match="disk full"):
            project.save_label(rec, np.zeros_like(label), status="reviewed")
        monkeypatch.undo()
        assert project.label_path(rec).read_bytes() == before
        assert project.get(rec.id).status == "labeled"
        leftovers = [p.name for p in project.labels_dir.iterdir() if p.name.endswith(".tmp")]
        assert leftovers == []


def test_read_only_folder_is_refused_at_open(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    _make_folder(folder, n=1)
    folder.chmod(0o555)
    try:
        if os.geteuid() == 0:
            pytest.skip(
                "running as root: chmod does not stop root from writing "
                "(test_read_only_message_via_monkeypatch covers the message)"
            )
        with pytest.raises(ProjectError, match="read-only"):
            Project.open(folder)
    finally:
        folder.chmod(0o755)


def test_read_only_message_via_monkeypatch(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(project_mod, "_probe_write", denied)
    with pytest.raises(ProjectError, match="read-only; labels cannot be saved"):
        Project.open(folder)


def test_read_only_on_save_keeps_the_old_label(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, label = synthetic_face(64, seed=0)
    with Project.open(folder) as project:
        rec = project.save_label(project.find("face0.jpg"), label)
        before = project.label_path(rec).read_bytes()

        def denied(*args: object, **kwargs: object) -> None:
            raise PermissionError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(project_mod, "atomic_write_bytes", denied)
        with pytest.raises(ProjectError, match="read-only"):
            project.save_label(rec, np.zeros_like(label))
        assert project.label_path(rec).read_bytes() == before


def test_changed_picture_under_a_finished_label_goes_back_to_in_progress(folder: Path) -> None:
    _, label = synthetic_face(64, seed=0)
    with Project.open(folder) as project:
        project.save_label(project.find("face0.jpg"), label, status="reviewed")
    image, _ = synthetic_face(64, seed=42)
    write_image(folder / "face0.jpg", image)
    os.utime(folder / "face0.jpg", ns=(1, 1))  # make sure size or mtime differ
    with Project.open(folder) as project:
        assert project.find("face0.jpg").status == "in_progress"


def test_saves_from_two_threads_do_not_collide(folder: Path) -> None:
    # The app saves from the GUI thread while a worker writes pre-labels.
    import threading

    _, label = synthetic_face(64, seed=0)
    errors: list[BaseException] = []
    with Project.open(folder) as project:
        r0, r1, _ = project.images()

        def work(rec: object) -> None:
            try:
                for _ in range(15):
                    project.save_label(rec, label, add_seconds=1.0)
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(r,)) for r in (r0, r1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert project.get(r0.id).active_seconds == pytest.approx(15.0)
        assert project.get(r1.id).active_seconds == pytest.approx(15.0)


# ---------------------------------------------------------------------------------- faces


def _faces() -> list:
    from faceparse_app.faces import user_face
    from trainer.faces import Face

    points = np.array([[20, 24], [40, 24], [30, 32], [24, 42], [36, 42]], np.float32)
    return [
        Face(box=(10.0, 12.0, 50.0, 56.0), score=0.93, landmarks=points, source="detector"),
        user_face((60.5, 2.0, 30.0, 40.0)),  # corners in any order
    ]


def test_faces_are_kept_with_their_framing_across_reopen(folder: Path) -> None:
    from faceparse_app.faces import same_face
    from trainer.faces import LABEL_BOX_FRAMING

    faces = _faces()
    with Project.open(folder) as project:
        rec = project.find("face0.jpg")
        assert project.faces(rec) is None  # not looked for yet
        project.set_faces(rec, faces)
        project.set_faces(project.find("face1.jpg"), [])  # looked for: none there
    with Project.open(folder) as project:
        kept = project.faces(project.find("face0.jpg"))
        assert [same_face(a, b) for a, b in zip(kept, faces, strict=True)] == [True, True]
        assert kept[1].box == (30.0, 2.0, 60.5, 40.0) and kept[1].source == "user"
        # A drawn box is framed as boxes measured on the training labels, after a reopen too.
        assert kept[1].box_framing == LABEL_BOX_FRAMING
        assert kept[0].box_framing == faces[0].box_framing
        assert project.faces(project.find("face1.jpg")) == []
        assert project.faces(project.find("face2.jpg")) is None


def test_a_read_only_project_refuses_to_keep_faces(folder: Path) -> None:
    with Project.open(folder):
        pass
    with Project.open(folder, read_only=True) as project:
        with pytest.raises(ProjectError, match="read-only"):
            project.set_faces(project.find("face0.jpg"), _faces())
        assert project.faces(project.find("face0.jpg")) is None


def test_moved_image_keeps_its_faces_and_a_changed_picture_loses_them(folder: Path) -> None:
    with Project.open(folder) as project:
        project.set_faces(project.find("face0.jpg"), _faces())
        project.set_faces(project.find("face1.jpg"), _faces())
    (folder / "sub").mkdir()
    os.replace(folder / "face0.jpg", folder / "sub" / "face0.jpg")
    image, _ = synthetic_face(64, seed=42)
    write_image(folder / "face1.jpg", image)  # another picture under the same name
    os.utime(folder / "face1.jpg", ns=(1, 1))
    with Project.open(folder) as project:
        assert len(project.faces(project.find("sub/face0.jpg"))) == 2
        assert project.faces(project.find("face1.jpg")) is None  # looked for again


def test_unreadable_stored_faces_are_looked_for_again(folder: Path) -> None:
    with Project.open(folder) as project:
        rec = project.find("face0.jpg")
        project.set_faces(rec, _faces())
    conn = sqlite3.connect(folder / ".faceparse" / "project.sqlite")
    with conn:
        conn.execute("UPDATE images SET faces='[{\"box\": [1, 2' WHERE relpath='face0.jpg'")
    conn.close()
    with Project.open(folder) as project:
        assert project.faces(project.find("face0.jpg")) is None


def test_a_v2_store_gains_faces_and_keeps_its_rows(folder: Path) -> None:
    _, label = synthetic_face(64, seed=0)
    with Project.open(folder) as project:
        project.save_label(project.find("face0.jpg"), label, model_version="starter")
    conn = sqlite3.connect(folder / ".faceparse" / "project.sqlite")
    with conn:
        conn.execute("ALTER TABLE images DROP COLUMN faces")
        conn.execute("ALTER TABLE images DROP COLUMN actions")
        conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    conn.close()
    with Project.open(folder) as project:
        assert project.schema_version == SCHEMA_VERSION
        rec = project.find("face0.jpg")
        assert rec.status == "pre-labeled" and project.may_prelabel(rec)
        assert project.faces(rec) is None
        project.set_faces(rec, _faces())
        assert len(project.faces(rec)) == 2


def test_a_v3_store_gains_an_action_count_and_keeps_its_time(folder: Path) -> None:
    _, label = synthetic_face(64, seed=0)
    with Project.open(folder) as project:
        project.save_label(project.find("face0.jpg"), label, add_seconds=42.5)
    conn = sqlite3.connect(folder / ".faceparse" / "project.sqlite")
    with conn:
        conn.execute("ALTER TABLE images DROP COLUMN actions")
        conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    conn.close()
    with Project.open(folder) as project:
        assert project.schema_version == SCHEMA_VERSION == 4
        rec = project.find("face0.jpg")
        assert rec.status == "in_progress" and rec.active_seconds == 42.5 and rec.actions == 0
        rec = project.save_label(rec, label, add_seconds=1.5, add_actions=3)
        assert (rec.active_seconds, rec.actions) == (44.0, 3)
    with Project.open(folder) as project:
        assert project.find("face0.jpg").actions == 3

"""Issue 28 §1-2: no pre-label ever replaces a hand label; the store survives loss and damage;
one writer per project folder.

Each test reproduces a path that lost hand labels before the store recorded what it wrote: a
kill between the label write and the row update, a full disk on the row update, a deleted,
emptied or damaged ``project.sqlite``, and two processes on one folder.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from faceparse_app.export import export_project
from faceparse_app.project import Project, ProjectError
from faceparse_app.store_guard import BACKUPS_DIR, DamagedStoreError, ProjectLockedError, is_sound
from tests.conftest import synthetic_face
from trainer.data.imageio import write_image

ROOT = Path(__file__).resolve().parents[2]


def _folder(root: Path, n: int = 4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, _ = synthetic_face(64, seed=i)
        write_image(root / f"face{i}.png", image)
    return root


def _hand_label(seed: int) -> np.ndarray:
    _, label = synthetic_face(64, seed=seed)
    return label


def _prelabel() -> np.ndarray:
    label = np.zeros((64, 64), np.uint8)
    label[10:50, 10:50] = 1
    return label


def _label_bytes(project: Project, relpath: str) -> bytes:
    return project.label_path(project.find(relpath)).read_bytes()


def _label_three_prelabel_one(folder: Path) -> dict[str, bytes]:
    """face0-2 labeled by hand, face3 pre-labeled; returns each label file's bytes."""
    with Project.open(folder) as project:
        recs = project.images()
        for rec in recs[:3]:
            project.save_label(rec, _hand_label(rec.id), add_seconds=2.0)
        project.set_status(recs[0], "labeled")
        project.save_label(recs[3], _prelabel(), model_version="starter")
        return {r.relpath: project.label_path(r).read_bytes() for r in recs}


def _try_prelabel_everything(project: Project) -> None:
    """What the app does on opening: pre-label whatever the store says may take one."""
    for rec in project.images():
        if project.may_prelabel(rec):
            project.save_label(rec, np.zeros((64, 64), np.uint8), model_version="v2")


def _store(folder: Path) -> Path:
    return folder / ".faceparse" / "project.sqlite"


def _drop_store(folder: Path, backups: bool = True) -> None:
    for side in ("", "-wal", "-shm"):
        Path(f"{_store(folder)}{side}").unlink(missing_ok=True)
    if not backups:
        for f in (folder / ".faceparse" / BACKUPS_DIR).glob("*"):
            f.unlink()


# ---------------------------------------------------------------- a label file is the user's


def test_a_kill_between_label_and_row_write_never_lets_a_prelabel_replace_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "p")
    with Project.open(folder) as project:
        rec = project.images()[0]
        project.save_label(rec, _prelabel(), model_version="starter")

        # The hand save writes the PNG, then the process dies before the row changes.
        def killed(*_a, **_k):
            raise KeyboardInterrupt("killed")

        monkeypatch.setattr(Project, "_update", killed)
        with pytest.raises(KeyboardInterrupt):
            project.save_label(rec, _hand_label(0))
        monkeypatch.undo()
        hand = project.label_path(rec).read_bytes()
    with Project.open(folder) as project:
        rec = project.images()[0]
        assert rec.status == "in_progress"
        assert not project.may_prelabel(rec)
        _try_prelabel_everything(project)
        assert project.label_path(rec).read_bytes() == hand


def test_a_row_update_that_fails_on_a_full_disk_keeps_the_hand_label_safe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "p")
    with Project.open(folder) as project:
        rec = project.images()[1]

        def full(*_a, **_k):
            raise ProjectError("disk full: could not update project.sqlite")

        monkeypatch.setattr(Project, "_update", full)
        with pytest.raises(ProjectError, match="disk full"):
            project.save_label(rec, _hand_label(1))
        monkeypatch.undo()
        hand = project.label_path(rec).read_bytes()
        assert project.get(rec.id).status == "new"  # the row never changed
        # Even in this very session, a pre-label may not replace the file.
        assert not project.may_prelabel(project.get(rec.id))
        with pytest.raises(ProjectError, match="not written by a pre-label"):
            project.save_label(rec, _prelabel(), model_version="starter")
        assert project.label_path(rec).read_bytes() == hand


def test_a_prelabel_replaces_only_a_prelabel_of_ours(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "p")
    with Project.open(folder) as project:
        rec = project.images()[0]
        assert project.may_prelabel(rec)
        project.save_label(rec, _prelabel(), model_version="starter")
        assert project.may_prelabel(project.get(rec.id))  # our own pre-label: refreshable
        project.save_label(rec, _prelabel() * 6, model_version="v0001")
        assert project.get(rec.id).model_version == "v0001"
        project.save_label(rec, _hand_label(0))  # by hand
        assert not project.may_prelabel(project.get(rec.id))
        # Someone edits a pre-label in another program: it is theirs now.
        other = project.images()[1]
        project.save_label(other, _prelabel(), model_version="starter")
        from trainer.data.imageio import write_label

        write_label(project.label_path(other), _hand_label(1))
        assert not project.may_prelabel(project.get(other.id))


@pytest.mark.parametrize("how", ["deleted", "emptied", "moved aside"])
def test_a_lost_store_is_rebuilt_from_the_label_files(tmp_path: Path, how: str) -> None:
    folder = _folder(tmp_path / "p")
    before = _label_three_prelabel_one(folder)
    store = _store(folder)
    _drop_store(folder, backups=False)
    if how == "emptied":
        store.write_bytes(b"")
    elif how == "moved aside":
        (folder / ".faceparse" / "project.sqlite.old").write_bytes(b"x")
    with Project.open(folder) as project:
        _try_prelabel_everything(project)
        after = {r.relpath: project.label_path(r).read_bytes() for r in project.images()}
        by_path = {r.relpath: r for r in project.images()}
        for relpath in ("face0.png", "face1.png", "face2.png"):
            assert by_path[relpath].status == "labeled" and by_path[relpath].needs_review
        # Our own untouched pre-label is recognised as one (never exported as a label).
        assert by_path["face3.png"].status == "pre-labeled"
        assert not by_path["face3.png"].needs_review
        assert project.recovery is not None and "3" in project.recovery
    for relpath in ("face0.png", "face1.png", "face2.png"):
        assert after[relpath] == before[relpath]


def test_a_deleted_store_comes_back_from_its_rolling_backup(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "p")
    before = _label_three_prelabel_one(folder)
    with Project.open(folder) as project:  # the close after this open leaves a backup
        seconds = {r.relpath: r.active_seconds for r in project.images()}
    assert list((folder / ".faceparse" / BACKUPS_DIR).glob("*.sqlite"))
    _drop_store(folder)
    with Project.open(folder) as project:
        by_path = {r.relpath: r for r in project.images()}
        assert by_path["face0.png"].status == "labeled" and not by_path["face0.png"].needs_review
        assert by_path["face1.png"].status == "in_progress"
        assert {k: r.active_seconds for k, r in by_path.items()} == seconds
        assert "backup" in (project.recovery or "")
        _try_prelabel_everything(project)
        for relpath in ("face0.png", "face1.png", "face2.png"):
            assert _label_bytes(project, relpath) == before[relpath]


def test_hand_labels_made_after_the_last_backup_are_kept_and_flagged(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "p")
    with Project.open(folder) as project:
        recs = project.images()
        project.save_label(recs[0], _prelabel(), model_version="starter")
    # Later work, never in a backup: face0's pre-label edited by hand, face1 labeled.
    with Project.open(folder) as project:
        recs = project.images()
        project.save_label(recs[0], _hand_label(0))
        project.save_label(recs[1], _hand_label(1), status="labeled")
        hand = {r.relpath: project.label_path(r).read_bytes() for r in recs[:2]}
    backups = sorted((folder / ".faceparse" / BACKUPS_DIR).glob("*.sqlite"))
    for newer in backups[1:]:
        newer.unlink()  # only the backup from before that work is left
    for side in ("", "-wal", "-shm"):
        Path(f"{_store(folder)}{side}").unlink(missing_ok=True)
    with Project.open(folder) as project:
        by_path = {r.relpath: r for r in project.images()}
        assert by_path["face0.png"].status == "labeled" and by_path["face0.png"].needs_review
        assert by_path["face1.png"].status == "labeled" and by_path["face1.png"].needs_review
        _try_prelabel_everything(project)
        assert {p: _label_bytes(project, p) for p in hand} == hand


def test_marking_reviewed_clears_needs_review(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "p")
    _label_three_prelabel_one(folder)
    _drop_store(folder, backups=False)
    with Project.open(folder) as project:
        rec = project.find("face1.png")
        assert rec.needs_review
        assert not project.set_status(rec, "reviewed").needs_review
        assert project.counts()["needs_review"] == 2


def _corrupt_a_data_page(store: Path) -> None:
    data = bytearray(store.read_bytes())
    page = 4096
    assert len(data) >= 3 * page
    data[page : 3 * page] = os.urandom(2 * page)
    store.write_bytes(bytes(data))


def test_a_damaged_store_is_a_clear_error_with_a_recovery(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "p", n=30)
    with Project.open(folder) as project:
        recs = project.images()
        for rec in recs[:5]:
            project.save_label(rec, _hand_label(rec.id), status="labeled")
        hand = {r.relpath: project.label_path(r).read_bytes() for r in recs[:5]}
    store = _store(folder)
    _corrupt_a_data_page(store)
    with pytest.raises(DamagedStoreError) as err:
        Project.open(folder)
    text = str(err.value)
    assert "project.sqlite" in text and "damaged" in text and "recover" in text.lower()
    assert isinstance(err.value, ProjectError)
    with Project.open(folder, recover=True) as project:
        by_path = {r.relpath: r for r in project.images()}
        assert len(by_path) == 30
        assert all(by_path[p].status == "labeled" for p in hand)
        _try_prelabel_everything(project)
        assert {p: _label_bytes(project, p) for p in hand} == hand
        assert "damaged" in (project.recovery or "")
    kept = list((folder / ".faceparse").glob("project.sqlite.damaged-*"))
    assert kept, "the damaged file is kept for inspection"


def test_backups_roll(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faceparse_app.store_guard as guard

    folder = _folder(tmp_path / "p", n=1)
    monkeypatch.setattr(guard, "KEEP_BACKUPS", 3)
    clock = iter(range(1_000_000, 2_000_000, 3600))
    monkeypatch.setattr(guard, "_now", lambda: next(clock))
    for _ in range(6):
        Project.open(folder).close()
    backups = list((folder / ".faceparse" / BACKUPS_DIR).glob("*.sqlite"))
    assert len(backups) == 3
    for b in backups:
        with sqlite3.connect(b) as conn:
            assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"


def test_a_v1_store_is_migrated_without_trusting_unknown_files(tmp_path: Path) -> None:
    """A store written before label hashes existed: its pre-labels stay refreshable, a label
    file behind a "new" row (the old kill-between-writes case) is taken as hand work."""
    folder = _folder(tmp_path / "p", n=3)
    with Project.open(folder) as project:
        recs = project.images()
        project.save_label(recs[0], _prelabel(), model_version="starter")
        project.save_label(recs[1], _hand_label(1))
    conn = sqlite3.connect(_store(folder))
    with conn:
        conn.execute("UPDATE images SET status='new' WHERE relpath='face1.png'")
        for col in (
            "label_hash", "label_source", "label_size", "label_mtime_ns", "needs_review", "faces",
            "actions",
        ):
            conn.execute(f"ALTER TABLE images DROP COLUMN {col}")
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.close()
    with Project.open(folder) as project:
        by_path = {r.relpath: r for r in project.images()}
        assert by_path["face0.png"].status == "pre-labeled"
        assert project.may_prelabel(by_path["face0.png"])
        assert by_path["face1.png"].status == "in_progress"
        assert not project.may_prelabel(by_path["face1.png"])


# ------------------------------------------------------------------ one writer per folder

HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from faceparse_app.project import Project
    project = Project.open(sys.argv[2])
    print("open", flush=True)
    time.sleep(float(sys.argv[3]))
    project.close()
    """
)


def _hold(tmp_path: Path, folder: Path, seconds: float) -> subprocess.Popen:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    child = subprocess.Popen(
        [sys.executable, str(script), str(ROOT), str(folder), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "open"
    return child


def test_a_second_instance_is_refused_with_who_holds_the_folder(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "p", n=1)
    child = _hold(tmp_path, folder, 30)
    try:
        with pytest.raises(ProjectLockedError) as err:
            Project.open(folder)
        text = str(err.value)
        assert str(child.pid) in text and "another FaceParse Studio" in text
        # Reading stays possible (export, inspection): a read-only open takes no lock.
        with Project.open(folder, read_only=True) as reader:
            assert len(reader.images()) == 1
            with pytest.raises(ProjectError, match="read-only"):
                reader.set_status(reader.images()[0], "labeled")
    finally:
        child.kill()
        child.wait()
    # The holder was killed (-9): its lock went with it.
    with Project.open(folder) as project:
        assert len(project.images()) == 1


def test_the_same_process_cannot_open_a_folder_twice(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "p", n=1)
    with Project.open(folder):
        with pytest.raises(ProjectLockedError, match="already open"):
            Project.open(folder)
    Project.open(folder).close()


OPENER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from faceparse_app.project import Project, ProjectError
    from faceparse_app.store_guard import ProjectLockedError
    start = float(sys.argv[3])
    while time.time() < start:
        pass
    try:
        Project.open(sys.argv[2]).close()
        print("opened")
    except ProjectLockedError:
        print("locked")
    except Exception as exc:
        print("error", type(exc).__name__, exc)
    """
)


def test_two_processes_creating_one_new_project_never_break_it(tmp_path: Path) -> None:
    script = tmp_path / "opener.py"
    script.write_text(OPENER)
    for attempt in range(3):
        folder = _folder(tmp_path / f"p{attempt}", n=20)
        start = time.time() + 1.5
        children = [
            subprocess.Popen(
                [sys.executable, str(script), str(ROOT), str(folder), str(start)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outcomes = [c.communicate(timeout=60)[0].strip() for c in children]
        assert all(o in ("opened", "locked") for o in outcomes), outcomes
        assert "opened" in outcomes
        with Project.open(folder) as project:
            assert len(project.images()) == 20


def test_temp_files_left_by_a_killed_save_are_removed_at_open(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "p", n=1)
    with Project.open(folder) as project:
        rec = project.images()[0]
        project.save_label(rec, _hand_label(0))
        stale = project.labels_dir / f".{rec.relpath}.png.k3j2.tmp"
        stale.write_bytes(b"half a png")
        kept = project.label_path(rec).read_bytes()
    with Project.open(folder) as project:
        assert not stale.exists()
        assert project.label_path(project.images()[0]).read_bytes() == kept


# ------------------------------------------------------------- folder names and read-only disks


@pytest.mark.parametrize("name", ["team #2", "why?", "50% done", "ünï 顔"])
def test_a_folder_named_with_uri_characters_reads_and_recovers(tmp_path: Path, name: str) -> None:
    # SQLite reads "file:" URIs: an unescaped '#' or '?' cut the path short, so a read-only open
    # (the CLI's export) failed as "damaged" and a backup check opened -- and created -- an empty
    # file beside the project, which passed for a sound backup.
    folder = _folder(tmp_path / name, n=2)
    with Project.open(folder) as project:
        rec = project.images()[0]
        project.save_label(rec, _hand_label(0), status="labeled")
        backup = project.backup(force=True)
    assert backup is not None
    before = sorted(p.name for p in tmp_path.iterdir())
    with Project.open(folder, read_only=True) as reader:
        assert [r.status for r in reader.images()] == ["labeled", "new"]
    assert export_project(folder, tmp_path / "out")["train"] == 1
    data = backup.read_bytes()
    backup.write_bytes(data[:100] + os.urandom(len(data) - 100))  # all but the file header
    assert not is_sound(backup)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "out"])


@pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX")
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_the_store_and_its_backups_follow_the_umask(tmp_path: Path, umask: int) -> None:
    # SQLite creates its files 0644 whatever the umask: in a team's shared folder (umask 002)
    # the others could read the project but never save a label in it.
    folder = _folder(tmp_path / "p", n=1)
    previous = os.umask(umask)
    try:
        with Project.open(folder) as project:
            project.save_label(project.images()[0], _hand_label(0))
            project.backup(force=True)
            store = _store(folder)
            files = [store, Path(f"{store}-wal"), Path(f"{store}-shm")]
            files += list((folder / ".faceparse" / BACKUPS_DIR).iterdir())
            modes = {f.name: f.stat().st_mode & 0o777 for f in files}
    finally:
        os.umask(previous)
    assert len(modes) >= 4
    assert modes == {name: 0o666 & ~umask for name in modes}


@pytest.fixture
def read_only_view(tmp_path: Path):
    """A function giving a read-only view of a folder: a read-only bind mount where the test
    runs as root (chmod does not stop root), else the folder itself made read-only."""
    mounted: list[Path] = []
    locked: list[Path] = []

    def view(folder: Path) -> Path:
        if os.geteuid() != 0:
            for d in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
                d.chmod(0o555)
                locked.append(d)
            return folder
        target = tmp_path / f"{folder.name}-read-only"
        target.mkdir()
        for args in (["--bind", str(folder), str(target)], ["-o", "remount,bind,ro", str(target)]):
            done = subprocess.run(["mount", *args], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"cannot mount a read-only view here ({done.stderr.strip()})")
            if target not in mounted:
                mounted.append(target)
        return target

    try:
        yield view
    finally:
        for target in mounted:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
        for d in locked:
            d.chmod(0o755)


def test_a_project_on_a_read_only_disk_is_read_and_exported(
    tmp_path: Path, read_only_view
) -> None:
    # A closed store has no -shm file, and SQLite cannot make one on a read-only disk: reading
    # it (export) failed as "damaged" although nothing was wrong with it.
    folder = _folder(tmp_path / "p", n=3)
    with Project.open(folder) as project:
        for rec in project.images()[:2]:
            project.save_label(rec, _hand_label(rec.id), status="labeled")
    view = read_only_view(folder)
    with pytest.raises(ProjectError, match="read-only"):
        Project.open(view)
    with Project.open(view, read_only=True) as reader:
        assert [r.status for r in reader.images()] == ["labeled", "labeled", "new"]
    assert export_project(view, tmp_path / "out")["train"] == 2


def test_a_read_only_disk_shows_what_a_live_writer_saved(tmp_path: Path, read_only_view) -> None:
    folder = _folder(tmp_path / "p", n=2)
    with Project.open(folder) as writer:
        writer.save_label(writer.images()[0], _hand_label(0), status="labeled")
        view = read_only_view(folder)
        with Project.open(view, read_only=True) as reader:
            assert [r.status for r in reader.images()] == ["labeled", "new"]


def test_a_journal_that_cannot_be_read_on_a_read_only_disk_is_said_plainly(
    tmp_path: Path, read_only_view
) -> None:
    # Changes still in project.sqlite-wal, without the -shm that lets SQLite read them there (a
    # copy of a live project): reading the main file alone would show an older state.
    folder = _folder(tmp_path / "p", n=2)
    copy = tmp_path / "copy"
    with Project.open(folder) as writer:
        writer.save_label(writer.images()[0], _hand_label(0), status="labeled")
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*-shm", "lock*"))
    assert Path(f"{_store(copy)}-wal").stat().st_size > 0
    view = read_only_view(copy)
    with pytest.raises(ProjectError, match="read-only disk") as err:
        Project.open(view, read_only=True)
    assert not isinstance(err.value, DamagedStoreError)

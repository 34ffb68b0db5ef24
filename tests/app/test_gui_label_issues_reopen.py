"""Label issues on a reopen: a project reopened with its labels unchanged shows the same issues
at once, without checking them again (10,000 labels took 13-27 minutes of a core on every open,
``bench.label_issue_load``); a label changed on disk since is checked again; a damaged cache
file is ignored. Real HELEN faces with their LaPa labels, the first swapped left/right."""

from __future__ import annotations

import json
from pathlib import Path

from faceparse_app import label_issue_watch
from faceparse_app.label_check_cache import CACHE_FILE
from faceparse_app.label_issue_watch import LabelIssueWatch
from faceparse_app.widgets.image_table import LABEL_ISSUES
from tests.app.test_gui_canvas import make_window
from tests.app.test_label_issues import SWAP, helen_project
from trainer.data.imageio import read_label, write_label


def _open_and_wait(qtbot, window, project: Path) -> dict[str, int]:
    """Open the project, show label issues, wait for every check; relpath -> id."""
    assert window.open_project(project)
    window.image_list.set_status_filter(LABEL_ISSUES)
    watch = window.session.findChild(LabelIssueWatch)
    qtbot.waitUntil(watch.idle, timeout=20_000)
    qtbot.wait(50)  # the relay's last events reach the list
    return {r.relpath: r.id for r in window.session.records()}


def _first_open(qtbot, tmp_path: Path, shared_data: Path):
    """A HELEN project (its first label swapped) opened and checked once:
    (project folder, the swapped photo's relpath, window, relpath -> id)."""
    project, name = helen_project(tmp_path, shared_data)
    window = make_window(qtbot, tmp_path, open_project=False)
    return project, name, window, _open_and_wait(qtbot, window, project)


def _counting_checks(monkeypatch) -> list[str]:
    checked: list[str] = []
    real_run = label_issue_watch.label_review.run

    def counted(job):
        checked.append(job.relpath)
        return real_run(job)

    monkeypatch.setattr(label_issue_watch.label_review, "run", counted)
    return checked


def test_a_reopen_with_unchanged_labels_shows_the_issues_without_checking(
    qtbot, tmp_path: Path, shared_data: Path, monkeypatch
) -> None:
    project, name, window, ids = _first_open(qtbot, tmp_path, shared_data)
    assert window.image_list.visible_ids() == [ids[name]]
    tooltip = window.image_list.row_tooltip(ids[name])
    assert window.close_project()
    checked = _counting_checks(monkeypatch)
    ids = _open_and_wait(qtbot, window, project)
    qtbot.waitUntil(lambda: window.image_list.visible_ids() == [ids[name]], timeout=5_000)
    assert window.image_list.row_tooltip(ids[name]) == tooltip
    assert checked == []
    window.session.open_image(ids[name])
    assert "left/right swapped (eyebrows, eyes)" in window.message_bar.message


def test_a_label_changed_on_disk_between_opens_is_checked_again(
    qtbot, tmp_path: Path, shared_data: Path, monkeypatch
) -> None:
    """The swapped label put right, and another drawn swapped, by another tool while closed."""
    project, name, window, ids = _first_open(qtbot, tmp_path, shared_data)
    labels = {r.relpath: window.session.project.label_path(r) for r in window.session.records()}
    assert window.close_project()
    other = sorted(r for r in labels if r != name)[0]
    for relpath in (name, other):
        write_label(labels[relpath], SWAP[read_label(labels[relpath])])
    checked = _counting_checks(monkeypatch)
    ids = _open_and_wait(qtbot, window, project)
    qtbot.waitUntil(lambda: window.image_list.visible_ids() == [ids[other]], timeout=5_000)
    assert sorted(checked) == sorted([name, other])


def test_a_damaged_cache_file_is_ignored_and_rewritten(qtbot, tmp_path: Path, shared_data: Path) -> None:
    project, name, window, ids = _first_open(qtbot, tmp_path, shared_data)
    cache = window.session.project.store_dir / CACHE_FILE
    assert window.close_project()
    assert cache.exists()
    cache.write_bytes(b'{"format": "faceparse-label-checks/1", "labels": {"x": [1, ')  # a half write
    ids = _open_and_wait(qtbot, window, project)
    qtbot.waitUntil(lambda: window.image_list.visible_ids() == [ids[name]], timeout=5_000)
    assert window.message_bar.isHidden() or window.message_bar.level != "error"
    assert window.close_project()
    assert name in json.loads(cache.read_text())["labels"]


def test_the_temp_file_of_a_cache_write_killed_midway_is_cleared_on_the_next_open(
    qtbot, tmp_path: Path, shared_data: Path
) -> None:
    """A kill during the cache's write (a temp file, then a rename) left the temp file in the
    store folder; every such kill added one, a few MB each at 10,000 labels, kept for ever."""
    project, name, window, ids = _first_open(qtbot, tmp_path, shared_data)
    store_dir = window.session.project.store_dir
    assert window.close_project()
    killed = store_dir / f".{CACHE_FILE}.k1ll3d00.tmp"
    killed.write_bytes(b'{"format": "faceparse-label-checks/1", "lab')
    other = store_dir / ".project.sqlite.x.tmp"  # not the cache's: left alone here
    other.write_bytes(b"x")
    _open_and_wait(qtbot, window, project)
    assert not killed.exists()
    assert other.exists()


def test_a_photo_cropped_between_opens_has_its_label_kept_aside_not_checked_against_it(
    qtbot, tmp_path: Path, shared_data: Path
) -> None:
    """The cache kept the findings of a label whose photo was then cropped in another program:
    the label file unchanged, its findings (none) were reused against a picture it no longer fits.
    Since a label that cannot fit its photo is kept aside when the photo is found changed
    (tests/app/test_replaced_other_size.py), the photo starts again and has no finding at all."""
    from trainer.data.imageio import read_image, write_image

    project, name, window, ids = _first_open(qtbot, tmp_path, shared_data)
    photo = sorted(p for p in project.iterdir() if p.is_file() and p.stem != Path(name).stem)[0]
    label = window.session.project.label_file(photo.name)
    before = label.read_bytes()
    assert window.close_project()
    image = read_image(photo)
    write_image(photo, image[40:, : image.shape[1] - 30])
    ids = _open_and_wait(qtbot, window, project)
    relpath = photo.relative_to(project).as_posix()
    qtbot.waitUntil(lambda: window.image_list.visible_ids() == [ids[name]], timeout=5_000)
    assert window.session.project.find(relpath).status == "new"
    assert label.with_name(label.name + ".invalid").read_bytes() == before

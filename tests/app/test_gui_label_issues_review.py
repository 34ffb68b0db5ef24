"""Label issues in the window, as a demanding annotator meets them after the q66 review: labels
imported in the window are checked too, and a label fixed and saved while the opening pass is
still under way (a 10,000-photo project takes minutes) leaves the list at once, not after the
rest of the project. Real HELEN faces with their LaPa labels."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from faceparse_app import label_issue_watch
from faceparse_app.label_issue_watch import LabelIssueWatch
from faceparse_app.widgets.image_table import LABEL_ISSUES
from faceparse_app.widgets.label_import import import_labels_in_window
from tests.app.test_gui_canvas import make_window
from tests.app.test_label_issues import HELEN, SWAP, helen_project
from trainer.data.imageio import read_label, write_label


def _watch(window) -> LabelIssueWatch:
    watch = window.session.findChild(LabelIssueWatch)
    assert watch is not None
    return watch


def test_labels_imported_in_the_window_are_checked(qtbot, tmp_path: Path, shared_data: Path) -> None:
    """File → Import labels… of a folder with one label drawn the person's way: Show → label
    issues lists that photo, as it would after a reopen (the import writes no 'saved')."""
    photos, labels = tmp_path / "proj", tmp_path / "labels"
    shutil.copytree(shared_data / HELEN / "images", photos)
    shutil.copytree(shared_data / HELEN / "labels", labels)
    first = sorted(labels.glob("*.png"))[0]
    write_label(first, SWAP[read_label(first)])
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(photos)
    listing = window.image_list
    listing.set_status_filter(LABEL_ISSUES)
    report = import_labels_in_window(window, labels)
    assert report is not None and len(report.imported) == 6
    swapped = next(r for r in window.session.records() if Path(r.relpath).stem == first.stem)
    qtbot.waitUntil(_watch(window).idle, timeout=20_000)
    qtbot.waitUntil(lambda: listing.visible_ids() == [swapped.id], timeout=5_000)


def test_a_label_fixed_during_the_opening_pass_leaves_the_list_before_the_rest_is_checked(
    qtbot, tmp_path: Path, shared_data: Path, monkeypatch
) -> None:
    """The opening pass checks every label (31 ms each: five minutes for 10,000). The annotator
    opens the first photo flagged, puts its sides right and saves: its row must leave Show →
    label issues with the next check, not wait behind the whole project. The other labels'
    checks are held here to stand for a long pass."""
    project, name = helen_project(tmp_path, shared_data)
    hold, checked = threading.Semaphore(0), []
    real_run = label_issue_watch.label_review.run

    def held_run(job):
        if job.relpath != name:
            hold.acquire()
        findings = real_run(job)
        checked.append(job.relpath)
        return findings

    monkeypatch.setattr(label_issue_watch.label_review, "run", held_run)
    window = make_window(qtbot, tmp_path, open_project=False)
    try:
        assert window.open_project(project)
        session, listing = window.session, window.image_list
        swapped = next(r for r in session.records() if r.relpath == name)
        listing.set_status_filter(LABEL_ISSUES)
        qtbot.waitUntil(lambda: listing.visible_ids() == [swapped.id], timeout=20_000)
        session.open_image(swapped.id)
        session.document.label[:] = SWAP[session.document.label]
        session.note_edit()
        assert session.save(force=True)
        hold.release()  # one more of the opening pass may finish
        qtbot.waitUntil(lambda: checked.count(name) == 2, timeout=10_000)
        qtbot.waitUntil(lambda: listing.visible_ids() == [], timeout=5_000)
        assert len(checked) < 7  # the opening pass is not over
    finally:
        for _ in range(20):
            hold.release()


def test_opening_a_project_reads_the_labels_to_check_off_the_gui_thread(
    qtbot, tmp_path: Path, shared_data: Path, monkeypatch
) -> None:
    """Listing every checked label (a store query, then a path and the faces of each) took 80 to
    500 ms at 10,000 photos on the GUI thread as the window opened (bench.label_issue_load's
    jobs_ms); the window is frozen that long. The opening pass lists them on its own thread."""
    project, name = helen_project(tmp_path, shared_data)
    listed_on = []
    real_jobs = label_issue_watch.label_review.jobs

    def jobs(project, records=None):
        if records is None:
            listed_on.append(threading.current_thread())
        return real_jobs(project, records)

    monkeypatch.setattr(label_issue_watch.label_review, "jobs", jobs)
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(project)
    listing = window.image_list
    listing.set_status_filter(LABEL_ISSUES)
    swapped = next(r for r in window.session.records() if r.relpath == name)
    qtbot.waitUntil(lambda: listing.visible_ids() == [swapped.id], timeout=20_000)
    # The photo on screen is checked first, on its own: the opening pass has listed the labels
    # once the checks are idle.
    qtbot.waitUntil(_watch(window).idle, timeout=20_000)
    assert listed_on and threading.main_thread() not in listed_on

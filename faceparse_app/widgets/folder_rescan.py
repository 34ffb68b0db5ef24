"""File → Rescan folder (F5): photos copied into the open project's folder, renamed or deleted
there, are taken in without closing and reopening the project.

The scan is the open-time one (:meth:`Project.scan`: new images added, renamed ones relinked by
content hash with their label, deleted ones flagged missing), run off the GUI thread behind the
busy dialog. The image on screen stays, with its unsaved edits; no label is touched but a
renamed image's, which follows it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faceparse_app.project import ProjectError
from faceparse_app.project_scan import RESCAN_KEY, ScanReport
from faceparse_app.scan_texts import reencoded_text, replaced_text, set_aside_text
from faceparse_app.widgets.busy import run_busy
from faceparse_app.widgets.read_only_view import editable_session

if TYPE_CHECKING:
    from faceparse_app.main_window import MainWindow

__all__ = ["RESCAN_KEY", "rescan_folder"]


def _images(n: int) -> str:
    return f"{n} image{'s' if n != 1 else ''}"


def _names(paths: list[str]) -> str:
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def rescan_text(
    folder: str, report: ScanReport, newly_missing: list[str], back: list[str] | None = None
) -> str:
    """What the message bar says after a rescan: how many images were added, came back, went
    missing or were renamed (and that labels are kept)."""
    parts = []
    if report.added:
        parts.append(f"{_images(len(report.added))} added")
    if back:
        parts.append(f"{_images(len(back))} back ({_names(back)})")
    if newly_missing:
        parts.append(
            f"{_images(len(newly_missing))} gone missing ({_names(newly_missing)}; kept in the project, "
            "with any label, for when the file comes back)"
        )
    if report.moved:
        parts.append(f"{_images(len(report.moved))} renamed (labels followed)")
    changed = [reencoded_text(report.reencoded), replaced_text(report.replaced), set_aside_text(report.set_aside)]
    if not parts and not any(changed):
        return f"Rescanned {folder}: no new or missing images."
    said = "; ".join(parts) + "." if parts else "nothing added or missing."
    return " ".join([f"Rescanned {folder}: {said}", *filter(None, changed)])


def rescan_folder(window: MainWindow) -> ScanReport | None:
    """Scan the open project's folder again and show what changed; None when nothing is open
    or the scan failed (the message bar says why)."""
    session = editable_session(window, "it cannot be rescanned")
    if session is None:
        return None
    project = session.project
    # Edits on screen go to disk first: the scan may move the label of an image renamed meanwhile.
    session.save()
    was_missing = {r.id: r.shown_name for r in session.records() if r.missing}  # by row: names repeat
    try:
        report = run_busy(
            window, f"Rescanning {project.root.name}: looking for new and changed images…", project.scan
        )
    except (ProjectError, OSError) as exc:
        window.show_message(f"Cannot rescan {project.root.name}: {exc}", "error")
        return None
    if window.session is not session:  # closed meanwhile
        return None
    if session.current is not None:  # its row may name a new path (renamed)
        try:
            session.annotation.current = project.get(session.current.id)
            window.settings.set_last_image(project.root, session.current.relpath)  # reopened on it
        except KeyError:
            pass
    window._refresh_records()
    window.model_loop.score_unfinished()  # the new images get their place in "least sure"
    after = session.records()
    newly_missing = sorted(r.shown_name for r in after if r.missing and r.id not in was_missing)
    back = sorted(r.relpath for r in after if not r.missing and was_missing.get(r.id) == r.relpath)
    current = session.current
    if current is not None and session.document is None and current.id in was_missing and not current.missing:
        session.open_image(current.id)  # on screen, blank since its file went: shown again
    level = "warning" if newly_missing or report.replaced or report.set_aside else "info"
    window.show_message(rescan_text(project.root.name, report, newly_missing, back), level)
    return report

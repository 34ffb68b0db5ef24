"""File → Import labels…: existing labels (LaPa, our export, CelebAMask-HQ masks) into the open
project, and the offer to import them when a LaPa tree is opened as a project.

The import itself is ``faceparse_app.import_labels``, run off the GUI thread behind the busy
dialog. The labels on screen are saved first, so a photo with edits keeps them (named in the
message), as does any photo edited in this window. The window takes input while the import
runs, so the photo on screen is imported last, here on the GUI thread, and only if no stroke
came meanwhile; if it takes the imported label it shows it at once: what the canvas shows is
what the store holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog

from faceparse_app.import_labels import ImportReport, import_held, import_labels
from faceparse_app.project import FINISHED, Project
from faceparse_app.scan_texts import name_list
from faceparse_app.widgets.busy import run_busy
from faceparse_app.widgets.read_only_view import editable_session
from trainer.errors import FaceParseError

if TYPE_CHECKING:
    from faceparse_app.main_window import MainWindow

__all__ = ["import_labels_in_window", "offer_dataset_labels"]


def import_labels_in_window(window: MainWindow, folder: str | Path | None = None) -> ImportReport | None:
    """Import a folder of labels into the window's project (``folder`` None: ask for it).

    Returns:
        What was imported, kept and skipped; None when nothing was imported (no project, the
        chooser cancelled, or a failure the message bar names).
    """
    session = editable_session(window, "labels cannot be imported")
    if session is None:
        return None
    project = session.project
    if folder is None:
        start = next(iter(project.dataset_labels), "")
        folder = QFileDialog.getExistingDirectory(
            window, "Import labels: a LaPa labels folder or tree, an export, CelebAMask-HQ masks",
            str(project.root / start if start else project.root.parent),
        )  # fmt: skip
        if not folder:
            return None
    folder = Path(folder)
    if not session.save_all():  # a photo's edits are on disk first: the import keeps them
        window.show_message("Labels not imported: the labels on screen could not be saved first.", "error")
        return None
    annotation = session.annotation
    shown = session.current.id if session.current is not None else None
    try:
        report = run_busy(
            window, f"Importing labels from {folder.name}…", import_labels, project, folder,
            may_replace=annotation.may_replace, hold=shown,
        )  # fmt: skip
    except (FaceParseError, OSError) as exc:
        window.show_message(f"Labels not imported: {exc}", "error")
        return None
    if window.session is not session:
        return report
    import_held(project, report, annotation.may_replace)
    session.labels_replaced([project.find(p).id for p in report.imported])
    window._refresh_records()
    text = report.message(folder.name)
    current = session.current
    if current is not None and current.relpath in report.imported:
        text += f" The photo on screen, {current.relpath}, shows its imported label."
    window.show_message(text, "warning" if report.skipped else "info")
    return report


def offer_dataset_labels(window: MainWindow, project: Project) -> None:
    """Say which label folders of a dataset's layout the open scan left out of the photos, and
    offer to import them, while a photo beside them is unfinished."""
    folders = project.dataset_labels
    if not folders:
        return
    beside = tuple((f.rsplit("/", 1)[0] + "/" if "/" in f else "") + "images/" for f in folders)
    unfinished = [r for r in project.images(include_missing=False) if r.status not in FINISHED and r.relpath.startswith(beside)]
    if not unfinished:
        return
    shown = name_list([f"{n} in {f}" for f, n in folders.items()], 3)
    window.show_message(
        f"{project.root.name} is laid out like a dataset: its label maps ({shown}, beside images/) "
        "are not listed as photos. Import labels… makes them the photos' labels, marked needs "
        "review; a photo you labeled keeps yours.",
        "info",
    )
    window.import_offer.show()

"""File → Export LaPa: where to (beside the project, a folder that may not exist yet), which
images, the split fractions; the export itself runs in a worker with a progress bar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressDialog,
    QPushButton,
    QWidget,
)

from faceparse_app.export import export_folder_problem
from faceparse_app.workers import FunctionWorker


@dataclass(frozen=True)
class ExportRequest:
    """What to export where (``faceparse_app.export.export_project``'s arguments)."""

    out_dir: Path
    reviewed_only: bool = False
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    per_face: bool = False

    def form(self) -> dict:
        """What the form is filled with next time (Settings.last_export)."""
        return {
            "out_dir": str(self.out_dir), "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction, "per_face": self.per_face,
        }  # fmt: skip


def default_export_dir(project_root: Path) -> Path:
    """``<project>-lapa`` beside the project folder (an export may not go inside it)."""
    return project_root.parent / f"{project_root.name}-lapa"


class ExportDialog(QDialog):
    """The export form. The folder is typed or browsed; it is created by the export if new."""

    def __init__(
        self, project_root: Path, reviewed_only: bool = False, parent: QWidget | None = None,
        last: dict | None = None, counts: dict[str, int] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self.counts = counts  # images per status (Project.counts); None: not checked here
        self.setWindowTitle("Export LaPa")
        self.project_root = Path(project_root)
        # The project's last export is offered again: exporting into it again keeps each
        # earlier image in its split, which needs the same shares.
        last = last or {}
        self.folder_edit = QLineEdit(str(last.get("out_dir") or default_export_dir(self.project_root)))
        self.folder_edit.setObjectName("export_folder")
        self.folder_edit.setMinimumWidth(380)
        self.folder_edit.setToolTip("A new folder (created), an empty one, or an earlier export")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        self.reviewed_box = QCheckBox("Only images marked reviewed")
        self.reviewed_box.setChecked(reviewed_only)
        self.per_face_box = QCheckBox("One image per face (a crop of each face, as LaPa has)")
        self.per_face_box.setObjectName("export_per_face")
        self.per_face_box.setChecked(last.get("per_face") is True)
        self.per_face_box.setToolTip(
            "Each face of a group photo as a LaPa sample of its own: cropped square with its hair "
            "and chin, upright, at the photo's resolution, with its own landmarks (NAME__face1, "
            "NAME__face2… left to right, all in the photo's split). Unticked: each photo whole."
        )
        self.val_spin = self._fraction(_share(last.get("val_fraction")))
        self.test_spin = self._fraction(_share(last.get("test_fraction")))
        self.val_spin.setToolTip("Share of the exported faces written to val/")
        self.test_spin.setToolTip("Share of the exported faces written to test/")
        form = QFormLayout(self)
        form.addRow("Export into", row)
        form.addRow("", self.reviewed_box)
        form.addRow("", self.per_face_box)
        form.addRow("Validation share", self.val_spin)
        form.addRow("Test share", self.test_spin)
        self.problem_label = QLabel("")  # why Export is greyed out, when it is
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("color: #b71c1c;")
        self.problem_label.hide()
        form.addRow("", self.problem_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.folder_edit.textChanged.connect(self._check)
        self.val_spin.valueChanged.connect(self._check)
        self.test_spin.valueChanged.connect(self._check)
        self.reviewed_box.toggled.connect(self._check)
        self._check()

    @staticmethod
    def _fraction(value: float) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(0.0, 0.9)
        spin.setSingleStep(0.05)
        spin.setDecimals(2)
        spin.setValue(value)
        return spin

    def _check(self) -> None:
        shares = self.val_spin.value() + self.test_spin.value()
        if not self.folder_edit.text().strip():
            problem = "Type or browse a folder to export into."
        elif self._nothing_to_export():
            problem = self._nothing_to_export()
        elif shares >= 1.0:
            problem = (
                f"Validation and test shares add up to {shares:.2f}: nothing would be left for "
                "train/. Keep them under 1.00 together."
            )
        else:
            problem = ""
        self._say(problem)
        self.export_button.setEnabled(not problem)

    def _say(self, problem: str) -> None:
        """Show why the form cannot export ('' for no reason), the form taking the height its
        rows need now: every line of a long reason shows, and no blank band is left."""
        self.problem_label.setText(problem)
        self.problem_label.setVisible(bool(problem))
        if self.isVisible():
            self.layout().activate()
            self.resize(self.width(), self.sizeHint().height())

    def _nothing_to_export(self) -> str:
        """Why no image would be exported ('' when some would): an export of none would empty
        the folder of an earlier one."""
        counts = self.counts or {}
        labeled, reviewed = counts.get("labeled", 0), counts.get("reviewed", 0)
        if self.counts is None or (reviewed if self.reviewed_box.isChecked() else labeled + reviewed):
            return ""
        if self.reviewed_box.isChecked():
            return "No image is marked reviewed yet (Ctrl+Shift+Return marks one)" + (
                f": untick the box to export the {labeled} labeled." if labeled else "."
            )
        return "No image is labeled yet (A accepts a pre-label, Ctrl+Return marks an image labeled)."

    def accept(self) -> None:
        """Close only for a folder the export can use; else say why, the form kept as filled."""
        problem = export_folder_problem(self.request().out_dir, self.project_root)
        if problem:
            self._say(problem)
            return
        super().accept()

    def _browse(self) -> None:
        start = Path(self.folder_edit.text().strip() or self.project_root.parent)
        while not start.is_dir() and start != start.parent:
            start = start.parent  # the nearest folder that exists (the typed one may not yet)
        folder = QFileDialog.getExistingDirectory(self, "Export into", str(start))
        if folder:
            self.folder_edit.setText(folder)

    def request(self) -> ExportRequest:
        return ExportRequest(
            out_dir=Path(self.folder_edit.text().strip()).expanduser(),
            reviewed_only=self.reviewed_box.isChecked(),
            val_fraction=round(self.val_spin.value(), 4),
            test_fraction=round(self.test_spin.value(), 4),
            per_face=self.per_face_box.isChecked(),
        )


def _share(value: object, default: float = 0.1) -> float:
    return float(value) if isinstance(value, int | float) and 0.0 <= value <= 0.9 else default


def export_job(project_root: Path, request: ExportRequest, on_progress: Any = None) -> dict[str, int]:
    """The export on a worker thread: the project is read on its own read-only connection."""
    from faceparse_app.export import export_project

    return export_project(
        project_root, request.out_dir, reviewed_only=request.reviewed_only,
        val_fraction=request.val_fraction, test_fraction=request.test_fraction,
        per_face=request.per_face, on_progress=(lambda done, total: on_progress((done, total))) if on_progress else None,
    )  # fmt: skip


def start_export(parent: QWidget, project_root: Path, request: ExportRequest) -> FunctionWorker:
    """Run the export in the background with a progress dialog; the caller connects
    ``finished`` (counts) and ``errored`` (message) to say how it went."""
    progress = QProgressDialog("Exporting…", "", 0, 0, parent)
    progress.setWindowTitle("Export LaPa")
    progress.setCancelButton(None)  # an export is all or nothing; it leaves no half folder
    progress.setWindowModality(Qt.WindowModality.NonModal)
    progress.setMinimumDuration(300)
    worker = FunctionWorker(export_job, project_root, request)

    def show(report: tuple[int, int]) -> None:
        done, total = report
        progress.setMaximum(max(1, total))
        progress.setValue(done)
        progress.setLabelText(f"Exporting {done} / {total} photos to {request.out_dir}…")

    worker.progress.connect(show)
    worker.done.connect(progress.close)
    worker.done.connect(progress.deleteLater)
    worker.start()
    return worker

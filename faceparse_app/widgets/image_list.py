"""Image list: status icons, a filter by status, a progress count, "next unfinished", and the
model's uncertainty per image (shown, and a sort order: least sure first)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import qtawesome as qta
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from faceparse_app.project import FINISHED, STATUSES, ImageRecord
from faceparse_app.uncertainty import rank_by_uncertainty

# status -> (qtawesome name, colour, tooltip)
STATUS_ICONS: dict[str, tuple[str, str, str]] = {
    "new": ("fa5s.circle", "#9e9e9e", "new: no label yet"),
    "pre-labeled": ("fa5s.robot", "#7e57c2", "pre-labeled by a model"),
    "in_progress": ("fa5s.adjust", "#ffa000", "in progress"),
    "labeled": ("fa5s.check-circle", "#43a047", "labeled"),
    "reviewed": ("fa5s.check-double", "#1e88e5", "reviewed"),
}
PROBLEM_ICON = ("fa5s.exclamation-triangle", "#e53935")
MISSING_ICON = ("fa5s.question-circle", "#e53935")
REVIEW_ICON = ("fa5s.flag", "#fb8c00")
REVIEW_TIP = (
    "needs review: this label was found on disk when the project store was rebuilt (or "
    "changed outside the app); check it, then mark it reviewed (Ctrl+Shift+Return)"
)
ALL = "all"
NEEDS_REVIEW = "needs_review"
SORT_NAME, SORT_UNCERTAINTY = "name", "uncertainty"
NO_FACE_TIP = "the model found no face: draw a box around each face with the face tool (W)"


def status_icon(status: str) -> QIcon:
    name, colour, _tip = STATUS_ICONS.get(status, STATUS_ICONS["new"])
    return qta.icon(name, color=colour)


class ImageList(QWidget):
    """The project's images, one row each, with the status shown as an icon.

    Signals:
        image_selected(image_id): the user picked a row.
        next_unfinished_requested(): the "Next unfinished" button.
    """

    image_selected = Signal(int)
    next_unfinished_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter_box = QComboBox()
        self.filter_box.addItem("All images", ALL)
        for status in STATUSES:
            self.filter_box.addItem(status_icon(status), status.replace("_", " "), status)
        self.filter_box.addItem(
            qta.icon(PROBLEM_ICON[0], color=PROBLEM_ICON[1]), "problems", "problems"
        )
        self.filter_box.addItem(
            qta.icon(REVIEW_ICON[0], color=REVIEW_ICON[1]), "needs review", NEEDS_REVIEW
        )
        self.filter_box.currentIndexChanged.connect(lambda _i: self._rebuild())
        self.sort_box = QComboBox()
        self.sort_box.addItem("Name", SORT_NAME)
        self.sort_box.addItem(qta.icon("fa5s.question"), "Least sure first", SORT_UNCERTAINTY)
        self.sort_box.setToolTip(
            "Least sure first: photos with no face found, then the model's mean per-pixel "
            "uncertainty over the faces, computed in the background"
        )
        self.sort_box.currentIndexChanged.connect(lambda _i: self._rebuild())
        self.progress = QLabel()
        self.progress.setObjectName("progress")
        self.list = QListWidget()
        self.list.setUniformItemSizes(True)
        self.list.itemActivated.connect(self._on_item)
        self.list.itemClicked.connect(self._on_item)
        self.next_button = QPushButton(qta.icon("fa5s.step-forward"), "Next unfinished (N)")
        self.next_button.clicked.connect(self.next_unfinished_requested)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        row.addWidget(QLabel("Show"))
        row.addWidget(self.filter_box, 1)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Sort"))
        row.addWidget(self.sort_box, 1)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.next_button)
        self._records: list[ImageRecord] = []
        self._problems: dict[int, str] = {}
        self._scores: dict[int, float] = {}
        self._current: int | None = None

    # ---------------------------------------------------------------- contents
    def set_records(
        self, records: Iterable[ImageRecord], problems: dict[int, str] | None = None
    ) -> None:
        """Show these images (sorted as given); `problems` maps image id -> message."""
        self._records = list(records)
        self._problems = dict(problems or {})
        self._rebuild()

    def set_scores(self, scores: dict[int, float]) -> None:
        """The model's uncertainty per image id (0 sure .. 1 unsure); {} when there is no model."""
        self._scores = dict(scores)
        self._rebuild()

    @property
    def scores(self) -> dict[int, float]:
        """The uncertainty scores shown (image id -> score)."""
        return dict(self._scores)

    @property
    def sort_order(self) -> str:
        return self.sort_box.currentData()

    def set_current(self, image_id: int | None) -> None:
        """Highlight the image being edited without emitting `image_selected`."""
        self._current = image_id
        self.list.blockSignals(True)
        try:
            item = self.item_for(image_id) if image_id is not None else None
            if item is not None:
                self.list.setCurrentItem(item)
                self.list.scrollToItem(item)
            else:
                self.list.clearSelection()
        finally:
            self.list.blockSignals(False)

    @property
    def status_filter(self) -> str:
        return self.filter_box.currentData()

    def set_status_filter(self, status: str) -> None:
        index = self.filter_box.findData(status)
        if index < 0:
            raise ValueError(f"unknown filter {status!r}")
        self.filter_box.setCurrentIndex(index)

    def visible_ids(self) -> list[int]:
        """Image ids of the rows shown, top to bottom."""
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def item_for(self, image_id: int) -> QListWidgetItem | None:
        """The row of an image, or None when it is not shown."""
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == image_id:
                return self.list.item(i)
        return None

    # ---------------------------------------------------------------- internals
    def _rebuild(self) -> None:
        wanted = self.status_filter
        self.list.clear()
        records = self._records
        if self.sort_order == SORT_UNCERTAINTY:
            by_id = {r.id: r for r in records}
            ranked = rank_by_uncertainty({r.id: self._scores.get(r.id) for r in records})
            records = [by_id[i] for i in ranked]
        for rec in records:
            problem = self._problems.get(rec.id)
            if wanted == "problems":
                if problem is None and not rec.missing:
                    continue
            elif wanted == NEEDS_REVIEW:
                if not rec.needs_review:
                    continue
            elif wanted != ALL and rec.status != wanted:
                continue
            score = self._scores.get(rec.id)
            no_face = score is not None and math.isnan(score)
            shown = "" if score is None else ("   no face" if no_face else f"   {score:.2f}")
            item = QListWidgetItem(rec.relpath + shown)
            item.setData(Qt.ItemDataRole.UserRole, rec.id)
            if rec.missing:
                item.setIcon(qta.icon(MISSING_ICON[0], color=MISSING_ICON[1]))
                item.setToolTip(f"{rec.relpath} is missing from the project folder")
            elif problem is not None:
                item.setIcon(qta.icon(PROBLEM_ICON[0], color=PROBLEM_ICON[1]))
                item.setToolTip(problem)
            elif rec.needs_review:
                item.setIcon(qta.icon(REVIEW_ICON[0], color=REVIEW_ICON[1]))
                item.setToolTip(f"{rec.status}, {REVIEW_TIP}")
            else:
                item.setIcon(status_icon(rec.status))
                tip = STATUS_ICONS.get(rec.status, ("", "", rec.status))[2]
                if no_face:
                    tip += f"; {NO_FACE_TIP}"
                elif score is not None:
                    tip += f"; model uncertainty over its faces {score:.3f} (0 sure, 1 unsure)"
                item.setToolTip(tip)
            self.list.addItem(item)
        done = sum(1 for r in self._records if r.status in FINISHED and not r.missing)
        total = sum(1 for r in self._records if not r.missing)
        self.progress.setText(f"{done} / {total} labeled")
        self.set_current(self._current)

    def _on_item(self, item: QListWidgetItem) -> None:
        image_id = item.data(Qt.ItemDataRole.UserRole)
        if image_id != self._current:
            self.image_selected.emit(int(image_id))

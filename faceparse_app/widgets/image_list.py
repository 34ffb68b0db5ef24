"""Image list: status, name, the model's uncertainty, time and edits per image; a filter by
status, a sort order (name, or least sure first), a progress count, "next unfinished", and a
legend of the status icons."""

from __future__ import annotations

from collections.abc import Iterable

import qtawesome as qta
from PySide6.QtCore import QItemSelectionModel, QModelIndex, QRect, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from faceparse_app.project import STATUSES, ImageRecord
from faceparse_app.widgets.image_table import (
    ALL,
    IMAGE_ID_ROLE,
    ISSUE_ICON,
    LABEL_ISSUES,
    NEEDS_REVIEW,
    PROBLEM_ICON,
    PROBLEMS,
    REVIEW_ICON,
    SORT_NAME,
    SORT_UNCERTAINTY,
    STATUS_ICONS,
    Column,
    ImageTableModel,
    cached_icon,
    status_icon,
)

__all__ = [
    "ALL", "LABEL_ISSUES", "NEEDS_REVIEW", "SORT_NAME", "SORT_UNCERTAINTY", "ImageList", "status_icon",
]  # fmt: skip


class _ImageTree(QTreeView):
    """The list's rows; `moved_to` says which row the keys (arrows, Home, End, page keys) made
    current, so the highlight never leaves the image on the canvas behind."""

    moved_to = Signal(QModelIndex)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        before = self.currentIndex()
        super().keyPressEvent(event)
        after = self.currentIndex()
        if after.isValid() and after != before:
            self.moved_to.emit(after)


class StatusLegend(QWidget):
    """What each status icon of the list means, in two columns."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(2, 2, 2, 2)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(0)
        entries = [(name, colour, status.replace("_", " "))
                   for status, (name, colour, _tip) in STATUS_ICONS.items()]
        entries += [(REVIEW_ICON[0], REVIEW_ICON[1], REVIEW_ICON[2]),
                    (PROBLEM_ICON[0], PROBLEM_ICON[1], "unreadable / missing"),
                    (ISSUE_ICON[0], ISSUE_ICON[1], ISSUE_ICON[2])]
        for k, (name, colour, text) in enumerate(entries):
            icon = QLabel()
            icon.setPixmap(cached_icon(name, colour).pixmap(14, 14))
            label = QLabel(text)
            label.setStyleSheet("font-size: 11px")
            grid.addWidget(icon, k // 2, (k % 2) * 2)
            grid.addWidget(label, k // 2, (k % 2) * 2 + 1)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)


class ImageList(QWidget):
    """The project's images, one row each (a model: only the rows on screen are drawn).

    Signals:
        image_selected(image_id): the user picked a row (click, or Enter on it).
        next_unfinished_requested(): the "Next unfinished" button.
        sort_changed(order): the sort order was changed (SORT_NAME or SORT_UNCERTAINTY).
    """

    image_selected = Signal(int)
    next_unfinished_requested = Signal()
    sort_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = ImageTableModel(self)
        self.filter_box = QComboBox()
        self.filter_box.addItem("All images", ALL)
        for status in STATUSES:
            self.filter_box.addItem(status_icon(status), status.replace("_", " "), status)
        self.filter_box.addItem(cached_icon(*PROBLEM_ICON[:2]), "problems", PROBLEMS)
        self.filter_box.addItem(cached_icon(*REVIEW_ICON[:2]), "needs review", NEEDS_REVIEW)
        self.filter_box.addItem(cached_icon(*ISSUE_ICON[:2]), "label issues", LABEL_ISSUES)
        self.filter_box.setItemData(
            self.filter_box.count() - 1,
            "Photos whose saved label the checks flag: left/right swapped, pinholes, stray pieces",
            Qt.ItemDataRole.ToolTipRole,
        )
        self.filter_box.currentIndexChanged.connect(self._on_filter)
        self.sort_box = QComboBox()
        self.sort_box.addItem("Name", SORT_NAME)
        self.sort_box.addItem(qta.icon("fa5s.question"), "Least sure first", SORT_UNCERTAINTY)
        self.sort_box.setToolTip(
            "Least sure first: photos with no face found, then the model's mean per-pixel "
            "uncertainty over the faces, computed in the background"
        )
        self.sort_box.currentIndexChanged.connect(self._on_sort)
        self.resort_button = QToolButton()
        self.resort_button.setIcon(qta.icon("fa5s.sync-alt"))
        self.resort_button.setToolTip("New uncertainty scores came in: sort the list again")
        self.resort_button.setAutoRaise(True)
        self.resort_button.clicked.connect(self.resort)
        self.resort_button.hide()
        for box in (self.filter_box, self.sort_box):
            box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.progress = QLabel()
        self.progress.setObjectName("progress")
        self.list = _ImageTree()
        self.list.setObjectName("image_list")
        self.list.setModel(self.model)
        self.list.setRootIsDecorated(False)
        self.list.setUniformRowHeights(True)
        self.list.setAllColumnsShowFocus(True)
        self.list.setAlternatingRowColors(True)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # Hash-like names keep their start and end: the middle is elided, never the score.
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.list.header()
        header.setStretchLastSection(False)
        header.setMinimumSectionSize(18)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(Column.STATUS, QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(Column.NAME, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(Column.STATUS, 24)
        for column, width in ((Column.UNSURE, 52), (Column.TIME, 48), (Column.ACTIONS, 40)):
            header.resizeSection(column, width)
        self.list.clicked.connect(self._on_index)
        self.list.activated.connect(self._on_index)
        self.list.moved_to.connect(self._on_index)
        self.next_button = QPushButton(qta.icon("fa5s.step-forward"), "Next unfinished (N)")
        self.next_button.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.next_button.clicked.connect(self.next_unfinished_requested)
        self.legend = StatusLegend()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        row.addWidget(QLabel("Show"))
        row.addWidget(self.filter_box, 1)
        row.addWidget(QLabel("Sort"))
        row.addWidget(self.sort_box, 1)
        row.addWidget(self.resort_button)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.legend)
        layout.addWidget(self.next_button)
        self._current: int | None = None
        self._show_progress()

    # ---------------------------------------------------------------- contents
    def set_records(
        self, records: Iterable[ImageRecord], problems: dict[int, str] | None = None
    ) -> None:
        """Show these images (sorted as given); `problems` maps image id -> message."""
        self.model.set_records(records, dict(problems or {}))
        self._show_progress()
        self.set_current(self._current)

    def update_records(self, records: Iterable[ImageRecord], problems: dict[int, str] | None = None) -> None:
        """These images changed; the other rows are left as they are."""
        self.model.update_records(list(records), dict(problems or {}))
        self._show_progress()
        self.set_current(self._current, scroll=False)

    def set_scores(self, scores: dict[int, float]) -> None:
        """The model's uncertainty per image id (0 sure .. 1 unsure); {} when there is no model."""
        self.model.set_scores(scores)
        self.resort_button.setVisible(self.model.order_stale)

    def set_kept_scores(self, scores: dict[int, float]) -> None:
        """Scores kept from an earlier open (a project opened, a model back in use): the rows
        take their order at once, as "Least sure first" promises."""
        self.model.set_scores(scores)
        self.resort()

    def set_label_issues(self, issues: dict[int, str]) -> None:
        """What the label checks found per image id (a summary line each; {} for none)."""
        self.model.set_label_issues(issues)
        self._show_progress()
        self.set_current(self._current, scroll=False)

    def set_label_issue(self, image_id: int, issue: str | None) -> None:
        """One image's label check came back (None: nothing found); the other rows' issues
        stay (a pass over 10,000 flagged labels must not redo them all at each check)."""
        self.model.set_label_issue(image_id, issue)
        self.set_current(self._current, scroll=False)

    def resort(self) -> None:
        """Apply the newest scores to the order (the re-sort button)."""
        self.model.resort()
        self.resort_button.hide()
        self.set_current(self._current)

    @property
    def scores(self) -> dict[int, float]:
        """The uncertainty scores shown (image id -> score)."""
        return self.model.scores

    @property
    def sort_order(self) -> str:
        return self.sort_box.currentData()

    def set_sort_order(self, order: str) -> None:
        """Sort by ``order`` (SORT_NAME or SORT_UNCERTAINTY); an unknown one is ignored (a
        settings file of another version)."""
        index = self.sort_box.findData(order)
        if index >= 0:
            self.sort_box.setCurrentIndex(index)

    def clear(self) -> None:
        """No project: no rows, and the filter back to all images. A filter is a look at one
        project's state for a while; the next project opens showing every photo, never with
        some hidden by a filter chosen elsewhere. The sort order is the annotator's way of
        working and stays."""
        self.set_status_filter(ALL)
        self.set_label_issues({})  # image ids are the project's
        self.set_records([])

    def set_current(self, image_id: int | None, scroll: bool = True) -> None:
        """Highlight the image being edited without emitting `image_selected`."""
        self._current = image_id
        row = self.model.row_of(image_id) if image_id is not None else None
        selection = self.list.selectionModel()
        if row is None:
            selection.clearSelection()
            return
        index = self.model.index(row, Column.NAME)
        selection.setCurrentIndex(
            index,
            QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
        )
        if scroll:
            self.list.scrollTo(index)

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
        return self.model.visible_ids()

    def row_rect(self, image_id: int) -> QRect:
        """Where the image's name is drawn in the list's viewport (empty when not shown)."""
        row = self.model.row_of(image_id)
        if row is None:
            return QRect()
        return self.list.visualRect(self.model.index(row, Column.NAME))

    def row_text(self, image_id: int, column: Column = Column.NAME) -> str:
        """What the image's row shows in `column`."""
        return self.model.text(image_id, column)

    def row_tooltip(self, image_id: int) -> str:
        return self.model.tooltip(image_id)

    # ---------------------------------------------------------------- internals
    def _show_progress(self) -> None:
        done, total = self.model.progress()
        self.progress.setText(f"{done} / {total} labeled")

    def _on_filter(self, _index: int) -> None:
        self.model.set_filter(self.status_filter)
        self.resort_button.hide()  # refiltering sorts too
        self.set_current(self._current)

    def _on_sort(self, _index: int) -> None:
        self.model.set_sort(self.sort_order)
        self.resort_button.hide()
        self.set_current(self._current)
        self.sort_changed.emit(self.sort_order)

    def _on_index(self, index: QModelIndex) -> None:
        image_id = index.data(IMAGE_ID_ROLE)
        if image_id is not None and image_id != self._current:
            self.image_selected.emit(int(image_id))

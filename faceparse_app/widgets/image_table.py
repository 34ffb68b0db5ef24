"""The image list's model: one row per image, with status, name, uncertainty, time and actions.

A ``QAbstractTableModel`` over the project's records instead of one widget item per image: the
view asks only for the rows on screen, and a change repaints the rows it touched (a new status,
a batch of scores) instead of rebuilding every row, so 10,000 images stay smooth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import IntEnum

import qtawesome as qta
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QIcon

from faceparse_app.project import FINISHED, ImageRecord
from faceparse_app.uncertainty import rank_by_uncertainty

# status -> (qtawesome name, colour, what it means)
STATUS_ICONS: dict[str, tuple[str, str, str]] = {
    "new": ("fa5s.circle", "#9e9e9e", "new: no label yet"),
    "pre-labeled": ("fa5s.robot", "#7e57c2", "pre-labeled by a model"),
    "in_progress": ("fa5s.adjust", "#ffa000", "in progress"),
    "labeled": ("fa5s.check-circle", "#43a047", "labeled"),
    "reviewed": ("fa5s.check-double", "#1e88e5", "reviewed"),
}
PROBLEM_ICON = ("fa5s.exclamation-triangle", "#e53935", "cannot be read")
MISSING_ICON = ("fa5s.question-circle", "#e53935", "missing from the folder")
REVIEW_ICON = ("fa5s.flag", "#fb8c00", "needs review")
REVIEW_TIP = (
    "needs review: this label was found on disk when the project store was rebuilt (or "
    "changed outside the app); check it, then mark it reviewed (Ctrl+Shift+Return)"
)
NO_FACE_TIP = (
    "the model found no face: draw a box around each face with the face tool (W), or press A "
    "if it has none (all background)"
)
ALL = "all"
PROBLEMS = "problems"
NEEDS_REVIEW = "needs_review"
LABEL_ISSUES = "label_issues"
ISSUE_ICON = ("fa5s.exchange-alt", "#d81b60", "label issues")
SORT_NAME, SORT_UNCERTAINTY = "name", "uncertainty"
IMAGE_ID_ROLE = Qt.ItemDataRole.UserRole


class Column(IntEnum):
    STATUS = 0
    NAME = 1
    UNSURE = 2
    TIME = 3
    ACTIONS = 4


HEADERS: dict[Column, tuple[str, str]] = {
    Column.STATUS: ("", "Status (see the legend below the list)"),
    Column.NAME: ("Image", "File name, relative to the project folder"),
    Column.UNSURE: ("Unsure", "The model's mean per-pixel uncertainty over the faces (0 sure, 1 unsure)"),
    Column.TIME: ("Time", "Time spent labeling this image"),
    Column.ACTIONS: ("Edits", "Edits made by hand (strokes, fills, polygons)"),
}
_ICONS: dict[tuple[str, str], QIcon] = {}


def cached_icon(name: str, colour: str) -> QIcon:
    """A qtawesome icon rendered once to pixmaps (a font icon would draw its glyph again on
    every repaint of every row)."""
    key = (name, colour)
    if key not in _ICONS:
        glyph = qta.icon(name, color=colour)
        icon = QIcon()
        for side in (16, 32):
            icon.addPixmap(glyph.pixmap(side, side))
        _ICONS[key] = icon
    return _ICONS[key]


def status_icon(status: str) -> QIcon:
    name, colour, _tip = STATUS_ICONS.get(status, STATUS_ICONS["new"])
    return cached_icon(name, colour)


def format_duration(seconds: float) -> str:
    """'' for none, then '45 s', '12 min', '1 h 05'."""
    if not seconds or seconds < 1:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d}"


def _role(role: Qt.ItemDataRole) -> int:
    return int(role.value)


_DISPLAY, _DECORATION = _role(Qt.ItemDataRole.DisplayRole), _role(Qt.ItemDataRole.DecorationRole)
_ALIGN, _TOOLTIP = _role(Qt.ItemDataRole.TextAlignmentRole), _role(Qt.ItemDataRole.ToolTipRole)
_ROLES = frozenset({_DISPLAY, _DECORATION, _ALIGN, _TOOLTIP, _role(IMAGE_ID_ROLE)})
_RIGHT = int((Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value)


class ImageTableModel(QAbstractTableModel):
    """The project's images, filtered by status and sorted by name or by uncertainty."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._records: dict[int, ImageRecord] = {}
        self._order: list[int] = []  # all ids, by name (as the project gives them)
        self._rows: list[int] = []  # ids shown, top to bottom
        self._row_of: dict[int, int] = {}
        self._problems: dict[int, str] = {}
        self._scores: dict[int, float] = {}
        self._sorted_by: dict[int, float] = {}  # the scores the rows are in the order of
        self._issues: dict[int, str] = {}  # image id -> what the label checks found
        self._filter = ALL
        self._sort = SORT_NAME
        self.order_stale = False  # sorted by uncertainty, new scores not yet in the order

    # ----------------------------------------------------------------- contents
    def set_records(self, records: Iterable[ImageRecord], problems: dict[int, str]) -> None:
        """Show these images; only rows whose record or problem changed are repainted."""
        records = list(records)
        new = {r.id: r for r in records}
        if any(r.missing and r.shown_name != r.relpath for r in records):  # beside its name's photo
            records.sort(key=lambda r: (r.shown_name, r.missing))
        order = [r.id for r in records]
        changed = [
            i for i in order
            if self._records.get(i) != new[i] or self._problems.get(i) != problems.get(i)
        ]  # fmt: skip
        same_rows = order == self._order
        self._records, self._order, self._problems = new, order, dict(problems)
        self._refilter(changed if same_rows else None)

    def update_records(self, records: Iterable[ImageRecord], problems: dict[int, str]) -> None:
        """Some images changed (a status, a save): only their rows (and rows whose problem
        changed) are repainted, without reading the whole project again."""
        changed = [r.id for r in records if r.id in self._records and self._records[r.id] != r]
        for rec in records:
            if rec.id in self._records:
                self._records[rec.id] = rec
        ids = set(self._problems) | set(problems)
        changed += [i for i in ids if self._problems.get(i) != problems.get(i) and i in self._records]
        self._problems = dict(problems)
        self._refilter(changed)

    def set_scores(self, scores: dict[int, float]) -> None:
        """The model's uncertainty per image id; repaints the rows whose score changed.

        Sorted by uncertainty, the rows keep their places (``order_stale`` says the order is
        behind): a list that reorders itself while scores arrive in the background moves the
        row under the annotator's cursor. :meth:`resort` applies the new order.
        """
        old, self._scores = self._scores, dict(scores)
        changed = [i for i in set(old) | set(self._scores) if old.get(i) != self._scores.get(i)]
        if self._sort == SORT_UNCERTAINTY and changed:
            # Stale only where the new scores would move a row (a re-sort that moves nothing is
            # a button that does nothing); once stale, the ranking (~17 ms at 10,000 images) is
            # left for the re-sort.
            if not self.order_stale:
                self.order_stale = self._sorted_rows(self._scores) != self._rows
                if not self.order_stale:
                    self._sorted_by = dict(self._scores)
            self._repaint(changed)
        else:
            self._refilter(changed)

    def set_label_issues(self, issues: dict[int, str]) -> None:
        """What the label checks found per image id (a summary line); repaints the rows whose
        issues changed and, under the "label issues" filter, shows just those images."""
        old, self._issues = self._issues, dict(issues)
        ids = set(old) | set(self._issues)
        self._refilter([i for i in ids if old.get(i) != self._issues.get(i)])

    def set_label_issue(self, image_id: int, issue: str | None) -> None:
        """One image's label check came back (None: nothing found): only its row changes."""
        if self._issues.get(image_id) == issue:
            return
        if issue is None:
            self._issues.pop(image_id, None)
        else:
            self._issues[image_id] = issue
        self._refilter([image_id])

    def resort(self) -> None:
        """Put the rows in the current sort order (after scores arrived)."""
        self._refilter(None)

    def set_filter(self, wanted: str) -> None:
        self._filter = wanted
        self._refilter(None)

    def set_sort(self, order: str) -> None:
        self._sort = order
        self._refilter(None)

    @property
    def scores(self) -> dict[int, float]:
        return dict(self._scores)

    def progress(self) -> tuple[int, int]:
        """(finished, total) over the images present."""
        present = [r for r in self._records.values() if not r.missing]
        return sum(1 for r in present if r.status in FINISHED), len(present)

    def visible_ids(self) -> list[int]:
        return list(self._rows)

    def row_of(self, image_id: int) -> int | None:
        return self._row_of.get(image_id)

    def _wanted(self, image_id: int) -> bool:
        rec = self._records[image_id]
        if self._filter == ALL:
            return True
        if self._filter == PROBLEMS:
            return rec.missing or image_id in self._problems
        if self._filter == NEEDS_REVIEW:
            return rec.needs_review
        if self._filter == LABEL_ISSUES:
            return image_id in self._issues
        return rec.status == self._filter

    def _sorted_rows(self, scores: dict[int, float]) -> list[int]:
        """The ids to show, filtered and in the sort order, ranked by ``scores``."""
        order = self._order
        if self._sort == SORT_UNCERTAINTY:
            order = rank_by_uncertainty({i: scores.get(i) for i in order})
        return [i for i in order if self._wanted(i)]

    def _refilter(self, changed: list[int] | None) -> None:
        """Recompute the rows shown; repaint only `changed` ids when the rows stay the same.

        ``changed`` None (a sort, a filter, the re-sort) puts the rows in the order of the
        newest scores; a row update (a save, a status) keeps the order the rows are in, so new
        scores never move a row until the re-sort.
        """
        if changed is None:
            self._sorted_by = dict(self._scores)
            self.order_stale = False
        rows = self._sorted_rows(self._sorted_by)
        if rows != self._rows or changed is None:
            self.layoutAboutToBeChanged.emit()
            old_persistent = self.persistentIndexList()
            old_ids = [self._rows[p.row()] if 0 <= p.row() < len(self._rows) else None for p in old_persistent]
            self._rows = rows
            self._row_of = {i: r for r, i in enumerate(rows)}
            new_persistent = []
            for p, image_id in zip(old_persistent, old_ids, strict=True):
                row = self._row_of.get(image_id) if image_id is not None else None
                new_persistent.append(QModelIndex() if row is None else self.index(row, p.column()))
            self.changePersistentIndexList(old_persistent, new_persistent)
            self.layoutChanged.emit()
            return
        self._repaint(changed)

    def _repaint(self, changed: list[int]) -> None:
        shown = sorted(self._row_of[i] for i in changed if i in self._row_of)
        last = self.columnCount() - 1
        # One signal per run of neighbouring rows: a batch of scores is a handful of signals.
        start = prev = None
        for row in [*shown, None]:
            if row is not None and prev is not None and row == prev + 1:
                prev = row
                continue
            if start is not None:
                self.dataChanged.emit(self.index(start, 0), self.index(prev, last))
            start = prev = row

    # ------------------------------------------------------------ model API
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(Column)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(Column):
            return None
        text, tip = HEADERS[Column(section)]
        if role == Qt.ItemDataRole.DisplayRole:
            return text
        if role == Qt.ItemDataRole.ToolTipRole:
            return tip
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        # Called for every role of every cell on screen at each repaint: the roles with nothing
        # to say leave first, before any lookup.
        if role not in _ROLES:
            return None
        row = index.row()
        if not 0 <= row < len(self._rows):
            return None
        image_id = self._rows[row]
        column = index.column()
        if role == _DISPLAY:
            return self._text(self._records[image_id], column)
        if role == _DECORATION:
            return self._icon(self._records[image_id]) if column == 0 else None
        if role == _ALIGN:
            return _RIGHT if column >= Column.UNSURE else None
        if role == _TOOLTIP:
            return self.tooltip(image_id)
        return image_id  # IMAGE_ID_ROLE

    def text(self, image_id: int, column: Column) -> str:
        """What a cell of this image's row shows."""
        return self._text(self._records[image_id], column)

    def _text(self, rec: ImageRecord, column: int) -> str:
        if column == Column.NAME:  # a missing photo's name another picture took: told apart
            return rec.shown_name if rec.shown_name == rec.relpath else f"{rec.shown_name} (gone, name reused)"
        if column == Column.UNSURE:
            score = self._scores.get(rec.id)
            if score is None:
                return ""
            return "no face" if math.isnan(score) else f"{score:.2f}"
        if column == Column.TIME:
            return format_duration(rec.active_seconds)
        if column == Column.ACTIONS:
            # The edit count is a newer column of the store: blank where it is not there yet.
            actions = getattr(rec, "actions", None)
            return str(actions) if actions else ""
        return ""

    def _icon(self, rec: ImageRecord) -> QIcon:
        if rec.missing:
            return cached_icon(*MISSING_ICON[:2])
        if rec.id in self._problems:
            return cached_icon(*PROBLEM_ICON[:2])
        if rec.id in self._issues:  # over "needs review": every imported label needs that
            return cached_icon(*ISSUE_ICON[:2])
        if rec.needs_review:
            return cached_icon(*REVIEW_ICON[:2])
        return status_icon(rec.status)

    def tooltip(self, image_id: int) -> str:
        """The row's tooltip: the name in full, its status, and what the model thinks."""
        rec = self._records[image_id]
        problem = self._problems.get(image_id)
        if rec.missing:
            taken = "; its name now holds another photo" if rec.shown_name != rec.relpath else ""
            return f"{rec.shown_name} is missing from the project folder{taken}"
        if problem is not None:
            return f"{rec.relpath}\n{problem}"
        issues = f"\nlabel issues: {self._issues[image_id]}" if image_id in self._issues else ""
        if rec.needs_review:
            return f"{rec.relpath}\n{rec.status}, {REVIEW_TIP}{issues}"
        tip = f"{rec.relpath}{issues}\n{STATUS_ICONS.get(rec.status, ('', '', rec.status))[2]}"
        score = self._scores.get(image_id)
        if score is not None and math.isnan(score):
            tip += f"; {NO_FACE_TIP}"
        elif score is not None:
            tip += f"; model uncertainty over its faces {score:.3f} (0 sure, 1 unsure)"
        return tip

"""The project's model versions, newest first, with Activate and Roll back. A view of
:class:`LoopState` (its versions); the buttons ask the state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from faceparse_app.loop_state import LoopState
from faceparse_app.widgets.train_progress import percent

if TYPE_CHECKING:  # the model store loads torch: the panel is a view, it needs none
    from faceparse_app.model_store import ModelVersion


class ModelVersions(QGroupBox):
    """The versions list (the active ones in bold with a ★) and its buttons."""

    def __init__(self, state: LoopState, parent: QWidget | None = None) -> None:
        super().__init__("Model versions", parent)
        self.state = state
        layout = QVBoxLayout(self)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Version", "Kind", "Mean F1 %", "mIoU %", "Created", "Note"])
        for column in (2, 3):
            self.tree.headerItem().setToolTip(
                column,
                "On the held-out hand-labeled faces of the newest run that compared it (its own, "
                "or a later one that was to replace it), parsed as pre-labels are; a version "
                "nothing was compared with: its run's validation",
            )
        self.tree.setRootIsDecorated(False)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.tree.itemDoubleClicked.connect(lambda *_: self._on_activate_clicked())
        layout.addWidget(self.tree)
        row = QHBoxLayout()
        self.activate_button = QPushButton("Activate")
        self.activate_button.clicked.connect(self._on_activate_clicked)
        self.rollback_button = QPushButton("Roll back")
        self.rollback_button.setToolTip("Go back to the previous model")
        self.rollback_button.clicked.connect(state.rollback)
        row.addWidget(self.activate_button)
        row.addWidget(self.rollback_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.no_model_label = QLabel("No model yet: label a few faces, then start fine-tuning.")
        self.no_model_label.setWordWrap(True)
        layout.addWidget(self.no_model_label)
        state.versions_changed.connect(self._show_versions)
        state.start_changed.connect(self._show_rollback)
        self._show_versions()

    def _on_activate_clicked(self) -> None:
        item = self.tree.currentItem()
        if item is not None:
            self.state.activate(item.data(0, Qt.ItemDataRole.UserRole))

    def _show_versions(self) -> None:
        active = self.state.active_ids
        self.tree.clear()
        versions = sorted(self.state.versions, key=lambda v: v.id, reverse=True)
        scores = _scores(versions)
        for version in versions:
            is_active = version.id in active
            parser = version.kind == "parser"
            item = QTreeWidgetItem([
                ("★ " if is_active else "") + version.id,
                version.kind,
                percent(scores[version.id][0]) if parser else "",
                percent(scores[version.id][1]) if parser else "",
                str(version.created)[:16].replace("T", " "),
                version_note(version),
            ])
            item.setData(0, Qt.ItemDataRole.UserRole, version.id)
            for column in range(item.columnCount()):  # the note column is often out of view
                item.setToolTip(column, f"{version.id}: {item.text(5)}" if item.text(5) else version.id)
            if is_active:
                font = item.font(0)
                font.setBold(True)
                for column in range(item.columnCount()):
                    item.setFont(column, font)
            self.tree.addTopLevelItem(item)
        self._update_buttons()
        self._show_rollback()

    def _show_rollback(self) -> None:
        """Roll back works while a project parser is in use and something older exists: an
        older version, or else the starter parser."""
        parsers = [v for v in self.state.versions if v.kind == "parser"]
        in_use = any(v.id in self.state.active_ids for v in parsers)
        starter = self.state.start.paths.get("starter_parser") is not None
        self.rollback_button.setEnabled(in_use and (len(parsers) > 1 or starter))
        self.rollback_button.setToolTip(
            "Go back to the previous model (from the first one: the starter parser)"
            if starter else "Go back to the previous model"
        )
        # Which parser pre-labels when none of the list does (the status bar says "starter").
        if in_use:
            note = ""
        elif starter:
            note = (
                "In use: the starter parser shipped with the app. Fine-tune on your labeled "
                "faces to make a version of your own" + (", or activate one above." if parsers else ".")
            )
        else:
            note = "" if parsers else "No model yet: label a few faces, then start fine-tuning."
        self.no_model_label.setText(note)
        self.no_model_label.setVisible(bool(note))

    def _update_buttons(self) -> None:
        item = self.tree.currentItem()
        self.activate_button.setEnabled(item is not None and not item.text(0).startswith("★"))


def _scores(versions: list[ModelVersion]) -> dict[str, tuple[float | None, float | None]]:
    """Each version's (mean F1, mIoU) as the newest run's outcome that scored it said it: a
    later run's comparison with it, when that run was to replace it (both parsers on that run's
    held-out faces, which grow as faces are labeled), else its own run's comparison with the
    model it was to replace, else its run's own validation (the faces framed from their labels).
    So the parser in use and the one it replaced read as the outcome said, on the same faces."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for version in sorted(versions, key=lambda v: v.id):  # a later run's score of a version wins
        m = version.metrics
        compared = m.get("candidate_mean_f1") is not None
        out[version.id] = (
            m.get("candidate_mean_f1" if compared else "mean_f1"), m.get("candidate_miou" if compared else "miou")
        )
        if m.get("baseline_mean_f1") is not None and m.get("baseline_version") in out:
            out[m["baseline_version"]] = (m["baseline_mean_f1"], m.get("baseline_miou"))
    return out


def version_note(version: ModelVersion) -> str:
    """The list's note: the run's own, plus why a version was kept aside (the panel says it
    once, when the run ends; the list says it for as long as the version is kept)."""
    metrics = version.metrics
    if metrics.get("activated") is False and metrics.get("mean_f1") is None:
        aside = "kept aside: not validated (no hand-labeled face held out to score it)"
        return f"{version.note}; {aside}" if version.note else aside
    if metrics.get("activated") is not False or "baseline_mean_f1" not in metrics:
        return version.note
    aside = (
        f"kept aside: on the held-out hand-labeled faces it scored "
        f"{percent(metrics.get('candidate_mean_f1'))}% against "
        f"{percent(metrics.get('baseline_mean_f1'))}% for {metrics.get('baseline_version', 'the model in use')}"
    )
    return f"{version.note}; {aside}" if version.note else aside

"""Start page: open a folder, reopen a recent project, or open the demo project."""

from __future__ import annotations

from pathlib import Path

import qtawesome as qta
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class StartPage(QWidget):
    """Shown when no project is open.

    Signals:
        open_requested(path): open this folder as a project (from the dialog or a recent item).
        demo_requested(): open the demo project made from the shipped sample faces.
    """

    open_requested = Signal(str)
    demo_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Hidden behind the canvas it still sets the middle column's minimum (it shares a
        # stack with the canvas): no wider than the canvas's, so on a 1024-px screen the
        # Training panel gets the width of its form.
        self.setMinimumWidth(200)
        title = QLabel(
            "<h1>FaceParse Studio</h1><p>Label faces pixel by pixel in LaPa's 11 classes.</p>"
        )
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.open_button = QPushButton(qta.icon("fa5s.folder-open"), "Open folder of face images…")
        self.open_button.setObjectName("open_folder")
        self.open_button.clicked.connect(self.choose_folder)
        self.demo_button = QPushButton(qta.icon("fa5s.magic"), "Open demo project")
        self.demo_button.setObjectName("open_demo")
        self.demo_button.setToolTip(
            "A few public-domain sample faces copied into a folder of your own"
        )
        self.demo_button.clicked.connect(self.demo_requested)
        self.recent = QListWidget()
        self.recent.setObjectName("recent_projects")
        # A long path keeps both ends (the folder's name is the end) and its tooltip in full.
        self.recent.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.recent.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Activated covers a double-click and Enter; connecting itemDoubleClicked too opened
        # the project twice, and the second open said it was already open.
        self.recent.itemActivated.connect(self._on_recent)
        self.recent_label = QLabel("<b>Recent projects</b>")
        column = QVBoxLayout()
        column.addWidget(title)
        column.addWidget(self.open_button)
        column.addWidget(self.demo_button)
        column.addSpacing(12)
        column.addWidget(self.recent_label)
        column.addWidget(self.recent)
        box = QWidget()
        box.setLayout(column)
        box.setMaximumWidth(560)
        self.recent.setMaximumHeight(320)
        outer = QVBoxLayout(self)
        # Centred as one block (the title drifted to the middle, the buttons to the bottom).
        outer.addStretch(1)
        outer.addWidget(box, 0, Qt.AlignmentFlag.AlignHCenter)
        outer.addStretch(1)

    def set_recent(self, folders: list[str]) -> None:
        """List recent project folders (missing ones are shown but marked)."""
        self.recent.clear()
        for folder in folders:
            item = QListWidgetItem(folder)
            item.setData(Qt.ItemDataRole.UserRole, folder)
            if not Path(folder).is_dir():
                item.setIcon(qta.icon("fa5s.question-circle", color="#e53935"))
                item.setToolTip(f"{folder} no longer exists")
            else:
                item.setIcon(qta.icon("fa5s.folder"))
                item.setToolTip(folder)
            self.recent.addItem(item)
        self.recent_label.setVisible(bool(folders))
        self.recent.setVisible(bool(folders))

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of face images")
        if folder:
            self.open_requested.emit(folder)

    def _on_recent(self, item: QListWidgetItem) -> None:
        self.open_requested.emit(item.data(Qt.ItemDataRole.UserRole))

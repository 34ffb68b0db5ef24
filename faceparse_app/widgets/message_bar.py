"""A non-blocking message strip above the canvas (instead of modal dialogs)."""

from __future__ import annotations

import qtawesome as qta
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

# level -> (icon, background colour)
LEVELS = {
    "info": ("fa5s.info-circle", "#e3f2fd"),
    "warning": ("fa5s.exclamation-triangle", "#fff3e0"),
    "error": ("fa5s.times-circle", "#ffebee"),
}


class MessageBar(QWidget):
    """Shows the latest message with its level until dismissed or replaced."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("message_bar")
        self.setAutoFillBackground(True)
        self.icon = QLabel()
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setIcon(qta.icon("fa5s.times"))
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.icon)
        layout.addWidget(self.text, 1)
        layout.addWidget(close)
        self.level = "info"
        self.hide()

    def show_message(self, text: str, level: str = "info") -> None:
        icon, colour = LEVELS.get(level, LEVELS["info"])
        self.level = level
        self.icon.setPixmap(qta.icon(icon).pixmap(16, 16))
        self.text.setText(text)
        self.setStyleSheet(f"#message_bar {{ background: {colour}; color: #222; }}")
        self.show()

    @property
    def message(self) -> str:
        """The text shown ('' when hidden)."""
        return self.text.text() if self.isVisible() or not self.isHidden() else ""

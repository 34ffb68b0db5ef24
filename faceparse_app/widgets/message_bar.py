"""A non-blocking message strip over the top of the canvas (instead of modal dialogs)."""

from __future__ import annotations

import qtawesome as qta
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QStackedWidget, QToolButton, QWidget

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
        # Over the canvas, the level's colour must be painted (a plain QWidget ignores a style
        # sheet's background without this): the photo must not show through the text.
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
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
        self._over: object = None  # what was on screen when the message came up
        self._host: QWidget | None = None
        self.hide()

    def float_over(self, host: QWidget) -> None:
        """Float over the top edge of ``host``, outside any layout: the bar showing or hiding
        never moves or resizes what is under it (a canvas jumping by the bar's height under
        the cursor mid-stroke)."""
        self.setParent(host)
        self._host = host
        host.installEventFilter(self)
        if isinstance(host, QStackedWidget):  # a page coming up is raised over the bar
            host.currentChanged.connect(self.raise_)
        self._place()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if watched is self._host and event.type() == QEvent.Type.Resize:
            self._place()
        return False

    def event(self, event: QEvent) -> bool:
        # Its content changed after the text (an offer button shown beside it): outside any
        # layout nothing else gives the bar the height that needs, so its text was cut off.
        if event.type() == QEvent.Type.LayoutRequest and self._host is not None and not self.isHidden():
            self._place()
        return super().event(event)

    def _place(self) -> None:
        host = self._host
        if host is None:
            return
        width = host.width()
        layout = self.layout()
        height = layout.heightForWidth(width) if layout.hasHeightForWidth() else -1
        # (The size hint of wrapped text is a narrow, tall guess: the height at this width.)
        self.setGeometry(0, 0, width, height if height > 0 else self.sizeHint().height())
        self.raise_()

    def show_message(self, text: str, level: str = "info", over: object = None) -> None:
        """Show ``text``; ``over`` names what is on screen under it (the photo shown), for
        :meth:`moved_on`."""
        icon, colour = LEVELS.get(level, LEVELS["info"])
        self.level = level
        self._over = over
        self.icon.setPixmap(qta.icon(icon).pixmap(16, 16))
        self.text.setText(text)
        self.setStyleSheet(f"#message_bar {{ background: {colour}; color: #222; }}")
        self.show()
        self._place()  # the new text's height

    def moved_on(self, now_over: object) -> None:
        """Something else is on screen now (the next photo): a report of what was done (an
        info message, with no button beside it) about the one before goes; a warning or an
        error stays until it is dismissed."""
        offers = [w for w in self.findChildren(QPushButton) if not w.isHidden()]
        if self.level == "info" and not offers and self._over != now_over and not self.isHidden():
            self.hide()

    def covered_height(self) -> int:
        """How much of the top of the widget it floats over it covers now (0 when hidden)."""
        return self.height() if self._host is not None and not self.isHidden() else 0

    @property
    def message(self) -> str:
        """The text shown ('' when hidden)."""
        return self.text.text() if self.isVisible() or not self.isHidden() else ""

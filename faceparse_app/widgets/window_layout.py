"""The main window's panels and where they were: docks that the annotator can hide, move and
resize, and the window's size and dock layout remembered between runs (QSettings)."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QScrollArea, QWidget

from faceparse_app.app import Settings

GEOMETRY_KEY = "window/geometry"
STATE_KEY = "window/state"
LAYOUT_VERSION = 2  # bump when the docks change, so an old saved layout is not applied
CLASSES_WIDTH = 230  # the Classes panel's width, beside the canvas, when nothing else shares it


def make_dock(
    window: QMainWindow,
    widget: QWidget,
    title: str,
    area: Qt.DockWidgetArea,
    scroll: bool = False,
) -> QDockWidget:
    """A dock the annotator can close (Panels menu brings it back), move and float.

    Args:
        scroll: put the widget in a scroll area (a tall panel in a short dock scrolls instead
            of squeezing the canvas).
    """
    dock = QDockWidget(title, window)
    dock.setObjectName(f"dock_{title.lower()}")
    if scroll:
        area_widget = QScrollArea()
        area_widget.setWidgetResizable(True)
        area_widget.setFrameShape(QScrollArea.Shape.NoFrame)
        area_widget.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        area_widget.setWidget(widget)
        dock.setWidget(area_widget)
    else:
        dock.setWidget(widget)
    window.addDockWidget(area, dock)
    return dock


def _content(dock: QDockWidget) -> QWidget:
    """The panel in a dock (inside its scroll area, if it has one)."""
    widget = dock.widget()
    return widget.widget() if isinstance(widget, QScrollArea) else widget


def _bytes(value: object) -> QByteArray | None:
    if isinstance(value, QByteArray) and not value.isEmpty():
        return value
    if isinstance(value, bytes | bytearray) and value:
        return QByteArray(bytes(value))
    return None


def restore_layout(window: QMainWindow, settings: Settings) -> bool:
    """Put the window and its docks where they were; False when nothing was saved."""
    geometry = _bytes(settings.value(GEOMETRY_KEY))
    state = _bytes(settings.value(STATE_KEY))
    if geometry is None:
        return False
    window.restoreGeometry(geometry)
    if state is not None:
        window.restoreState(state, LAYOUT_VERSION)
    return True


def save_layout(window: QMainWindow, settings: Settings) -> None:
    """Remember the window's size and place, and each dock's visibility, place and size."""
    settings.set_value(GEOMETRY_KEY, window.saveGeometry())
    settings.set_value(STATE_KEY, window.saveState(LAYOUT_VERSION))


class TrainingColumn:
    """The Training dock's share of the window, beside the Classes panel.

    Shown, the dock gets the width its form needs (no sideways scrolling) and the Classes
    panel above it only its rows' height; closed again, the column goes back to the width it
    had before, so the canvas gets its room back (a list of eleven classes needs no more).

    Args:
        window: the main window holding both docks.
        classes_dock: the Classes panel's dock.
        train_dock: the Training panel's dock.
    """

    def __init__(self, window: QMainWindow, classes_dock: QDockWidget, train_dock: QDockWidget) -> None:
        self.window, self.classes_dock, self.train_dock = window, classes_dock, train_dock
        self._width_before: int | None = None  # the column's width before the training widened it
        train_dock.visibilityChanged.connect(self._visibility_changed)

    def _beside_classes(self) -> bool:
        classes, train = self.classes_dock, self.train_dock
        return (
            classes.isVisible()
            and not classes.isFloating()
            and self.window.dockWidgetArea(classes) == self.window.dockWidgetArea(train)
        )

    def _visibility_changed(self, visible: bool) -> None:
        window, classes, train = self.window, self.classes_dock, self.train_dock
        if train.isFloating():
            return
        horizontal, vertical = Qt.Orientation.Horizontal, Qt.Orientation.Vertical
        if not visible:
            # Closed (not merely covered, or the window going away): the width it took back.
            if train.isHidden() and self._beside_classes():
                # A column already wide when the panel opened (a layout kept from an earlier
                # run) goes back to what the class table needs.
                narrow = self._width_before or max(CLASSES_WIDTH, classes.sizeHint().width())
                if classes.width() > narrow:
                    window.resizeDocks([classes], [narrow], horizontal)
            if train.isHidden():
                self._width_before = None
            return
        wanted = _content(train).minimumSizeHint().width() + 24
        if train.width() < wanted:
            if self._width_before is None and self._beside_classes():
                self._width_before = classes.width()
            window.resizeDocks([train], [wanted], horizontal)
        if self._beside_classes():
            # The class table needs its rows only; the rest of the column is the training's.
            rows = _content(classes).sizeHint().height() + 30
            rest = max(200, classes.height() + train.height() - rows)
            window.resizeDocks([classes, train], [rows, rest], vertical)

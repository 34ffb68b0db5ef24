"""The main window's panels and where they were: docks that the annotator can hide, move and
resize, and the window's size and dock layout remembered between runs (QSettings)."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QScrollArea, QWidget

from faceparse_app.app import Settings

GEOMETRY_KEY = "window/geometry"
STATE_KEY = "window/state"
LAYOUT_VERSION = 2  # bump when the docks change, so an old saved layout is not applied


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

"""Class palette: pick the class to paint, see its hotkey and colour, protect classes."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QGridLayout,
    QLabel,
    QRadioButton,
    QWidget,
)

from faceparse_app.widgets.label_colours import display_palette
from faceparse_app.widgets.tool_state import ToolState

# Class index -> key. Ten digits cover 0..9; LaPa's eleventh class (hair) sits on the key right
# of 0 so that all eleven are one key each.
CLASS_HOTKEYS: tuple[str, ...] = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "-")


def swatch_icon(rgb: tuple[int, int, int], size: int = 14) -> QIcon:
    pix = QPixmap(size, size)
    pix.fill(QColor(*rgb))
    return QIcon(pix)


class ClassPalette(QWidget):
    """One row per class: radio button (colour, name), hotkey, and a "protect" checkbox.

    The palette only mirrors and sets `ToolState`; it holds no state of its own.
    """

    def __init__(self, state: ToolState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        labels = state.label_set
        colours = display_palette(labels)
        grid = QGridLayout(self)
        grid.setContentsMargins(4, 4, 4, 4)
        grid.setVerticalSpacing(2)
        grid.addWidget(QLabel("<b>Class</b>"), 0, 0)
        grid.addWidget(QLabel("<b>Key</b>"), 0, 1)
        protect_header = QLabel("<b>Protect</b>")
        protect_header.setToolTip("Protected classes are never painted over")
        grid.addWidget(protect_header, 0, 2)
        self.group = QButtonGroup(self)
        self.class_buttons: list[QRadioButton] = []
        self.protect_boxes: list[QCheckBox] = []
        for cls, name in enumerate(labels.classes):
            button = QRadioButton(name.replace("_", " "))
            button.setIcon(swatch_icon(tuple(int(c) for c in colours[cls])))
            button.setObjectName(f"class_{cls}")
            self.group.addButton(button, cls)
            key = CLASS_HOTKEYS[cls] if cls < len(CLASS_HOTKEYS) else ""
            hotkey = QLabel(key)
            hotkey.setAlignment(Qt.AlignmentFlag.AlignCenter)
            box = QCheckBox()
            box.setObjectName(f"protect_{cls}")
            box.setToolTip(f"Never paint over {name.replace('_', ' ')}")
            box.toggled.connect(self._on_protect_toggled)
            grid.addWidget(button, cls + 1, 0)
            grid.addWidget(hotkey, cls + 1, 1)
            grid.addWidget(box, cls + 1, 2, Qt.AlignmentFlag.AlignCenter)
            self.class_buttons.append(button)
            self.protect_boxes.append(box)
        grid.setRowStretch(len(labels.classes) + 1, 1)
        self.group.idClicked.connect(state.set_class)
        state.class_changed.connect(self._show_class)
        state.protected_changed.connect(self._show_protected)
        self._show_class(state.cls)

    def _show_class(self, cls: int) -> None:
        self.class_buttons[cls].setChecked(True)

    def _on_protect_toggled(self, _checked: bool) -> None:
        self.state.set_protected({i for i, b in enumerate(self.protect_boxes) if b.isChecked()})

    def _show_protected(self, classes: frozenset[int]) -> None:
        for i, box in enumerate(self.protect_boxes):
            box.blockSignals(True)
            box.setChecked(i in classes)
            box.blockSignals(False)

"""Tool bar: tool buttons, brush size, overlay opacity / visibility / outline mode, and the
model's confidence view and faces."""

from __future__ import annotations

import qtawesome as qta
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QLabel, QSlider, QSpinBox, QToolBar, QWidget

from faceparse_app.widgets.tool_state import MAX_RADIUS, MIN_RADIUS, Tool, ToolState, brush_width

# tool -> (qtawesome icon, shortcut)
TOOL_ICONS: dict[Tool, tuple[str, str]] = {
    Tool.BRUSH: ("fa5s.paint-brush", "B"),
    Tool.ERASER: ("fa5s.eraser", "E"),
    Tool.FILL: ("fa5s.fill-drip", "F"),
    Tool.POLYGON: ("fa5s.draw-polygon", "P"),
    Tool.PICKER: ("fa5s.eye-dropper", "I"),
    Tool.FACE: ("fa5s.vector-square", "W"),
    Tool.RELABEL: ("fa5s.sync-alt", "R"),
    Tool.BOUNDARY: ("fa5s.magnet", "S"),
}
TOOL_TIPS: dict[Tool, str] = {
    Tool.FACE: (
        "Face box (W): drag a box around a face the finder missed, hairline to chin, ear to "
        "ear; its pre-label appears at once. Click a box and press Delete to remove a false one."
    ),
    Tool.RELABEL: (
        "Relabel (R): click a wrongly labeled blob and it takes the model's next most likely "
        "class there; click again for the next one. One undo step per click; protected "
        "classes stay."
    ),
    Tool.BOUNDARY: (
        "Edge outline (S): click points along a part's boundary; the line between them snaps to "
        "the image's edges (points far apart follow them at a coarser step: add points for a "
        "closer fit). Enter, a double-click or the first point fills it with the current "
        "class; Backspace drops a point, Esc cancels."
    ),
}


class ToolBar(QToolBar):
    """Mirrors and sets `ToolState`; `tool_actions` are also put in the Tools menu.

    Signals:
        editing_done(): the size box was edited (Enter); the window gives the keys back to the
            canvas so single-key shortcuts work again.
    """

    editing_done = Signal()

    def __init__(self, state: ToolState, parent: QWidget | None = None) -> None:
        super().__init__("Tools", parent)
        self.setObjectName("tool_bar")
        self.state = state
        self.group = QActionGroup(self)
        self.group.setExclusive(True)
        self.tool_actions: dict[Tool, QAction] = {}
        for tool, (icon, key) in TOOL_ICONS.items():
            action = QAction(qta.icon(icon), tool.value, self)
            action.setCheckable(True)
            action.setShortcut(QKeySequence(key))
            action.setToolTip(TOOL_TIPS.get(tool, f"{tool.value} ({key})"))
            action.triggered.connect(lambda _c=False, t=tool: state.set_tool(t))
            self.group.addAction(action)
            self.addAction(action)
            self.tool_actions[tool] = action
        self.addSeparator()
        self.addWidget(QLabel(" Size "))
        self.size_box = QSpinBox()
        # The box says the brush's width, the pixels across a dot (2 × radius + 1: a round
        # brush about the pixel under the cursor is an odd number of pixels wide).
        self.size_box.setRange(brush_width(MIN_RADIUS), brush_width(MAX_RADIUS))
        self.size_box.setSingleStep(2)
        self.size_box.setKeyboardTracking(False)  # "20" typed is not taken as "2" on the way
        self.size_box.setSuffix(" px")
        self.size_box.setToolTip("Brush size: how wide it paints, in image pixels ([ and ], or Ctrl+wheel)")
        self.size_box.setValue(brush_width(state.radius))
        self.size_box.valueChanged.connect(self._size_edited)
        # A spin box with the focus takes digits and "-" for itself (the class keys): it gets
        # the focus only when clicked, and gives it back when the edit is done.
        self.size_box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.size_box.editingFinished.connect(self.editing_done)
        self.addWidget(self.size_box)
        self.addSeparator()
        self.overlay_action = QAction(qta.icon("fa5s.eye"), "Show labels", self)
        self.overlay_action.setCheckable(True)
        self.overlay_action.setChecked(state.overlay_visible)
        self.overlay_action.setShortcut(QKeySequence("H"))
        self.overlay_action.setToolTip("Show labels (H): hide them to see the photo alone")
        self.overlay_action.toggled.connect(state.set_overlay_visible)
        self.addAction(self.overlay_action)
        self.outline_action = QAction(
            qta.icon("fa5s.draw-polygon", color="#888"), "Outline only", self
        )
        self.outline_action.setCheckable(True)
        self.outline_action.setChecked(state.outline)
        self.outline_action.setShortcut(QKeySequence("O"))
        self.outline_action.toggled.connect(state.set_outline)
        self.outline_action.setToolTip(
            "Outline only (O): draw each class's edge instead of filling it, to see the photo "
            "underneath"
        )
        self.addAction(self.outline_action)
        # Named, not just an icon: the outline view is what checking a label needs most.
        self.widgetForAction(self.outline_action).setToolButtonStyle(
            Qt.ToolButtonStyle.ToolButtonTextBesideIcon
        )
        self.addWidget(QLabel(" Opacity "))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setFixedWidth(120)
        self.opacity_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.opacity_slider.setValue(round(state.opacity * 100))
        self.opacity_slider.valueChanged.connect(lambda v: state.set_opacity(v / 100))
        self.addWidget(self.opacity_slider)
        self.addSeparator()
        # The confidence view is a view of the model, not of the label, so it is not ToolState:
        # the main window connects this action to the canvas.
        self.heat_action = QAction(qta.icon("fa5s.fire", color="#e65100"), "Confidence view", self)
        self.heat_action.setCheckable(True)
        self.heat_action.setShortcut(QKeySequence("U"))
        self.heat_action.setToolTip("Confidence view (U): where the model is unsure")
        self.addAction(self.heat_action)
        # Like the confidence view, a view of what the model found: the window connects it.
        self.faces_action = QAction(qta.icon("fa5s.user-circle", color="#00838f"), "Show faces", self)
        self.faces_action.setCheckable(True)
        self.faces_action.setShortcut(QKeySequence("Shift+W"))
        self.faces_action.setToolTip(
            "Show faces (Shift+W): the box (and eye, nose and mouth points) of each face the "
            "model parses; found faces solid, faces you drew dashed"
        )
        self.addAction(self.faces_action)
        state.tool_changed.connect(self._show_tool)
        state.radius_changed.connect(self._show_radius)
        state.opacity_changed.connect(
            lambda o: self._set_quietly(self.opacity_slider, round(o * 100))
        )
        state.overlay_visible_changed.connect(self.overlay_action.setChecked)
        state.outline_changed.connect(self.outline_action.setChecked)
        self._show_tool(state.tool.value)

    def _show_tool(self, name: str) -> None:
        self.tool_actions[Tool(name)].setChecked(True)

    def _show_radius(self, radius: int) -> None:
        self._set_quietly(self.size_box, brush_width(radius))

    def _size_edited(self, width: int) -> None:
        # An even width (typed) is painted one pixel wider, and the box says so.
        self.state.set_radius(width // 2)
        self._show_radius(self.state.radius)

    @staticmethod
    def _set_quietly(widget: QSpinBox | QSlider, value: int) -> None:
        widget.blockSignals(True)
        widget.setValue(value)
        widget.blockSignals(False)

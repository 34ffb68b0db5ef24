"""The annotator's current choices (tool, class, brush size, overlay look), shared by widgets.

One observable object instead of widgets poking each other: the tool bar, the class palette and
the canvas all read and set it, and redraw from its signals.
"""

from __future__ import annotations

from enum import StrEnum

from PySide6.QtCore import QObject, Signal

from faceparse_app.widgets.label_colours import DEFAULT_OPACITY
from trainer.labels import LAPA, LabelSet

MIN_RADIUS = 0  # a one-pixel brush
MAX_RADIUS = 400


def brush_width(radius: int) -> int:
    """How many pixels across a brush of ``radius`` paints (what the tool bar's Size says)."""
    return 2 * int(radius) + 1


class Tool(StrEnum):
    """Canvas tools; the value is the label shown to the user."""

    BRUSH = "Brush"
    ERASER = "Eraser"
    FILL = "Fill"
    POLYGON = "Polygon"
    PICKER = "Eyedropper"
    FACE = "Face box"
    RELABEL = "Relabel"
    BOUNDARY = "Edge outline"


class ToolState(QObject):
    """Current tool, class, brush radius (image pixels) and overlay look.

    Signals carry the new value; setters that do not change the value emit nothing, so views
    can set it back from their own slots without loops.
    """

    tool_changed = Signal(str)
    class_changed = Signal(int)
    radius_changed = Signal(int)
    opacity_changed = Signal(float)
    overlay_visible_changed = Signal(bool)
    outline_changed = Signal(bool)
    protected_changed = Signal(object)  # frozenset[int]

    def __init__(self, label_set: LabelSet = LAPA, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.label_set = label_set
        self._tool = Tool.BRUSH
        self._cls = 1
        self._radius = 8
        self._opacity = DEFAULT_OPACITY
        self._overlay_visible = True
        self._outline = False
        self._protected: frozenset[int] = frozenset()

    @property
    def tool(self) -> Tool:
        return self._tool

    def set_tool(self, tool: Tool | str) -> None:
        tool = Tool(tool)
        if tool != self._tool:
            self._tool = tool
            self.tool_changed.emit(tool.value)

    @property
    def cls(self) -> int:
        """The class painted by brush, fill and polygon."""
        return self._cls

    def set_class(self, cls: int) -> None:
        if not 0 <= cls < self.label_set.num_classes:
            raise ValueError(f"class {cls} is outside 0..{self.label_set.num_classes - 1}")
        if cls != self._cls:
            self._cls = cls
            self.class_changed.emit(cls)

    @property
    def radius(self) -> int:
        return self._radius

    def set_radius(self, radius: int) -> None:
        radius = max(MIN_RADIUS, min(MAX_RADIUS, int(radius)))
        if radius != self._radius:
            self._radius = radius
            self.radius_changed.emit(radius)

    def grow_radius(self, steps: int) -> None:
        """Change the brush by about 15 % per step (at least 1 px), as `[` and `]` do."""
        r = self._radius
        for _ in range(abs(steps)):
            delta = max(1, round(r * 0.15))
            r = r + delta if steps > 0 else r - delta
        self.set_radius(r)

    @property
    def opacity(self) -> float:
        return self._opacity

    def set_opacity(self, opacity: float) -> None:
        opacity = max(0.0, min(1.0, float(opacity)))
        if opacity != self._opacity:
            self._opacity = opacity
            self.opacity_changed.emit(opacity)

    @property
    def overlay_visible(self) -> bool:
        return self._overlay_visible

    def set_overlay_visible(self, visible: bool) -> None:
        if bool(visible) != self._overlay_visible:
            self._overlay_visible = bool(visible)
            self.overlay_visible_changed.emit(self._overlay_visible)

    def show_labels(self) -> None:
        """Put the labels in view for an edit, never painted unseen: shown again if H hid them,
        and at the default opacity if the slider was at 0 (the outline view ignores it)."""
        self.set_overlay_visible(True)
        if self._opacity == 0 and not self._outline:
            self.set_opacity(DEFAULT_OPACITY)

    @property
    def outline(self) -> bool:
        return self._outline

    def set_outline(self, outline: bool) -> None:
        if bool(outline) != self._outline:
            self._outline = bool(outline)
            self.outline_changed.emit(self._outline)

    @property
    def protected(self) -> frozenset[int]:
        """Classes that brush, fill and polygon never paint over."""
        return self._protected

    def set_protected(self, classes: set[int] | frozenset[int]) -> None:
        classes = frozenset(int(c) for c in classes)
        if classes != self._protected:
            self._protected = classes
            self.protected_changed.emit(classes)

"""How each canvas tool turns mouse and key events into LabelDocument edits.

A registry (`make_tools`) instead of an if-chain in the canvas: each tool gets image coordinates
and the canvas, edits the document, and may draw its own preview. Every edit goes through the
document so undo is one step per stroke, fill or polygon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QKeyEvent, QPainter, QPen, QPolygonF

from faceparse_app.faces import face_at
from faceparse_app.widgets.tool_state import Tool

if TYPE_CHECKING:
    from faceparse_app.widgets.canvas import LabelCanvas


class CanvasTool:
    """Base tool: ignores everything. Coordinates are image pixels (floats)."""

    cursor = Qt.CursorShape.CrossCursor
    edits_labels = True  # a press may change the label map (so the labels must be in view)

    def press(self, canvas: LabelCanvas, x: float, y: float) -> None:
        """Left button pressed at image point (x, y)."""

    def move(self, canvas: LabelCanvas, x: float, y: float, dragging: bool) -> None:
        """Mouse moved; `dragging` while the left button is down."""

    def release(self, canvas: LabelCanvas, x: float, y: float) -> None:
        """Left button released."""

    def double_click(self, canvas: LabelCanvas, x: float, y: float) -> None:
        """Left button double-clicked."""

    def key(self, canvas: LabelCanvas, event: QKeyEvent) -> bool:
        """A key the canvas did not use itself; return True if handled."""
        return False

    def cancel(self, canvas: LabelCanvas) -> None:
        """Abandon any half-done edit (image switch, tool switch)."""

    def activate(self, canvas: LabelCanvas) -> None:
        """The tool was chosen, or an image shown while it is the current tool."""

    def paint(self, canvas: LabelCanvas, painter: QPainter) -> None:
        """Draw a preview in widget coordinates."""

    def preview_rect(self, canvas: LabelCanvas) -> QRectF:
        """Widget rect the preview covers (repainted when the cursor moves)."""
        return QRectF()


def _protected_at(canvas: LabelCanvas, px: int, py: int) -> bool:
    """Whether a click tool would change nothing at (px, py) because its class is protected;
    then it says so (a silent click looks like a broken tool)."""
    assert canvas.document is not None
    cls = canvas.document.pick(px, py)
    if cls not in canvas.document.protected:
        return False
    name = canvas.state.label_set.classes[cls]
    canvas.assist_message.emit(f"{name} is protected: untick its Protect box in Classes to change it.")
    return True


def _pixel(x: float, y: float) -> tuple[int, int]:
    return int(x // 1), int(y // 1)


class BrushTool(CanvasTool):
    """Round brush; the eraser is the same brush painting background (class 0)."""

    cursor = Qt.CursorShape.BlankCursor  # the size circle is the cursor

    def __init__(self, erase: bool = False) -> None:
        self.erase = erase
        self.active = False

    def press(self, canvas: LabelCanvas, x: float, y: float) -> None:
        doc = canvas.document
        if doc is None:
            return
        doc.begin_stroke(0 if self.erase else canvas.state.cls)
        self.active = True
        px, py = _pixel(x, y)
        doc.stroke_to(px, py, canvas.state.radius)

    def move(self, canvas: LabelCanvas, x: float, y: float, dragging: bool) -> None:
        doc = canvas.document
        if self.active and doc is not None:
            if not doc.in_stroke:  # closed under us (undo or save mid-drag): stop painting
                self.active = False
                return
            px, py = _pixel(x, y)
            doc.stroke_to(px, py, canvas.state.radius)

    def release(self, canvas: LabelCanvas, x: float, y: float) -> None:
        self.cancel(canvas)

    def cancel(self, canvas: LabelCanvas) -> None:
        # Ending (not discarding) keeps what was painted as one undo step.
        if self.active and canvas.document is not None:
            self.active = False
            if canvas.document.end_stroke() is not None:
                canvas.edited.emit()
        self.active = False

    def paint(self, canvas: LabelCanvas, painter: QPainter) -> None:
        pos = canvas.cursor_pos
        if pos is None:
            return
        r = max(1.0, (canvas.state.radius + 0.5) * canvas.scale)  # as wide as the Size says
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for color, width in ((QColor(0, 0, 0, 160), 3), (QColor(255, 255, 255, 230), 1)):
            painter.setPen(QPen(color, width))
            painter.drawEllipse(pos, r, r)

    def preview_rect(self, canvas: LabelCanvas) -> QRectF:
        pos = canvas.cursor_pos
        if pos is None:
            return QRectF()
        r = max(1.0, (canvas.state.radius + 0.5) * canvas.scale) + 4
        return QRectF(pos.x() - r, pos.y() - r, 2 * r, 2 * r)


class FillTool(CanvasTool):
    """Flood fill of the contiguous region under the click."""

    cursor = Qt.CursorShape.PointingHandCursor

    def press(self, canvas: LabelCanvas, x: float, y: float) -> None:
        px, py = _pixel(x, y)
        if canvas.document is not None and canvas.contains(px, py) and not _protected_at(canvas, px, py):
            if canvas.document.flood_fill(px, py, canvas.state.cls) is not None:
                canvas.edited.emit()


class PickerTool(CanvasTool):
    """Eyedropper: the class under the click becomes the current class."""

    edits_labels = False

    def press(self, canvas: LabelCanvas, x: float, y: float) -> None:
        px, py = _pixel(x, y)
        if canvas.document is not None and canvas.contains(px, py):
            canvas.state.set_class(canvas.document.pick(px, py))


class PolygonTool(CanvasTool):
    """Click points; Enter (or Shift+Enter), double-click or clicking the first point closes;
    Esc cancels."""

    close_distance_px = 8.0  # widget pixels from the first point that count as "closing"

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def press(self, canvas: LabelCanvas, x: float, y: float) -> None:
        if canvas.document is None:
            return
        if len(self.points) >= 3:
            first = canvas.image_to_widget(*self.points[0])
            here = canvas.image_to_widget(x, y)
            if (first - here).manhattanLength() <= self.close_distance_px:
                self.finish(canvas)
                return
        self.points.append((x, y))
        canvas.update()

    def double_click(self, canvas: LabelCanvas, x: float, y: float) -> None:
        # Qt usually sends press, release, double-click, release, so the press already added
        # this point; add it only when no press did (synthesised double-clicks).
        if not self.points or max(abs(self.points[-1][0] - x), abs(self.points[-1][1] - y)) > 0.5:
            self.points.append((x, y))
        self.finish(canvas)

    def key(self, canvas: LabelCanvas, event: QKeyEvent) -> bool:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.points:
            self.finish(canvas)
            return True
        if event.key() == Qt.Key.Key_Escape and self.points:
            self.cancel(canvas)
            return True
        if event.key() == Qt.Key.Key_Backspace and self.points:
            self.points.pop()
            canvas.update()
            return True
        return False

    def finish(self, canvas: LabelCanvas) -> None:
        """Fill the polygon drawn so far (needs 3 points) as one undo step."""
        points, self.points = self.points, []
        canvas.update()
        if len(points) >= 3 and canvas.document is not None:
            # Vertices sit at pixel centres so a click inside a pixel includes that pixel.
            pts = [(int(x // 1), int(y // 1)) for x, y in points]
            if canvas.document.fill_polygon(pts, canvas.state.cls) is not None:
                canvas.edited.emit()

    def cancel(self, canvas: LabelCanvas) -> None:
        if self.points:
            self.points = []
            canvas.update()

    def paint(self, canvas: LabelCanvas, painter: QPainter) -> None:
        if not self.points:
            return
        vertices = [canvas.image_to_widget(x, y) for x, y in self.points]
        poly = QPolygonF(vertices)
        if canvas.cursor_pos is not None:
            poly.append(QPointF(canvas.cursor_pos))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        # A dark band under a white dash: the line shows on dark hair and on white skin alike.
        painter.setPen(QPen(QColor(0, 0, 0, 170), 3.5))
        painter.drawPolyline(poly)
        painter.setPen(QPen(QColor(255, 255, 255, 240), 1.5, Qt.PenStyle.DashLine))
        painter.drawPolyline(poly)
        painter.setPen(QPen(QColor(0, 0, 0, 200), 1.5))
        painter.setBrush(QColor(255, 255, 255))
        for p in vertices:
            painter.drawEllipse(p, 4, 4)

    def preview_rect(self, canvas: LabelCanvas) -> QRectF:
        # The rubber band can span the whole view; it is cheap to repaint.
        return QRectF(canvas.rect()) if self.points else QRectF()


class RelabelTool(CanvasTool):
    """Click a wrongly labeled blob: it takes the model's next most probable class there (the
    pixels of the clicked class where the model hesitated over the same choice); click it again
    for the class after that. One undo step per click; protected classes are never changed."""

    cursor = Qt.CursorShape.PointingHandCursor

    def __init__(self) -> None:
        from faceparse_app.assist import Relabeler

        self.relabeler = Relabeler()

    def press(self, canvas: LabelCanvas, x: float, y: float) -> None:
        px, py = _pixel(x, y)
        doc, assist = canvas.document, canvas.assist
        if doc is None or assist is None or not canvas.contains(px, py) or _protected_at(canvas, px, py):
            return
        canvas.setCursor(Qt.CursorShape.WaitCursor)  # the first click of an image runs the parser
        try:
            probs = assist.probabilities()
        finally:
            canvas.setCursor(self.cursor)
        if probs is None:
            canvas.assist_message.emit("Click to relabel needs a model: train one first.")
            return
        if not probs.holds(px, py):
            canvas.assist_message.emit(
                "Relabel offers the model's next class where it parsed a face; this pixel is "
                "outside every face's crop: paint it (B) or fill it (F)."
            )
            return
        if self.relabeler.click(doc, probs, px, py) is not None:
            canvas.edited.emit()
        elif self.relabeler.refusal is not None:
            canvas.assist_message.emit(self.relabeler.refusal)

    def activate(self, canvas: LabelCanvas) -> None:
        if canvas.assist is not None:
            canvas.assist.prefetch()  # the parser reads the face while the annotator looks

    def cancel(self, canvas: LabelCanvas) -> None:
        self.relabeler.reset()


class BoundaryTool(PolygonTool):
    """An outline whose sides follow image edges: click points along a part's boundary; between
    two points the line snaps to the strongest edges (intelligent scissors). Enter (or
    Shift+Enter), a double-click or a click on the first point fills it with the current class,
    as one undo step; Backspace drops the last point, Esc cancels."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[list[tuple[int, int]]] = []  # the snapped piece ending at each point

    def press(self, canvas: LabelCanvas, x: float, y: float) -> None:
        if canvas.document is None or canvas.assist is None:
            return
        if len(self.points) >= 3:
            first = canvas.image_to_widget(*self.points[0])
            if (first - canvas.image_to_widget(x, y)).manhattanLength() <= self.close_distance_px:
                self.finish(canvas)
                return
        px, py = _pixel(x, y)
        self.paths.append(self._snap(canvas, self.points[-1], (px, py)) if self.points else [(px, py)])
        self.points.append((px, py))
        canvas.update()

    def double_click(self, canvas: LabelCanvas, x: float, y: float) -> None:
        self.finish(canvas)  # the press before it placed the point already

    def key(self, canvas: LabelCanvas, event: QKeyEvent) -> bool:
        if event.key() == Qt.Key.Key_Backspace and self.points:
            self.paths.pop()
        return super().key(canvas, event)

    def finish(self, canvas: LabelCanvas) -> None:
        """Close the outline (the last point snaps back to the first) and fill it."""
        points, paths = self.points, self.paths
        self.points, self.paths = [], []
        canvas.update()
        if len(points) < 3 or canvas.document is None:
            return
        # paths[i] runs from point i-1 to point i (paths[0] is point 0 alone); then back home.
        pieces = [*paths[1:], self._snap(canvas, points[-1], points[0])]
        snapper = canvas.assist.snapper() if canvas.assist is not None else None
        if snapper is not None:  # no spur to a point clicked beside an edge
            outline = snapper.outline(pieces)
        else:
            outline = [p for piece in pieces for p in piece[:-1]]
        if canvas.document.fill_polygon(outline, canvas.state.cls) is not None:
            canvas.edited.emit()

    def cancel(self, canvas: LabelCanvas) -> None:
        self.paths = []
        super().cancel(canvas)

    @staticmethod
    def _snap(canvas: LabelCanvas, a: tuple[float, float], b: tuple[float, float]) -> list[tuple[int, int]]:
        snapper = canvas.assist.snapper() if canvas.assist is not None else None
        if snapper is None:
            return [(int(a[0]), int(a[1])), (int(b[0]), int(b[1]))]
        snapper.set_anchor(*a)
        return snapper.path_to(*b)

    def paint(self, canvas: LabelCanvas, painter: QPainter) -> None:
        if not self.points:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        poly = QPolygonF([canvas.image_to_widget(x + 0.5, y + 0.5) for path in self.paths for x, y in path])
        painter.setPen(QPen(QColor(0, 0, 0, 170), 3))
        painter.drawPolyline(poly)
        painter.setPen(QPen(QColor(0, 229, 255), 1.5))
        painter.drawPolyline(poly)
        if canvas.cursor_pos is not None:
            painter.setPen(QPen(QColor(255, 255, 255, 230), 1.0, Qt.PenStyle.DashLine))
            painter.drawLine(canvas.image_to_widget(*self.points[-1]), QPointF(canvas.cursor_pos))
        painter.setBrush(QColor(255, 255, 255))
        painter.setPen(QPen(QColor(0, 0, 0), 1))
        for x, y in self.points:
            painter.drawEllipse(canvas.image_to_widget(x + 0.5, y + 0.5), 3, 3)


class FaceBoxTool(CanvasTool):
    """Drag a box around a face the finder missed; click a box to select it, Delete (or
    Backspace) removes it, Esc lets go. The canvas only reports; the face loop does the rest."""

    edits_labels = False  # a box over the photo; the pixels it brings are the model's

    min_drag_px = 6.0  # widget pixels: a shorter drag is a click

    def __init__(self) -> None:
        self.start: tuple[float, float] | None = None
        self.end: tuple[float, float] | None = None

    def press(self, canvas: LabelCanvas, x: float, y: float) -> None:
        if canvas.document is None:
            return
        self.start = self.end = (x, y)

    def move(self, canvas: LabelCanvas, x: float, y: float, dragging: bool) -> None:
        if self.start is not None and dragging:
            self.end = (x, y)
            canvas.update()

    def release(self, canvas: LabelCanvas, x: float, y: float) -> None:
        if self.start is None:
            return
        (x0, y0), (x1, y1) = self.start, (x, y)
        self.start = self.end = None
        canvas.update()
        if max(abs(x1 - x0), abs(y1 - y0)) * canvas.scale >= self.min_drag_px:
            canvas.select_face(None)
            canvas.face_drawn.emit((x0, y0, x1, y1))  # the face loop judges its size
        else:
            canvas.select_face(face_at(canvas.faces, x, y))

    def key(self, canvas: LabelCanvas, event: QKeyEvent) -> bool:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and canvas.selected_face is not None:
            face = canvas.faces[canvas.selected_face]
            canvas.select_face(None)
            canvas.face_removal_requested.emit(face)
            return True
        if event.key() == Qt.Key.Key_Escape and (self.start is not None or canvas.selected_face is not None):
            self.cancel(canvas)
            canvas.select_face(None)
            return True
        return False

    def cancel(self, canvas: LabelCanvas) -> None:
        if self.start is not None:
            self.start = self.end = None
            canvas.update()

    def paint(self, canvas: LabelCanvas, painter: QPainter) -> None:
        if self.start is None or self.end is None:
            return
        rect = QRectF(canvas.image_to_widget(*self.start), canvas.image_to_widget(*self.end)).normalized()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor(0, 0, 0, 170), 3))
        painter.drawRect(rect)
        painter.setPen(QPen(QColor(255, 179, 0), 1.5, Qt.PenStyle.DashLine))
        painter.drawRect(rect)

    def preview_rect(self, canvas: LabelCanvas) -> QRectF:
        return QRectF(canvas.rect()) if self.start is not None else QRectF()


def make_tools() -> dict[Tool, CanvasTool]:
    """One instance of each tool, keyed by `Tool`."""
    return {
        Tool.BRUSH: BrushTool(),
        Tool.ERASER: BrushTool(erase=True),
        Tool.FILL: FillTool(),
        Tool.POLYGON: PolygonTool(),
        Tool.PICKER: PickerTool(),
        Tool.FACE: FaceBoxTool(),
        Tool.RELABEL: RelabelTool(),
        Tool.BOUNDARY: BoundaryTool(),
    }

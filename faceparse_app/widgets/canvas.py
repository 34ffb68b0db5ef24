"""The painting canvas: image + label overlay, zoom/pan, and tool dispatch.

A plain QWidget with its own scale/offset rather than QGraphicsView: it repaints only the
changed rectangle and draws only the visible part of the image, which keeps a 4000×4000 photo
smooth. The label lives in a `LabelDocument` (Qt-free); the canvas observes it through the
document's `on_change` callbacks and recolours just the changed box of the overlay.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from faceparse_app.assist import AssistContext
from faceparse_app.document import LabelDocument
from faceparse_app.widgets.canvas_tools import CanvasTool, make_tools
from faceparse_app.widgets.face_layer import paint_faces
from faceparse_app.widgets.overlay import Box, HeatOverlay, LabelOverlay
from faceparse_app.widgets.tool_state import Tool, ToolState
from trainer.faces import Face

MIN_SCALE = 1 / 64
MAX_SCALE = 64.0
WHEEL_STEP = 1.25  # zoom factor per wheel notch
BACKGROUND = QColor(40, 40, 44)


def image_to_qimage(image: np.ndarray) -> tuple[QImage, np.ndarray]:
    """Wrap an (H, W, 3) RGB or (H, W) grey uint8 array as an RGB32 QImage.

    Returns:
        the QImage and the (H, W, 4) BGRA buffer it points into (keep it alive as long as the
        image). RGB32 draws without a per-paint format conversion.
    """
    if image.ndim == 2:
        bgra = cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
    else:
        bgra = cv2.cvtColor(image, cv2.COLOR_RGB2BGRA)
    h, w = bgra.shape[:2]
    return QImage(bgra.data, w, h, 4 * w, QImage.Format.Format_RGB32), bgra


class LabelCanvas(QWidget):
    """Shows one image and its label document, and lets the current tool edit the label.

    Signals:
        hover_changed(x, y, cls): image pixel under the cursor and its class (-1, -1, -1 off
            the image).
        zoom_changed(scale): display pixels per image pixel.
        edited(): an undo step was added (stroke, fill or polygon finished).
        face_drawn(box): the face-box tool drew (x0, y0, x1, y1) in image pixels.
        face_removal_requested(face): the face-box tool asks to remove this Face.
        assist_message(text): a click tool cannot work (no model yet, a protected class), for
            the message bar.
    """

    hover_changed = Signal(int, int, int)
    zoom_changed = Signal(float)
    edited = Signal()
    face_drawn = Signal(object)
    face_removal_requested = Signal(object)
    assist_message = Signal(str)  # a click tool cannot work (no model yet, a protected class)

    def __init__(self, state: ToolState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.document: LabelDocument | None = None
        self.overlay: LabelOverlay | None = None
        self._confidence: np.ndarray | None = None  # the model's, for this image, if known
        self._heat: HeatOverlay | None = None
        self.heat_visible = False
        self.faces: list[Face] = []  # of the shown image, in image pixels
        self.faces_visible = False
        self.selected_face: int | None = None  # index into `faces` (the face-box tool's)
        self.scale = 1.0
        self.offset = QPointF(0, 0)  # widget position of image pixel (0, 0)
        self.cursor_pos: QPointF | None = None
        self._qimage: QImage | None = None
        self._image_buffer: np.ndarray | None = None
        self.assist: AssistContext | None = None  # image and model for the assisted tools
        self._tools: dict = make_tools()
        self._pan_anchor: QPointF | None = None
        self._space_down = False
        self.read_only = False  # a project opened to look only: a left drag pans, nothing paints
        # Fitted, and not zoomed or panned since: a resize (a dock opening, the window)
        # fits again instead of cutting the image's edge off.
        self._keep_fit = True
        # Pixels of the canvas's top under a widget floating over it (the message bar): a fit,
        # or a region shown, keeps below them; nothing moves when that widget comes or goes.
        self.covered_top: Callable[[], int] = lambda: 0
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setMinimumSize(200, 200)
        state.tool_changed.connect(self._on_tool_changed)
        state.radius_changed.connect(lambda _r: self._update_preview())
        state.opacity_changed.connect(lambda _o: self.update())
        state.overlay_visible_changed.connect(lambda _v: self.update())
        state.outline_changed.connect(self._on_outline_changed)
        self._on_tool_changed(state.tool.value)

    # ----------------------------------------------------------------- content
    @property
    def tool(self) -> CanvasTool:
        return self._tools[self.state.tool]

    def set_content(
        self, image: np.ndarray | None, document: LabelDocument | None, keep_view: bool = False
    ) -> None:
        """Show `image` (H, W, 3) or (H, W) uint8 with `document` (same H, W); None clears.

        Args:
            keep_view: keep zoom and pan (same-size images), else fit the image to the view.
        """
        self.tool.cancel(self)
        if self.document is not None and self._on_doc_change in self.document.on_change:
            self.document.on_change.remove(self._on_doc_change)
        self.document = document
        self._confidence = self._heat = None  # they belong to the previous image
        self.faces, self.selected_face = [], None
        self.hover_changed.emit(-1, -1, -1)  # the readout named the previous image's pixel
        if image is None or document is None:
            self._qimage = self._image_buffer = None
            self.overlay = None
            self.update()
            return
        if image.shape[:2] != document.label.shape:
            raise ValueError(f"image is {image.shape[:2]} but its label is {document.label.shape}")
        same_size = self._qimage is not None and (self._qimage.width(), self._qimage.height()) == (
            image.shape[1],
            image.shape[0],
        )
        self._qimage, self._image_buffer = image_to_qimage(image)
        self.overlay = LabelOverlay(document.label, self.state.label_set, self.state.outline)
        document.on_change.append(self._on_doc_change)
        self.tool.activate(self)
        if keep_view and same_size:
            self.update()
        else:
            self.zoom_fit()
        if self.cursor_pos is not None:  # the cursor rests on the canvas: read the new image
            self._emit_hover(*self.widget_to_image(self.cursor_pos))

    def set_heat(self, confidence: np.ndarray | None) -> None:
        """The model's (H, W) top-class probability for the shown image (None: not known).

        Shown as an uncertainty heat overlay while `heat_visible`; a map of another size than
        the image is ignored. The overlay is coloured only when shown (it costs tens of ms on a
        large photo, which the GUI thread should not spend for a view that is off).
        """
        if confidence is not None and self._qimage is not None:
            if tuple(confidence.shape) != (self._qimage.height(), self._qimage.width()):
                confidence = None
        self._confidence = confidence if self._qimage is not None else None
        self._heat = None
        if self.heat_visible:
            self.update()

    @property
    def has_heat(self) -> bool:
        """Whether the shown image has a confidence map (from the model)."""
        return self._confidence is not None

    @property
    def heat(self) -> HeatOverlay | None:
        """The heat overlay of the shown image, coloured on first use; None when unknown."""
        if self._heat is None and self._confidence is not None:
            self._heat = HeatOverlay(self._confidence, self.state.label_set.num_classes)
        return self._heat

    def set_heat_visible(self, visible: bool) -> None:
        """Show or hide the confidence view (the uncertainty heat overlay)."""
        self.heat_visible = bool(visible)
        self.update()

    def set_faces(self, faces: list[Face]) -> None:
        """The faces of the shown image (drawn while `faces_visible` or the face tool is on)."""
        self.faces = list(faces)
        self.selected_face = None
        self.update()

    def set_faces_visible(self, visible: bool) -> None:
        """Show or hide the faces' boxes and points (always shown with the face-box tool)."""
        self.faces_visible = bool(visible)
        self.update()

    def select_face(self, index: int | None) -> None:
        self.selected_face = index if index is not None and 0 <= index < len(self.faces) else None
        self.update()

    @property
    def shows_faces(self) -> bool:
        return bool(self.faces) and (self.faces_visible or self.state.tool == Tool.FACE)

    def _on_doc_change(self, bbox: Box) -> None:
        if self.overlay is None or self.document is None:
            return
        if self.overlay.label is not self.document.label:
            self.overlay.label = self.document.label
            bbox = None  # the whole array changed identity: recolour all
        x0, y0, w, h = self.overlay.update(bbox)
        self.update(self._image_rect_to_widget(x0, y0, w, h))
        self._refresh_hover()  # the pixel under a resting cursor may have changed class

    def _on_outline_changed(self, outline: bool) -> None:
        if self.overlay is not None:
            self.overlay.set_outline(outline)
            self.update()

    def _on_tool_changed(self, _name: str) -> None:
        for tool in self._tools.values():
            if tool is not self.tool:
                tool.cancel(self)
        self.setCursor(self.tool.cursor)
        self.tool.activate(self)
        self.update()

    # ------------------------------------------------------------- geometry
    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the shown image, (0, 0) when empty."""
        return (0, 0) if self._qimage is None else (self._qimage.width(), self._qimage.height())

    def contains(self, x: int, y: int) -> bool:
        w, h = self.image_size
        return 0 <= x < w and 0 <= y < h

    def image_to_widget(self, x: float, y: float) -> QPointF:
        """Widget point of image point (x, y); pixel (i, j)'s centre is (i + 0.5, j + 0.5)."""
        return QPointF(self.offset.x() + x * self.scale, self.offset.y() + y * self.scale)

    def widget_to_image(self, p: QPointF) -> tuple[float, float]:
        return ((p.x() - self.offset.x()) / self.scale, (p.y() - self.offset.y()) / self.scale)

    def _image_rect_to_widget(self, x0: int, y0: int, w: int, h: int) -> QRect:
        tl = self.image_to_widget(x0, y0)
        return (
            QRectF(tl.x(), tl.y(), w * self.scale, h * self.scale)
            .toAlignedRect()
            .adjusted(-1, -1, 1, 1)
        )

    # ----------------------------------------------------------------- zoom/pan
    def zoom_fit(self) -> None:
        """Scale the whole image into the view, centred."""
        w, h = self.image_size
        if w:
            self.show_region(0, 0, w, h, fill=0.98, keep_fit=True)

    def show_region(
        self, x0: float, y0: float, x1: float, y1: float, fill: float = 1.0, keep_fit: bool = False
    ) -> None:
        """Zoom and pan so that the image box (x0, y0, x1, y1) fills ``fill`` of the view,
        centred; ``keep_fit``: refit it when the view is resized (the whole image)."""
        w, h = max(1.0, x1 - x0), max(1.0, y1 - y0)
        top = min(max(0, self.covered_top()), self.height() // 2)  # the message bar, if shown
        vw, vh = max(1, self.width()), max(1, self.height() - top)
        self._set_scale(min(vw / w, vh / h) * fill)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        self.offset = QPointF(vw / 2 - cx * self.scale, top + vh / 2 - cy * self.scale)
        self._keep_fit = keep_fit
        self.update()
        self._refresh_hover()

    def zoom_actual(self) -> None:
        """One image pixel per display pixel, keeping the view centre."""
        self.zoom_to(1.0, QPointF(self.width() / 2, self.height() / 2))

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Multiply the scale by `factor`, keeping the image point under `anchor` in place."""
        self.zoom_to(self.scale * factor, anchor)

    def zoom_to(self, scale: float, anchor: QPointF | None = None) -> None:
        if anchor is None:
            anchor = QPointF(self.width() / 2, self.height() / 2)
        ix, iy = self.widget_to_image(anchor)
        self._set_scale(scale)
        self.offset = QPointF(anchor.x() - ix * self.scale, anchor.y() - iy * self.scale)
        self._keep_fit = False
        self.update()
        self._refresh_hover()

    def pan_by(self, dx: float, dy: float) -> None:
        self.offset += QPointF(dx, dy)
        self._keep_fit = False
        self.update()
        self._refresh_hover()

    def _set_scale(self, scale: float) -> None:
        scale = max(MIN_SCALE, min(MAX_SCALE, scale))
        if scale != self.scale:
            self.scale = scale
            self.zoom_changed.emit(scale)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        if self._keep_fit:
            self.zoom_fit()

    # ------------------------------------------------------------------ painting
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt API)
        painter = QPainter(self)
        exposed = event.rect()
        painter.fillRect(exposed, BACKGROUND)
        if self._qimage is not None:
            src, dst = self._visible_source(QRectF(exposed))
            if src is not None:
                # Smooth when shrinking (less aliasing), blocky when enlarging (see pixels).
                painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.scale < 1)
                painter.drawImage(dst, self._qimage, src)
                if self.overlay is not None and self.state.overlay_visible:
                    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
                    painter.setOpacity(self.state.opacity if not self.state.outline else 1.0)
                    painter.drawImage(dst, self.overlay.image, src)
                    painter.setOpacity(1.0)
                heat = self.heat if self.heat_visible else None
                if heat is not None:
                    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
                    painter.drawImage(dst, heat.image, src)
            if self.shows_faces:
                paint_faces(
                    painter, self.faces, self.image_to_widget, self.selected_face, self.state.tool == Tool.FACE,
                    self.image_size, QRectF(self.rect()).adjusted(0, max(0, self.covered_top()), 0, 0),
                )  # fmt: skip (captions clear of the message bar)
        self.tool.paint(self, painter)
        painter.end()

    def _visible_source(self, exposed: QRectF) -> tuple[QRectF | None, QRectF]:
        """Image pixels (whole) covering the exposed widget rect, and where they land."""
        w, h = self.image_size
        x0, y0 = self.widget_to_image(exposed.topLeft())
        x1, y1 = self.widget_to_image(exposed.bottomRight())
        x0, y0 = max(0, math.floor(x0)), max(0, math.floor(y0))
        x1, y1 = min(w, math.ceil(x1) + 1), min(h, math.ceil(y1) + 1)
        if x1 <= x0 or y1 <= y0:
            return None, QRectF()
        src = QRectF(x0, y0, x1 - x0, y1 - y0)
        tl = self.image_to_widget(x0, y0)
        return src, QRectF(tl.x(), tl.y(), src.width() * self.scale, src.height() * self.scale)

    def _update_preview(self, old: QRectF | None = None) -> None:
        rect = self.tool.preview_rect(self)
        if old is not None and not old.isEmpty():
            rect = rect.united(old) if not rect.isEmpty() else old
        if not rect.isEmpty():
            self.update(rect.toAlignedRect())

    # -------------------------------------------------------------------- input
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        pos = event.position()
        if event.button() == Qt.MouseButton.MiddleButton or (
            event.button() == Qt.MouseButton.LeftButton and (self._space_down or self.read_only)
        ):  # a read-only project's canvas only looks: a drag pans
            self._pan_anchor = pos
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if event.button() == Qt.MouseButton.LeftButton and self._qimage is not None:
            if self.tool.edits_labels:
                self.state.show_labels()  # H or the slider hid them to look: never edit unseen
            self.tool.press(self, *self.widget_to_image(pos))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        pos = event.position()
        if self._pan_anchor is not None:
            delta = pos - self._pan_anchor
            self._pan_anchor = pos
            self.pan_by(delta.x(), delta.y())
            return
        old = self.tool.preview_rect(self)
        self.cursor_pos = pos
        x, y = self.widget_to_image(pos)
        if self._qimage is not None:
            dragging = bool(event.buttons() & Qt.MouseButton.LeftButton)
            self.tool.move(self, x, y, dragging)
        self._update_preview(old)
        self._emit_hover(x, y)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        if self._pan_anchor is not None and event.button() in (
            Qt.MouseButton.MiddleButton,
            Qt.MouseButton.LeftButton,
        ):
            self._pan_anchor = None
            self.setCursor(Qt.CursorShape.OpenHandCursor if self._space_down else self.tool.cursor)
            return
        if event.button() == Qt.MouseButton.LeftButton and self._qimage is not None:
            self.tool.release(self, *self.widget_to_image(event.position()))

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        if event.button() == Qt.MouseButton.LeftButton and self._qimage is not None:
            self.tool.double_click(self, *self.widget_to_image(event.position()))

    def leaveEvent(self, event) -> None:  # noqa: N802 (Qt API)
        old = self.tool.preview_rect(self)
        self.cursor_pos = None
        self._update_preview(old)
        self.hover_changed.emit(-1, -1, -1)
        super().leaveEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 (Qt API)
        notches = event.angleDelta().y() / 120
        if not notches:
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            old = self.tool.preview_rect(self)
            self.state.grow_radius(1 if notches > 0 else -1)
            self._update_preview(old)
        else:
            self.zoom_by(WHEEL_STEP**notches, event.position())
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space_down = True
                self.setCursor(Qt.CursorShape.OpenHandCursor)
            return
        if not self.tool.key(self, event):
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            self._pan_anchor = None
            self.setCursor(self.tool.cursor)
            return
        super().keyReleaseEvent(event)

    def _refresh_hover(self) -> None:
        """Name the pixel under a cursor resting on the canvas again (after an edit or a
        change of view: the readout named what was there before)."""
        if self.cursor_pos is not None:
            self._emit_hover(*self.widget_to_image(self.cursor_pos))

    def _emit_hover(self, x: float, y: float) -> None:
        px, py = int(x // 1), int(y // 1)
        if self.document is not None and self.contains(px, py):
            self.hover_changed.emit(px, py, int(self.document.label[py, px]))
        else:
            self.hover_changed.emit(-1, -1, -1)

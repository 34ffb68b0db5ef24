"""Drawing the faces of the shown photo on the canvas: each face's box, and its eye, nose and
mouth points when known. Found faces and faces drawn by the annotator look different, and the
face the face-box tool has selected stands out."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QPointF, QRectF, QSizeF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen

from trainer.faces import Face

# source -> (colour, pen style, caption)
STYLES: dict[str, tuple[QColor, Qt.PenStyle, str]] = {
    "detector": (QColor(0, 229, 255), Qt.PenStyle.SolidLine, "found"),
    "user": (QColor(255, 179, 0), Qt.PenStyle.DashLine, "drawn"),
    "label": (QColor(118, 255, 3), Qt.PenStyle.DotLine, "from label"),
}
SHADOW = QColor(0, 0, 0, 170)
POINT_RADIUS = 3.0  # widget pixels


def caption(face: Face) -> str:
    """The short text beside a face's box: who found it (and the finder's confidence)."""
    text = STYLES.get(face.source, STYLES["detector"])[2]
    return f"{text} {face.score:.2f}" if face.source == "detector" else text


def place_caption(box: QRectF, size: QSizeF, bounds: QRectF, taken: Sequence[QRectF]) -> QRectF | None:
    """Where a face's caption goes: above the box's top-left corner, else just inside it, else
    below the box; moved inside ``bounds`` (never cut by the canvas's edge) and clear of the
    captions already ``taken`` (faces side by side); None when no place is free.

    Args:
        box: the face's box, in widget pixels.
        size: the caption's size, in widget pixels.
        bounds: where captions may go (the canvas, less what covers it).
        taken: the captions placed so far.
    """
    w, h = size.width(), size.height()
    if not box.intersects(bounds) or w > bounds.width() or h > bounds.height():
        return None
    for x, y in ((box.left() + 2, box.top() - h - 1), (box.left() + 4, box.top() + 2), (box.left() + 2, box.bottom() + 2)):
        x = min(max(x, bounds.left() + 1), bounds.right() - w - 1)
        y = min(max(y, bounds.top() + 1), bounds.bottom() - h - 1)
        rect = QRectF(x, y, w, h)
        if not any(rect.intersects(t) for t in taken):
            return rect
    return None


def paint_faces(
    painter: QPainter,
    faces: Sequence[Face],
    to_widget: Callable[[float, float], QPointF],
    selected: int | None = None,
    removable: bool = True,
    image_size: tuple[int, int] | None = None,
    bounds: QRectF | None = None,
) -> list[QRectF | None]:
    """Draw every face's box (and points) in widget coordinates, and its caption.

    Args:
        painter: the canvas painter.
        faces: the faces, in image pixels.
        to_widget: image point -> widget point.
        selected: index of the face to highlight, if any.
        removable: whether Delete removes the selected face now (the face-box tool is on).
        image_size: (width, height) of the photo: points past its edges (a face cut by the
            frame) are not drawn; its box may reach past them, as the face does.
        bounds: where captions may go, in widget pixels (default: all of the painted device).

    Returns:
        Each face's caption rectangle in widget pixels, or None where there was no room for it
        (the selected face's caption is placed first).
    """
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    font = QFont(painter.font())
    font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
    painter.setFont(font)
    rects: list[QRectF] = []
    for i, face in enumerate(faces):
        colour, style, _ = STYLES.get(face.source, STYLES["detector"])
        chosen = i == selected
        width = 3.0 if chosen else 2.0
        rect = QRectF(to_widget(face.box[0], face.box[1]), to_widget(face.box[2], face.box[3]))
        rects.append(rect)
        # A dark line under the coloured one keeps the box visible on light and dark photos.
        painter.setPen(QPen(SHADOW, width + 2, Qt.PenStyle.SolidLine))
        painter.drawRect(rect)
        painter.setPen(QPen(QColor(255, 255, 255) if chosen else colour, width, style))
        painter.drawRect(rect)
        if face.landmarks is not None:
            painter.setPen(QPen(SHADOW, 1))
            painter.setBrush(colour)
            for x, y in face.landmarks:
                if image_size is not None and not (0 <= x <= image_size[0] and 0 <= y <= image_size[1]):
                    continue
                painter.drawEllipse(to_widget(float(x), float(y)), POINT_RADIUS, POINT_RADIUS)
            painter.setBrush(Qt.BrushStyle.NoBrush)
    device = painter.device()
    bounds = bounds if bounds is not None else QRectF(0, 0, device.width(), device.height())
    metrics = QFontMetricsF(font)
    placed: list[QRectF | None] = [None] * len(faces)
    order = sorted(range(len(faces)), key=lambda i: i != selected)  # the selected face's first
    for i in order:
        face = faces[i]
        text = caption(face) + ("  (Delete removes it)" if i == selected and removable else "")
        size = metrics.size(0, text) + QSizeF(2, 0)
        spot = place_caption(rects[i], size, bounds, [r for r in placed if r is not None])
        placed[i] = spot
        if spot is None:
            continue
        align = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        painter.setPen(QPen(SHADOW))
        painter.drawText(spot.translated(1, 1), align, text)
        painter.setPen(QPen(STYLES.get(face.source, STYLES["detector"])[0]))
        painter.drawText(spot, align, text)
    painter.restore()
    return placed

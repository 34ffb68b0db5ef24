"""The simulated annotator's tools and their prices (issue 32 §1); ``bench.annotator_sim`` runs it.

Each tool proposes one edit of a wrong region (:class:`Move`): the actions an annotator makes
(clicks, strokes, drags, keys), their price in seconds from the Keystroke-Level Model, and a
function that makes the edit through the app's own :class:`~faceparse_app.document.LabelDocument`
(so brush, fill, polygon and the assisted tools paint exactly as the canvas paints).

Operator times (Card, Moran & Newell, "The Keystroke-Level Model for User Performance Time with
Interactive Systems", CACM 23(7), 1980; and their book "The Psychology of Human-Computer
Interaction", 1983):

    K  0.28 s  a key (average non-secretarial typist, 40 wpm)
    P  1.10 s  point with the mouse to a target on the screen
    B  0.10 s  press or release the mouse button (a click is BB, 0.2 s)
    H  0.40 s  move a hand between keyboard and mouse (not charged: the left hand stays on the keys)
    M  1.35 s  mental preparation: charged once per region fixed (find it, choose the tool)

Prices: a click P + BB = 1.3 s; a box drag P + B + P + B = 2.4 s; a brush stroke P + B, then one
P per started 100 px of path (dragging along a path is pointing, Fitts-limited), then B; a
switch of tool, class or brush-size step one K.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from faceparse_app.document import LabelDocument

K, P, B, M = 0.28, 1.10, 0.10, 1.35
CLICK = P + 2 * B
DRAG_BOX = 2 * P + 2 * B
STROKE_PX_PER_P = 100.0
RADII = (1, 2, 3, 5, 8, 12)  # the brush sizes the simulated annotator uses ([ and ] step them)
BASIC = ("fill", "polygon", "brush")
ASSISTED = ("relabel", "scissors", "zoom", "grabcut")


@dataclass
class Region:
    """One wrong region: 8-connected pixels whose truth is one class ``cls``.

    Attributes:
        box: (x0, y0, x1, y1) end exclusive.
        mask: (y1 - y0, x1 - x0) bool.
        cls: the true class.
        area: pixels.
    """

    box: tuple[int, int, int, int]
    mask: np.ndarray
    cls: int
    area: int

    @property
    def key(self) -> tuple[int, int, int, int, int, int]:
        return (*self.box, self.cls, self.area)

    def inner_point(self) -> tuple[int, int]:
        """The region's pixel farthest from its border (x, y): where a click lands."""
        dist = cv2.distanceTransform(np.pad(self.mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        return int(x) + self.box[0], int(y) + self.box[1]


@dataclass
class Move:
    """An edit proposed for a region: the tool, its actions and seconds, and how to make it."""

    tool: str
    actions: int
    seconds: float
    apply: Callable[[LabelDocument], object]
    cls: int
    radius: int | None = None


def wrong_regions(label: np.ndarray, truth: np.ndarray, num_classes: int) -> list[Region]:
    """Every wrong region, the largest first."""
    wrong = label != truth
    out: list[Region] = []
    for c in np.unique(truth[wrong]):
        n, comp, stats, _ = cv2.connectedComponentsWithStats((wrong & (truth == c)).astype(np.uint8), connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            out.append(Region((x, y, x + w, y + h), comp[y : y + h, x : x + w] == i, int(c), area))
    out.sort(key=lambda r: -r.area)
    return out


def target_shape(region: Region, label: np.ndarray, reach: int = 6) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The shape an annotator outlines to fix a region: the region plus the pixels near it that
    already have its class (painting them changes nothing, so the outline may cut through them
    instead of following the wrong side of a sliver). Returns (box, mask)."""
    h, w = label.shape
    x0, y0, x1, y1 = region.box
    bx0, by0, bx1, by1 = max(0, x0 - reach), max(0, y0 - reach), min(w, x1 + reach), min(h, y1 + reach)
    mask = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
    mask[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0] = region.mask
    free = label[by0:by1, bx0:bx1] == region.cls
    near = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=reach).astype(bool)
    shape = mask.astype(bool) | (free & near)
    shape = cv2.morphologyEx(shape.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool)
    shape |= mask.astype(bool)
    return (bx0, by0, bx1, by1), shape


def outline(box: tuple[int, int, int, int], mask: np.ndarray, eps: float) -> list[np.ndarray]:
    """Outer contours of ``mask`` simplified to ``eps`` px, in image pixels, largest first."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contours = sorted(contours, key=lambda c: -cv2.contourArea(c))
    out = []
    for c in contours:
        if len(c) < 3:
            continue
        poly = cv2.approxPolyDP(c, eps, True).reshape(-1, 2) + np.array(box[:2])
        if len(poly) >= 3:
            out.append(poly)
    return out


def skeleton_strokes(box: tuple[int, int, int, int], mask: np.ndarray) -> list[np.ndarray]:
    """Brush paths along a mask's skeleton, in image pixels (one per skeleton piece)."""
    from skimage.morphology import skeletonize

    skel = skeletonize(np.pad(mask, 1)).astype(np.uint8)[1:-1, 1:-1]
    if not skel.any():
        skel = mask.astype(np.uint8)
    contours, _ = cv2.findContours(skel, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    strokes = []
    for c in contours:
        pts = c.reshape(-1, 2)
        # A thin curve's contour runs along it and back: half of it is the curve.
        half = pts[: max(1, (len(pts) + 1) // 2)] if len(pts) > 2 else pts
        strokes.append(half + np.array(box[:2]))
    return strokes


def path_length(pts: np.ndarray) -> float:
    return float(np.hypot(*np.diff(pts.astype(np.float64), axis=0).T).sum()) if len(pts) > 1 else 0.0


def stroke_seconds(length: float) -> float:
    return P + B + P * max(1, int(np.ceil(length / STROKE_PX_PER_P))) + B


def brush_moves(region: Region, label: np.ndarray) -> list[Move]:
    """Strokes along the skeleton of the region, and of its target shape (the stroke then runs
    off-centre into pixels already of the class, sparing the other side), each with the
    smallest radius that covers the shape's width (capped at 12)."""
    box, shape = target_shape(region, label)
    return [_brush(region, region.box, region.mask), _brush(region, box, shape)]


def _brush(region: Region, box: tuple[int, int, int, int], mask: np.ndarray) -> Move:
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)
    need = float(dist.max())
    radius = next((r for r in RADII if r >= need), RADII[-1])
    strokes = skeleton_strokes(box, mask)
    seconds = sum(stroke_seconds(path_length(s)) for s in strokes)

    def apply(doc: LabelDocument) -> object:
        for s in strokes:
            doc.begin_stroke(region.cls)
            step = max(1, radius)
            for x, y in s[::step].tolist() + [s[-1].tolist()]:
                doc.stroke_to(float(x), float(y), float(radius))
            doc.end_stroke()
        return None

    return Move("eraser" if region.cls == 0 else "brush", len(strokes), seconds, apply, region.cls, radius)


def fill_move(region: Region) -> Move:
    x, y = region.inner_point()
    return Move("fill", 1, CLICK, lambda doc: doc.flood_fill(x, y, region.cls), region.cls)


def polygon_moves(region: Region, label: np.ndarray) -> list[Move]:
    """Polygons that fill the region with its true class."""
    box, shape = target_shape(region, label)
    moves = []
    if region.area <= 2:  # a pixel or two: three clicks on them (a polygon of one pixel)
        ys, xs = np.nonzero(region.mask)
        pixels = [(int(x) + region.box[0], int(y) + region.box[1]) for y, x in zip(ys, xs, strict=True)]
        pts = (pixels * 3)[:3]
        return [Move("polygon", 4, 3 * CLICK + K, lambda doc: doc.fill_polygon(pts, region.cls), region.cls)]
    # Around the target shape at three tolerances (a careful to a quick outline), and around the
    # region itself vertex by pixel corner (a sliver one pixel thick, between two classes).
    shapes = [(box, shape, eps) for eps in (1.0, 2.0, 4.0)] + [(region.box, region.mask, 0.5)]
    for where, mask, eps in shapes:
        polys = outline(where, mask, eps)[:1]
        if not polys:
            continue
        poly = polys[0]
        pts = [tuple(map(int, p)) for p in poly]
        moves.append(
            Move("polygon", len(pts) + 1, len(pts) * CLICK + K,
                 lambda doc, pts=pts: doc.fill_polygon(pts, region.cls), region.cls)
        )  # fmt: skip
    return moves


def switch_seconds(move: Move, tool: str | None, cls: int | None, radius: int | None) -> tuple[int, float]:
    """Keys (and seconds) to get from the current tool, class and brush size to ``move``'s."""
    keys = int(move.tool != tool)
    if move.tool not in ("eraser", "zoom", "relabel") and move.cls != cls:
        keys += 1
    if move.radius is not None and radius is not None and move.radius != radius:
        keys += abs(RADII.index(move.radius) - RADII.index(radius))
    return keys, keys * K

"""Geometry of the painting tools: brush segments, flood fill regions, polygons.

Coordinates are label-map pixels as floats: x is the column, y the row, and pixel (col, row)
has its centre at (col, row). Every function works only inside the bounding box of what it
touches, so a segment on a 4000×4000 label costs no more than one on a 64×64 label.

A bbox here is (x0, y0, x1, y1) with x1, y1 exclusive, clipped to the label map; it may be empty
(x1 <= x0 or y1 <= y0), in which case the mask has a zero-size side.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

BBox = tuple[int, int, int, int]


def _clip_box(x0: float, y0: float, x1: float, y1: float, shape: tuple[int, ...]) -> BBox:
    h, w = int(shape[0]), int(shape[1])
    bx0 = max(0, int(np.floor(x0)))
    by0 = max(0, int(np.floor(y0)))
    bx1 = min(w, int(np.floor(x1)) + 1)
    by1 = min(h, int(np.floor(y1)) + 1)
    return bx0, by0, max(bx0, bx1), max(by0, by1)


def disc_segment_mask(
    p0: tuple[float, float],
    p1: tuple[float, float],
    radius: float,
    shape: tuple[int, ...],
) -> tuple[BBox, np.ndarray]:
    """Pixels covered by a round brush dragged from p0 to p1.

    A pixel is covered when its centre lies within ``radius`` of the segment; the pixels under
    p0 and p1 themselves are always covered, so a tiny brush still paints.

    Args:
        p0: segment start (x, y) in pixels.
        p1: segment end (x, y); equal to p0 for a dot.
        radius: brush radius in pixels (>= 0).
        shape: (H, W) of the label map.

    Returns:
        bbox (x0, y0, x1, y1) exclusive, and a (y1 - y0, x1 - x0) bool mask.
    """
    r = max(0.0, float(radius))
    ax, ay = float(p0[0]), float(p0[1])
    bx, by = float(p1[0]), float(p1[1])
    # The box also holds the pixels under the end points (painted even when r < 0.5).
    box = _clip_box(
        min(ax - r, bx - r, round(ax), round(bx)),
        min(ay - r, by - r, round(ay), round(by)),
        max(ax + r, bx + r, round(ax), round(bx)),
        max(ay + r, by + r, round(ay), round(by)),
        shape,
    )
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return box, np.zeros((max(0, y1 - y0), max(0, x1 - x0)), bool)
    # Distance of each pixel centre to the segment, on the box only (float32 keeps it cheap).
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(ax)
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(ay)
    dx, dy = np.float32(bx - ax), np.float32(by - ay)
    length2 = float(dx * dx + dy * dy)
    if length2 > 0.0:
        t = np.clip((xs * dx + ys * dy) / np.float32(length2), 0.0, 1.0)
        ex = xs - t * dx
        ey = ys - t * dy
        dist2 = ex * ex + ey * ey
    else:
        dist2 = xs * xs + ys * ys
    mask = dist2 <= np.float32(r * r)
    for px, py in ((ax, ay), (bx, by)):
        cx, cy = int(round(px)), int(round(py))
        if x0 <= cx < x1 and y0 <= cy < y1:
            mask[cy - y0, cx - x0] = True
    return box, mask


def flood_region(label: np.ndarray, x: float, y: float) -> tuple[BBox, np.ndarray]:
    """The 4-connected region of equal class around pixel (x, y).

    Args:
        label: (H, W) uint8 label map.
        x: column of the clicked pixel (rounded).
        y: row of the clicked pixel (rounded).

    Returns:
        bbox (x0, y0, x1, y1) exclusive of the region and its (h, w) bool mask; an empty box
        when (x, y) lies outside the map.
    """
    h, w = label.shape
    cx, cy = int(round(x)), int(round(y))
    if not (0 <= cx < w and 0 <= cy < h):
        return (0, 0, 0, 0), np.zeros((0, 0), bool)
    src = np.ascontiguousarray(label, dtype=np.uint8)
    ff_mask = np.zeros((h + 2, w + 2), np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
    _, _, _, rect = cv2.floodFill(src, ff_mask, (cx, cy), 0, 0, 0, flags)
    rx, ry, rw, rh = (int(v) for v in rect)
    region = ff_mask[1 + ry : 1 + ry + rh, 1 + rx : 1 + rx + rw].astype(bool)
    return (rx, ry, rx + rw, ry + rh), region


def polygon_mask(
    points: Sequence[tuple[float, float]], shape: tuple[int, ...]
) -> tuple[BBox, np.ndarray]:
    """Pixels inside a closed polygon (vertices rounded to pixel centres, edges included).

    Args:
        points: the vertices (x, y) in pixels, in order; fewer than 3 gives an empty mask.
        shape: (H, W) of the label map.

    Returns:
        bbox (x0, y0, x1, y1) exclusive, clipped to the map, and a (y1 - y0, x1 - x0) bool mask.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3 or not np.isfinite(pts).all():
        return (0, 0, 0, 0), np.zeros((0, 0), bool)
    ipts = np.round(pts).astype(np.int64)
    box = _clip_box(ipts[:, 0].min(), ipts[:, 1].min(), ipts[:, 0].max(), ipts[:, 1].max(), shape)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return box, np.zeros((max(0, y1 - y0), max(0, x1 - x0)), bool)
    local = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shifted = (ipts - np.array([x0, y0])).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(local, [shifted], 1, lineType=cv2.LINE_8)
    return box, local.astype(bool)

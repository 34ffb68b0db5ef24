"""The boundary tool's paths (live-wire, Qt-free): between two clicked points the path follows
image edges (OpenCV's ``segmentation.IntelligentScissorsMB``), and the closed outline keeps no
spur to a point clicked beside an edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

BoxXYXY = tuple[int, int, int, int]  # x0, y0, x1, y1 (end exclusive), label-map pixels
EDGE_LOW, EDGE_HIGH = 16, 100  # the Canny thresholds of the edges the boundary tool follows
MAX_STUB = 10  # pixels from a point clicked beside an edge to the edge, at most, cut as a stub




class EdgeSnapper:
    """Paths between clicked points that follow image edges (intelligent scissors).

    The edge map is computed on a window of ``window`` pixels around each anchor (a large photo
    costs no more than a small one). A target outside that window (clicks far apart at fit zoom
    on a camera photo) is reached over a copy of the span's box shrunk to at most ``window``
    pixels a side: the path follows the edges at that coarser step (the same cost), and its
    vertices are scaled back to the photo's pixels.

    Args:
        image: (H, W, 3) uint8 RGB.
        window: side of the square searched around an anchor, in pixels.
    """

    def __init__(self, image: np.ndarray, window: int = 384) -> None:
        self.image = np.ascontiguousarray(image)
        self.window = int(window)
        self._anchor: tuple[int, int] | None = None
        self._origin = (0, 0)
        self._tool: Any = None
        self._area: BoxXYXY | None = None
        self._applied: BoxXYXY | None = None

    def set_anchor(self, x: float, y: float) -> None:
        """Start paths at (x, y): builds the distance map around it (tens of milliseconds)."""
        h, w = self.image.shape[:2]
        ax, ay = int(np.clip(round(x), 0, w - 1)), int(np.clip(round(y), 0, h - 1))
        area = self._area
        if area is None or not (area[0] <= ax < area[2] and area[1] <= ay < area[3]):
            half = self.window // 2
            area = (max(0, ax - half), max(0, ay - half), min(w, ax + half), min(h, ay + half))
        if area != self._applied:
            x0, y0, x1, y1 = area
            self._tool, self._applied = _scissors(self.image[y0:y1, x0:x1]), area
        x0, y0 = area[:2]
        self._tool.buildMap((ax - x0, ay - y0))
        self._anchor, self._origin = (ax, ay), (x0, y0)

    def outline(self, pieces: Sequence[Sequence[tuple[int, int]]]) -> list[tuple[int, int]]:
        """The closed outline of ``pieces`` (piece i runs from point i to point i + 1, the last
        back to the first), as polygon vertices, without the stubs to points clicked beside
        an edge.

        A point clicked a few pixels off an edge (as a hand does at fit zoom) sends the piece
        into it from the edge and the next piece back out to the edge: the fill would paint
        that there-and-back stub as a spur. Where both pieces leave the point over pixels off
        every edge and reach an edge within ``MAX_STUB`` pixels, at most two pixels apart, the
        outline goes from one to the other instead. A point clicked on an edge, a sharp
        corner whose sides are edges, is kept.
        """
        paths = [list(p) for p in pieces if len(p)]
        n = len(paths)
        heads, tails = [0] * n, [0] * n
        for i in range(n):
            incoming, outgoing = paths[i - 1], paths[i]
            k_in, k_out = self._stub(incoming[::-1]), self._stub(outgoing)
            a, b = incoming[len(incoming) - 1 - k_in], outgoing[k_out]
            if k_in and k_out and max(abs(a[0] - b[0]), abs(a[1] - b[1])) <= 2:
                tails[i - 1], heads[i] = k_in, k_out
        out: list[tuple[int, int]] = []
        for path, head, tail in zip(paths, heads, tails, strict=True):
            if head + tail >= len(path) - 1:  # a piece shorter than its two stubs: kept whole
                head, tail = 0, 0
            for p in path[head : len(path) - tail]:
                if not out or out[-1] != p:
                    out.append(p)
        while len(out) > 1 and out[-1] == out[0]:
            out.pop()
        return out

    def _stub(self, path: Sequence[tuple[int, int]]) -> int:
        """How many pixels ``path`` runs off every edge from its first pixel (a point clicked
        beside an edge) before it reaches one; 0 when it starts on an edge or reaches none
        within ``MAX_STUB`` pixels."""
        head = path[: MAX_STUB + 2]
        xs, ys = [p[0] for p in head], [p[1] for p in head]
        h, w = self.image.shape[:2]
        x0, y0 = max(0, min(xs) - 1), max(0, min(ys) - 1)
        x1, y1 = min(w, max(xs) + 2), min(h, max(ys) + 2)
        gray = cv2.cvtColor(self.image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        gx, gy = cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)
        strength = np.abs(gx) + np.abs(gy)  # Canny's L1 gradient, in its thresholds' units
        for k, (x, y) in enumerate(head):
            if strength[y - y0, x - x0] >= EDGE_HIGH:
                return k
        return 0

    def use_area(self, box: BoxXYXY | None) -> None:
        """Search within ``box`` (x0, y0, x1, y1) for every anchor inside it (one edge map for
        a whole outline); None: a window around each anchor again."""
        self._area = box

    def path_to(self, x: float, y: float) -> list[tuple[int, int]]:
        """The edge-following path from the anchor to (x, y), anchor first, (x, y) last."""
        if self._anchor is None:
            raise RuntimeError("path_to called before set_anchor")
        h, w = self.image.shape[:2]
        tx, ty = int(np.clip(round(x), 0, w - 1)), int(np.clip(round(y), 0, h - 1))
        x0, y0 = self._origin
        local = (tx - x0, ty - y0)
        wh = self._tool_shape()
        if not (0 <= local[0] < wh[1] and 0 <= local[1] < wh[0]):
            return self.long_path(self._anchor, (tx, ty))
        contour = np.asarray(self._tool.getContour(local)).reshape(-1, 2)
        pts = [(int(px) + x0, int(py) + y0) for px, py in contour]
        if not pts:
            return [self._anchor, (tx, ty)]
        if pts[0] != self._anchor:  # OpenCV returns the path from the target back to the anchor
            pts.reverse()
        return pts

    def long_path(self, a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
        """The edge-following path from ``a`` to ``b`` (image pixels) over a shrunk copy of the
        box around both (with a margin for the edge to bow out); ``a`` first, ``b`` last."""
        h, w = self.image.shape[:2]
        margin = max(32, max(abs(b[0] - a[0]), abs(b[1] - a[1])) // 3)
        x0, y0 = max(0, min(a[0], b[0]) - margin), max(0, min(a[1], b[1]) - margin)
        x1, y1 = min(w, max(a[0], b[0]) + margin + 1), min(h, max(a[1], b[1]) + margin + 1)
        step = max(1, -(-max(x1 - x0, y1 - y0) // self.window))  # ceil: the copy fits the window
        small = cv2.resize(
            self.image[y0:y1, x0:x1],
            (max(1, (x1 - x0) // step), max(1, (y1 - y0) // step)),
            interpolation=cv2.INTER_AREA,
        )
        sh, sw = small.shape[:2]

        def shrink(p: tuple[int, int]) -> tuple[int, int]:
            return min(sw - 1, (p[0] - x0) // step), min(sh - 1, (p[1] - y0) // step)

        tool = _scissors(small)
        tool.buildMap(shrink(a))
        contour = np.asarray(tool.getContour(shrink(b))).reshape(-1, 2)
        half = step // 2
        pts = [(int(px) * step + half + x0, int(py) * step + half + y0) for px, py in contour]
        if len(pts) >= 2 and shrink(a) != tuple(int(v) for v in contour[0]):
            pts.reverse()  # OpenCV returns the path from the target back to the anchor
        return [a, *pts[1:-1], b]

    def _tool_shape(self) -> tuple[int, int]:
        assert self._applied is not None
        x0, y0, x1, y1 = self._applied
        return y1 - y0, x1 - x0


def _scissors(rgb: np.ndarray) -> Any:
    """OpenCV's intelligent scissors with the edge map of ``rgb`` ((H, W, 3) uint8) applied."""
    tool = cv2.segmentation.IntelligentScissorsMB()
    tool.setEdgeFeatureCannyParameters(EDGE_LOW, EDGE_HIGH)
    tool.setGradientMagnitudeMaxLimit(200)
    tool.applyImage(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return tool


def snapped_outline(snapper: EdgeSnapper, anchors: Sequence[tuple[float, float]]) -> list[tuple[int, int]]:
    """The closed outline through ``anchors`` (edge-following between consecutive ones, last
    back to the first), as polygon vertices for ``LabelDocument.fill_polygon``."""
    n = len(anchors)
    pieces = []
    for i in range(n):
        snapper.set_anchor(*anchors[i])
        pieces.append(snapper.path_to(*anchors[(i + 1) % n]))
    return snapper.outline(pieces) if n > 1 else pieces[0]

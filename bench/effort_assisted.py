"""The simulated annotator's moves with the assisted tools (``faceparse_app.assist``): click to
relabel, the edge-snapping boundary tool, zoom re-predict and GrabCut refinement. Prices as in
``bench.effort_policy``."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from bench.effort_policy import CLICK, DRAG_BOX, K, Move, Region, target_shape
from faceparse_app.assist import (
    ClassProbabilities,
    EdgeSnapper,
    Relabeler,
    apply_grabcut,
    repredict_box,
)
from faceparse_app.document import LabelDocument

SNAP_TOLERANCE = 2.0  # px: a live-wire piece is accepted when it stays this close to the outline
SNAP_STEPS = (96, 64, 48, 32, 24, 16, 12, 8)  # contour points between anchors, tried longest first


def relabel_move(region: Region, doc: LabelDocument, probs: ClassProbabilities, cycle: int = 3) -> Move | None:
    """Click the region's inner point until its blob has the true class (at most ``cycle``
    clicks); None when the model never offers it."""
    x, y = region.inner_point()
    start = len(doc.history)
    tool = Relabeler(cycle)
    clicks = 0
    try:
        while clicks < cycle:
            clicks += 1
            if tool.click(doc, probs, x, y) is None:
                return None
            if doc.pick(x, y) == region.cls:
                break
        else:
            return None
    finally:
        while len(doc.history) > start:
            doc.undo()

    def apply(d: LabelDocument, n: int = clicks) -> object:
        t = Relabeler(cycle)
        for _ in range(n):
            t.click(d, probs, x, y)
        return None

    return Move("relabel", clicks, clicks * CLICK, apply, region.cls)


def scissors_move(region: Region, label: np.ndarray, snapper: EdgeSnapper) -> Move | None:
    """Anchors clicked along the target outline, each as far along as the live-wire path from
    the previous one keeps within SNAP_TOLERANCE of the outline; closed with Enter."""
    box, shape = target_shape(region, label)
    found, _ = cv2.findContours(shape.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not found:
        return None
    contour = max(found, key=cv2.contourArea).reshape(-1, 2) + np.array(box[:2])
    n = len(contour)
    if n < 9:
        return None
    h, w = label.shape
    line = np.full((h, w), 255, np.uint8)
    cv2.polylines(line, [contour.reshape(-1, 1, 2).astype(np.int32)], True, 0)
    dist = cv2.distanceTransform(line, cv2.DIST_L2, 3)
    bx0, by0, bx1, by1 = box
    snapper.use_area((max(0, bx0 - 16), max(0, by0 - 16), min(w, bx1 + 16), min(h, by1 + 16)))
    path: list[tuple[int, int]] = []
    anchors = 0
    i = 0
    while i < n:
        anchors += 1
        ax, ay = (int(v) for v in contour[i])
        snapper.set_anchor(ax, ay)
        for step in SNAP_STEPS:
            if step > n // 3 and step != SNAP_STEPS[-1]:
                continue  # three anchors at least: two would outline nothing
            j = min(i + step, n)
            tx, ty = (int(v) for v in contour[j % n])
            piece = snapper.path_to(tx, ty)
            pts = np.array(piece)
            if step == SNAP_STEPS[-1] or dist[pts[:, 1], pts[:, 0]].max() <= SNAP_TOLERANCE:
                path.extend(piece[:-1])
                i = j
                break
    snapper.use_area(None)
    if len(path) < 3:
        return None
    pts_list = [(int(x), int(y)) for x, y in path]
    return Move("scissors", anchors + 1, anchors * CLICK + K,
                lambda doc: doc.fill_polygon(pts_list, region.cls), region.cls)  # fmt: skip


def grow(box: tuple[int, int, int, int], shape: tuple[int, int], share: float, least: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    mx = max(least, int(share * (x1 - x0)))
    my = max(least, int(share * (y1 - y0)))
    h, w = shape
    return max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)


def zoom_move(region: Region, image: np.ndarray, predictor: Any, cache: dict[Any, np.ndarray]) -> Move:
    """Drag a box a quarter larger than the region (at least 8 px each side); the parser
    predicts it zoomed and its labels replace the box's."""
    box = grow(region.box, image.shape[:2], 0.25, 8)
    if box not in cache:
        cache[box] = repredict_box(predictor, image, box)
    values = cache[box]
    x0, y0 = box[:2]
    return Move("zoom", 1, DRAG_BOX,
                lambda doc: doc.replace_where(values, np.ones(values.shape, bool), x0, y0), region.cls)  # fmt: skip


def grabcut_move(region: Region, image: np.ndarray) -> Move:
    """Drag a box half again as large as the region (at least 12 px each side) with the
    region's true class chosen; GrabCut re-draws that class's boundary inside it."""
    box = grow(region.box, image.shape[:2], 0.5, 12)
    return Move("grabcut", 1, DRAG_BOX, lambda doc: apply_grabcut(doc, image, box, region.cls), region.cls)

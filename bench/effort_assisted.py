"""The simulated annotator's moves with the assisted tools: click to relabel and the
edge-snapping boundary tool (``faceparse_app.assist``, in the app), and zoom re-predict and GrabCut
refinement (here only: measured and dropped from the app). Prices as in ``bench.effort_policy``."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from bench.effort_policy import CLICK, DRAG_BOX, K, Move, Region, target_shape
from faceparse_app.assist import BoxXYXY, ClassProbabilities, EdgeSnapper, Relabeler
from faceparse_app.document import LabelDocument
from faceparse_app.history import Delta

# ---------------------------------------------------------------------------------------------
# Zoom re-predict (dropped from the app: measured, it saved nothing)


CONTEXT = 2.0  # the crop predicted is this many times the box's larger side (square)


def zoom_crop(box: BoxXYXY, shape: tuple[int, int], context: float = CONTEXT) -> np.ndarray:
    """The (2, 3) transform image -> network crop (unit side) for a box, centred on it, its side
    ``context`` × the box's larger side."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 8) * float(context)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return np.array([[1.0 / side, 0.0, 0.5 - cx / side], [0.0, 1.0 / side, 0.5 - cy / side]])


def repredict_box(
    predictor: Any, image: np.ndarray, box: BoxXYXY, context: float = CONTEXT
) -> np.ndarray:
    """The parser's labels for the pixels of ``box``, predicted from a square crop around it at
    the network's full input size (zoom re-predict).

    Args:
        predictor: a :class:`trainer.predict.Predictor`.
        image: (H, W, 3) uint8 RGB.
        box: (x0, y0, x1, y1), end exclusive, in image pixels.
        context: the crop's side over the box's larger side.

    Returns:
        (y1 - y0, x1 - x0) uint8 labels.
    """
    from trainer.faces import crop_face

    side = predictor.input_size
    unit = zoom_crop(box, image.shape[:2], context)
    m = unit * np.array([[side], [side]])
    crop = crop_face(image, m, side)
    probs = predictor.logits([crop])[0].float().cpu().numpy()  # (C, S, S)
    x0, y0, x1, y1 = box
    inv = cv2.invertAffineTransform(m)
    # Warp the logits back onto the box only (bilinear on logits, then argmax), as the
    # pre-label does with its crops.
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    to_box = (shift @ np.vstack([inv, [0.0, 0.0, 1.0]]))[:2]
    warped = [
        cv2.warpAffine(p, to_box, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for p in probs
    ]
    return np.argmax(np.stack(warped), axis=0).astype(np.uint8)


def apply_repredict(
    doc: LabelDocument, predictor: Any, image: np.ndarray, box: BoxXYXY, context: float = CONTEXT
) -> Delta | None:
    """Zoom re-predict ``box`` into the document as one undo step (protected classes kept)."""
    box = _clip(box, doc.shape)
    x0, y0, x1, y1 = box
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    values = repredict_box(predictor, image, box, context)
    return doc.replace_where(values, np.ones(values.shape, bool), x0, y0)


# ---------------------------------------------------------------------------------------------
# GrabCut refinement (dropped from the app: no consistent saving)


def grabcut_mask(
    image: np.ndarray, label: np.ndarray, box: BoxXYXY, cls: int, iterations: int = 3
) -> np.ndarray:
    """Where class ``cls`` lies inside ``box`` after GrabCut re-draws its boundary from colour.

    The current label seeds it: pixels of ``cls`` (eroded by 3 px) are sure foreground, pixels
    of other classes farther than 6 px from it sure background, the band between uncertain.

    Returns:
        (y1 - y0, x1 - x0) bool.
    """
    x0, y0, x1, y1 = box
    sub = label[y0:y1, x0:x1] == cls
    kernel = np.ones((3, 3), np.uint8)
    sure_fg = cv2.erode(sub.astype(np.uint8), kernel, iterations=3).astype(bool)
    near = cv2.dilate(sub.astype(np.uint8), kernel, iterations=6).astype(bool)
    mask = np.full(sub.shape, cv2.GC_BGD, np.uint8)
    mask[near] = cv2.GC_PR_BGD
    mask[sub] = cv2.GC_PR_FGD
    mask[sure_fg] = cv2.GC_FGD
    if not sure_fg.any() or (mask == cv2.GC_BGD).sum() + (mask == cv2.GC_PR_BGD).sum() < 16:
        return sub
    bgr = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2BGR)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(bgr, mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def apply_grabcut(
    doc: LabelDocument, image: np.ndarray, box: BoxXYXY, cls: int
) -> Delta | None:
    """Refine class ``cls`` inside ``box``: pixels GrabCut adds become ``cls``; pixels it takes
    away from ``cls`` become the class most common around them (one undo step)."""
    box = _clip(box, doc.shape)
    x0, y0, x1, y1 = box
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    now = doc.label[y0:y1, x0:x1]
    fg = grabcut_mask(image, doc.label, box, cls)
    values = now.copy()
    values[fg] = cls
    lost = (now == cls) & ~fg
    if lost.any():
        others = now[(now != cls)]
        fill = int(np.bincount(others, minlength=doc.num_classes).argmax()) if others.size else 0
        values[lost] = fill
    return doc.replace_where(values, values != now, x0, y0)


def _clip(box: BoxXYXY, shape: tuple[int, int]) -> BoxXYXY:
    h, w = shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


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

"""Assisted correction tools, Qt-free: what the canvas's assisted tools and the simulated
annotator (``bench.annotator_sim``) both call.

- :class:`ClassProbabilities` and :class:`Relabeler`: click a wrongly labeled blob and it takes
  the model's next most probable class there (the mean class probability over the blob's pixels);
  clicking it again cycles on. One undo step per click.
- :class:`EdgeSnapper`: the boundary tool's path between two clicked points follows image edges
  (OpenCV's ``segmentation.IntelligentScissorsMB``, live-wire), so a polygon along a part boundary
  needs a few clicks instead of one per corner.
- :func:`repredict_box`: zoom re-predict: the parser predicts a box (with some context around it)
  at its full input size and the labels inside the box are replaced, as one undo step.
- :func:`grabcut_refine`: GrabCut (OpenCV) re-draws one class's boundary inside a box from the
  image's colours.

Every edit goes through :class:`~faceparse_app.document.LabelDocument`, so each is one undo step
and protected classes stay as they are. Nothing here needs weights beyond the project's parser.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from faceparse_app.document import LabelDocument
from faceparse_app.history import Delta
from faceparse_app.tools import flood_region

BoxXYXY = tuple[int, int, int, int]  # x0, y0, x1, y1 (end exclusive), label-map pixels


# ---------------------------------------------------------------------------------------------
# The model's class probabilities, kept per face crop (a 12-MP photo never needs a full map)


@dataclass(frozen=True)
class CropProbabilities:
    """Class probabilities of one network input.

    Attributes:
        probs: (C, S, S) float32 softmax of the parser's logits.
        transform: (2, 3) image pixels -> crop pixels.
    """

    probs: np.ndarray
    transform: np.ndarray


@dataclass
class ClassProbabilities:
    """The parser's class probabilities over an image, as the crops it parsed.

    A pixel outside every crop is background with probability 1; where crops overlap, the first
    crop that holds the pixel answers.
    """

    num_classes: int
    crops: list[CropProbabilities] = field(default_factory=list)

    @classmethod
    def from_predictor(
        cls, predictor: Any, image: np.ndarray, faces: Sequence[Any] | None = None
    ) -> ClassProbabilities:
        """Run the parser the way its framing parses ``image`` and keep the probabilities.

        Args:
            predictor: a :class:`trainer.predict.Predictor`.
            image: (H, W, 3) uint8 RGB.
            faces: ``detect`` framing: the faces to parse (None: the finder's).
        """
        from trainer.faces import crop_face, parse_transforms

        side = predictor.input_size
        h, w = image.shape[:2]
        whole = np.array([[side / w, 0.0, 0.0], [0.0, side / h, 0.0]])
        transforms: list[np.ndarray] = []
        if predictor.framing == "whole" or abs(h - w) <= 0.05 * max(h, w) and max(h, w) <= 2 * side:
            transforms = [whole]  # an aligned face crop: parsed whole, as the pre-label was
        else:
            found = list(faces) if faces is not None else predictor.find_faces(image)
            transforms = [parse_transforms(f, side)[0] for f in found]
        out = cls(predictor.num_classes)
        if not transforms:
            return out
        crops = [crop_face(image, m, side) for m in transforms]
        logits = predictor.logits(crops)
        probs = logits.float().softmax(dim=1).cpu().numpy()
        out.crops = [CropProbabilities(p, np.asarray(m, np.float64)) for p, m in zip(probs, transforms, strict=True)]
        return out

    def at(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """(C, n) class probabilities at image pixels (ys, xs) (1-D int arrays of length n)."""
        out = np.zeros((self.num_classes, len(ys)), np.float32)
        left = np.ones(len(ys), bool)
        pts = np.stack([xs.astype(np.float64), ys.astype(np.float64), np.ones(len(ys))], axis=1)
        for crop in self.crops:
            side = crop.probs.shape[-1]
            idx = np.flatnonzero(left)
            uv = pts[idx] @ crop.transform.T
            u = np.floor(uv[:, 0]).astype(int)
            v = np.floor(uv[:, 1]).astype(int)
            inside = (u >= 0) & (u < side) & (v >= 0) & (v < side)
            out[:, idx[inside]] = crop.probs[:, v[inside], u[inside]]
            left[idx[inside]] = False
        out[0, left] = 1.0  # outside every crop: background
        return out

    def mean_over(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """(C,) mean probability of each class over image pixels (ys, xs) (1-D int arrays)."""
        ys, xs = _sample(ys, xs)
        return self.at(ys, xs).mean(axis=1) if len(ys) else np.eye(self.num_classes)[0]


def _sample(ys: np.ndarray, xs: np.ndarray, limit: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    if len(ys) <= limit:
        return ys, xs
    pick = np.linspace(0, len(ys) - 1, limit).astype(int)
    return ys[pick], xs[pick]


# ---------------------------------------------------------------------------------------------
# Click to relabel


class Relabeler:
    """Click a wrongly labeled blob to give it the model's next most probable class; a click on
    the blob just relabeled gives the next class after that, and after ``cycle`` alternatives the
    blob's first class comes back.

    The blob is where the model hesitated over this very choice: the pixels 4-connected to the
    click, of the clicked pixel's class, where the model gives the clicked pixel's runner-up
    class at least ``band`` probability (a wrong sliver along a part boundary, not the whole
    part). Where the clicked pixel itself gives its runner-up less than ``band``, the blob is
    the whole connected region of its class (an island the model was sure of).

    Args:
        cycle: alternatives offered before the original class comes back.
        band: the runner-up probability that puts a pixel in the blob.
    """

    def __init__(self, cycle: int = 3, band: float = 0.2) -> None:
        self.cycle = int(cycle)
        self.band = float(band)
        self._blob: tuple[int, int, np.ndarray] | None = None  # x0, y0, mask
        self._order: list[int] = []
        self._index = 0
        self._delta: Delta | None = None

    def reset(self) -> None:
        """Forget the blob being cycled (image switch, another tool)."""
        self._blob, self._order, self._index, self._delta = None, [], 0, None

    def click(self, doc: LabelDocument, probs: ClassProbabilities, x: float, y: float) -> Delta | None:
        """Relabel the blob under (x, y); returns the step recorded, or None (nothing changed:
        outside the map, a protected class, or no other class left)."""
        cx, cy = int(round(x)), int(round(y))
        h, w = doc.shape
        if not (0 <= cx < w and 0 <= cy < h):
            return None
        if self._cycling(doc, cx, cy):
            self._index = (self._index + 1) % len(self._order)
        else:
            cls = doc.pick(cx, cy)
            if cls in doc.protected:
                return None
            x0, y0, mask = self._find_blob(doc, probs, cx, cy, cls)
            ys, xs = np.nonzero(mask)
            mean = probs.mean_over(ys + y0, xs + x0)
            ranked = [int(c) for c in np.argsort(-mean, kind="stable") if int(c) != cls]
            self._blob = (x0, y0, mask)
            self._order = [*ranked[: self.cycle], cls]
            self._index = 0
        x0, y0, mask = self._blob  # type: ignore[misc]
        values = np.full(mask.shape, self._order[self._index], np.uint8)
        self._delta = doc.replace_where(values, mask, x0, y0)
        if self._delta is None:
            self.reset()
        return self._delta

    def _find_blob(
        self, doc: LabelDocument, probs: ClassProbabilities, cx: int, cy: int, cls: int
    ) -> tuple[int, int, np.ndarray]:
        """(x0, y0, mask) of the blob under (cx, cy); see the class docstring."""
        box, region = flood_region(doc.label, cx, cy)
        x0, y0 = box[:2]
        here = probs.at(np.array([cy]), np.array([cx]))[:, 0]
        here[cls] = -1.0
        runner_up = int(np.argmax(here))
        if here[runner_up] < self.band:
            return x0, y0, region
        ys, xs = np.nonzero(region)
        hesitant = np.zeros_like(region)
        hesitant[ys, xs] = probs.at(ys + y0, xs + x0)[runner_up] >= self.band
        n, comp = cv2.connectedComponents(hesitant.astype(np.uint8), connectivity=4)
        return x0, y0, comp == comp[cy - y0, cx - x0]

    def _cycling(self, doc: LabelDocument, cx: int, cy: int) -> bool:
        """Whether (cx, cy) lies in the blob this tool relabeled last and nothing changed since."""
        if self._blob is None or self._delta is None or not doc.history.can_undo:
            return False
        x0, y0, mask = self._blob
        if not (0 <= cy - y0 < mask.shape[0] and 0 <= cx - x0 < mask.shape[1] and mask[cy - y0, cx - x0]):
            return False
        last = doc.history._undo[-1]  # noqa: SLF001 - the step this tool made, still on top?
        return last is self._delta


# ---------------------------------------------------------------------------------------------
# The boundary tool: live-wire paths along image edges


class EdgeSnapper:
    """Paths between clicked points that follow image edges (intelligent scissors).

    The edge map is computed on a window of ``window`` pixels around each anchor (a large photo
    costs no more than a small one); a target outside the window is joined by a straight line.

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
            tool = cv2.segmentation.IntelligentScissorsMB()
            tool.setEdgeFeatureCannyParameters(16, 100)
            tool.setGradientMagnitudeMaxLimit(200)
            tool.applyImage(cv2.cvtColor(self.image[y0:y1, x0:x1], cv2.COLOR_RGB2BGR))
            self._tool, self._applied = tool, area
        x0, y0 = area[:2]
        self._tool.buildMap((ax - x0, ay - y0))
        self._anchor, self._origin = (ax, ay), (x0, y0)

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
            return [self._anchor, (tx, ty)]
        contour = np.asarray(self._tool.getContour(local)).reshape(-1, 2)
        pts = [(int(px) + x0, int(py) + y0) for px, py in contour]
        if not pts:
            return [self._anchor, (tx, ty)]
        if pts[0] != self._anchor:  # OpenCV returns the path from the target back to the anchor
            pts.reverse()
        return pts

    def _tool_shape(self) -> tuple[int, int]:
        assert self._applied is not None
        x0, y0, x1, y1 = self._applied
        return y1 - y0, x1 - x0


def snapped_outline(snapper: EdgeSnapper, anchors: Sequence[tuple[float, float]]) -> list[tuple[int, int]]:
    """The closed outline through ``anchors`` (edge-following between consecutive ones, last
    back to the first), as polygon vertices for ``LabelDocument.fill_polygon``."""
    outline: list[tuple[int, int]] = []
    n = len(anchors)
    for i in range(n):
        snapper.set_anchor(*anchors[i])
        piece = snapper.path_to(*anchors[(i + 1) % n])
        outline.extend(piece[:-1] if n > 1 else piece)
    return outline


# ---------------------------------------------------------------------------------------------
# Zoom re-predict


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
# GrabCut refinement


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


# ---------------------------------------------------------------------------------------------
# What the canvas's assisted tools ask for


class AssistContext:
    """The image on screen and the active parser, for the canvas's assisted tools.

    The parser is loaded from the active model's checkpoint (CPU) the first time a tool needs it,
    and the class probabilities are computed once per image and model version: a face crop's
    forward pass, then kept.

    Args:
        image: returns the (H, W, 3) uint8 RGB image on screen, or None.
        model: returns (checkpoint path or Predictor, version id), or (None, None) for no model.
        faces: returns the faces kept for the image on screen (None: the finder's).
    """

    def __init__(
        self,
        image: Any,
        model: Any,
        faces: Any = None,
    ) -> None:
        self._image, self._model, self._faces = image, model, faces
        self._predictor: tuple[Any, Any] | None = None  # (version, Predictor)
        self._probs: tuple[int, Any, ClassProbabilities] | None = None  # (id(image), version, .)
        self._snapper: tuple[int, EdgeSnapper] | None = None

    def image(self) -> np.ndarray | None:
        return self._image()

    def snapper(self) -> EdgeSnapper | None:
        """The edge-snapping helper for the image on screen."""
        image = self._image()
        if image is None:
            return None
        if self._snapper is None or self._snapper[0] != id(image):
            rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
            self._snapper = (id(image), EdgeSnapper(np.ascontiguousarray(rgb[..., :3])))
        return self._snapper[1]

    def predictor(self) -> Any:
        """The active parser (loaded on first use), or None without a model."""
        source, version = self._model()
        if source is None:
            return None
        if self._predictor is None or self._predictor[0] != version:
            if isinstance(source, str | bytes) or hasattr(source, "__fspath__"):
                from trainer.predict import Predictor

                predictor = Predictor.from_checkpoint(source, device="cpu")
            else:
                predictor = source
            self._predictor = (version, predictor)
        return self._predictor[1]

    def probabilities(self) -> ClassProbabilities | None:
        """The parser's class probabilities over the image on screen, or None (no model, no
        image)."""
        image = self._image()
        if image is None or image.ndim != 3:
            return None
        _, version = self._model()
        if self._probs is not None and self._probs[:2] == (id(image), version):
            return self._probs[2]
        predictor = self.predictor()
        if predictor is None:
            return None
        faces = self._faces() if self._faces is not None else None
        probs = ClassProbabilities.from_predictor(predictor, np.ascontiguousarray(image[..., :3]), faces)
        self._probs = (id(image), version, probs)
        return probs

"""Assisted correction tools, Qt-free: what the canvas's assisted tools and the simulated
annotator (``bench.annotator_sim``) both call.

- :class:`ClassProbabilities` and :class:`Relabeler`: click a wrongly labeled blob and it takes
  the model's next most probable class there (the mean class probability over the blob's pixels);
  clicking it again cycles on. One undo step per click.
- :class:`~faceparse_app.edge_snapper.EdgeSnapper`: the boundary tool's path between two clicked points follows image edges
  (OpenCV's ``segmentation.IntelligentScissorsMB``, live-wire), so a polygon along a part boundary
  needs a few clicks instead of one per corner.

Zoom re-predict and GrabCut refinement were measured too and dropped (``bench.effort_assisted``
keeps them for the simulator; BENCHMARKS.md "Annotation effort" says why).

Every edit goes through :class:`~faceparse_app.document.LabelDocument`, so each is one undo step
and protected classes stay as they are. Nothing here needs weights beyond the project's parser.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from faceparse_app.document import LabelDocument
from faceparse_app.edge_snapper import BoxXYXY, EdgeSnapper
from faceparse_app.history import Delta
from faceparse_app.tools import flood_region

__all__ = ["AssistContext", "BoxXYXY", "ClassProbabilities", "CropProbabilities", "EdgeSnapper", "Relabeler"]


# ---------------------------------------------------------------------------------------------
# The model's class probabilities, kept per face crop (a 12-MP photo never needs a full map)


HAIR_LEVEL = 2  # CropProbabilities.level of the faces zoomed out furthest, for their hair


@dataclass(frozen=True)
class CropProbabilities:
    """Class probabilities of one network input.

    Attributes:
        probs: (C, S, S) float32 softmax of the parser's logits.
        transform: (2, 3) image pixels -> crop pixels.
        level: 0 a face's own crop; 1 the face zoomed out, 2 zoomed out further for its hair
            (``trainer.face_parses``): a level answers only where no lower level's crop does.
    """

    probs: np.ndarray
    transform: np.ndarray
    level: int = 0


@dataclass
class ClassProbabilities:
    """The parser's class probabilities over an image, as the crops it parsed.

    A pixel outside every crop is background with probability 1; where crops overlap, the crop
    surest of its top class there answers, a face's own crop before any face zoomed out (as the
    pre-label is pasted, ``trainer.paste.paste_logits``).
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
        from trainer.face_parses import parse_faces
        from trainer.faces import crop_face

        out = cls(predictor.num_classes)
        if predictor.framing == "whole":
            h, w = image.shape[:2]
            side = predictor.input_size
            m = np.array([[side / w, 0.0, 0.0], [0.0, side / h, 0.0]])
            levels = [(0, predictor.logits([crop_face(image, m, side)])[0], m)]
        else:
            found = list(faces) if faces is not None else predictor.find_faces(image)
            levels = parse_faces(predictor, image, found).levels()
        out.crops = [
            CropProbabilities(x.float().softmax(dim=0).cpu().numpy(), np.asarray(m, np.float64), level)
            for level, x, m in levels
        ]
        return out

    def at(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """(C, n) class probabilities at image pixels (ys, xs) (1-D int arrays of length n)."""
        out = np.zeros((self.num_classes, len(ys)), np.float32)
        best = np.zeros(len(ys), np.float32)  # the answering crop's top-class probability
        left = np.ones(len(ys), bool)  # no face's own crop holds the pixel
        # Pixel centres, as the pre-label samples the crops.
        pts = np.stack([xs + 0.5, ys + 0.5, np.ones(len(ys))], axis=1).astype(np.float64)
        for level in (0, 1, 2):
            for crop in (c for c in self.crops if c.level == level):
                side = crop.probs.shape[-1]
                idx = np.flatnonzero(left)
                uv = pts[idx] @ crop.transform.T
                u = np.floor(uv[:, 0]).astype(int)
                v = np.floor(uv[:, 1]).astype(int)
                inside = (u >= 0) & (u < side) & (v >= 0) & (v < side)
                idx, u, v = idx[inside], u[inside], v[inside]
                here = crop.probs[:, v, u]
                sure = here.max(axis=0)
                take = sure > best[idx]
                out[:, idx[take]] = here[:, take]
                best[idx[take]] = sure[take]
            left &= best == 0
        out[0, left] = 1.0  # outside every crop: background
        return out

    def covers(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """(n,) bool: which image pixels (ys, xs) some crop holds (the model parsed them)."""
        return self.level_at(ys, xs) >= 0

    def level_at(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """(n,) int: the level of the crops answering at image pixels (ys, xs): the lowest level
        whose crop holds the pixel (see :class:`CropProbabilities`), -1 where none does."""
        pts = np.stack([xs + 0.5, ys + 0.5, np.ones(len(ys))], axis=1).astype(np.float64)
        out = np.full(len(ys), 99, int)
        for crop in self.crops:
            side = crop.probs.shape[-1]
            uv = pts @ crop.transform.T
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < side) & (uv[:, 1] >= 0) & (uv[:, 1] < side)
            out[inside] = np.minimum(out[inside], crop.level)
        out[out == 99] = -1
        return out

    def holds(self, x: int, y: int) -> bool:
        """Whether some crop holds image pixel (x, y)."""
        return bool(self.covers(np.array([y]), np.array([x]))[0])

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
    the whole connected region of its class (an island the model was sure of). A blob never
    reaches past the crops the model parsed: a click outside every crop changes nothing (there
    the model has no next class to offer; on a photo's background it relabeled all of it). Hair
    that only the face's widest parse added (past its zoomed-out crop) is a blob of its own: a
    click there relabels that hair, never the rest of the hair it joins. Background the model is
    sure of is an island only where it is enclosed (a hole in a face): the photo's background,
    which reaches the photo's edge or past the crops, changes nothing (in a group photo the faces'
    crops cover most of it, so one click turned the wall and every suit to hair); ``refusal``
    then says why.

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
        self.refusal: str | None = None  # why the last click changed nothing, when it says

    def reset(self) -> None:
        """Forget the blob being cycled (image switch, another tool)."""
        self._blob, self._order, self._index, self._delta = None, [], 0, None

    def click(self, doc: LabelDocument, probs: ClassProbabilities, x: float, y: float) -> Delta | None:
        """Relabel the blob under (x, y); returns the step recorded, or None (nothing changed:
        outside the map, a protected class, or no other class left)."""
        cx, cy = int(round(x)), int(round(y))
        h, w = doc.shape
        self.refusal = None
        if not (0 <= cx < w and 0 <= cy < h):
            return None
        if self._cycling(doc, cx, cy):
            self._index = (self._index + 1) % len(self._order)
        else:
            cls = doc.pick(cx, cy)
            if cls in doc.protected or not probs.holds(cx, cy):
                return None
            blob = self._find_blob(doc, probs, cx, cy, cls)
            if blob is None:
                self.refusal = (
                    "The model is sure this is the photo's background, so relabel has no other "
                    "class to offer here: paint it (B), fill it (F) or outline it (P, S) with the "
                    "class it is."
                )
                self.reset()
                return None
            x0, y0, mask = blob
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
    ) -> tuple[int, int, np.ndarray] | None:
        """(x0, y0, mask) of the blob under (cx, cy), None on the photo's background the model is
        sure of; see the class docstring."""
        box, region = flood_region(doc.label, cx, cy)
        x0, y0 = box[:2]
        ys, xs = np.nonzero(region)
        covered = probs.covers(ys + y0, xs + x0)
        h, w = doc.shape
        reaches_out = not covered.all() or min(box[:2]) == 0 or box[2] == w or box[3] == h
        region[ys, xs] = covered  # what the model parsed
        if probs.level_at(np.array([cy]), np.array([cx]))[0] == HAIR_LEVEL:
            # Hair that only the widest parse added is a blob of its own, never the hair it joins.
            ys, xs = np.nonzero(region)
            region[ys, xs] = probs.level_at(ys + y0, xs + x0) == HAIR_LEVEL
        here = probs.at(np.array([cy]), np.array([cx]))[:, 0]
        here[cls] = -1.0
        runner_up = int(np.argmax(here))
        if here[runner_up] < self.band:
            if cls == 0 and reaches_out:
                return None  # the photo's background, not an island
            hesitant = region
        else:
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
# What the canvas's assisted tools ask for


class AssistContext:
    """The image on screen and the active parser, for the canvas's assisted tools.

    The parser is loaded from the active model's checkpoint (CPU), and the class probabilities are
    computed once per image, model version and set of faces (a face crop's forward pass), on a
    worker thread: :meth:`prefetch` starts it when the relabel tool is chosen or an image is
    shown with it, so a click seldom waits. The image, model and faces callables are read on the caller's thread.

    Args:
        image: returns the (H, W, 3) uint8 RGB image on screen, or None.
        model: returns (checkpoint path or Predictor, version id), or (None, None) for no model.
        faces: returns the faces kept for the image on screen (None: the finder's).
    """

    def __init__(self, image: Any, model: Any, faces: Any = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._image, self._model, self._faces = image, model, faces
        self._predictor: tuple[Any, Any] | None = None  # (version, Predictor); worker thread only
        self._probs: tuple[tuple[int, Any, Any], Future[ClassProbabilities]] | None = None
        self._probs_image: np.ndarray | None = None
        self._snapper: tuple[int, EdgeSnapper] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assist")

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

    def prefetch(self) -> Future[ClassProbabilities] | None:
        """Start computing the probabilities of the image on screen (no wait); None when there is
        no image or no model."""
        image = self._image()
        source, version = self._model()
        if image is None or image.ndim != 3 or source is None:
            return None
        faces = self._faces() if self._faces is not None else None
        # The faces are part of the key: a face box drawn or removed since changes the crops.
        key = (id(image), version, _faces_key(faces))
        if self._probs is None or self._probs[0] != key:
            rgb = np.ascontiguousarray(image[..., :3])
            self._probs = (key, self._pool.submit(self._compute, source, version, rgb, faces))
            # Held while its probabilities are: the next image is never given this one's id.
            self._probs_image = image
        return self._probs[1]

    def probabilities(self) -> ClassProbabilities | None:
        """The parser's class probabilities over the image on screen (waits for them), or None
        (no model, no image)."""
        future = self.prefetch()
        return future.result() if future is not None else None

    def _compute(self, source: Any, version: Any, image: np.ndarray, faces: Any) -> ClassProbabilities:
        if self._predictor is None or self._predictor[0] != version:
            if isinstance(source, str | bytes) or hasattr(source, "__fspath__"):
                from trainer.predict import Predictor

                self._predictor = (version, Predictor.from_checkpoint(source, device="cpu"))
            else:
                self._predictor = (version, source)
        return ClassProbabilities.from_predictor(self._predictor[1], image, faces)


def _faces_key(faces: Sequence[Any] | None) -> tuple | None:
    """What of the faces decides their crops, comparable (a Face holds a landmark array)."""
    if faces is None:
        return None
    return tuple(
        (tuple(f.box), f.box_framing, None if f.landmarks is None else np.asarray(f.landmarks).tobytes())
        for f in faces
    )

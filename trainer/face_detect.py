"""Face finders: a photo in, every face in it out (:class:`trainer.faces.Face`), offline.

A finder is any callable ``finder(image) -> list[Face]`` with a ``name``. The registry maps
names to factories; :func:`get_finder` builds one once per process and caches it.

- ``whole-image``: the whole image is one face (an aligned crop); what ``--framing whole``
  means, as a finder, and what the tests use for their synthetic faces.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import cv2
import numpy as np

from trainer.errors import FaceParseError
from trainer.faces import TEMPLATE, Face, crop_face, invert, similarity_from_points

FaceFinder = Callable[[np.ndarray], list[Face]]


class FinderError(FaceParseError):
    """A face finder is unknown or cannot run here; the message says what to install."""


class WholeImageFinder:
    """Every image is one face, framed edge to edge (an aligned face crop)."""

    name = "whole-image"

    def __call__(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        return [Face(box=(0.0, 0.0, float(w), float(h)), box_framing=(0.5, 0.5, 1.0))]




# -------------------------------------------------------------------- YuNet (libfacedetection)
# The weights are compiled into the ``yuface`` wheel (libfacedetection, 3-clause BSD; see
# trainer/assets/models/MODEL_CARD.md): nothing is downloaded, nothing is unpickled.

# The detector's points on the training crops, in crop units: medians of YuNet's eye points and
# mouth-corner midpoint over the 700 CelebAMask-HQ crops (python -m bench.face_framing). A face's
# raw points are mapped so that framing them to :data:`trainer.faces.TEMPLATE` frames the face
# exactly as these medians sit in a training crop.
YUNET_TEMPLATE: dict[str, tuple[float, float]] = {
    "left_eye": (0.3789, 0.4766),
    "right_eye": (0.6191, 0.4805),
    "mouth": (0.4971, 0.7295),  # 0.021 above the lips' centroid: YuNet's corners sit high
}
# YuNet's box in a training crop, in crop units (centre x, centre y, larger side): the framing of
# a box drawn by hand around a face as the detector would box it (python -m bench.face_framing).
YUNET_BOX_FRAMING = (0.4941, 0.5596, 0.7256)

_BASE_SIDE = 640  # the first pass's long side
_DETECT_PX = 20  # the smallest face (px tall in the detector's input) found reliably
_SMALL_PX = 32  # faces under this in the first pass come from the extra pass
_MIN_INPUT = 320  # smaller photos are enlarged to this long side before detection
_TILE = (680, 880)  # (h, w) of the tiles of the small-face pass
_TILE_OVERLAP = 128  # px: more than any face the small-face pass keeps
_SAME_FACE_IOU = 0.4  # two refined boxes overlapping this much are one face
_REFINE_SIDE = 384  # the side of the upright crop a face is re-detected in (256 is too small for YuNet's points)
_REFINE_CONTEXT = 2.2  # that crop's side in face-box sides


def _raw_detect(bgr: np.ndarray, conf: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """YuNet on a BGR image: (score, box x0 y0 x1 y1, (5, 2) points) per face above ``conf``."""
    from yuface.yuface import detect as c_detect  # the wrapper only adds a size warning

    result = np.asarray(c_detect(np.ascontiguousarray(bgr)), np.float64)
    out = []
    for row in result.reshape(-1, 16):
        score = row[0] / 100.0
        if score < conf:
            continue
        x, y, w, h = row[1:5]
        if w <= 0 or h <= 0:
            continue
        out.append((float(score), np.array([x, y, x + w, y + h]), row[5:15].reshape(5, 2).copy()))
    return out


def _detect_tiled(bgr: np.ndarray, conf: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """:func:`_raw_detect` over overlapping tiles (for small faces in a large image: YuNet's time
    grows faster than the area; four 880×680 tiles take half the time of one 1600×1200 image)."""
    h, w = bgr.shape[:2]
    th, tw = _TILE
    if h <= th * 1.2 and w <= tw * 1.2:
        return _raw_detect(bgr, conf)
    out = []
    for y in _tile_starts(h, th):
        for x in _tile_starts(w, tw):
            for score, box, points in _raw_detect(bgr[y : y + th, x : x + tw], conf):
                shift = np.array([x, y], np.float64)
                out.append((score, box + np.tile(shift, 2), points + shift))
    return out


def _tile_starts(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    count = int(np.ceil((length - _TILE_OVERLAP) / (tile - _TILE_OVERLAP)))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]


def _three(points: np.ndarray) -> np.ndarray:
    """Both eyes and the mouth centre of five points."""
    return np.stack([points[0], points[1], (points[3] + points[4]) / 2])


def _roll(points: np.ndarray) -> float:
    """The in-plane angle of the eye line (radians, image axes: y down)."""
    (lx, ly), (rx, ry) = points[0], points[1]
    return float(np.arctan2(ry - ly, rx - lx))


class YuNetFinder:
    """Faces with YuNet (libfacedetection's CNN), turned upright and framed like training crops.

    1. The photo is detected at 640 px (long side; small photos enlarged to 320) and, when it
       is so large that a ``min_face`` face would be under 20 px there, once more at up to
       ``max_side`` for the small faces only.
    2. Each face is cut out again as an upright square (from its eye line) and re-detected
       there, ``refine`` times: YuNet's points are poor on turned faces (median roll error
       18° on faces turned up to ±45°) and good on upright ones (under 2° after two passes).
    3. Its points are mapped from YuNet's convention to the parser's (:data:`YUNET_TEMPLATE`).

    Args:
        min_face: the smallest face height (photo px) to find in a large photo.
        max_side: cap on the detector's input long side (cost grows with its area).
        conf: score threshold in [0, 1].
        refine: re-detection passes per face.
    """

    name = "yunet"

    def __init__(self, min_face: int = 48, max_side: int = 1600, conf: float = 0.5,
                 refine: int = 2) -> None:
        try:
            import yuface.yuface  # noqa: F401
        except ImportError as exc:
            raise FinderError(
                "the yunet face finder needs the yuface package (pip install yuface); "
                "or use --framing whole for aligned crops"
            ) from exc
        self.min_face, self.max_side, self.conf, self.refine = min_face, max_side, conf, refine
        src = np.array([YUNET_TEMPLATE[k] for k in ("left_eye", "right_eye", "mouth")])
        dst = np.array([TEMPLATE[k] for k in ("left_eye", "right_eye", "mouth")])
        # YuNet-convention points -> parser-convention points, in crop units.
        self._to_parser = similarity_from_points(src, dst)
        self._template = src

    def detection_scales(self, shape: tuple[int, int]) -> list[float]:
        """The factors the photo is resized by for the detection passes: one that fits it in
        640 px (YuNet splits faces much larger than that into parts) and, in a photo so large
        that a ``min_face`` face would be under 20 px there, one more for the small faces."""
        long_side = float(max(shape[:2]))
        if long_side < _MIN_INPUT:
            return [_MIN_INPUT / long_side]
        base = min(1.0, _BASE_SIDE / long_side)
        scales = [base]
        small_side = min(long_side * _DETECT_PX / self.min_face, float(self.max_side))
        if small_side > 1.25 * _BASE_SIDE:
            scales.append(min(1.0, small_side / long_side))
        return scales

    def __call__(self, image: np.ndarray) -> list[Face]:
        rgb = _as_rgb(image)
        h, w = rgb.shape[:2]
        if min(h, w) < 8:
            return []
        scales = self.detection_scales((h, w))
        found = []
        for k, s in enumerate(scales):
            small = rgb if s == 1.0 else cv2.resize(
                rgb, (max(1, round(w * s)), max(1, round(h * s))),
                interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            detect = _raw_detect if k == 0 else _detect_tiled
            for score, box, points in detect(small[:, :, ::-1], self.conf):
                box, points = box / s, points / s
                # The extra pass keeps only the faces too small for the first one.
                if k > 0 and (box[3] - box[1]) * scales[0] >= _SMALL_PX:
                    continue
                found.append((score, box, points))
        faces = []
        for score, box, points in found:
            for _ in range(self.refine):
                refined = self._redetect(rgb, box, points)
                if refined is None:
                    break
                box, points = refined
            faces.append(self._face(score, box, points))
        return _suppress(faces)

    def _redetect(self, rgb: np.ndarray, box: np.ndarray, points: np.ndarray):
        """One pass: the face re-detected in an upright square around it, in photo coordinates;
        None when the detector loses it there."""
        side = _REFINE_CONTEXT * max(box[2] - box[0], box[3] - box[1])
        centre = (box[:2] + box[2:]) / 2
        angle = _roll(points)
        scale = _REFINE_SIDE / side
        c, sn = np.cos(-angle) * scale, np.sin(-angle) * scale
        rot = np.array([[c, -sn], [sn, c]])
        m = np.hstack([rot, (np.array([_REFINE_SIDE / 2] * 2) - rot @ centre)[:, None]])
        crop = crop_face(rgb, m, _REFINE_SIDE)
        found = _raw_detect(crop[:, :, ::-1], self.conf * 0.5)
        if not found:
            return None
        mid = _REFINE_SIDE / 2
        _, cbox, cpoints = min(found, key=lambda f: np.hypot(*((f[1][:2] + f[1][2:]) / 2 - mid)))
        if np.hypot(*((cbox[:2] + cbox[2:]) / 2 - mid)) > 0.25 * _REFINE_SIDE / _REFINE_CONTEXT:
            return None
        inv = invert(m)
        corners = np.array([[cbox[0], cbox[1]], [cbox[2], cbox[1]], [cbox[0], cbox[3]], [cbox[2], cbox[3]]])
        photo_corners = _apply(inv, corners)
        new_box = np.concatenate([photo_corners.min(0), photo_corners.max(0)])
        return new_box, _apply(inv, cpoints)

    def _face(self, score: float, box: np.ndarray, points: np.ndarray) -> Face:
        """A :class:`Face` whose points frame it in the parser's convention."""
        # m: photo -> YuNet-convention unit crop; then correct there and map back.
        m = similarity_from_points(_three(points), self._template)
        correction = np.vstack([self._to_parser, [0, 0, 1]])
        full = np.vstack([m, [0, 0, 1]])
        conj = (np.linalg.inv(full) @ correction @ full)[:2]
        parser_points = _apply(conj, points).astype(np.float32)
        return Face(box=tuple(float(v) for v in box), score=float(score),  # type: ignore[arg-type]
                    landmarks=parser_points, source="detector", box_framing=YUNET_BOX_FRAMING)


def _box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _suppress(faces: list[Face]) -> list[Face]:
    """One face per face: the best-scored of refined boxes that overlap (YuNet can box one
    face twice, from two passes or as two parts), best first."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(_box_iou(face.box, k.box) < _SAME_FACE_IOU for k in kept):
            kept.append(face)
    return kept


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


FINDERS: dict[str, Callable[[], FaceFinder]] = {
    "whole-image": WholeImageFinder,
    "yunet": YuNetFinder,
}
DEFAULT_FINDER = "yunet"


@functools.cache
def get_finder(name: str | None = None) -> FaceFinder:
    """The named finder (default :data:`DEFAULT_FINDER`), built once per process.

    Raises:
        FinderError: unknown, or its package is missing.
    """
    name = name or DEFAULT_FINDER
    try:
        factory = FINDERS[name]
    except KeyError:
        raise FinderError(f"unknown face finder {name!r}; choose one of {sorted(FINDERS)}") from None
    return factory()

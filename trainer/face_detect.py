"""Face finders: a photo in, every face in it out (:class:`trainer.faces.Face`), offline.

A finder is any callable ``finder(image) -> list[Face]`` with a ``name``. The registry maps
names to factories; :func:`get_finder` builds one once per process and caches it.

- ``whole-image``: the whole image is one face (an aligned crop); what ``--framing whole``
  means, as a finder, and what the tests use for their synthetic faces.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from pathlib import Path

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
# trainer/assets/models/MODEL_CARD.md): nothing is downloaded, nothing is unpickled. The network
# runs in torch (YuNetNet), the weights read from the wheel's library.

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
_SAME_FACE_IOU = 0.4  # two refined boxes overlapping this much are one face
_REFINE_SIDE = 384  # the side of the upright crop a face is re-detected in (256 is too small for YuNet's points)
_REFINE_CONTEXT = 2.2  # that crop's side in face-box sides


class _ConvInfo(ctypes.Structure):
    """libfacedetection's ``ConvInfoStruct``: one layer of YuNet as the library stores it."""

    _fields_ = [
        ("channels", ctypes.c_int),
        ("num_filters", ctypes.c_int),
        ("is_depthwise", ctypes.c_bool),
        ("is_pointwise", ctypes.c_bool),
        ("with_relu", ctypes.c_bool),
        ("weights", ctypes.POINTER(ctypes.c_float)),
        ("biases", ctypes.POINTER(ctypes.c_float)),
    ]


_YUNET_LAYERS = 53
_YUNET_STRIDES = (8, 16, 32)
_NMS_IOU = 0.45  # libfacedetection's
_TOP_K = 1000


class YuNetNet:
    """YuNet's network run by torch, with the weights of the ``yuface`` wheel's own library.

    libfacedetection (the C++ library inside the wheel) is built there without SIMD; the same
    network through torch's oneDNN convolutions is about 2.5× faster on an AVX2 CPU
    (BENCHMARKS.md, "Parsing whole photos"). The weights are read, not copied, from the
    library's ``param_pConvInfo`` table (53 layers: 1×1 pointwise and 3×3 depthwise, each with
    a bias), so they are exactly the wheel's; the layers follow the library's
    ``objectdetect_cnn`` and its box decoding and non-maximum suppression. Boxes and points
    agree with the library's to its integer rounding (``tests/trainer/test_face_detect.py``).
    """

    def __init__(self) -> None:
        import torch

        try:
            import yuface
        except ImportError as exc:
            raise FinderError(
                "the yunet face finder needs the yuface package (pip install yuface); "
                "or use --framing whole for aligned crops"
            ) from exc
        lib = ctypes.CDLL(str(Path(yuface.__file__).parent / "libfacedetection.so"))
        infos = (_ConvInfo * _YUNET_LAYERS).in_dll(lib, "param_pConvInfo")
        cl = torch.channels_last
        self._layers: list[tuple[bool, torch.Tensor, torch.Tensor]] = []
        for info in infos:
            c, n = info.channels, info.num_filters
            b = torch.from_numpy(np.ctypeslib.as_array(info.biases, (n,)).copy())
            if info.is_pointwise:  # (out, in)
                w = np.ctypeslib.as_array(info.weights, (n * c,)).reshape(n, c)
                weight = torch.from_numpy(w.copy())[:, :, None, None]
            else:  # depthwise, stored tap-major: (9, channels)
                w = np.ctypeslib.as_array(info.weights, (9 * c,)).reshape(9, c)
                weight = torch.from_numpy(w.T.copy()).reshape(c, 1, 3, 3)
            self._layers.append((bool(info.is_depthwise), weight.contiguous(memory_format=cl), b))
        # Layer 0 is a 1×1 convolution over a 3×3 stride-2 im2col of the BGR image (27 of its
        # 32 channels: tap-major, then B, G, R): the same as a 3×3 stride-2 convolution, here
        # taking R, G, B (no flipped copy of the photo).
        _, w0, b0 = self._layers[0]
        w0 = w0[:, :27, 0, 0].reshape(-1, 3, 3, 3).permute(0, 3, 1, 2).flip(1)
        self._first = (w0.contiguous(memory_format=cl), b0)
        # Each level's four heads (class, box, points, objectness) as one 16-channel pair.
        self._heads = []
        for level in range(3):
            ks = (29 + 2 * level, 35 + 2 * level, 47 + 2 * level, 41 + 2 * level)
            pw = torch.cat([self._layers[k][1] for k in ks]), torch.cat([self._layers[k][2] for k in ks])
            dw = torch.cat([self._layers[k + 1][1] for k in ks]), torch.cat([self._layers[k + 1][2] for k in ks])
            self._heads.append(((pw[0].contiguous(memory_format=cl), pw[1]),
                                (dw[0].contiguous(memory_format=cl), dw[1])))  # fmt: skip

    def _conv(self, x, i: int, relu: bool):
        import torch.nn.functional as F

        depthwise, w, b = self._layers[i]
        y = F.conv2d(x, w, b, padding=1, groups=w.shape[0]) if depthwise else F.conv2d(x, w, b)
        return y.relu_() if relu else y

    def _dp(self, x, i: int, relu: bool = True):
        return self._conv(self._conv(x, i, False), i + 1, relu)

    def _unit(self, x, i: int):
        return self._dp(self._dp(x, i), i + 2)

    def _features(self, rgb: np.ndarray):
        import torch
        import torch.nn.functional as F

        h, w = rgb.shape[:2]
        hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
        x = torch.zeros((1, hp, wp, 3))
        x[0, :h, :w] = torch.from_numpy(rgb)  # raw 0..255, padded at the bottom and right
        x = x.permute(0, 3, 1, 2)  # channels-last (1, 3, hp, wp)
        pool = functools.partial(F.max_pool2d, kernel_size=2, stride=2, ceil_mode=True)
        x = F.conv2d(x, *self._first, stride=2, padding=1).relu_()
        x = pool(self._dp(x, 1))
        x = pool(self._unit(self._unit(x, 3), 7))
        fb1 = self._unit(x, 11)
        fb2 = self._unit(pool(fb1), 15)
        fb3 = self._dp(self._unit(pool(fb2), 19), 27)
        fb2 = self._dp(F.interpolate(fb3, scale_factor=2.0, mode="nearest") + fb2, 25)
        fb1 = self._dp(F.interpolate(fb2, scale_factor=2.0, mode="nearest") + fb1, 23)
        out = []
        for level, f in enumerate((fb1, fb2, fb3)):
            (pw, pb), (dw, db) = self._heads[level]
            y = F.conv2d(F.conv2d(f, pw, pb), dw, db, padding=1, groups=16)
            out.append(y[0].permute(1, 2, 0).reshape(-1, 16).numpy())
        return out, [(f.shape[2], f.shape[3]) for f in (fb1, fb2, fb3)]

    def __call__(self, rgb: np.ndarray, conf: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """Faces in a (H, W, 3) uint8 RGB image: (score in [0, 1], box (x0, y0, x1, y1), (5, 2)
        points) per face scored at least ``conf``, best first."""
        import torch

        with torch.inference_mode():
            heads, shapes = self._features(rgb)
        scores, boxes, points = [], [], []
        for y, (_, fw), stride in zip(heads, shapes, _YUNET_STRIDES, strict=True):
            cls, reg, kps, obj = y[:, 0], y[:, 1:5], y[:, 5:15], y[:, 15]
            score = np.sqrt(_sigmoid(cls) * _sigmoid(obj))
            keep = np.nonzero(score >= conf)[0]
            if not keep.size:
                continue
            prior = np.stack([keep % fw, keep // fw], axis=1).astype(np.float32) * stride
            r = reg[keep]
            centre = r[:, :2] * stride + prior
            size = np.exp(r[:, 2:4]) * stride
            boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
            points.append(kps[keep].reshape(-1, 5, 2) * stride + prior[:, None, :])
            scores.append(score[keep])
        if not scores:
            return []
        score, box, point = np.concatenate(scores), np.concatenate(boxes), np.concatenate(points)
        order = np.argsort(-score, kind="stable")[:_TOP_K]
        kept = _nms(box[order], _NMS_IOU)
        return [(float(score[i]), box[i].astype(np.float64), point[i].astype(np.float64))
                for i in order[kept]]  # fmt: skip


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -88.376, 88.376)))


def _nms(boxes: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression over boxes sorted best first (libfacedetection's)."""
    kept: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in range(len(boxes)):
        if kept:
            k = np.asarray(kept)
            iw = np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0])
            ih = np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1])
            inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
            if np.any(inter / (area[k] + area[i] - inter) > iou):
                continue
        kept.append(i)
    return kept


@functools.cache
def _yunet() -> YuNetNet:
    return YuNetNet()


def _raw_detect(rgb: np.ndarray, conf: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """YuNet on an RGB image: (score, box x0 y0 x1 y1, (5, 2) points) per face above ``conf``."""
    return _yunet()(rgb, conf)


def shrink(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` ≤ 1, area-averaged: exact halvings first (OpenCV's fast
    path for whole factors: 4 ms for a 12-megapixel photo against 45 ms for a factor of 0.4),
    then one area resize for what is left."""
    h, w = image.shape[:2]
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    while image.shape[1] >= 2 * tw and image.shape[0] >= 2 * th and min(image.shape[:2]) >= 2:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if (image.shape[1], image.shape[0]) == (tw, th):
        return image
    return cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)


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
       ``max_side`` for the small faces only (one pass over the whole image: YuNet through
       torch costs in proportion to the area, unlike the library's own code, which needed
       tiles).
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
        _yunet()  # the weights, once per process (FinderError when yuface is missing)
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
        # The photo at each pass's scale, smallest from the next larger (a 12-megapixel photo is
        # area-averaged once); they also serve the re-detection crops.
        levels: list[tuple[float, np.ndarray]] = [(1.0, rgb)]
        for s in sorted(scales, reverse=True):
            if s < 1.0:
                src_scale, src = levels[-1]
                levels.append((s, shrink(src, s / src_scale)))
        found = []
        for k, s in enumerate(scales):
            small = next(im for sc, im in levels if sc == s) if s <= 1.0 else cv2.resize(
                rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_LINEAR)
            for score, box, points in _raw_detect(small, self.conf):
                box, points = box / s, points / s
                # The extra pass keeps only the faces too small for the first one.
                if k > 0 and (box[3] - box[1]) * scales[0] >= _SMALL_PX:
                    continue
                found.append((score, box, points))
        faces = []
        for score, box, points in found:
            for _ in range(self.refine):
                refined = self._redetect(levels, box, points)
                if refined is None:
                    break
                box, points = refined
            faces.append(self._face(score, box, points))
        return _suppress(faces)

    def _redetect(self, levels: list[tuple[float, np.ndarray]], box: np.ndarray, points: np.ndarray):
        """One pass: the face re-detected in an upright square around it, in photo coordinates;
        None when the detector loses it there. ``levels``: (scale, photo at that scale), the
        first the photo itself; the crop is cut from the smallest that is still sharp enough."""
        side = _REFINE_CONTEXT * max(box[2] - box[0], box[3] - box[1])
        centre = (box[:2] + box[2:]) / 2
        angle = _roll(points)
        scale = _REFINE_SIDE / side
        c, sn = np.cos(-angle) * scale, np.sin(-angle) * scale
        rot = np.array([[c, -sn], [sn, c]])
        m = np.hstack([rot, (np.array([_REFINE_SIDE / 2] * 2) - rot @ centre)[:, None]])
        level, image = min((lv for lv in levels if lv[0] >= min(scale, 1.0)), key=lambda lv: lv[0])
        crop = crop_face(image, m @ np.diag([1.0 / level, 1.0 / level, 1.0]), _REFINE_SIDE)
        found = _raw_detect(crop, self.conf * 0.5)
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

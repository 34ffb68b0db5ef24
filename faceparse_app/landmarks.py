"""LaPa's 106 landmarks derived from a label map, for faces labeled without landmarks.

Point order (LaPa's, as third-party LaPa loaders index it; x to the image's right, y down;
"left" is the viewer's left, as in LaPa's classes):

    0-32    face outline, from the left temple over the chin (16) to the right temple
    33-37   left brow, upper edge, outer to inner;   38-41 its lower edge, inner to outer
    42-46   right brow, upper edge, inner to outer;  47-50 its lower edge, outer to inner
    51-54   nose bridge, top to tip (54 = nose tip)
    55-65   lower nose edge, left wing to right wing
    66-73   left eye: 66 outer corner, 67-69 upper lid, 70 inner corner, 71-73 lower lid
    74      left eye centre
    75-82   right eye: 75 inner corner, 76-78 upper lid, 79 outer corner, 80-82 lower lid
    83      right eye centre
    84-95   outer lips: 84 left corner, 85-89 upper edge, 90 right corner, 91-95 lower edge
    96-103  inner lips: 96 left inner corner, 97-99 upper, 100 right inner corner, 101-103 lower
    104-105 left and right pupils (here: the eye centres)

Loaders align faces from 74+104 and 83+105 (eyes), 54 (nose tip), 84 and 90 (mouth corners);
those are placed inside their parts. A part that is absent from the label map is drawn from a
mean-face template fitted to the parts that are there (or to the face's box), so the function
never fails and never gives NaN.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from trainer.data.lapa import read_landmarks
from trainer.errors import DatasetError

log = logging.getLogger(__name__)

NUM_POINTS = 106

# LaPa classes of each part.
SKIN, LEFT_BROW, RIGHT_BROW, LEFT_EYE, RIGHT_EYE, NOSE = 1, 2, 3, 4, 5, 6
UPPER_LIP, INNER_MOUTH, LOWER_LIP = 7, 8, 9
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9)
MOUTH_CLASSES = (UPPER_LIP, INNER_MOUTH, LOWER_LIP)

# Mean-face template in the face frame: origin at the midpoint of the eye centres, x in units of
# the eye distance, y in units of the eye-to-mouth distance. (centre x, centre y, half-width,
# half-height) of each part, medians over 257 CelebAMask-HQ faces mapped to LaPa classes.
_TEMPLATE: dict[str, tuple[float, float, float, float]] = {
    "left_brow": (-0.54, -0.23, 0.33, 0.10),
    "right_brow": (0.53, -0.24, 0.35, 0.10),
    "left_eye": (-0.50, 0.00, 0.19, 0.06),
    "right_eye": (0.50, 0.00, 0.19, 0.06),
    "nose": (-0.01, 0.36, 0.31, 0.38),
    "mouth": (-0.01, 1.00, 0.44, 0.16),
    "upper_lip": (-0.01, 0.93, 0.44, 0.08),
    "lower_lip": (-0.01, 1.08, 0.42, 0.08),
    "face": (0.04, 0.29, 1.19, 1.38),
}
# Template parts fitted to the parts found; face box (x0, x1, y1 = chin) as a weaker hint.
_FIT_PARTS: dict[str, tuple[int, ...]] = {
    "left_brow": (2,),
    "right_brow": (3,),
    "left_eye": (4,),
    "right_eye": (5,),
    "nose": (6,),
    "mouth": (7, 8, 9),
}
_BOX_X0, _BOX_X1, _BOX_Y0, _BOX_Y1 = -1.14, 1.23, -1.09, 1.67

Frame = tuple[float, float, float, float]  # (origin x, origin y, x unit, y unit) in pixels


class _Part:
    """The pixels of one face part, cropped to their box, with edge look-ups."""

    def __init__(self, mask: np.ndarray, x0: int, y0: int) -> None:
        self.mask = mask
        self.x0, self.y0 = x0, y0
        cols = np.flatnonzero(mask.any(axis=0))
        rows = np.flatnonzero(mask.any(axis=1))
        self.cols = cols
        self.left, self.right = x0 + int(cols[0]), x0 + int(cols[-1])
        self.top, self.bottom = y0 + int(rows[0]), y0 + int(rows[-1])
        h = mask.shape[0]
        any_col = mask.any(axis=0)
        # First and last True row per column (only meaningful where the column has pixels).
        self._first = np.where(any_col, mask.argmax(axis=0), 0)
        self._last = np.where(any_col, h - 1 - mask[::-1].argmax(axis=0), 0)

    @classmethod
    def of(cls, full_mask: np.ndarray) -> _Part | None:
        rows = np.flatnonzero(full_mask.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(full_mask.any(axis=0))
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(full_mask[y0:y1, x0:x1], x0, y0)

    def _col(self, x: float) -> int:
        # Nearest column of the part that holds pixels.
        c = int(round(x)) - self.x0
        i = int(np.searchsorted(self.cols, c))
        choices = [self.cols[j] for j in (i - 1, i) if 0 <= j < len(self.cols)]
        return int(min(choices, key=lambda v: abs(int(v) - c)))

    def top_at(self, x: float) -> tuple[float, float]:
        c = self._col(x)
        return float(self.x0 + c), float(self.y0 + self._first[c])

    def bottom_at(self, x: float) -> tuple[float, float]:
        c = self._col(x)
        return float(self.x0 + c), float(self.y0 + self._last[c])

    def _corner(self, c: int) -> tuple[float, float]:
        # The middle of the extreme column, moved onto the part when the column is split
        # (e.g. upper and lower lip meeting only at the very corner).
        rows = np.flatnonzero(self.mask[:, c])
        mid = (rows[0] + rows[-1]) / 2.0
        if not self.mask[int(round(mid)), c]:
            mid = float(rows[np.argmin(np.abs(rows - mid))])
        return float(self.x0 + c), float(self.y0 + mid)

    def left_corner(self) -> tuple[float, float]:
        return self._corner(self.left - self.x0)

    def right_corner(self) -> tuple[float, float]:
        return self._corner(self.right - self.x0)

    def centre(self) -> tuple[float, float]:
        """The centroid, moved onto the nearest pixel of the part when it falls outside."""
        ys, xs = np.nonzero(self.mask)
        cx, cy = float(xs.mean()), float(ys.mean())
        if self.mask[int(round(cy)), int(round(cx))]:
            return self.x0 + cx, self.y0 + cy
        k = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
        return float(self.x0 + xs[k]), float(self.y0 + ys[k])

    def inside(self, x: float, y: float) -> bool:
        c, r = int(round(x)) - self.x0, int(round(y)) - self.y0
        return 0 <= r < self.mask.shape[0] and 0 <= c < self.mask.shape[1] and bool(self.mask[r, c])

    def nearest(self, x: float, y: float) -> tuple[float, float]:
        """(x, y) if it lies in the part, else the nearest pixel of the part."""
        if self.inside(x, y):
            return float(x), float(y)
        ys, xs = np.nonzero(self.mask)
        k = int(np.argmin((self.x0 + xs - x) ** 2 + (self.y0 + ys - y) ** 2))
        return float(self.x0 + xs[k]), float(self.y0 + ys[k])


def _fit_frame(label: np.ndarray, parts: dict[str, _Part | None]) -> Frame:
    """The face frame that best places the template on the parts found (least squares).

    Each part found gives its centre and size; the face's box gives weaker hints. With nothing
    labeled at all, the frame fills the image.
    """
    h, w = label.shape
    xs_rows: list[tuple[float, float, float]] = []  # (coef of origin, coef of unit, value)
    ys_rows: list[tuple[float, float, float]] = []
    weights_x: list[float] = []
    weights_y: list[float] = []
    for name, part in parts.items():
        if part is None:
            continue
        cx, cy, hx, hy = _TEMPLATE[name]
        ys, xs = np.nonzero(part.mask)
        xs_rows += [
            (1.0, cx, part.x0 + float(xs.mean())),
            (0.0, hx, (part.right - part.left) / 2.0),
        ]
        ys_rows += [
            (1.0, cy, part.y0 + float(ys.mean())),
            (0.0, hy, (part.bottom - part.top) / 2.0),
        ]
        weights_x += [1.0, 0.5]
        weights_y += [1.0, 0.5]
    lut = np.zeros(256, bool)
    lut[list(FACE_CLASSES)] = True
    face = _Part.of(lut[label])
    if face is None:
        face = _Part.of(label > 0)
    if face is not None:
        xs_rows += [(1.0, _BOX_X0, float(face.left)), (1.0, _BOX_X1, float(face.right))]
        ys_rows += [(1.0, _BOX_Y0, float(face.top)), (1.0, _BOX_Y1, float(face.bottom))]
        weights_x += [0.3, 0.3]
        weights_y += [0.1, 0.3]  # the top of the face is often hidden by hair
    else:
        xs_rows += [(1.0, _BOX_X0, 0.0), (1.0, _BOX_X1, w - 1.0)]
        ys_rows += [(1.0, _BOX_Y0, 0.0), (1.0, _BOX_Y1, h - 1.0)]
        weights_x += [1.0, 1.0]
        weights_y += [1.0, 1.0]

    def solve(
        rows: list[tuple[float, float, float]], weights: list[float], size: int
    ) -> tuple[float, float]:
        a = np.array([[r[0], r[1]] for r in rows]) * np.array(weights)[:, None]
        b = np.array([r[2] for r in rows]) * np.array(weights)
        sol, *_ = np.linalg.lstsq(a, b, rcond=None)
        origin, unit = float(sol[0]), float(sol[1])
        if not (np.isfinite(origin) and np.isfinite(unit) and unit > 0.5):
            origin, unit = size / 2.0, max(1.0, size / 4.0)
        return origin, unit

    ox, ux = solve(xs_rows, weights_x, w)
    oy, uy = solve(ys_rows, weights_y, h)
    return ox, oy, ux, uy


def _template_part(name: str, frame: Frame, shape: tuple[int, int]) -> _Part:
    """The template's ellipse for a part, placed by the face frame (always at least one pixel)."""
    h, w = shape
    ox, oy, ux, uy = frame
    fx, fy, hx, hy = _TEMPLATE[name]
    cx = int(np.clip(round(ox + fx * ux), 0, w - 1))
    cy = int(np.clip(round(oy + fy * uy), 0, h - 1))
    ax = int(np.clip(round(hx * ux), 1, 2 * w))
    ay = int(np.clip(round(hy * uy), 1, 2 * h))
    # Draw on a crop around the ellipse only, so a 4000×4000 map costs no full-size array.
    bx0, by0 = max(0, cx - ax - 1), max(0, cy - ay - 1)
    bx1, by1 = min(w, cx + ax + 2), min(h, cy + ay + 2)
    crop = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
    cv2.ellipse(crop, (cx - bx0, cy - by0), (ax, ay), 0, 0, 360, 1, -1)
    crop[cy - by0, cx - bx0] = 1
    return _Part(crop.astype(bool), bx0, by0)


def _class_part(label: np.ndarray, classes: tuple[int, ...]) -> _Part | None:
    lut = np.zeros(256, bool)
    lut[list(classes)] = True
    return _Part.of(lut[label])


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _brow(part: _Part) -> list[tuple[float, float]]:
    """9 points: upper edge left to right (5), lower edge from 80% to 20% of the width (4)."""
    xs = [_lerp(part.left, part.right, t) for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    upper = [part.top_at(x) for x in xs]
    lower = [part.bottom_at(_lerp(part.left, part.right, t)) for t in (0.8, 0.6, 0.4, 0.2)]
    return upper + lower


def _eye(part: _Part) -> list[tuple[float, float]]:
    """8 contour points: left corner, upper lid (3), right corner, lower lid (3), around."""
    lc, rc = part.left_corner(), part.right_corner()
    upper = [part.top_at(_lerp(lc[0], rc[0], t)) for t in (0.25, 0.5, 0.75)]
    lower = [part.bottom_at(_lerp(lc[0], rc[0], t)) for t in (0.75, 0.5, 0.25)]
    return [lc, *upper, rc, *lower]


def _nose(part: _Part) -> list[tuple[float, float]]:
    """15 points: bridge top to tip (4, the tip last), then the lower edge left to right (11)."""
    cols = part.cols
    ys, xs = np.nonzero(part.mask)
    cx = float(part.x0 + np.median(xs))
    # The tip sits about 4/5 down a nose region that spans from between the eyes to the nostrils.
    tip = part.nearest(cx, _lerp(part.top, part.bottom, 0.8))
    top = part.top_at(tip[0])
    bridge = [(_lerp(top[0], tip[0], t), _lerp(top[1], tip[1], t)) for t in (0.0, 1 / 3, 2 / 3)]
    bridge = [part.nearest(x, y) for x, y in bridge] + [tip]
    left, right = part.x0 + int(cols[0]), part.x0 + int(cols[-1])
    lower = [part.bottom_at(_lerp(left, right, t)) for t in np.linspace(0.0, 1.0, 11)]
    return bridge + lower


def _mouth(label: np.ndarray, outer: _Part) -> list[tuple[float, float]]:
    """20 points: outer lips (12, from the left corner over the top and back along the bottom),
    then inner lips (8)."""
    lc, rc = outer.left_corner(), outer.right_corner()
    upper = [outer.top_at(_lerp(lc[0], rc[0], t)) for t in (1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6)]
    lower = [outer.bottom_at(_lerp(lc[0], rc[0], t)) for t in (5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6)]
    x0, y0 = outer.x0, outer.y0
    crop = label[y0 : y0 + outer.mask.shape[0], x0 : x0 + outer.mask.shape[1]]
    mid_y = (lc[1] + rc[1]) / 2.0
    inner = _Part.of(crop == INNER_MOUTH)
    if inner is not None:
        ilc = (inner.left_corner()[0] + x0, inner.left_corner()[1] + y0)
        irc = (inner.right_corner()[0] + x0, inner.right_corner()[1] + y0)
    else:
        ilc = (_lerp(lc[0], rc[0], 0.1), _lerp(lc[1], rc[1], 0.1))
        irc = (_lerp(lc[0], rc[0], 0.9), _lerp(lc[1], rc[1], 0.9))
    ulip = _Part.of(crop == UPPER_LIP)
    llip = _Part.of(crop == LOWER_LIP)

    def seam(x: float, lip: _Part | None, from_top: bool) -> tuple[float, float]:
        # Inner lip edge: the bottom of the upper lip, or the top of the lower lip.
        if lip is None:
            return x, mid_y
        cx, cy = lip.bottom_at(x - x0) if not from_top else lip.top_at(x - x0)
        return cx + x0, cy + y0

    iupper = [seam(_lerp(ilc[0], irc[0], t), ulip, False) for t in (0.25, 0.5, 0.75)]
    ilower = [seam(_lerp(ilc[0], irc[0], t), llip, True) for t in (0.75, 0.5, 0.25)]
    return [lc, *upper, rc, *lower, ilc, *iupper, irc, *ilower]


def _outline(face: _Part, cx: float, cy: float) -> list[tuple[float, float]]:
    """33 outline points: rays from (cx, cy) sweeping left, down, right; the farthest face pixel."""
    h, w = face.mask.shape
    reach = float(np.hypot(h, w)) + 2.0
    t = np.arange(0.0, reach, 1.0)
    points = []
    for k in range(33):
        theta = np.pi * (1.0 - k / 32.0)
        px = np.rint(cx - face.x0 + t * np.cos(theta)).astype(np.int64)
        py = np.rint(cy - face.y0 + t * np.sin(theta)).astype(np.int64)
        ok = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        px, py = px[ok], py[ok]
        hits = np.flatnonzero(face.mask[py, px]) if px.size else np.zeros(0, np.int64)
        if hits.size:
            j = hits[-1]
            points.append((float(face.x0 + px[j]), float(face.y0 + py[j])))
        else:
            points.append(face.nearest(cx + reach * np.cos(theta), cy + reach * np.sin(theta)))
    return points


def derive_landmarks(label: np.ndarray) -> np.ndarray:
    """LaPa's 106 landmarks placed from a label map.

    Args:
        label: (H, W) uint8 LaPa class indices.

    Returns:
        (106, 2) float32 (x, y) pixel coordinates in LaPa's point order (see the module doc),
        finite and inside the image.
    """
    label = np.asarray(label)
    if label.ndim != 2 or label.size == 0:
        raise ValueError(f"label map must be a non-empty 2-D array, got shape {label.shape}")
    label = label.astype(np.uint8, copy=False)
    shape = (int(label.shape[0]), int(label.shape[1]))
    found = {name: _class_part(label, classes) for name, classes in _FIT_PARTS.items()}
    frame = _fit_frame(label, found)

    def part(name: str) -> _Part:
        got = found.get(name)
        if got is None and name == "face":
            got = _class_part(label, FACE_CLASSES)
        return got if got is not None else _template_part(name, frame, shape)

    left_brow = part("left_brow")
    right_brow = part("right_brow")
    left_eye = part("left_eye")
    right_eye = part("right_eye")
    nose = part("nose")
    mouth = found["mouth"]
    if mouth is not None:
        mouth_points = _mouth(label, mouth)
    else:
        template = np.zeros(shape, np.uint8)
        for name, cls in (("upper_lip", UPPER_LIP), ("lower_lip", LOWER_LIP)):
            p = _template_part(name, frame, shape)
            view = template[p.y0 : p.y0 + p.mask.shape[0], p.x0 : p.x0 + p.mask.shape[1]]
            view[p.mask] = cls
        mouth_points = _mouth(template, _class_part(template, MOUTH_CLASSES))  # type: ignore[arg-type]
    face = part("face")
    le, re = left_eye.centre(), right_eye.centre()
    outline = _outline(face, (le[0] + re[0]) / 2.0, (le[1] + re[1]) / 2.0)

    points = (
        outline
        + _brow(left_brow)
        + _brow(right_brow)
        + _nose(nose)
        + _eye(left_eye)
        + [le]
        + _eye(right_eye)
        + [re]
        + mouth_points
        + [le, re]
    )
    out = np.asarray(points, dtype=np.float64)
    assert out.shape == (NUM_POINTS, 2), out.shape
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    out[:, 0] = np.clip(out[:, 0], 0, shape[1] - 1)
    out[:, 1] = np.clip(out[:, 1], 0, shape[0] - 1)
    return out.astype(np.float32)


def largest_face_label(label: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """The label map of a photo's largest face alone: LaPa's landmarks are one face's, and
    placed from every face's parts at once they fall between faces.

    Each pixel goes to the face whose box centre is nearest in units of that box's size (so a
    big face reaches further than a small neighbour's); pixels of other faces become background.

    Args:
        label: (H, W) uint8 LaPa classes.
        boxes: the faces' boxes (x0, y0, x1, y1) in pixels; fewer than two: ``label`` as is.

    Returns:
        (H, W) uint8.
    """
    if len(boxes) < 2:
        return label
    sizes = [max(1e-3, x1 - x0) * max(1e-3, y1 - y0) for x0, y0, x1, y1 in boxes]
    h, w = label.shape
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(w, dtype=np.float32)[None, :] + 0.5
    keep = owned_by(xs, ys, boxes, int(np.argmax(sizes)))
    return np.where(keep, label, 0).astype(np.uint8)


def owned_by(
    xs: np.ndarray, ys: np.ndarray, boxes: Sequence[tuple[float, float, float, float]], chosen: int
) -> np.ndarray:
    """Which points belong to face ``chosen``: those whose nearest box centre, in units of each
    box's size, is its own (ties go to it).

    Args:
        xs, ys: photo coordinates in pixels (arrays that broadcast together).
        boxes: the faces' boxes (x0, y0, x1, y1) in pixels.

    Returns:
        bool array of the broadcast shape.
    """

    def distance(box: tuple[float, float, float, float]) -> np.ndarray:
        x0, y0, x1, y1 = box
        bw, bh = max(1e-3, x1 - x0), max(1e-3, y1 - y0)
        return np.maximum(np.abs(xs - (x0 + x1) / 2) / bw, np.abs(ys - (y0 + y1) / 2) / bh)

    own = distance(boxes[chosen])
    keep = np.ones(np.broadcast_shapes(np.shape(xs), np.shape(ys)), bool)
    for i, box in enumerate(boxes):
        if i != chosen:
            keep &= own <= distance(box)
    return keep


def format_landmarks(points: np.ndarray) -> str:
    """LaPa's landmark file text: the count, then one 'x y' line per point."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    lines = [str(len(pts))] + [f"{x:.2f} {y:.2f}" for x, y in pts]
    return "\n".join(lines) + "\n"


def known_landmarks(path: Path, size: tuple[int, int]) -> np.ndarray | None:
    """A project's own landmark file for an image of ``size`` (H, W), if it is usable.

    Returns:
        (106, 2) float (x, y) points, or None: no file, or one that is unreadable, has another
        number of points or points outside the image (logged, then ignored).
    """
    if not path.is_file():
        return None
    try:
        points = read_landmarks(path)
    except DatasetError as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    h, w = size
    if points.shape != (NUM_POINTS, 2) or not np.isfinite(points).all():
        log.warning("ignoring %s: expected %d finite points", path, NUM_POINTS)
        return None
    xs, ys = points[:, 0], points[:, 1]
    if (xs < -1).any() or (xs > w).any() or (ys < -1).any() or (ys > h).any():
        log.warning("ignoring %s: points outside the %dx%d image", path, w, h)
        return None
    return points

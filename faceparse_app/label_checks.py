"""Checks of a saved label map for the slips a reviewer should look at (no Qt).

Three narrow checks, each per face, tuned so that good labels give (almost) nothing: on every
label of ``celebamask-hq-dev`` and ``lapa-format-helen`` (``bench.label_checks``).

- **left/right swapped**: LaPa's left/right are the viewer's (class 2 and 4 lie on the image's
  left of an upright face); a label painted with the person's left, or imported with
  CelebAMask-HQ's convention, has them the other way round. The face's own "down" (from the
  midpoint of its eyes, or brows, to its mouth, or its nose) gives its viewer's-right
  direction, so a tilted or upside-down face is judged as well as an upright one. A side that
  is only a speck beside the other (a brow hidden by glasses), or a speck at all, gives no verdict.
- **pinhole**: a few background pixels (at most :data:`PINHOLE_SHARE` of the face box, at least
  one pixel) enclosed by the face's own classes, skin and parts; gaps in hair are real.
- **stray piece**: a piece of a part class (brows, eyes, nose, lips, inner mouth) more than
  :data:`STRAY_DISTANCE` face widths from that class's largest piece in the face, and not where
  the part's twin of the other side belongs.

Coordinates are photo pixels; a face is a box (x0, y0, x1, y1), as the project keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

SWAPPED = "left/right swapped"
PINHOLE = "pinhole"
STRAY = "stray piece"
MISFIT = "label that does not fit the photo"  # made for another picture of the same name
KINDS = (MISFIT, SWAPPED, PINHOLE, STRAY)

PINHOLE_SHARE = 0.0001  # of the face box's area: a few pixels (an earring in an ear is 20-60)
STRAY_DISTANCE = 1 / 4  # of the face box's width
# A pair is judged only when its two sides lie this far apart across the face (in face widths):
# closer than that (a profile's far eye squeezed next to the near one) the sides say nothing.
MIN_PAIR_SPREAD = 0.08
# Nor when one side is a speck beside the other (its largest piece under this share of the
# other's): a brow hidden by glasses, a dab of its class at the seen brow's end, is no swap.
MIN_PAIR_BALANCE = 0.1
# Nor on specks: each side's largest piece must cover this share of the face box (a brow is
# about 1%; 0.1% is 29 px on a face 155 px wide, a blurred face's stray specks of brow class).
MIN_PAIR_AREA = 0.001
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9)
PART_CLASSES = (2, 3, 4, 5, 6, 7, 8, 9)
PAIRS = ((2, 3, "eyebrows"), (4, 5, "eyes"))
MIRROR = {2: 3, 3: 2, 4: 5, 5: 4}
CLASS_NAMES = {
    2: "left eyebrow", 3: "right eyebrow", 4: "left eye", 5: "right eye", 6: "nose",
    7: "upper lip", 8: "inner mouth", 9: "lower lip",
}  # fmt: skip
MOUTH = (7, 8, 9)
NOSE = (6,)
# The mouth (or nose) must lie this far below the eyes (in face widths) to say where down is.
MIN_DOWN = 0.15
# How far around its box a face's pixels may lie (hair, chin, ears), in box widths.
REACH = 0.5

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Finding:
    """One thing a reviewer should look at.

    Attributes:
        kind: one of :data:`KINDS`.
        message: a short sentence ("eyes: left/right swapped (the person's left is labeled as
            the viewer's)").
        box: (x0, y0, x1, y1) in photo pixels: where it is.
        face: index of the face in the faces given.
    """

    kind: str
    message: str
    box: tuple[int, int, int, int]
    face: int = 0


def check_label(label: np.ndarray, faces: Sequence[object] | None = None) -> list[Finding]:
    """The findings of a LaPa label map, face by face.

    Args:
        label: (H, W) uint8 LaPa classes 0..10.
        faces: the photo's faces, each a box (x0, y0, x1, y1) in photo pixels or an object with
            a ``box`` (``trainer.faces.Face``); None or empty: the faces found in the label
            itself (``trainer.faces.faces_from_label``).

    Returns:
        The findings, face by face in the order given.
    """
    label = np.asarray(label)
    boxes = [tuple(float(v) for v in getattr(f, "box", f)) for f in faces or ()]
    if not boxes:
        from trainer.faces import faces_from_label  # imports torch: only when needed

        boxes = [f.box for f in faces_from_label(label)]
    findings: list[Finding] = []
    for k, box in enumerate(boxes):
        crop, origin, own = _face_region(label, boxes, k)
        if crop is None:
            continue
        width = max(box[2] - box[0], 1.0)
        area = width * max(box[3] - box[1], 1.0)
        ctx = _FaceCrop(crop, own, origin, width, k)
        findings += _swaps(ctx, area) + _pinholes(ctx, area) + _strays(ctx)
    return findings


def summary(findings: Sequence[Finding]) -> str:
    """One line naming the findings: "left/right swapped (eyes), 2 pinholes"."""
    parts = []
    for kind in KINDS:
        these = [f for f in findings if f.kind == kind]
        if not these:
            continue
        if kind == SWAPPED:
            what = sorted({f.message.split(":")[0] for f in these})
            parts.append(f"{kind} ({', '.join(what)})")
        else:
            parts.append(f"{len(these)} {kind}s" if len(these) > 1 else f"a {kind}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------- internals
@dataclass
class _FaceCrop:
    label: np.ndarray  # (h, w) the photo's label around the face
    own: np.ndarray  # (h, w) bool: pixels nearer this face than any other
    origin: tuple[int, int]  # (x, y) of the crop's corner in the photo
    width: float  # the face box's width
    index: int

    def __post_init__(self) -> None:
        self._pieces: dict[int, tuple[np.ndarray | None, np.ndarray, np.ndarray]] = {}
        self.frame = _frame(self)

    def mask(self, classes: Sequence[int]) -> np.ndarray:
        if len(classes) == 1:
            return (self.label == classes[0]) & self.own
        return np.isin(self.label, classes) & self.own

    def pieces(self, c: int) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """Class c's largest piece in the face (or None), its piece ids and their stats."""
        if c not in self._pieces:
            self._pieces[c] = _largest_piece(self.mask((c,)))
        return self._pieces[c]

    def photo_box(self, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
        ox, oy = self.origin
        return (x0 + ox, y0 + oy, x1 + ox, y1 + oy)


def _face_region(label: np.ndarray, boxes: Sequence[Box], k: int):
    """The label around face ``k`` (its box grown by REACH), the pixels in it nearer face k's
    centre than any other face's (in units of each face's width), and the crop's corner."""
    h, w = label.shape
    x0, y0, x1, y1 = boxes[k]
    grow = REACH * (x1 - x0)
    cx0, cy0 = max(int(x0 - grow), 0), max(int(y0 - grow), 0)
    cx1, cy1 = min(int(np.ceil(x1 + grow)), w), min(int(np.ceil(y1 + grow)), h)
    if cx1 <= cx0 or cy1 <= cy0:
        return None, (0, 0), None
    ys, xs = np.mgrid[cy0:cy1, cx0:cx1].astype(np.float32) + 0.5

    def reach(b: Box) -> np.ndarray:
        side = max(b[2] - b[0], b[3] - b[1], 1.0)
        return np.hypot(xs - (b[0] + b[2]) / 2, ys - (b[1] + b[3]) / 2) / side

    mine = reach(boxes[k])
    own = np.ones(mine.shape, bool)
    for j, other in enumerate(boxes):
        if j != k and _overlap(other, (cx0, cy0, cx1, cy1)):
            own &= mine <= reach(other)
    return label[cy0:cy1, cx0:cx1], (cx0, cy0), own


def _overlap(a: Box, b: Sequence[float]) -> bool:
    grow = REACH * (a[2] - a[0])
    return a[0] - grow < b[2] and b[0] < a[2] + grow and a[1] - grow < b[3] and b[1] < a[3] + grow


def _largest_piece(mask: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(the largest 8-connected piece of mask or None, the piece ids, their stats)."""
    count, ids, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return None, ids, stats
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return ids == big, ids, stats


def _centroid(mask: np.ndarray | None) -> np.ndarray | None:
    if mask is None:
        return None
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5]) if len(xs) else None


def _frame(ctx: _FaceCrop) -> tuple[np.ndarray, np.ndarray] | None:
    """(centre, viewer's-right unit vector) of the face, from its own parts; None when its
    eyes (or brows) and mouth (or nose) do not say which way is down."""
    centre = None
    for left, right, _ in (PAIRS[1], PAIRS[0]):
        a, b = (_centroid(ctx.pieces(c)[0]) for c in (left, right))
        if a is not None and b is not None:
            centre = (a + b) / 2
            break
    if centre is None:
        return None
    mouth = ctx.mask(MOUTH)
    below = _centroid(mouth) if mouth.any() else _centroid(ctx.mask(NOSE))
    if below is None:
        return None
    down = below - centre
    norm = float(np.hypot(*down))
    if norm < MIN_DOWN * ctx.width:
        return None  # a face cut in two (glasses labeled background): its mouth is elsewhere
    down /= norm
    # Turning "down" a quarter turn gives the viewer's right: (0, 1) -> (1, 0) for an upright
    # face; a rotation keeps that for a turned face.
    return centre, np.array([down[1], -down[0]])


def _swaps(ctx: _FaceCrop, box_area: float) -> list[Finding]:
    if ctx.frame is None:
        return []
    _, right_dir = ctx.frame
    out = []
    for left, right, name in PAIRS:
        pieces = [ctx.pieces(c)[0] for c in (left, right)]
        if pieces[0] is None or pieces[1] is None:
            continue
        areas = sorted(int(p.sum()) for p in pieces)
        if areas[0] < MIN_PAIR_BALANCE * areas[1] or areas[0] < MIN_PAIR_AREA * box_area:
            continue
        a, b = _centroid(pieces[0]), _centroid(pieces[1])
        across = float(np.dot(b - a, right_dir)) / ctx.width
        if across < -MIN_PAIR_SPREAD:
            ys, xs = np.nonzero(pieces[0] | pieces[1])
            out.append(Finding(
                SWAPPED,
                f"{name}: left/right swapped (LaPa's left {name[:-1]} is the one on the "
                "viewer's left; this one is labeled the person's way)",
                ctx.photo_box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                ctx.index,
            ))  # fmt: skip
    return out


def _pinholes(ctx: _FaceCrop, box_area: float) -> list[Finding]:
    largest = max(1, int(PINHOLE_SHARE * box_area))
    background = (ctx.label == 0).astype(np.uint8)
    count, ids, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=8)
    small = np.nonzero(stats[1:, cv2.CC_STAT_AREA] <= largest)[0] + 1
    if not len(small):
        return []
    h, w = ctx.label.shape
    # A hole is enclosed when none of its pixels touches anything but the face's own classes:
    # no hair, no other face, no edge of the crop (8-connected, so its other neighbours are
    # all non-background).
    outside = ~np.isin(ctx.label, (0, *FACE_CLASSES)) | ((ctx.label != 0) & ~ctx.own)
    touches = cv2.dilate(outside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    bad = np.zeros(count, bool)
    bad[np.unique(ids[touches])] = True
    out = []
    for c in small:
        x, y, bw, bh, n = stats[c]
        if bad[c] or x == 0 or y == 0 or x + bw == w or y + bh == h:
            continue
        cy, cx = int(y + bh // 2), int(x + bw // 2)
        if not ctx.own[cy, cx]:
            continue
        out.append(Finding(
            PINHOLE, f"pinhole: {n} unlabeled pixel{'' if n == 1 else 's'} inside the face",
            ctx.photo_box(int(x), int(y), int(x + bw), int(y + bh)), ctx.index,
        ))  # fmt: skip
    return out


def _strays(ctx: _FaceCrop) -> list[Finding]:
    far = STRAY_DISTANCE * ctx.width
    frame = ctx.frame
    out = []
    for c in PART_CLASSES:
        biggest, ids, stats = ctx.pieces(c)
        if biggest is None or len(stats) <= 2:
            continue
        # Distance of every pixel to the class's largest piece.
        dist = cv2.distanceTransform((~biggest).astype(np.uint8), cv2.DIST_L2, 5)
        nearest = np.full(len(stats), np.inf, np.float32)
        np.minimum.at(nearest, ids.ravel(), dist.ravel())
        for p in np.nonzero(nearest[1:] > far)[0] + 1:
            piece = ids == p
            if c in MIRROR and (frame is None or _at_mirror(piece, biggest, frame, far)):
                continue  # the other side's twin labeled with this side's class, or no frame
            x, y, bw, bh, n = stats[p]
            out.append(Finding(
                STRAY,
                f"stray piece: {n} px of {CLASS_NAMES[c]} far from the {CLASS_NAMES[c]}",
                ctx.photo_box(int(x), int(y), int(x + bw), int(y + bh)), ctx.index,
            ))  # fmt: skip
    return out


def _at_mirror(
    piece: np.ndarray, biggest: np.ndarray, frame: tuple[np.ndarray, np.ndarray], far: float
) -> bool:
    """The piece lies where the largest piece's twin of the other side belongs: its reflection
    across the face's midline is near the largest piece."""
    centre, right_dir = frame
    p = _centroid(piece)
    mirrored = p - 2 * float(np.dot(p - centre, right_dir)) * right_dir
    return float(np.hypot(*(mirrored - _centroid(biggest)))) <= far

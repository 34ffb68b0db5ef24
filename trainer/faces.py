"""Faces in a photo: where each one is, the square crop the parser sees, and the way back.

The parser is trained on aligned crops (CelebAMask-HQ: eyes level, at fixed places). A face
anywhere in a photo is brought to that framing with a similarity transform (scale, rotation,
shift; never a squash) from its eye and mouth points to the :data:`TEMPLATE`, measured on the
training crops; the parser's logits are warped back into the photo with the inverse transform,
faces that overlap are merged pixel by pixel by confidence, and everything outside every face is
background.

Coordinates are pixels with (0, 0) at the top-left corner of the top-left pixel (so the centre
of pixel (i, j) is (i + 0.5, j + 0.5)); transforms are 2×3 float64 matrices mapping photo
points to crop points at the crop side given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

# Where the face parts sit in a training crop, as fractions of its side: medians over the 700
# CelebAMask-HQ crops in ../shared/data of the centroids of the LaPa eye classes (4 on the
# viewer's left, 5 on the right) and of the lips and inner mouth (7, 8, 9). Spread (sd): eyes
# 0.005 in y, eye distance 0.245 ± 0.014, eye-to-mouth 0.273 ± 0.018 (bench/face_template.py).
TEMPLATE: dict[str, tuple[float, float]] = {
    "left_eye": (0.3778, 0.4775),
    "right_eye": (0.6216, 0.4777),
    "mouth": (0.4985, 0.7504),
}
# A box-only face (a box drawn by hand) is framed from its box: (centre x, centre y, larger side)
# of the box in crop units, as the face finder's boxes sit in the training crops (brows to chin,
# cheek to cheek; YUNET_BOX_FRAMING in trainer/face_detect.py, from python -m bench.face_framing).
DEFAULT_BOX_FRAMING = (0.4941, 0.5596, 0.7256)
# The box of the face classes in a training crop, in crop units (medians over the 700
# CelebAMask-HQ crops: x 0.215..0.803, y 0.182..0.928): (centre x, centre y, larger side).
LABEL_BOX_FRAMING = (0.509, 0.555, 0.746)

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# LaPa classes whose pixels make up a face (for faces found in a label map).
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9)


@dataclass(frozen=True)
class Face:
    """One face in a photo.

    Attributes:
        box: (x0, y0, x1, y1) in photo pixels.
        score: the finder's confidence in [0, 1] (1.0 for a face drawn by hand).
        landmarks: (5, 2) float32 photo points: left eye, right eye, nose, mouth left, mouth
            right (left and right as the viewer sees them), or None when only a box is known.
        source: "detector", "user" (drawn or kept by an annotator) or "label" (found in a
            label map).
        box_framing: (centre x, centre y, side) of this box in crop units, for box-only faces.
    """

    box: tuple[float, float, float, float]
    score: float = 1.0
    landmarks: np.ndarray | None = None
    source: str = "detector"
    box_framing: tuple[float, float, float] = DEFAULT_BOX_FRAMING

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    def to_json(self) -> dict:
        """A JSON-able description (for metadata and the project store)."""
        out = {"box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 4)}
        if self.landmarks is not None:
            out["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]
        out["source"] = self.source
        return out

    @classmethod
    def from_json(cls, data: dict) -> Face:
        points = data.get("landmarks")
        return cls(
            box=tuple(float(v) for v in data["box"]),  # type: ignore[arg-type]
            score=float(data.get("score", 1.0)),
            landmarks=np.asarray(points, np.float32) if points is not None else None,
            source=str(data.get("source", "user")),
        )

    def with_source(self, source: str) -> Face:
        return replace(self, source=source)


def scale_faces(faces: Sequence[Face], sx: float, sy: float) -> list[Face]:
    """``faces`` in an image ``sx`` times as wide and ``sy`` times as tall (boxes and points)."""
    if (sx, sy) == (1.0, 1.0):
        return list(faces)
    scale = np.array([sx, sy], np.float32)
    return [
        replace(
            f,
            box=(f.box[0] * sx, f.box[1] * sy, f.box[2] * sx, f.box[3] * sy),
            landmarks=None if f.landmarks is None else f.landmarks * scale,
        )
        for f in faces
    ]


def similarity_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (scale, rotation, shift; no reflection) mapping src onto dst.

    Args:
        src, dst: (N, 2) points, N ≥ 2.

    Returns:
        (2, 3) float64 matrix M with dst ≈ M @ [x, y, 1].
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    # Closed form for 2-D similarity: [c -s; s c] minimising |R a - b|².
    norm = (a**2).sum()
    if norm < 1e-12:
        raise ValueError("the face's points coincide; no transform can be fitted")
    c = (a * b).sum() / norm
    s = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum() / norm
    rot = np.array([[c, -s], [s, c]])
    return np.hstack([rot, (mu_d - rot @ mu_s)[:, None]])


def face_transform(face: Face, size: int) -> np.ndarray:
    """The photo -> crop transform that frames ``face`` as the training crops are framed.

    With eye and mouth points: the similarity taking both eyes and the mouth centre to the
    :data:`TEMPLATE` (the face turned upright in-plane). With a box only: the box is scaled
    and centred as its ``box_framing`` says, no rotation.

    Returns:
        (2, 3) float64 matrix, photo pixels -> crop pixels of a size×size crop.
    """
    if face.landmarks is not None:
        pts = np.asarray(face.landmarks, np.float64)
        src = np.stack([pts[0], pts[1], (pts[3] + pts[4]) / 2])
        dst = np.array([TEMPLATE["left_eye"], TEMPLATE["right_eye"], TEMPLATE["mouth"]]) * size
        return similarity_from_points(src, dst)
    x0, y0, x1, y1 = face.box
    cx, cy, side = face.box_framing
    side_px = max(x1 - x0, y1 - y0)
    if side_px <= 0:
        raise ValueError(f"empty face box {face.box}")
    scale = side * size / side_px
    tx = cx * size - scale * (x0 + x1) / 2
    ty = cy * size - scale * (y0 + y1) / 2
    return np.array([[scale, 0.0, tx], [0.0, scale, ty]])


def context_transform(factor: float, size: int) -> np.ndarray:
    """(3, 3) crop -> crop transform zooming out by ``factor`` about the crop's centre (compose
    it after a face's transform to see ``factor`` times more around the face)."""
    c = size / 2
    k = 1.0 / factor
    return np.array([[k, 0.0, c - k * c], [0.0, k, c - k * c], [0.0, 0.0, 1.0]])


# Each face is also parsed zoomed out by this factor; those logits label only what lies past every
# face's own crop (long hair, the neck). 1.3 to 1.7 score alike on HELEN; without it hair past
# the crop is background (BENCHMARKS.md, "Parsing whole photos").
CONTEXT = 1.5


# A face whose zoomed-out parse still finds hair along that crop's edge (a share of the edge's
# pixels inside the photo) is parsed once more, zoomed out this far; that parse adds only hair,
# past both crops, joined to the hair they found and sure (HAIR_SURE). Long or
# voluminous hair was cut in a straight line at the first crop's edge; bench.hair_past_crop
# counts the faces that qualify.
HAIR_CONTEXT = 2.5
HAIR_AT_EDGE = 0.05
# A region of hair that only the widest parse finds is kept when that parse is this sure of it on
# average: on the in-the-wild photos, hair falling past the crop scored 0.78-0.93, hair put on
# dark walls, trees and railings 0.56-0.69 (bench.hair_past_crop).
HAIR_SURE = 0.75


def parse_transforms(face: Face, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The face's crop transform and its zoomed-out one (:data:`CONTEXT`): the two crops the
    parser sees for a face; the second covers every pixel its parse can label but hair (see
    :func:`hair_transform`)."""
    m = face_transform(face, size)
    return m, zoomed(m, CONTEXT, size)


def zoomed(m: np.ndarray, factor: float, size: int) -> np.ndarray:
    """A crop transform ``m`` zoomed out by ``factor`` about the crop's centre."""
    return (context_transform(factor, size) @ np.vstack([m, [0.0, 0.0, 1.0]]))[:2]


def hair_transform(face: Face, size: int) -> np.ndarray:
    """The face's widest crop (:data:`HAIR_CONTEXT`): every pixel its parse can label."""
    return zoomed(face_transform(face, size), HAIR_CONTEXT, size)


def hair_at_edge(logits: torch.Tensor, m: np.ndarray, shape: tuple[int, int], hair: int) -> float:
    """The share of a crop's edge pixels (two deep, only those inside the photo) whose top
    class is ``hair``: hair that goes on past the crop. 0.0 when no edge pixel is inside."""
    size = int(logits.shape[-1])
    edge = np.zeros((size, size), bool)
    edge[:2] = edge[-2:] = True
    edge[:, :2] = edge[:, -2:] = True
    ys, xs = np.nonzero(edge)
    pts = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, dtype=np.float64)], 1)
    photo = pts @ np.vstack([invert(m), [0.0, 0.0, 1.0]]).T
    h, w = shape
    inside = (photo[:, 0] >= 0) & (photo[:, 0] < w) & (photo[:, 1] >= 0) & (photo[:, 1] < h)
    if not inside.any():
        return 0.0
    top = logits.argmax(dim=0).numpy()
    return float((top[ys[inside], xs[inside]] == hair).mean())




def invert(m: np.ndarray) -> np.ndarray:
    """The inverse of a 2×3 similarity or affine transform."""
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def footprint(m: np.ndarray, size: int, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The photo pixels (x0, y0, x1, y1; end exclusive) a crop covers, clipped to the photo;
    None when the crop lies wholly outside it."""
    inv = invert(m)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    pts = corners @ inv.T
    h, w = shape
    x0, y0 = max(0, int(np.floor(pts[:, 0].min()))), max(0, int(np.floor(pts[:, 1].min())))
    x1, y1 = min(w, int(np.ceil(pts[:, 0].max()))), min(h, int(np.ceil(pts[:, 1].max())))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


_AREA_BELOW = 0.9  # crops this much smaller than the photo are area-averaged first


def crop_face(image: np.ndarray, m: np.ndarray, size: int, fill: int | None = None) -> np.ndarray:
    """The size×size crop of ``image`` under transform ``m`` (outside the photo: edge pixels, as
    the model was trained, or the value ``fill``, such as black for an exported crop).

    A crop smaller than the face's footprint is taken from an area-averaged copy of the
    footprint first (as ``resize_square`` shrinks the training crops), so no face is aliased.

    Args:
        image: (H, W, 3) uint8 RGB (or (H, W) uint8).
        m: photo -> crop transform (see :func:`face_transform`).

    Returns:
        (size, size, 3) uint8 (or (size, size)).
    """
    box = footprint(m, size, image.shape[:2])
    m = np.asarray(m, np.float64).copy()
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    if box is not None and scale < _AREA_BELOW:
        x0, y0, x1, y1 = box
        # Area-average down to the crop's scale, as the training crops were resized; the warp
        # then only turns and shifts (a bilinear warp that also shrinks by 2 aliases: 1.1 mean
        # F1 points lost on the validation faces).
        shrink = 1.0 / scale
        region = image[y0:y1, x0:x1]
        rw = max(1, int(round((x1 - x0) / shrink)))
        rh = max(1, int(round((y1 - y0) / shrink)))
        small = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
        fx, fy = (x1 - x0) / rw, (y1 - y0) / rh
        # crop = m @ photo, photo = (x0 + fx * u, y0 + fy * v) for a pixel (u, v) of `small`.
        m = np.hstack([m[:, :2] * np.array([fx, fy]), (m[:, :2] @ np.array([x0, y0]) + m[:, 2])[:, None]])
        image = small
    border = cv2.BORDER_REPLICATE if fill is None else cv2.BORDER_CONSTANT
    return cv2.warpAffine(
        image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border,
        borderValue=(fill or 0,) * 4,
    )  # fmt: skip


def warp_label_to_crop(label: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """A (H, W) label map under transform ``m``, nearest neighbour, background outside."""
    return cv2.warpAffine(
        label, np.asarray(m, np.float64), (size, size), flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )


# The kinds of face part, as LaPa classes: brows, eyes, nose, mouth (lips and inner mouth).
_FEATURES = ((2, 3), (4, 5), (6,), (7, 8, 9))


def _has_features(classes: np.ndarray, kinds: int = 2, min_pixels: int = 3) -> bool:
    """Whether the class values of a blob's pixels hold ``kinds`` kinds of face part (each of at
    least ``min_pixels`` pixels): a face, even turned away or masked, shows two."""
    counts = np.bincount(classes.ravel(), minlength=11)
    return sum(int(counts[list(group)].sum()) >= min_pixels for group in _FEATURES) >= kinds


def faces_from_label(label: np.ndarray, min_pixels: int = 64) -> list[Face]:
    """The faces of a LaPa label map: one per connected blob of face classes that holds two
    kinds of face part (brows, eyes, nose, mouth), with eye and mouth points from its part
    centroids where both eyes and a mouth are labeled. A blob of skin alone (a neck, an arm, a
    shoulder in a labeled group photo), or of skin and one stray part, is no face.

    Used to crop labeled in-the-wild photos for fine-tuning the way the finder crops them for
    parsing.

    Args:
        label: (H, W) uint8 LaPa classes.
        min_pixels: blobs smaller than this are ignored.

    Returns:
        The faces, largest first, ``source="label"``.
    """
    face_mask = np.isin(label, FACE_CLASSES).astype(np.uint8)
    # Join a face's parts (brows, eyes and lips are separated from the skin by thin gaps).
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    joined = cv2.dilate(face_mask, kernel)
    count, blobs, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    faces = []
    for k in range(1, count):
        if stats[k, cv2.CC_STAT_AREA] < min_pixels:
            continue
        inside = (blobs == k) & (face_mask > 0)
        ys, xs = np.nonzero(inside)
        if len(xs) < min_pixels or not _has_features(label[inside]):
            continue
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))

        def centroid(classes: tuple[int, ...], inside=inside) -> np.ndarray | None:
            py, px = np.nonzero(inside & np.isin(label, classes))
            return np.array([px.mean() + 0.5, py.mean() + 0.5]) if len(px) >= 3 else None

        left, right, mouth = centroid((4,)), centroid((5,)), centroid((7, 8, 9))
        nose = centroid((6,))
        points = None
        if left is not None and right is not None and mouth is not None:
            nose = nose if nose is not None else (left + right + mouth) / 3
            # Mouth corners are not labeled as such; the centre twice gives the same framing.
            points = np.stack([left, right, nose, mouth, mouth]).astype(np.float32)
        faces.append(Face(box=box, score=1.0, landmarks=points, source="label",
                          box_framing=LABEL_BOX_FRAMING))
    faces.sort(key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    return faces

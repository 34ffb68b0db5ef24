"""The faces of a photo as the app keeps them: stored with the image, drawn by the annotator,
and the photo pixels a change of faces may touch (Qt-free).

A face the finder found, or one an annotator drew, is a :class:`trainer.faces.Face`. The store
keeps each image's list as JSON (:func:`faces_to_text`); :func:`coverage` says which pixels a
face's crop covers, the only pixels a re-prediction after adding or removing that face changes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from trainer.faces import Face

# trainer.faces is imported where used: it loads torch, and the project store (which keeps the
# faces) opens without it (``faceparse-studio export``, a read-only look at a project).

log = logging.getLogger(__name__)

# The crop side the coverage is computed at: a face's footprint does not depend on it (the
# transform scales with the side), so any side gives the same photo pixels.
_COVERAGE_SIDE = 512
MIN_FACE_BOX = 4  # image pixels: a drawn box smaller than this on either side is a click


def faces_to_text(faces: Sequence[Face]) -> str:
    """The JSON the store keeps for a list of faces (``box_framing`` included, which
    ``Face.to_json`` leaves out: a box-only face would be framed differently without it)."""
    items = []
    for face in faces:
        item = face.to_json()
        item["box_framing"] = [round(float(v), 4) for v in face.box_framing]
        items.append(item)
    return json.dumps(items, separators=(",", ":"))


def faces_from_text(text: str | None) -> list[Face] | None:
    """The faces kept as :func:`faces_to_text` wrote them; None for NULL (not looked for yet)
    or for text that does not parse (logged; the faces are then looked for again)."""
    if text is None:
        return None
    from trainer.faces import Face

    try:
        faces = []
        for item in json.loads(text):
            face = Face.from_json(item)
            framing = item.get("box_framing")
            if framing is not None:
                face = replace(face, box_framing=tuple(float(v) for v in framing))
            faces.append(face)
        return faces
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("stored faces are unreadable (%s); they will be looked for again", exc)
        return None


def boxes_from_text(text: str | None) -> list[tuple[float, float, float, float]] | None:
    """Only the boxes (x0, y0, x1, y1) of the faces :func:`faces_to_text` wrote, read without
    loading torch (the export reads them); None as :func:`faces_from_text` gives None."""
    if text is None:
        return None
    try:
        return [tuple(float(v) for v in item["box"][:4]) for item in json.loads(text)]  # type: ignore[misc]
    except (ValueError, TypeError, KeyError, IndexError):
        return None


def user_face(box: tuple[float, float, float, float]) -> Face:
    """A face drawn by the annotator: a box from the hairline to the chin, ear to ear.

    ``box`` is (x0, y0, x1, y1) in photo pixels, corners in any order. Framed as the faces of the
    training labels are measured (:data:`trainer.faces.LABEL_BOX_FRAMING`).
    """
    from trainer.faces import LABEL_BOX_FRAMING, Face

    x0, x1 = sorted((float(box[0]), float(box[2])))
    y0, y1 = sorted((float(box[1]), float(box[3])))
    return Face(box=(x0, y0, x1, y1), score=1.0, source="user", box_framing=LABEL_BOX_FRAMING)


def face_order(faces: Sequence[Face]) -> list[int]:
    """Indices of `faces` in reading order: left to right by the box centre, then top down (the
    order Tab steps through a group photo's faces, and the export numbers them)."""
    return sorted(
        range(len(faces)),
        key=lambda i: ((faces[i].box[0] + faces[i].box[2]) / 2, (faces[i].box[1] + faces[i].box[3]) / 2),
    )


def same_face(a: Face, b: Face) -> bool:
    """Whether two faces are one (same box, source and points), e.g. after a store round trip."""
    if a.source != b.source or not np.allclose(a.box, b.box, atol=0.01):
        return False
    if (a.landmarks is None) != (b.landmarks is None):
        return False
    return a.landmarks is None or bool(np.allclose(a.landmarks, b.landmarks, atol=0.01))


def coverage(face: Face, shape: tuple[int, int]) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """The photo pixels a face's crops cover (its widest, zoomed out for the hair, holds the
    others): the pixels its parse can claim.

    Args:
        face: the face.
        shape: (H, W) of the photo.

    Returns:
        ((x0, y0, x1, y1) end-exclusive box, (y1 - y0, x1 - x0) bool mask of the pixels whose
        centre falls inside the crop), or None when the crop misses the photo.
    """
    from trainer.faces import footprint, hair_transform

    try:
        m = hair_transform(face, _COVERAGE_SIDE)  # it holds the face's other crops
    except ValueError:  # an empty box covers nothing
        return None
    box = footprint(m, _COVERAGE_SIDE, shape)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    # The same test as the paste of the parse (trainer.paste.paste_logits), at pixel centres;
    # float32 and, for an upright face (no rotation), separable: a face filling a 12-megapixel
    # photo costs one (H, W) bool mask, not several float64 planes.
    side = np.float32(_COVERAGE_SIDE)
    xs = np.arange(x0, x1, dtype=np.float32) + 0.5
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
    m32 = m.astype(np.float32)
    if m[0, 1] == 0 and m[1, 0] == 0:
        u = m32[0, 0] * xs + m32[0, 2]
        v = m32[1, 1] * ys + m32[1, 2]
        mask = ((v >= 0) & (v <= side)) & ((u >= 0) & (u <= side))
    else:
        u = m32[0, 0] * xs + m32[0, 1] * ys + m32[0, 2]
        v = m32[1, 0] * xs + m32[1, 1] * ys + m32[1, 2]
        mask = (u >= 0) & (u <= side) & (v >= 0) & (v <= side)
    if not mask.any():
        return None
    return box, mask


def union_coverage(faces: Sequence[Face], shape: tuple[int, int]) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """:func:`coverage` of several faces together (their box and the union of their masks)."""
    parts = [c for c in (coverage(f, shape) for f in faces) if c is not None]
    if not parts:
        return None
    x0 = min(b[0] for b, _ in parts)
    y0 = min(b[1] for b, _ in parts)
    x1 = max(b[2] for b, _ in parts)
    y1 = max(b[3] for b, _ in parts)
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    for (bx0, by0, bx1, by1), m in parts:
        mask[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] |= m
    return (x0, y0, x1, y1), mask


def face_at(faces: Sequence[Face], x: float, y: float) -> int | None:
    """Index of the face whose box holds image point (x, y) (the smallest, when boxes nest)."""
    hits = [
        (max(0.0, f.box[2] - f.box[0]) * max(0.0, f.box[3] - f.box[1]), i)
        for i, f in enumerate(faces)
        if f.box[0] <= x <= f.box[2] and f.box[1] <= y <= f.box[3]
    ]
    return min(hits)[1] if hits else None

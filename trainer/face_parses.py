"""The crops a photo's faces are parsed from, with their logits: one plan for the pre-label
(:mod:`trainer.predict` pastes them back with :func:`trainer.paste.paste_logits`) and for the
app's assisted tools (which keep their probabilities), so the two never disagree on what the
model saw.

Per face: its own crop; the face zoomed out (:data:`trainer.faces.CONTEXT`), which labels what
lies past the own crop (hair, the neck); and, where that parse finds hair along its edge inside
the photo, the face zoomed out further (:data:`trainer.faces.HAIR_CONTEXT`), which adds only hair
joined to the hair already found and that it is sure of (:func:`hair_mask`). A photo that is one
aligned face crop is parsed whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from trainer.faces import (
    CONTEXT,
    HAIR_AT_EDGE,
    HAIR_CONTEXT,
    HAIR_SURE,
    Face,
    crop_face,
    footprint,
    hair_at_edge,
    invert,
    parse_transforms,
    zoomed,
)

# A face whose crop lies within this share of the side from a square photo's own corners is that
# photo: an aligned face crop (CelebAMask-HQ, LaPa's and HELEN's crops), parsed whole, exactly as
# the parser was trained, instead of through the finder's framing (its error on the validation
# crops: median 5%, 90th percentile 10% of the side; HELEN's crops, framed otherwise: up to 14%).
# It keeps detect framing level with whole framing on aligned data (BENCHMARKS.md).
SNAP_TO_WHOLE = 0.15

Level = tuple[list[torch.Tensor], list[np.ndarray]]  # (C, S, S) logits, photo -> crop transforms


@dataclass
class FaceParses:
    """The logits of every crop parsed for a photo's faces, by level.

    Attributes:
        own: each face's own crop (or the whole photo, for an aligned crop).
        fill: the faces zoomed out; they label only what no own crop covers.
        fill_masks: per ``fill`` crop, the (S, S) bool mask of the pixels the pre-label may take
            from it: all but the regions past every own crop that join nothing of their class
            in the face's own parse (:func:`fill_mask`).
        hair: the faces whose hair went on past ``fill``'s crop, zoomed out further.
        hair_masks: per ``hair`` crop, the (S, S) bool mask of the pixels the pre-label takes
            from it: the hair it adds (:func:`hair_mask`).
        hair_class: the model's hair class (-1 where it has none).
    """

    own: Level = field(default_factory=lambda: ([], []))
    fill: Level = field(default_factory=lambda: ([], []))
    hair: Level = field(default_factory=lambda: ([], []))
    fill_masks: list[np.ndarray] = field(default_factory=list)
    hair_masks: list[np.ndarray] = field(default_factory=list)
    hair_class: int = -1

    def levels(self) -> list[tuple[int, torch.Tensor, np.ndarray]]:
        """(level, logits, transform) of every crop: 0 own, 1 fill, 2 hair."""
        return [
            (i, x, m)
            for i, (logits, transforms) in enumerate((self.own, self.fill, self.hair))
            for x, m in zip(logits, transforms, strict=True)
        ]


def parse_faces(
    predictor: Any,
    image: np.ndarray,
    faces: Sequence[Face],
    interrupt: Callable[[], bool] | None = None,
) -> FaceParses:
    """Parse ``faces`` of ``image`` as the pre-label does.

    Args:
        predictor: a :class:`trainer.predict.Predictor` (its ``crop_logits``, ``input_size``
            and ``class_names``).
        image: (H, W, 3) uint8 RGB.
        faces: the faces to parse.
        interrupt: asked between forward passes; True stops the parse
            (``PredictionInterrupted``).
    """
    side = predictor.input_size
    h, w = image.shape[:2]
    out = FaceParses()
    own_crops: list[np.ndarray] = []
    wide_crops: list[np.ndarray] = []
    zoomed_out: list[int] = []  # per fill crop, the index of its face's own crop
    for face in faces:
        own, wide = parse_transforms(face, side)
        whole = whole_if_aligned(own, (h, w), side)
        if whole is not None:  # the photo is this face's aligned crop: parse it as one
            own_crops.append(crop_face(image, whole, side))
            out.own[1].append(whole)
            continue  # nothing of the photo lies past its crop
        zoomed_out.append(len(own_crops))
        own_crops.append(crop_face(image, own, side))
        out.own[1].append(own)
        wide_crops.append(crop_face(image, wide, side))
        out.fill[1].append(wide)
    out.own[0].extend(predictor.crop_logits(own_crops, interrupt))
    out.fill[0].extend(predictor.crop_logits(wide_crops, interrupt))
    out.fill_masks.extend(
        fill_mask(logits, out.own[0][i], _other_own_crops(out.own, i, wide, (h, w), side))
        for logits, wide, i in zip(*out.fill, zoomed_out, strict=True)
    )
    if "hair" not in predictor.class_names:
        return out
    out.hair_class = hair = predictor.class_names.index("hair")
    reaching = [
        (logits, wide, keep)
        for logits, wide, keep in zip(*out.fill, out.fill_masks, strict=True)
        if hair_at_edge(logits, wide, (h, w), hair) >= HAIR_AT_EDGE
    ]
    out.hair[1].extend(zoomed(wide, HAIR_CONTEXT / CONTEXT, side) for _, wide, _ in reaching)
    out.hair[0].extend(predictor.crop_logits([crop_face(image, m, side) for m in out.hair[1]], interrupt))
    out.hair_masks.extend(
        hair_mask(far, near, hair, near_keep=keep)
        for far, (near, _, keep) in zip(out.hair[0], reaching, strict=True)
    )
    return out


def fill_mask(
    fill: torch.Tensor, own: torch.Tensor, others: Sequence[tuple[int, np.ndarray]] = ()
) -> np.ndarray:
    """The pixels of a face's zoomed-out crop whose parse the pre-label may take: all but the
    regions past the face's own crop that join nothing of their class in its own parse. On real
    photos the zoomed-out parse put lone blobs of hair on sweaters, a sequined dress, car seats,
    walls and the demo astronaut's helmet ring, and a block of neck skin below the chin (LaPa's
    neck is background), cut straight at the own crop's edge; a region (8-connected, one class)
    that touches its class in the own parse is kept, so hair going on past the own crop and an
    ear reaching past its side stay. Background is always kept.

    Other faces' own crops within this one (faces close together) label their pixels
    themselves, and a region stops at them: run on through a neighbour's face, the neck block
    below the neighbour's chin (which the neighbour's zoomed-out parse left out) joined the
    face's cheek and was labeled from this crop after all. (Joining the neighbour's own parse
    instead would keep what the neighbour's zoomed-out parse, better placed, left out: on the
    in-the-wild photos, an earring taken for hair.)

    Args:
        fill: (C, S, S) logits of the face zoomed out by ``CONTEXT``; class 0 is background.
        own: (C, S, S) logits of the face's own crop (the centre square of ``fill``'s).
        others: the other faces' own crops that reach this one: their (S', S') size and the
            (2, 3) transform from this crop's pixels to theirs.

    Returns:
        (S, S) bool.
    """
    side = int(fill.shape[-1])
    top = fill.argmax(dim=0).numpy()
    seen = _own_classes(side, own.argmax(dim=0).numpy(), others)
    keep = np.ones((side, side), bool)
    for cls in np.unique(top):
        if cls == 0:
            continue
        extra = (top == cls) & (seen == _PAST)
        count, parts = cv2.connectedComponents(extra.astype(np.uint8), connectivity=8)
        joined = _joined(parts, count, extra, seen == cls)
        joined[0] = True
        keep &= ~extra | joined[parts]
    return keep


_PAST, _NEIGHBOUR = -1, -2  # a zoomed-out crop's pixels past every own crop; in another face's


def _own_classes(
    side: int, own_top: np.ndarray, others: Sequence[tuple[int, np.ndarray]] = (), factor: float = CONTEXT
) -> np.ndarray:
    """(S, S) int16: per pixel of a crop zoomed out ``factor`` times more than a nearer one about
    the same centre (a face's zoomed-out crop and its own), the class ``own_top`` (the nearer
    crop's classes) gives it, resampled to the pixels whose centres lie in the nearer crop; else
    :data:`_NEIGHBOUR` where one of ``others`` holds the pixel's centre, else :data:`_PAST`."""
    o, inner = _centre_square(side, factor)
    seen = np.full((side, side), _PAST, np.int16)
    seen[o : o + inner, o : o + inner] = cv2.resize(
        own_top.astype(np.uint8), (inner, inner), interpolation=cv2.INTER_NEAREST
    )
    if not others:
        return seen
    flat = seen.reshape(-1)
    centres = (np.indices((side, side))[::-1].reshape(2, -1) + 0.5).T  # (x, y) per pixel
    for n, m in others:
        m = np.asarray(m, np.float64)
        q = np.floor(centres @ m[:, :2].T + m[:, 2])
        flat[(flat == _PAST) & (q >= 0).all(axis=1) & (q < n).all(axis=1)] = _NEIGHBOUR
    return seen


def _other_own_crops(
    own: Level, i: int, wide: np.ndarray, shape: tuple[int, int], side: int
) -> list[tuple[int, np.ndarray]]:
    """The own crops of ``own`` but the ``i``-th whose pixels the zoomed-out crop ``wide``
    reaches: (their side, the transform from ``wide``'s crop pixels to theirs)."""
    box = footprint(wide, side, shape)
    if box is None:
        return []
    back = np.vstack([invert(wide), [0.0, 0.0, 1.0]])
    out = []
    for k, (logits, m) in enumerate(zip(*own, strict=True)):
        other = footprint(m, int(logits.shape[-1]), shape)
        if k != i and other is not None and max(box[0], other[0]) < min(box[2], other[2]) and (
            max(box[1], other[1]) < min(box[3], other[3])
        ):
            out.append((int(logits.shape[-1]), (np.vstack([m, [0.0, 0.0, 1.0]]) @ back)[:2]))
    return out


def _centre_square(side: int, factor: float) -> tuple[int, int]:
    """(first pixel, pixels on a side) of the nearer crop inside an S × S crop zoomed out
    ``factor`` times more about the same centre: the pixels whose centres lie in it."""
    lo = side * (1 - 1 / factor) / 2
    pixel = np.arange(side) + 0.5
    inside = (pixel >= lo) & (pixel < side - lo)
    return int(np.argmax(inside)), int(inside.sum())


def _joined(parts: np.ndarray, count: int, extra: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Per region of ``parts`` (labels of the ``extra`` pixels' components), whether it
    touches ``near`` (8-connected)."""
    touching = cv2.dilate(near.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & extra
    keep = np.zeros(count, bool)
    keep[np.unique(parts[touching])] = True
    return keep


def hair_mask(
    far: torch.Tensor, near: torch.Tensor, hair: int, near_keep: np.ndarray | None = None
) -> np.ndarray:
    """The pixels of a face's widest crop whose parse the pre-label keeps: inside the zoomed-out
    crop it encloses, hair both parses see (it shows only where the two crops' pixels meet);
    past it, the regions (8-connected) of hair that join the zoomed-out parse's hair and that
    the widest parse is, on average, at least :data:`trainer.faces.HAIR_SURE` sure of. Worked
    out at the crops' own resolution (S × S), so the paste needs no photo-sized array for it
    (the first version did this over the photo: 4.4 GB at 200 MP with long hair, 1.7 without).

    Args:
        far: (C, S, S) logits of the face zoomed out by ``HAIR_CONTEXT``.
        near: (C, S, S) logits of the same face zoomed out by ``CONTEXT`` (its centre square).
        hair: the hair class.
        near_keep: (S, S) bool, the pixels of ``near``'s parse the pre-label takes
            (:func:`fill_mask`); its hair elsewhere joins nothing. Default: all.

    Returns:
        (S, S) bool.
    """
    probs = far.float().softmax(dim=0)
    sure, top = (t.numpy() for t in probs.max(dim=0))
    is_hair = top == hair
    near_hair = near.argmax(dim=0).numpy() == hair
    if near_keep is not None:
        near_hair &= near_keep
    seen = _own_classes(int(far.shape[-1]), near_hair, factor=HAIR_CONTEXT / CONTEXT)
    centre, near_hair = seen != _PAST, seen == 1
    extra = is_hair & ~centre
    count, parts = cv2.connectedComponents(extra.astype(np.uint8), connectivity=8)
    keep = _joined(parts, count, extra, near_hair)
    mean = np.bincount(parts[extra], weights=sure[extra], minlength=count) / np.maximum(
        np.bincount(parts[extra], minlength=count), 1
    )
    keep &= mean >= HAIR_SURE
    keep[0] = False
    # Inside the centre the nearer crops label the photo; where the two grids meet, a pixel of
    # this one may still show: hair there only where both parses see hair.
    return (is_hair & near_hair) | keep[parts]


def whole_if_aligned(m: np.ndarray, shape: tuple[int, int], side: int) -> np.ndarray | None:
    """The whole-photo transform (photo -> side×side crop) when the face crop ``m`` nearly is it
    and the photo is (nearly) square; else None."""
    h, w = shape
    if abs(h - w) > 0.05 * max(h, w):
        return None
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
    target = np.array([[0, 0], [side, 0], [0, side], [side, side]], np.float64)
    if np.abs(corners @ np.asarray(m, np.float64).T - target).max() > SNAP_TO_WHOLE * side:
        return None
    return np.array([[side / w, 0.0, 0.0], [0.0, side / h, 0.0]])

"""The LaPa export's one image per face: each face of a labeled photo as a LaPa sample of its own.

LaPa, its loaders and most face-parsing trainers take one face per image, with its 106
landmarks. A group photo is cut into one crop per face, framed as the trainer frames a face
(:func:`trainer.faces.face_transform`, the framing of ``FaceCropSamples`` and of the detect
path), zoomed out by :data:`trainer.faces.CONTEXT` so the hair and the chin are inside (the crop
each face's zoomed-out parse labels), at the photo's own resolution (no resize to the model's
input). A face known by its eyes and mouth is turned upright (its label resampled nearest
neighbour); a face known by its box only (drawn by hand) is an upright cut of whole pixels, so
its image and label are the photo's own pixels. Past the photo's edge the image is black and the
label background (not the trainer's repeated edge pixels: streaks of skin or hair labeled
background would teach a model trained on the export the wrong thing).

Faces are the ones the project keeps for the photo (found, or drawn by the annotator), and any
face its label holds outside them (labeled by hand where the face finder saw none), numbered
left to right as Tab steps through them; a labeled photo whose faces were never looked for
(a label found on disk) uses the faces its label holds. trainer.faces (and torch) is loaded only
here, when an export asks for crops: the whole-photo export and the project store run without it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from faceparse_app.faces import face_order
from faceparse_app.landmarks import FACE_CLASSES, derive_landmarks, format_landmarks, owned_by
from trainer.data.imageio import encode_label_png
from trainer.errors import LabelMapError

if TYPE_CHECKING:
    from faceparse_app.project import ImageRecord, Project
    from trainer.faces import Face

# The trainer's framing is computed at this crop side, then scaled to the photo's own pixels
# (the framing does not depend on it).
_FRAMING_SIDE = 512


# FaceSample.landmarks of a face that was not written: no face part of its own is labeled.
UNLABELED = "unlabeled"


@dataclass(frozen=True)
class FaceSample:
    """One exported image: its name, its face's box in the photo (None for a whole photo), and
    where its landmarks came from ("derived", "known"; "none": a whole photo with no face part,
    no landmark file; ``UNLABELED``: a face with no labeled part of its own, not written)."""

    name: str
    box: tuple[float, float, float, float] | None
    landmarks: str


def encode_jpeg(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB as JPEG quality 95 without chroma subsampling (keeps part edges)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(
        buf, format="JPEG", quality=95, subsampling=0
    )
    return buf.getvalue()


def face_sample_name(name: str, index: int) -> str:
    """The export name of a photo's ``index``-th face (from 1, left to right): ``NAME__face2``."""
    return f"{name}__face{index}"


def crop_transform(face: Face) -> tuple[np.ndarray, int]:
    """The export crop of a face: the trainer's framing zoomed out by ``CONTEXT``, at the
    photo's scale.

    Returns:
        (2, 3) float64 photo -> crop transform (about one crop pixel per photo pixel; for a
        face with no eye points exactly one, shifted by whole pixels) and the crop side in px.
    """
    from trainer.faces import CONTEXT, face_transform, zoomed

    m = zoomed(face_transform(face, _FRAMING_SIDE), CONTEXT, _FRAMING_SIDE)
    scale = float(np.hypot(m[0, 0], m[1, 0]))  # crop px per photo px at the framing side
    side = max(1, int(round(_FRAMING_SIDE / scale)))
    if m[0, 1] == 0 and m[1, 0] == 0:
        # Upright: a cut of whole pixels, so its image and label are the photo's, unresampled.
        x0, y0 = round(-m[0, 2] / m[0, 0]), round(-m[1, 2] / m[1, 1])
        return np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]), side
    return m * (side / _FRAMING_SIDE), side


def photo_faces(project: Project, rec: ImageRecord, label: np.ndarray) -> list[Face]:
    """The faces of a photo, left to right: those the project keeps, and each face its label
    holds that none of them covers (labeled by hand where the face finder saw none); all those
    its label holds where faces were never looked for."""
    from trainer.faces import faces_from_label

    kept, held = project.faces(rec), faces_from_label(label)
    faces = held if kept is None else [*kept, *(f for f in held if not any(_covers(k, f) for k in kept))]
    return [faces[i] for i in face_order(faces)]


def _covers(kept: Face, found: Face) -> bool:
    """Whether a kept face's box holds the centre of a face found in the label."""
    x0, y0, x1, y1 = kept.box
    cx, cy = (found.box[0] + found.box[2]) / 2, (found.box[1] + found.box[3]) / 2
    return x0 <= cx <= x1 and y0 <= cy <= y1


def write_face_samples(
    image: np.ndarray,
    label: np.ndarray,
    faces: Sequence[Face],
    split_dir: Path,
    name: str,
    known: np.ndarray | None = None,
) -> list[FaceSample]:
    """Write one image, label and landmark file per face into ``split_dir``.

    Args:
        image: (H, W, 3) uint8 RGB photo.
        label: (H, W) uint8 LaPa classes.
        faces: the photo's faces, in the order they are numbered.
        name: the photo's export name; face i is written as ``NAME__face<i>``.
        known: (106, 2) photo points of the project's own landmarks (one face's), or None;
            they go to the one face whose box holds their centre (of overlapping boxes, the
            face that owns that point, as pixels are shared out), mapped into its crop.

    Returns:
        One FaceSample per face, in order (``UNLABELED`` ones were not written). A failure
        midway removes what this call wrote.
    """
    from trainer.faces import crop_face, warp_label_to_crop

    boxes = [f.box for f in faces]
    written: list[Path] = []
    samples = []
    try:
        for k, face in enumerate(faces):
            sample = face_sample_name(name, k + 1)
            try:
                m, side = crop_transform(face)
            except ValueError as exc:  # an empty box, eye points that coincide
                raise LabelMapError(f"face {k + 1} of the photo, at {face.box}: {exc}") from None
            crop_label = warp_label_to_crop(label, m, side)
            own_label = _own_pixels(crop_label, m, boxes, k) if len(boxes) > 1 else crop_label
            x0, y0, x1, y1 = (float(v) for v in face.box)
            if not np.isin(own_label, FACE_CLASSES).any():
                # A face left unlabeled (a passer-by, a box over a wall): its crop would say "all
                # background" over a face, which a model trained on the export would learn.
                samples.append(FaceSample(sample, (x0, y0, x1, y1), UNLABELED))
                continue
            for path, data in (
                (split_dir / "images" / f"{sample}.jpg", encode_jpeg(crop_face(image, m, side, fill=0))),
                (split_dir / "labels" / f"{sample}.png", encode_label_png(crop_label)),
            ):
                written.append(path)
                path.write_bytes(data)
            points, how = _known_in_crop(known, boxes, k, m, side), "known"
            if points is None:
                points, how = derive_landmarks(own_label), "derived"
            path = split_dir / "landmarks" / f"{sample}.txt"
            written.append(path)
            path.write_text(format_landmarks(points), encoding="utf-8")
            samples.append(FaceSample(sample, (x0, y0, x1, y1), how))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return samples


def _own_pixels(
    crop_label: np.ndarray, m: np.ndarray, boxes: Sequence[tuple[float, float, float, float]], k: int
) -> np.ndarray:
    """The crop's label with only face ``k``'s pixels (those nearer its box than any other face's,
    as ``largest_face_label`` shares a photo out): a neighbour reaching into the crop stays
    labeled in the export (its pixels are in the image) but must not place this face's
    landmarks."""
    from trainer.faces import invert

    inv = invert(m).astype(np.float32)
    side = crop_label.shape[0]
    centres = np.arange(side, dtype=np.float32) + 0.5
    xs, ys = centres[None, :], centres[:, None]
    own = owned_by(
        inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2], boxes, k
    )
    return np.where(own, crop_label, 0).astype(np.uint8)


def _known_in_crop(
    known: np.ndarray | None, boxes: Sequence[tuple[float, float, float, float]], k: int, m: np.ndarray, side: int
) -> np.ndarray | None:
    """The project's own landmarks in face ``k``'s crop, when they are this face's (their centre
    lies in its box and, where boxes overlap, is nearer its box than any other's: one face's
    points never go to two crops) and fall inside the crop; else None."""
    if known is None:
        return None
    cx, cy = known.mean(0)
    x0, y0, x1, y1 = boxes[k]
    if not (x0 <= cx <= x1 and y0 <= cy <= y1) or not owned_by(np.float32(cx), np.float32(cy), boxes, k):
        return None
    points = known @ m[:, :2].T + m[:, 2]
    return points if ((points >= -1) & (points <= side)).all() else None

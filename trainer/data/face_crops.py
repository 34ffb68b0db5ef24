"""Labeled photos as the face crops the parser is trained on (``--framing detect``).

A labeled photo that is not an aligned crop (LaPa's own train split, a team's own photos in the
app) holds one or more faces anywhere in it. Each face found in its label map
(:func:`trainer.faces.faces_from_label`) becomes one training sample: image and label warped by
the same similarity transform the predictor uses at inference, so training and parsing see the
same framing. The fine-tune's augmentation (scale, shift, rotation) then jitters that crop, so
the parser tolerates a finder's error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from trainer.data.sample import NamedSamples, Sample
from trainer.faces import crop_face, face_transform, faces_from_label, warp_label_to_crop

log = logging.getLogger(__name__)


class FaceCropSamples(NamedSamples):
    """Every labeled face of some photos, cropped square at ``size`` px.

    Listing the faces reads every label once (at construction); images are read on access.

    Args:
        source: labeled Samples (any reader or sequence).
        size: crop side in pixels (the model's input side).

    Attributes:
        names: one per crop: the photo's name, with ``#k`` for its k-th face after the first.
        skipped: names of photos whose label holds no face (left out, with a warning).
    """

    def __init__(self, source: Sequence[Sample], size: int) -> None:
        self.source = source
        self.size = int(size)
        self._items: list[tuple[int, object]] = []
        self.names: list[str] = []
        self.skipped: list[str] = []
        for i in range(len(source)):
            sample = source[i]
            if sample.label is None:
                raise ValueError(f"{sample.image_path}: no label; face crops need labeled photos")
            faces = faces_from_label(sample.label)
            if not faces:
                log.warning("%s: no face in its label; left out of training", sample.image_path)
                self.skipped.append(sample.name)
                continue
            for k, face in enumerate(faces):
                self._items.append((i, face))
                self.names.append(sample.name if k == 0 else f"{sample.name}#{k}")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        i, face = self._items[index]
        sample = self.source[i]
        assert sample.label is not None
        m = face_transform(face, self.size)  # type: ignore[arg-type]  # label px -> crop
        (lh, lw), (ih, iw) = sample.label.shape, sample.image.shape[:2]
        to_label = np.diag([lw / iw, lh / ih, 1.0])  # the image may be stored at another size
        return Sample(
            image=crop_face(sample.image, m @ to_label, self.size),
            label=warp_label_to_crop(sample.label, m, self.size),
            name=self.names[index],
            image_path=sample.image_path,
            label_path=sample.label_path,
        )

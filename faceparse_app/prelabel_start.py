"""The model's pre-label each photo started from in this session (Qt-free), to tell an edit
undone back to it: such a label is the model's again, not a person's.

A photo's work starts from its pre-label (undo stops there). Strokes then make its label the
annotator's; undoing every one of them gives back the pre-label, byte for byte, and it is
saved as what it is: the model's pre-label (still refreshable by a newer model, accepted with
A as the model's, so fine-tuning never validates a model on its own output). The edits made
and undone still count as effort.
"""

from __future__ import annotations

import hashlib

import numpy as np

from faceparse_app.document import LabelDocument


def _digest(label: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(label, dtype=np.uint8).tobytes()).hexdigest()


class PrelabelStarts:
    """Per image id, the model version and a digest of the pre-label it started from."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[str, str, tuple[int, int]]] = {}

    def note(self, image_id: int, label: np.ndarray, version: str | None) -> None:
        """The photo starts from ``label``, the pre-label of model ``version``."""
        if version:
            self._kept[image_id] = (str(version), _digest(label), label.shape[:2])

    def forget(self, image_id: int) -> None:
        """The photo no longer starts from a pre-label (its label was replaced by an import)."""
        self._kept.pop(image_id, None)

    def undone_to(self, image_id: int, doc: LabelDocument) -> str | None:
        """The model version whose pre-label ``doc`` holds again after its edits were undone
        (None: it does not, or the photo did not start from a pre-label).

        Only hashed when nothing is left to undo, so a save of an edited photo costs nothing.
        """
        kept = self._kept.get(image_id)
        if kept is None or doc.history.can_undo or doc.shape != kept[2]:
            return None
        return kept[0] if _digest(doc.label) == kept[1] else None

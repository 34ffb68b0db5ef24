"""Undo history of label edits as small deltas (bounding box + old and new values).

One step per stroke, fill or polygon. Memory is bounded: past ``max_bytes`` the oldest steps are
dropped, so a long session never grows without limit.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from trainer.faces import Face


@dataclass(frozen=True)
class FaceChange:
    """The faces of an image before and after a face was added or removed, carried by the
    undo step of that change so that undo and redo take the face with the pixels.

    Attributes:
        before: the faces kept before the change.
        after: the faces kept after it.
        changed: the faces added or removed (their pixels take the next prediction).
    """

    before: tuple[Face, ...]
    after: tuple[Face, ...]
    changed: tuple[Face, ...]


@dataclass(frozen=True)
class Delta:
    """One edit of a label map, restricted to the bounding box of the changed pixels.

    Attributes:
        y0: top row of the box in the label map.
        x0: left column of the box.
        before: (h, w) uint8 values inside the box before the edit.
        after: (h, w) uint8 values inside the box after the edit.
        by_hand: the annotator's edit (a stroke, fill, polygon, relabel); False for the
            model's (a pre-label, a face re-parsed), which never overwrites the annotator's.
        faces: the change of the image's faces this step makes, if any (a step of a face
            drawn or removed: empty arrays until its pixels come, then those pixels).
        parsed: the faces whose pixels from the model this step holds when it could not fold
            into their face step (a stroke came in between): redoing that face step leaves
            them to this step instead of parsing the face again.
    """

    y0: int
    x0: int
    before: np.ndarray
    after: np.ndarray
    by_hand: bool = True
    faces: FaceChange | None = None
    parsed: tuple[Face, ...] = ()

    def __post_init__(self) -> None:
        if self.before.shape != self.after.shape or self.before.ndim != 2:
            raise ValueError(
                f"delta arrays must be 2-D and of one shape, got {self.before.shape} "
                f"and {self.after.shape}"
            )

    @property
    def nbytes(self) -> int:
        """Memory the step holds, in bytes."""
        return int(self.before.nbytes + self.after.nbytes)

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """The changed box as (x0, y0, w, h) in label-map pixels."""
        h, w = self.before.shape
        return (self.x0, self.y0, w, h)

    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices of the box, to index a (H, W) label map."""
        h, w = self.before.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)

    @property
    def has_pixels(self) -> bool:
        return bool(self.before.size)

    @classmethod
    def of_faces(cls, change: FaceChange) -> Delta:
        """A step that changes the faces only (their pixels follow with the next prediction)."""
        empty = np.zeros((0, 0), np.uint8)
        return cls(y0=0, x0=0, before=empty, after=empty, by_hand=False, faces=change)

    @classmethod
    def between(
        cls, before: np.ndarray, after: np.ndarray, y0: int = 0, x0: int = 0, by_hand: bool = True
    ) -> Delta | None:
        """The delta between two same-shape (h, w) crops at (y0, x0), shrunk to the changed box.

        Returns:
            None when nothing changed.
        """
        changed = before != after
        rows = np.flatnonzero(changed.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(changed.any(axis=0))
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        c0, c1 = int(cols[0]), int(cols[-1]) + 1
        return cls(
            y0=y0 + r0,
            x0=x0 + c0,
            before=np.ascontiguousarray(before[r0:r1, c0:c1], dtype=np.uint8).copy(),
            after=np.ascontiguousarray(after[r0:r1, c0:c1], dtype=np.uint8).copy(),
            by_hand=by_hand,
        )


class History:
    """A bounded undo/redo stack of Deltas.

    Args:
        max_bytes: memory budget for all steps together; the oldest steps are dropped past it
            (the newest step is always kept, however large).
    """

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        self.on_grow: Callable[[], None] | None = None  # after each new step (the shelf's total)
        self._undo: deque[Delta] = deque()
        self._redo: list[Delta] = []
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Memory held by all undo and redo steps, in bytes."""
        return self._bytes

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def __len__(self) -> int:
        """Number of steps that can be undone."""
        return len(self._undo)

    def push(self, delta: Delta) -> None:
        """Record a new edit; this clears the redo steps."""
        for d in self._redo:
            self._bytes -= d.nbytes
        self._redo.clear()
        self._undo.append(delta)
        self._bytes += delta.nbytes
        self._trim()
        if self.on_grow is not None:
            self.on_grow()

    @property
    def last(self) -> Delta | None:
        """The newest step that can be undone, or None."""
        return self._undo[-1] if self._undo else None

    def fold_faces(self) -> Delta | None:
        """Fold the face-only steps just under the newest step (the pixels of those faces, come
        from the model) into it, so that one undo takes the faces and their pixels together.

        Returns:
            The folded step, or None when there was nothing to fold.
        """
        if not self._undo or self._undo[-1].faces is not None:
            return None
        top = self._undo.pop()
        folded: list[FaceChange] = []
        while self._undo and not self._undo[-1].has_pixels and self._undo[-1].faces is not None:
            folded.insert(0, self._undo.pop().faces)  # type: ignore[arg-type]
        if not folded:
            self._undo.append(top)
            return None
        changed = tuple(f for c in folded for f in c.changed)
        step = replace(top, faces=FaceChange(folded[0].before, folded[-1].after, changed))
        self._undo.append(step)
        return step

    def mark_parsed(self, faces: tuple[Face, ...]) -> None:
        """Record on the newest step that it holds the model's pixels of ``faces``."""
        if self._undo:
            self._undo[-1] = replace(self._undo[-1], parsed=tuple(faces))

    @property
    def redo_steps(self) -> tuple[Delta, ...]:
        """The steps that can be redone, the next one last."""
        return tuple(self._redo)

    def undo(self) -> Delta | None:
        """The step to revert (the caller writes ``delta.before`` back), or None."""
        if not self._undo:
            return None
        delta = self._undo.pop()
        self._redo.append(delta)
        return delta

    def redo(self) -> Delta | None:
        """The step to re-apply (the caller writes ``delta.after`` back), or None."""
        if not self._redo:
            return None
        delta = self._redo.pop()
        self._undo.append(delta)
        return delta

    def hand_edited(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Which pixels of the box (end-exclusive) an edit by hand in the undo steps changed.

        Undone steps do not count (their pixels hold the earlier values again); steps dropped
        from the bounded history, or from an earlier session, are not known.

        Returns:
            (y1 - y0, x1 - x0) bool.
        """
        out = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), bool)
        for d in self._undo:
            if not d.by_hand:
                continue
            h, w = d.before.shape
            ix0, iy0 = max(x0, d.x0), max(y0, d.y0)
            ix1, iy1 = min(x1, d.x0 + w), min(y1, d.y0 + h)
            if ix1 <= ix0 or iy1 <= iy0:
                continue
            sub = (slice(iy0 - d.y0, iy1 - d.y0), slice(ix0 - d.x0, ix1 - d.x0))
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] |= d.before[sub] != d.after[sub]
        return out

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self._bytes = 0

    def _trim(self) -> None:
        # Drop redo steps first (least likely to be wanted), then the oldest undo steps.
        while self._bytes > self.max_bytes and self._redo:
            self._bytes -= self._redo.pop(0).nbytes
        while self._bytes > self.max_bytes and len(self._undo) > 1:
            self._bytes -= self._undo.popleft().nbytes


HISTORY_BYTES = 16 * 2**20  # undo memory per image, at the least
FULL_SIZE_STEPS = 8  # steps that each change all of an image its undo keeps (up to 16 megapixels)
KEEP_HISTORIES = 20  # images whose undo history is kept (most recently opened)
TOTAL_HISTORY_BYTES = 512 * 2**20  # undo memory of the kept histories together


class HistoryShelf:
    """The undo histories of the images opened in a session, kept across image switches.

    Each image's budget grows with its size, so a fill of a 12-megapixel photo (a 24 MB step)
    stays undoable after the next stroke, up to half of ``total_bytes``: the history of the
    photo just left always fits beside the one opened, so a look at the next photo never costs
    the last one its undo, and a 48-megapixel photo's steps never outgrow the shared memory. The
    least recently opened histories are let go past ``keep`` images or ``total_bytes`` together,
    as a photo opens and as the one in work grows (never that one).

    Args:
        per_image_bytes: an image's undo memory at the least (a small image's budget).
        full_size_steps: steps that each change a whole image an image's budget holds (fewer on
            a photo over 16 megapixels, whose budget is half of ``total_bytes``).
        keep: images whose history is kept.
        total_bytes: memory of all kept histories together past which the oldest go.
    """

    def __init__(
        self,
        per_image_bytes: int = HISTORY_BYTES,
        full_size_steps: int = FULL_SIZE_STEPS,
        keep: int = KEEP_HISTORIES,
        total_bytes: int = TOTAL_HISTORY_BYTES,
    ) -> None:
        self.per_image_bytes = int(per_image_bytes)
        self.full_size_steps = int(full_size_steps)
        self.keep = int(keep)
        self.total_bytes = int(total_bytes)
        self._kept: OrderedDict[int, History] = OrderedDict()

    def budget(self, shape: tuple[int, int]) -> int:
        """The undo memory of an image of ``shape`` (H, W), in bytes."""
        whole_step = 2 * int(shape[0]) * int(shape[1])  # a step holds the old and new values
        wanted = max(self.per_image_bytes, self.full_size_steps * whole_step)
        return min(wanted, self.total_bytes // 2)

    def for_image(self, image_id: int, shape: tuple[int, int]) -> History:
        """The history of an image about to be shown (a new one the first time)."""
        history = self._kept.pop(image_id, None)
        if history is None:
            history = History(max_bytes=self.budget(shape))
        self._kept[image_id] = history
        # The total holds while the photo in work grows too (a long session on one large photo),
        # not only as a photo opens.
        history.on_grow = self._let_go
        self._let_go()
        return history

    def _let_go(self) -> None:
        """Let the least recently opened histories go, never the last opened (the one in
        work), while more than ``keep`` images or ``total_bytes`` together are kept."""
        while len(self._kept) > 1 and (len(self._kept) > self.keep or self.nbytes > self.total_bytes):
            _, gone = self._kept.popitem(last=False)
            gone.on_grow = None

    def drop(self, image_id: int) -> None:
        """Forget an image's history (its steps led to a label that is no longer there)."""
        self._kept.pop(image_id, None)

    @property
    def nbytes(self) -> int:
        """Memory held by every kept history, in bytes."""
        return sum(h.nbytes for h in self._kept.values())

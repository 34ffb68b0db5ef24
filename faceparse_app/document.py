"""The label map being edited: painting, filling, protecting classes, undo and redo.

Qt-free: views subscribe to ``on_change`` (plain callbacks given the changed box) and redraw
only that box.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from faceparse_app.history import Delta, History
from faceparse_app.tools import BBox, disc_segment_mask, flood_region, polygon_mask
from trainer.errors import LabelMapError

# A stroke snapshots the label lazily, one tile at a time, the first time it touches the tile:
# a stroke costs memory and time in proportion to the area it paints, never to the image size.
TILE = 64

XYWH = tuple[int, int, int, int]


class LabelDocument:
    """A (H, W) uint8 label map with undoable edits.

    Args:
        label: the label map; edited in place (``.label`` is this very array when it is a
            C-contiguous uint8 array).
        num_classes: classes allowed (values 0..num_classes-1).
        history: an undo history to continue (e.g. kept per image across image switches); a
            fresh one when None.

    Attributes:
        label: the live (H, W) uint8 array.
        dirty: True when edited since the last ``mark_saved``.
        protected: classes whose pixels no tool changes.
        on_change: callbacks called with the changed box (x0, y0, w, h) after every change.
        on_faces: callbacks called with (step, undone) when an undo or redo step carries a
            change of the image's faces (``step.faces``; the faces kept follow the step).
    """

    def __init__(
        self, label: np.ndarray, num_classes: int = 11, history: History | None = None
    ) -> None:
        self.num_classes = int(num_classes)
        self.label = self._checked(label)
        self.history = history if history is not None else History()
        self.dirty = False
        self.protected: set[int] = set()
        self.on_change: list[Callable[[XYWH], None]] = []
        self.on_faces: list[Callable[[Delta, bool], None]] = []
        self._stroke_cls: int | None = None
        self._last: tuple[float, float] | None = None
        self._tiles: dict[tuple[int, int], np.ndarray] = {}
        self._stroke_box: BBox | None = None

    # ---- reading -------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.label.shape[0]), int(self.label.shape[1])

    @property
    def in_stroke(self) -> bool:
        return self._stroke_cls is not None

    def pick(self, x: float, y: float) -> int:
        """The class under pixel (x, y) (eyedropper); -1 outside the map."""
        h, w = self.shape
        cx, cy = int(round(x)), int(round(y))
        if 0 <= cx < w and 0 <= cy < h:
            return int(self.label[cy, cx])
        return -1

    # ---- strokes (brush; the eraser is a stroke of class 0) -------------------------------

    def begin_stroke(self, cls: int) -> None:
        """Start a brush stroke in class ``cls``; ends any stroke still open."""
        if self.in_stroke:
            self.end_stroke()
        self._stroke_cls = self._checked_class(cls)
        self._last = None
        self._tiles = {}
        self._stroke_box = None

    def stroke_to(self, x: float, y: float, radius: float) -> XYWH | None:
        """Paint the segment from the previous point to (x, y); the first call paints a dot.

        Args:
            x: column in pixels.
            y: row in pixels.
            radius: brush radius in pixels.

        Returns:
            The box (x0, y0, w, h) that changed, or None when no pixel changed.
        """
        if self._stroke_cls is None:
            raise RuntimeError("stroke_to called outside a stroke; call begin_stroke first")
        if not np.isfinite([x, y, radius]).all():
            return None  # a bogus pointer event must not break the stroke
        p1 = (float(x), float(y))
        p0 = self._last if self._last is not None else p1
        self._last = p1
        # A long, fast drag is painted as short pieces: each piece works in its own small box,
        # so the cost follows the painted area, not the area of the whole drag's bounding box.
        r = max(0.0, float(radius))
        length = float(np.hypot(p1[0] - p0[0], p1[1] - p0[1]))
        pieces = max(1, int(np.ceil(length / max(2.0 * r, 32.0))))
        union: BBox | None = None
        for k in range(pieces):
            a = (p0[0] + (p1[0] - p0[0]) * k / pieces, p0[1] + (p1[1] - p0[1]) * k / pieces)
            b = (
                p0[0] + (p1[0] - p0[0]) * (k + 1) / pieces,
                p0[1] + (p1[1] - p0[1]) * (k + 1) / pieces,
            )
            box = self._paint_piece(a, b, r)
            if box is not None:
                union = box if union is None else _union(union, box)
        if union is None:
            return None
        self.dirty = True
        bbox = (union[0], union[1], union[2] - union[0], union[3] - union[1])
        self._notify(bbox)
        return bbox

    def _paint_piece(
        self, p0: tuple[float, float], p1: tuple[float, float], radius: float
    ) -> BBox | None:
        assert self._stroke_cls is not None
        box, mask = disc_segment_mask(p0, p1, radius, self.label.shape)
        x0, y0, x1, y1 = box
        if not mask.any():
            return None
        region = self.label[y0:y1, x0:x1]
        paint = mask & (region != self._stroke_cls)
        if self.protected:
            paint &= ~self._protect_lut()[region]
        if not paint.any():
            return None
        self._snapshot_tiles(box)
        region[paint] = self._stroke_cls
        sb = self._stroke_box
        self._stroke_box = box if sb is None else _union(sb, box)
        return box

    def end_stroke(self) -> Delta | None:
        """Close the stroke as one undo step.

        Returns:
            The step recorded, or None when the stroke changed nothing.
        """
        if self._stroke_cls is None:
            return None
        box, tiles = self._stroke_box, self._tiles
        self._stroke_cls, self._last, self._tiles, self._stroke_box = None, None, {}, None
        if box is None:
            return None
        x0, y0, x1, y1 = box
        after = self.label[y0:y1, x0:x1]
        before = after.copy()
        # Untouched tiles hold their old values already; touched ones come from the snapshots.
        for (ty, tx), snap in tiles.items():
            ty0, tx0 = ty * TILE, tx * TILE
            sy0, sy1 = max(ty0, y0), min(ty0 + snap.shape[0], y1)
            sx0, sx1 = max(tx0, x0), min(tx0 + snap.shape[1], x1)
            if sy1 > sy0 and sx1 > sx0:
                before[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = snap[
                    sy0 - ty0 : sy1 - ty0, sx0 - tx0 : sx1 - tx0
                ]
        return self._record(Delta.between(before, after, y0, x0), notify=False)

    # ---- fills ----------------------------------------------------------------------------

    def flood_fill(self, x: float, y: float, cls: int) -> Delta | None:
        """Fill the 4-connected region of the clicked pixel's class with ``cls``.

        Nothing changes when the clicked class is protected or already ``cls``.
        """
        cls = self._checked_class(cls)
        self._close_stroke()
        picked = self.pick(x, y)
        if picked < 0 or picked == cls or picked in self.protected:
            return None
        box, mask = flood_region(self.label, x, y)
        return self._apply_mask(box, mask, cls)

    def fill_polygon(self, points: Sequence[tuple[float, float]], cls: int) -> Delta | None:
        """Fill a closed polygon (pixels in image coordinates) with ``cls``, sparing protected classes."""
        cls = self._checked_class(cls)
        self._close_stroke()
        box, mask = polygon_mask(points, self.label.shape)
        return self._apply_mask(box, mask, cls)

    def replace_where(
        self,
        values: np.ndarray,
        mask: np.ndarray,
        x0: int = 0,
        y0: int = 0,
        by_hand: bool = True,
    ) -> Delta | None:
        """Set the pixels of ``mask`` to ``values`` as one undo step, sparing protected classes
        (e.g. a blob relabeled, or a face's pixels re-predicted after a face was added or removed).

        Args:
            values: (h, w) uint8 classes for the box whose top-left pixel is (x0, y0).
            mask: (h, w) bool, the pixels of the box to set; nothing outside it changes.
            by_hand: the annotator's edit; False for the model's, which also spares every pixel
                an edit by hand in the undo history changed (see ``History.hand_edited``).

        Returns:
            The step recorded, or None when no pixel changed.
        """
        self._close_stroke()
        values = self._checked(values)
        mask = np.asarray(mask, bool)
        h, w = self.shape
        if values.shape != mask.shape or x0 < 0 or y0 < 0 or x0 + mask.shape[1] > w or y0 + mask.shape[0] > h:
            raise LabelMapError(
                f"a {mask.shape[1]}×{mask.shape[0]} region at ({x0}, {y0}) with {values.shape[1]}×"
                f"{values.shape[0]} values does not fit the {w}×{h} label map"
            )
        region = self.label[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]]
        paint = mask & (region != values)
        if self.protected:
            paint &= ~self._protect_lut()[region]
        if not by_hand and paint.any():
            paint &= ~self.history.hand_edited(x0, y0, x0 + mask.shape[1], y0 + mask.shape[0])
        if not paint.any():
            return None
        before = region.copy()
        region[paint] = values[paint]
        return self._record(Delta.between(before, region, y0, x0, by_hand))

    def replace(self, label: np.ndarray) -> Delta | None:
        """Replace the whole map (e.g. by a new pre-label) as one undoable step.

        Protection does not apply: this is an explicit whole-map replacement.
        """
        delta = self._whole_map(label)
        if delta is None:
            return None
        rows, cols = delta.slices()
        self.label[rows, cols] = delta.after
        return self._record(delta)

    def _whole_map(self, label: np.ndarray) -> Delta | None:
        """The step from the map to ``label``, a whole map of the image's size (None: no
        pixel differs); the stroke in progress is closed first."""
        self._close_stroke()
        new = self._checked(label)
        if new.shape != self.label.shape:
            raise LabelMapError(
                f"new label map is {new.shape[1]}×{new.shape[0]} but the image is "
                f"{self.label.shape[1]}×{self.label.shape[0]}"
            )
        return Delta.between(self.label, new, by_hand=False)

    def start_from(self, label: np.ndarray) -> XYWH | None:
        """Make ``label`` the map's starting state: the whole map is replaced and the undo
        history cleared, so undo stops there (e.g. the model's pre-label of an image nobody
        has edited, the state the annotator's work starts from, as a photo opened with it).

        Returns:
            The changed box (x0, y0, w, h), or None when no pixel changed.
        """
        delta = self._whole_map(label)
        self.history.clear()
        if delta is None:
            return None
        rows, cols = delta.slices()
        self.label[rows, cols] = delta.after
        self.dirty = True
        self._notify(delta.bbox)
        return delta.bbox

    # ---- undo / redo ----------------------------------------------------------------------

    def undo(self) -> XYWH | None:
        """Revert the last step; returns the changed box (x0, y0, w, h), or None."""
        self._close_stroke()
        delta = self.history.undo()
        if delta is None:
            return None
        return self._faces_follow(delta, True, self._write_back(delta, delta.after, delta.before))

    def redo(self) -> XYWH | None:
        """Re-apply the last undone step; returns the changed box, or None."""
        self._close_stroke()
        delta = self.history.redo()
        if delta is None:
            return None
        return self._faces_follow(delta, False, self._write_back(delta, delta.before, delta.after))

    def mark_saved(self) -> None:
        """Record that the current map is on disk."""
        self.dirty = False

    # ---- internals ------------------------------------------------------------------------

    def _checked(self, label: np.ndarray) -> np.ndarray:
        arr = np.asarray(label)
        if arr.ndim != 2:
            raise LabelMapError(f"label map must be 2-D, got shape {arr.shape}")
        if arr.dtype != np.uint8 or not arr.flags.c_contiguous or not arr.flags.writeable:
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise LabelMapError("label map values must fit 0..255")
            arr = np.ascontiguousarray(arr, dtype=np.uint8).copy()
        if arr.size and int(arr.max()) >= self.num_classes:
            raise LabelMapError(
                f"label map has class value {int(arr.max())}; expected 0..{self.num_classes - 1}"
            )
        return arr

    def _checked_class(self, cls: int) -> int:
        cls = int(cls)
        if not 0 <= cls < self.num_classes:
            raise ValueError(f"class {cls} out of range 0..{self.num_classes - 1}")
        return cls

    def _protect_lut(self) -> np.ndarray:
        lut = np.zeros(256, bool)
        lut[[c for c in self.protected if 0 <= int(c) < 256]] = True
        return lut

    def _close_stroke(self) -> None:
        if self.in_stroke:
            self.end_stroke()

    def _snapshot_tiles(self, box: BBox) -> None:
        x0, y0, x1, y1 = box
        for ty in range(y0 // TILE, (y1 - 1) // TILE + 1):
            for tx in range(x0 // TILE, (x1 - 1) // TILE + 1):
                if (ty, tx) not in self._tiles:
                    self._tiles[(ty, tx)] = self.label[
                        ty * TILE : (ty + 1) * TILE, tx * TILE : (tx + 1) * TILE
                    ].copy()

    def _apply_mask(self, box: BBox, mask: np.ndarray, cls: int) -> Delta | None:
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0 or not mask.any():
            return None
        region = self.label[y0:y1, x0:x1]
        paint = mask & (region != cls)
        if self.protected:
            paint &= ~self._protect_lut()[region]
        if not paint.any():
            return None
        before = region.copy()
        region[paint] = cls
        return self._record(Delta.between(before, region, y0, x0))

    def _record(self, delta: Delta | None, notify: bool = True) -> Delta | None:
        if delta is None:
            return None
        self.history.push(delta)
        self.dirty = True
        if notify:
            self._notify(delta.bbox)
        return delta

    def _faces_follow(self, delta: Delta, undone: bool, box: XYWH | None) -> XYWH | None:
        if box is not None and delta.faces is not None:
            for callback in list(self.on_faces):
                callback(delta, undone)
        return box

    def _write_back(self, delta: Delta, expected: np.ndarray, values: np.ndarray) -> XYWH | None:
        if not delta.has_pixels:  # a face drawn or removed whose pixels have not come yet
            return delta.bbox
        rows, cols = delta.slices()
        current = self.label[rows, cols]
        if current.shape != expected.shape or not np.array_equal(current, expected):
            # The map no longer matches this history (e.g. the label was replaced on disk):
            # applying old values would corrupt it, so drop the history instead.
            self.history.clear()
            return None
        current[...] = values
        self.dirty = True
        self._notify(delta.bbox)
        return delta.bbox

    def _notify(self, bbox: XYWH) -> None:
        for callback in list(self.on_change):
            callback(bbox)


def _union(a: BBox, b: BBox) -> BBox:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])

"""The pre-label queue's cache of predictions, per (image id, model version), least recently used
first out. It is bounded in bytes as well as in count, and keeps a confidence map only for the
image on screen: a 200-megapixel photo's label map is 200 MB and its map 800 MB."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainer.predict import Prediction

# Label maps kept at most, in bytes, besides the count: 24 photos of 200 megapixels would be
# 4.8 GB; this keeps five of them and any number of ordinary photos.
CACHE_BYTES = 1 << 30

Key = tuple[int, str | None]


class PredictionCache:
    """Predictions by (image id, model version).

    Args:
        size: predictions kept at most (the newest and the image on screen's stay, however
            large).
        max_bytes: label-map bytes kept at most.
    """

    def __init__(self, size: int = 24, max_bytes: int = CACHE_BYTES) -> None:
        self.size = max(1, int(size))
        self.max_bytes = max_bytes
        self.on_screen: int | None = None  # the image whose confidence map is kept
        self._items: OrderedDict[Key, Prediction] = OrderedDict()

    def __contains__(self, key: Key) -> bool:
        return key in self._items

    def get(self, key: Key) -> Prediction | None:
        return self._items.get(key)

    def clear(self) -> None:
        self._items.clear()

    def forget(self, image_id: int) -> None:
        """Drop an image's predictions, of every model version."""
        for key in [k for k in self._items if k[0] == image_id]:
            del self._items[key]

    def show(self, image_id: int) -> None:
        """The image is on screen now: its prediction (of any version) is the last to go, and
        the other images' confidence maps go."""
        self.on_screen = image_id
        for key in [k for k in self._items if k[0] == image_id]:
            self._items.move_to_end(key)
        self._drop_maps()

    def touch(self, key: Key) -> None:
        """Mark a prediction as just used (the last to go)."""
        if key in self._items:
            self._items.move_to_end(key)

    def keep(self, key: Key, pred: Prediction) -> None:
        """Add or replace a prediction; the least recently used go past the bounds, never the
        one just kept nor the image on screen's (the look-ahead's results come after it)."""
        self._items[key] = pred
        self._items.move_to_end(key)
        self._drop_maps()
        while len(self._items) > self.size or sum(p.label.nbytes for p in self._items.values()) > self.max_bytes:
            oldest = next((k for k in self._items if k != key and k[0] != self.on_screen), None)
            if oldest is None:
                break
            del self._items[oldest]

    def add_map(self, key: Key, confidence: object) -> None:
        """Give a cached prediction its confidence map (it came without one)."""
        pred = self._items.get(key)
        if pred is not None:
            self._items[key] = dataclasses.replace(pred, confidence=confidence)

    def _drop_maps(self) -> None:
        """Maps of images no longer on screen go (one is predicted again when it comes back)."""
        for key, pred in self._items.items():
            if key[0] != self.on_screen and pred.confidence is not None:
                self._items[key] = dataclasses.replace(pred, confidence=None)

"""The label overlay as one premultiplied-ARGB QImage over a numpy buffer.

Only the changed box is recoloured (a LUT lookup), so a brush dab on a 4000×4000 map costs the
size of the dab, not of the map.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from trainer.labels import LabelSet

Box = tuple[int, int, int, int]  # x0, y0, w, h in image pixels


def class_lut(label_set: LabelSet) -> np.ndarray:
    """(256, 4) uint8 BGRA lookup table: class colour, opaque; background and unknown clear."""
    from faceparse_app.widgets.label_colours import display_palette

    lut = np.zeros((256, 4), np.uint8)
    pal = display_palette(label_set)
    lut[1 : label_set.num_classes, 0] = pal[1:, 2]
    lut[1 : label_set.num_classes, 1] = pal[1:, 1]
    lut[1 : label_set.num_classes, 2] = pal[1:, 0]
    lut[1 : label_set.num_classes, 3] = 255
    return lut


def edge_mask(label: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose class differs from a 4-neighbour (the class outlines)."""
    edge = np.zeros(label.shape, bool)
    dx = label[:, 1:] != label[:, :-1]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    dy = label[1:, :] != label[:-1, :]
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge


class LabelOverlay:
    """Colours a live (H, W) uint8 label map into an ARGB32-premultiplied QImage.

    Args:
        label: the document's label array (read, never written).
        label_set: class table whose palette colours the overlay.
        outline: show only the class outlines instead of filled regions.
    """

    def __init__(self, label: np.ndarray, label_set: LabelSet, outline: bool = False) -> None:
        self.label = label
        self.lut = class_lut(label_set)
        # One uint32 per pixel: a lookup writes 4 bytes at once (4-5× faster than (N, 4) rows).
        self.lut32 = np.ascontiguousarray(self.lut).view(np.uint32).reshape(256)
        self.outline = outline
        h, w = label.shape
        # Little-endian ARGB32 is B, G, R, A in memory; the QImage shares this buffer.
        self.pixels = np.zeros((h, w), np.uint32)
        self.buffer = self.pixels.view(np.uint8).reshape(h, w, 4)
        self.image = QImage(
            self.pixels.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied
        )
        self.update()

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.label.shape
        return w, h

    def set_outline(self, outline: bool) -> None:
        if outline != self.outline:
            self.outline = outline
            self.update()

    def update(self, box: Box | None = None) -> Box:
        """Recolour `box` (x0, y0, w, h; None = everything); returns the box actually touched.

        In outline mode a change also moves the outlines of its neighbours, so the box grows by
        one pixel.
        """
        w_img, h_img = self.size
        if box is None:
            x0, y0, x1, y1 = 0, 0, w_img, h_img
        else:
            x0, y0 = max(0, box[0]), max(0, box[1])
            x1, y1 = min(w_img, box[0] + box[2]), min(h_img, box[1] + box[3])
        if x1 <= x0 or y1 <= y0:
            return (x0, y0, 0, 0)
        if not self.outline:
            if (x0, y0, x1, y1) == (0, 0, w_img, h_img) and self.label.flags.c_contiguous:
                # Whole map: np.take into the contiguous buffer is the fastest path ('wrap'
                # skips bounds checks; uint8 indices are always < 256).
                np.take(self.lut32, self.label, out=self.pixels, mode="wrap")
            else:
                # A box is a strided view, where np.take would buffer; fancy indexing does not.
                self.pixels[y0:y1, x0:x1] = self.lut32[self.label[y0:y1, x0:x1]]
            return (x0, y0, x1 - x0, y1 - y0)
        # Grow by 1 for the region to write and by 2 for the region read, so edge pixels of
        # the written region see their outside neighbours.
        wx0, wy0, wx1, wy1 = max(0, x0 - 1), max(0, y0 - 1), min(w_img, x1 + 1), min(h_img, y1 + 1)
        rx0, ry0, rx1, ry1 = max(0, x0 - 2), max(0, y0 - 2), min(w_img, x1 + 2), min(h_img, y1 + 2)
        sub = self.label[ry0:ry1, rx0:rx1]
        edge = edge_mask(sub)[wy0 - ry0 : wy1 - ry0, wx0 - rx0 : wx1 - rx0]
        colours = self.lut32[self.label[wy0:wy1, wx0:wx1]]
        colours[~edge] = 0
        self.pixels[wy0:wy1, wx0:wx1] = colours
        return (wx0, wy0, wx1 - wx0, wy1 - wy0)


HEAT_STRIP_PIXELS = 1 << 20  # pixels of the confidence view coloured at a time (~16 MB)
HEAT_LEVELS = 4096  # uncertainty levels of its colour table (colours within 1 of exact)


def _heat_lut(alpha: float) -> np.ndarray:
    """(HEAT_LEVELS,) uint32: premultiplied BGRA (little-endian ARGB32) of each uncertainty
    level from 0 to 1, as ``faceparse_app.uncertainty.heat_rgba`` colours it."""
    from faceparse_app.uncertainty import heat_rgba

    levels = np.linspace(0.0, 1.0, HEAT_LEVELS, dtype=np.float32)[None, :]
    rgba = heat_rgba(levels, alpha)[0].astype(np.uint16)
    bgra = np.empty((HEAT_LEVELS, 4), np.uint8)
    a = rgba[:, 3]
    for dst, src in ((0, 2), (1, 1), (2, 0)):
        bgra[:, dst] = (rgba[:, src] * a + 127) // 255
    bgra[:, 3] = a
    return bgra.view(np.uint32).reshape(HEAT_LEVELS)


class HeatOverlay:
    """The model's per-pixel uncertainty as a premultiplied-ARGB QImage (the confidence view).

    Sure pixels are transparent, unsure ones glow (``faceparse_app.uncertainty.heat_rgba``),
    so the annotator sees where a pre-label needs checking.

    Args:
        confidence: (H, W) float top-class probability in [1/C, 1], at the image's size.
        num_classes: C, to scale confidence into uncertainty 0..1.
        alpha: opacity of the least sure pixels.
    """

    def __init__(self, confidence: np.ndarray, num_classes: int, alpha: float = 0.75) -> None:
        from faceparse_app.uncertainty import uncertainty_from_confidence

        h, w = confidence.shape
        lut32 = _heat_lut(alpha)
        pixels = np.empty((h, w), np.uint32)
        # A strip of rows at a time, each pixel's colour looked up from its uncertainty: computed
        # whole, the colours went through float temporaries of ~100 bytes a pixel (20 GB and
        # minutes for a 200-megapixel photo); the image itself is 4 bytes a pixel.
        rows = max(1, HEAT_STRIP_PIXELS // max(1, w))
        for y in range(0, h, rows):
            level = uncertainty_from_confidence(confidence[y : y + rows], num_classes)
            level *= HEAT_LEVELS - 1
            level += 0.5
            pixels[y : y + rows] = lut32[level.astype(np.intp)]
        self.buffer = pixels.view(np.uint8).reshape(h, w, 4)
        self.image = QImage(self.buffer.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.width(), self.image.height()

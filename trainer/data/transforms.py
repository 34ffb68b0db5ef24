"""Training augmentations and evaluation resizing for (image, label map) pairs.

All geometry of one training sample is a single affine warp, so the image is resampled once
(after an anti-aliasing resize to the output size) and the label map with nearest neighbour, so
it never gains class values it did not have. A horizontal flip also swaps the left/right classes
through the label set's flip table: a flipped left eyebrow lies where a right one does.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from trainer.labels import LabelSet

__all__ = ["TrainAugment", "resize_square", "to_tensor", "label_to_tensor"]


def resize_square(
    image: np.ndarray, size: int, label: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize an image (and its label map) to size×size, ignoring the aspect ratio.

    Args:
        image: (H, W, 3) uint8 RGB.
        size: output side in pixels.
        label: optional (H, W) uint8 class indices.

    Returns:
        (size, size, 3) uint8 image (area averaging when shrinking, bilinear when enlarging) and
        the (size, size) uint8 label (nearest neighbour), or None when no label was given.
    """
    h, w = image.shape[:2]
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_LINEAR
        image = cv2.resize(image, (size, size), interpolation=interp)
    if label is not None and label.shape[:2] != (size, size):
        label = cv2.resize(label, (size, size), interpolation=cv2.INTER_NEAREST)
    return image, label


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 tensor in [0, 1]."""
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    return torch.from_numpy(chw).float().div_(255.0)


def label_to_tensor(label: np.ndarray) -> torch.Tensor:
    """(H, W) uint8 class indices -> (H, W) int64 tensor (what cross-entropy expects)."""
    return torch.from_numpy(np.ascontiguousarray(label)).long()


def _jitter_colour(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation factors drawn from [1 - strength, 1 + strength]."""
    brightness, contrast, saturation = rng.uniform(1.0 - strength, 1.0 + strength, size=3)
    img = image.astype(np.float32) * brightness
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img = (img - grey.mean()) * contrast + grey.mean()
    grey = (img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    img = (img - grey) * saturation + grey
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


class TrainAugment:
    """Random flip (with left/right class swap), scale, rotation, shift and colour jitter.

    Args:
        size: output side in pixels; every output is size×size.
        label_set: class table whose ``flip_lut()`` relabels a flipped label map; None for images
            without labels (stage 1), which then cannot be given one.
        flip: probability of a horizontal flip.
        scale: (min, max) zoom factor about the centre.
        rotate_deg: rotation drawn from [-rotate_deg, rotate_deg] degrees.
        shift: translation drawn from [-shift, shift] of the side, per axis.
        color_jitter: brightness/contrast/saturation strength (0 disables).

    Calling it draws every random number from the given generator in a fixed order, so the same
    generator state gives the same output.
    """

    def __init__(
        self,
        size: int,
        label_set: LabelSet | None,
        flip: float = 0.5,
        scale: tuple[float, float] = (0.75, 1.25),
        rotate_deg: float = 15.0,
        shift: float = 0.08,
        color_jitter: float = 0.3,
    ) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        if not 0.0 <= flip <= 1.0:
            raise ValueError(f"flip is a probability, got {flip}")
        if not 0.0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {scale}")
        self.size = size
        self.label_set = label_set
        self.flip = flip
        self.scale = (float(scale[0]), float(scale[1]))
        self.rotate_deg = rotate_deg
        self.shift = shift
        self.color_jitter = color_jitter
        self._flip_lut = label_set.flip_lut() if label_set is not None else None

    def matrix(self, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """Draw one random (2, 3) affine matrix on the size×size grid and whether it flips."""
        flipped = bool(rng.random() < self.flip)
        zoom = rng.uniform(*self.scale)
        angle = math.radians(rng.uniform(-self.rotate_deg, self.rotate_deg))
        tx, ty = rng.uniform(-self.shift, self.shift, size=2) * self.size
        c = (self.size - 1) / 2.0  # pixel centres: the grid's centre is at (size - 1) / 2
        cos, sin = zoom * math.cos(angle), zoom * math.sin(angle)
        to_origin = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]], np.float64)
        rotate = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], np.float64)
        back = np.array([[1, 0, c + tx], [0, 1, c + ty], [0, 0, 1]], np.float64)
        m = back @ rotate @ to_origin
        if flipped:
            m = np.array([[-1, 0, 2 * c], [0, 1, 0], [0, 0, 1]], np.float64) @ m
        return m[:2], flipped

    def __call__(
        self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Augment one sample.

        Args:
            image: (H, W, 3) uint8 RGB.
            label: (H, W) uint8 class indices, or None.
            rng: the generator every random choice is drawn from.

        Returns:
            (size, size, 3) uint8 image and (size, size) uint8 label (None if none was given).
            Pixels warped in from outside the image are black with label 0 (background).
        """
        if label is not None and label.shape[:2] != image.shape[:2]:
            raise ValueError(f"label is {label.shape[:2]} but image is {image.shape[:2]}")
        if label is not None and self._flip_lut is None:
            raise ValueError("a label map needs the label_set its flips swap classes with")
        # Shrink first with area averaging; warpAffine's bilinear sampling alone would alias.
        image, label = resize_square(image, self.size, label)
        m, flipped = self.matrix(rng)
        dsize = (self.size, self.size)
        image = cv2.warpAffine(
            image, m, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        if label is not None:
            label = cv2.warpAffine(
                label,
                m,
                dsize,
                flags=cv2.INTER_NEAREST,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
            if flipped:
                label = self._flip_lut[label]  # type: ignore[index]
        if self.color_jitter > 0:
            image = _jitter_colour(image, self.color_jitter, rng)
        return image, label

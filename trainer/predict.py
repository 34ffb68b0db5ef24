"""Inference: an RGB image array in; a label map and per-pixel confidence out (what the GUI calls).

The image is resized to the model's square input (as the training data is), and the class
logits are resized back to the image's own size before the argmax, so the label map always
matches the image pixel for pixel (non-square images included).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainer.checkpoint import load_model
from trainer.data.folders import list_images
from trainer.data.imageio import read_image, write_image, write_label
from trainer.data.transforms import resize_square, to_tensor
from trainer.errors import CheckpointError, FaceParseError, ImageReadError
from trainer.labels import get_label_set
from trainer.models import FaceParseNet

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One image's parsing.

    Attributes:
        label: (H, W) uint8 class map at the image's size.
        confidence: (H, W) float32 in [0, 1], the highest class probability per pixel.
        probs: (C, H, W) float32 class probabilities when asked for, else None.
    """

    label: np.ndarray
    confidence: np.ndarray
    probs: np.ndarray | None = None


class Predictor:
    """A stage-2 (parsing) network ready for inference.

    Args:
        model: a FaceParseNet with a "parsing" head.
        meta: the checkpoint metadata (shown by ``model_info``).
        device: "auto", "cpu", "cuda", "mps" or a torch.device.
        channels_last: use the channels-last memory format (faster convolutions on CPU and GPU).
    """

    def __init__(
        self,
        model: FaceParseNet,
        meta: dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        channels_last: bool = True,
    ) -> None:
        if "parsing" not in model.heads:
            raise CheckpointError("the model has no parsing head; fine-tune it before predicting")
        from trainer.engine import select_device

        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.channels_last = channels_last
        self.model = model.to(self.device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.meta = dict(meta or {})
        self.label_set = get_label_set(model.config.label_set)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], device: str | torch.device = "auto"
    ) -> Predictor:
        """Load a fine-tuned checkpoint.

        Raises:
            CheckpointError: missing, corrupted, or a stage-1 checkpoint with no parsing head.
        """
        model, ckpt = load_model(path)
        if "parsing" not in ckpt.heads:
            raise CheckpointError(
                f"{path}: a {ckpt.stage or 'stage-1'} checkpoint without a parsing head; "
                "fine-tune it first (faceparse finetune --init ssl:<this file>)"
            )
        meta = dict(ckpt.meta)
        meta["path"] = str(path)
        return cls(model, meta=meta, device=device)

    @property
    def input_size(self) -> int:
        """Side in pixels of the square network input."""
        return int(self.model.config.input_size)

    @property
    def num_classes(self) -> int:
        return int(self.model.config.num_classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_set.classes

    @property
    def model_info(self) -> dict[str, Any]:
        """What the model is: preset, classes, stage, package version, input size, metrics, path."""
        return {
            "preset": self.model.config.preset,
            "encoder": self.model.config.encoder_name,
            "classes": list(self.class_names),
            "label_set": self.label_set.name,
            "stage": self.meta.get("stage", "finetune"),
            "version": self.meta.get("package_version"),
            "input_size": self.input_size,
            "created": self.meta.get("created"),
            "metrics": self.meta.get("metrics"),
            "path": self.meta.get("path"),
        }

    def _unit_batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """List of (H, W, 3) uint8 RGB -> (B, 3, S, S) float in [0, 1] at the input size (CPU)."""
        batch = []
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ImageReadError(
                    f"image {i}: expected an (H, W, 3) uint8 RGB array, got {image.dtype} "
                    f"{tuple(image.shape)}"
                )
            # The same resize as the training data gets, so the network sees what it learned on.
            square, _ = resize_square(image, self.input_size)
            batch.append(to_tensor(square))
        return torch.stack(batch)

    def _to_input(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """List of (H, W, 3) uint8 RGB -> (B, 3, S, S) normalised network input on the device."""
        x = self.model.normalize(self._unit_batch(images).to(self.device))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def logits(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, C, S, S) float32 class logits at the network input size."""
        from trainer.engine import autocast_for

        with torch.inference_mode(), autocast_for(self.device):
            return self.model(self._to_input(images), head="parsing").float()

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        return_probs: bool = False,
        output_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[Prediction]:
        """Parse several images in one forward pass.

        Args:
            images: (H, W, 3) uint8 RGB arrays, any sizes.
            return_probs: also return the (C, H, W) probabilities.
            output_sizes: (H, W) per image to predict at instead of the image's own size (e.g. a
                label map stored at another resolution).

        Returns:
            One Prediction per image, at its size.
        """
        if not images:
            return []
        logits = self.logits(images)
        out: list[Prediction] = []
        for i, image in enumerate(images):
            size = tuple(output_sizes[i]) if output_sizes is not None else tuple(image.shape[:2])
            with torch.inference_mode():
                if return_probs:
                    probs = _resized_logits(logits[i : i + 1], size).softmax(dim=1)[0]
                    confidence, label = probs.max(dim=0)
                else:
                    probs = None
                    label, confidence = label_and_confidence(logits[i], size)
            out.append(
                Prediction(
                    label=label.to(torch.uint8).cpu().numpy(),
                    confidence=confidence.float().cpu().numpy(),
                    probs=probs.float().cpu().numpy() if probs is not None else None,
                )
            )
        return out

    def __call__(self, image: np.ndarray, return_probs: bool = False) -> Prediction:
        """Parse one (H, W, 3) uint8 RGB image; see ``predict_batch``."""
        return self.predict_batch([image], return_probs=return_probs)[0]

    def uncertainty(self, image: np.ndarray) -> np.ndarray:
        """(H, W) float32 normalised entropy of the class probabilities, 0 (sure) .. 1 (uniform).

        Useful for pointing a labeler at the pixels the model is least sure of.
        """
        pred = self.predict_batch([image], return_probs=True)[0]
        assert pred.probs is not None
        p = np.clip(pred.probs, 1e-12, 1.0)
        entropy = -(p * np.log(p)).sum(axis=0) / np.log(self.num_classes)
        return np.clip(entropy, 0.0, 1.0).astype(np.float32)


def _resized_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, C, s, s) logits -> (1, C, H, W) logits at ``size`` (bilinear).

    Logits (not labels) are interpolated so class boundaries fall between input pixels smoothly.
    """
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return logits


# Output pixels per band when only the label and confidence are wanted: a 12-megapixel photo
# would otherwise need two full (C, H, W) float maps (about 1 GB for 11 classes).
_BAND_PIXELS = 1 << 20


def label_and_confidence(
    logits: torch.Tensor, size: tuple[int, int], band_pixels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, s, s) logits -> (H, W) argmax label and (H, W) max softmax probability at ``size``.

    The same numbers as bilinear-resizing the logits to (H, W) and taking the softmax, computed a
    band of rows at a time: bilinear resizing is separable, so the width is resized once (small:
    C × s × W) and each band of output rows blends two of those rows.
    """
    height, width = size
    s_h = logits.shape[1]
    wide = F.interpolate(logits[None], size=(s_h, width), mode="bilinear", align_corners=False)[0]
    # Source row of each output row, as F.interpolate computes it (align_corners=False).
    out_rows = torch.arange(height, device=logits.device, dtype=torch.float32)
    src = ((out_rows + 0.5) * (s_h / height) - 0.5).clamp_(min=0)
    low = src.floor().long().clamp_(max=s_h - 1)
    high = (low + 1).clamp_(max=s_h - 1)
    frac = (src - low.float())[:, None]
    label = torch.empty((height, width), dtype=torch.uint8, device=logits.device)
    confidence = torch.empty((height, width), dtype=torch.float32, device=logits.device)
    rows = max(1, (band_pixels or _BAND_PIXELS) // max(1, width))
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        band = wide[:, low[y0:y1]] * (1 - frac[y0:y1]) + wide[:, high[y0:y1]] * frac[y0:y1]
        top, arg = band.max(dim=0)
        # max softmax = 1 / sum(exp(l - max l)); no full probability map needed.
        confidence[y0:y1] = 1.0 / torch.exp(band - top).sum(dim=0)
        label[y0:y1] = arg.to(torch.uint8)
    return label, confidence


def overlay(image: np.ndarray, label: np.ndarray, label_set_name: str = "lapa", alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 image with its (H, W) label map blended on top in the class palette."""
    import cv2

    colours = get_label_set(label_set_name).colorize(label)
    mixed = cv2.addWeighted(image, 1.0 - alpha, colours, alpha, 0.0)
    # Background stays the photo itself so the face remains easy to see.
    background = label == 0
    mixed[background] = image[background]
    return mixed


def predict_folder(
    checkpoint: str | os.PathLike[str] | Predictor,
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    overlay_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    on_progress: Callable[[int, int, Path], None] | None = None,
) -> int:
    """Parse every image under a folder (recursive) into LaPa label PNGs.

    Writes ``out_dir/<sub>/<stem>.png`` (8-bit 'L', class indices, image size) for each image
    ``in_dir/<sub>/<stem>.<ext>``, and a colour overlay ``overlay_dir/<sub>/<stem>.jpg`` if asked
    (JPEG: overlays of large photos as PNG are slow to write and tens of MB each).
    An unreadable image is skipped with one warning line.

    Args:
        checkpoint: a fine-tuned checkpoint path or a ready Predictor.
        on_progress: called as (done, total, image_path) after each image.

    Returns:
        Number of label maps written.
    """
    predictor = checkpoint if isinstance(checkpoint, Predictor) else Predictor.from_checkpoint(checkpoint, device)
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    paths = list_images(in_dir)
    written = 0
    seen: set[Path] = set()
    for i, path in enumerate(paths):
        rel = path.relative_to(in_dir).with_suffix(".png")
        if rel in seen:
            # face.jpg and face.png in one folder would both become face.png.
            log.warning("skipping %s: another image already wrote %s", path, out_dir / rel)
            continue
        seen.add(rel)
        try:
            image = read_image(path)
        except FaceParseError as exc:
            log.warning("skipping %s", exc)
            continue
        pred = predictor(image)
        write_label(out_dir / rel, pred.label)
        if overlay_dir is not None:
            write_image(
                Path(overlay_dir) / rel.with_suffix(".jpg"),
                overlay(image, pred.label, predictor.label_set.name),
                quality=90,
            )
        written += 1
        if on_progress is not None:
            on_progress(i + 1, len(paths), path)
    return written

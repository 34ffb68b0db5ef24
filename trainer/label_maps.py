"""Class logits to label maps: the label, its confidence and the model's uncertainty.

The last step of the one inference path (:mod:`trainer.predict`): class logits (never labels) are
resized to the output size before the argmax, so a label map matches its image pixel for pixel.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def mean_entropy(logits: torch.Tensor) -> float:
    """Mean normalised per-pixel entropy of (C, H, W) logits' softmax, in [0, 1]."""
    logp = F.log_softmax(logits.float(), dim=0)
    entropy = -(logp.exp() * logp).sum(dim=0) / math.log(logits.shape[0])
    return float(entropy.clamp_(0.0, 1.0).mean())


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
    logits: torch.Tensor,
    size: tuple[int, int],
    band_pixels: int | None = None,
    confidence: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(C, s, s) logits -> (H, W) argmax label and (H, W) max softmax probability at ``size``.

    The same numbers as bilinear-resizing the logits to (H, W) and taking the softmax, computed a
    band of rows at a time: bilinear resizing is separable, so the width is resized once (small:
    C × s × W) and each band of output rows blends two of those rows. Each band goes straight
    into the host arrays returned, so nothing photo-sized is held on the device.

    Args:
        logits: (C, s, s) class logits of one image, on any device.
        size: (H, W) of the output.
        band_pixels: output pixels per band (default ``_BAND_PIXELS``).
        confidence: False: no confidence map is made (None is returned in its place): a
            200-megapixel photo's is 800 MB.

    Returns:
        (H, W) uint8 label and (H, W) float32 confidence in [0, 1] (or None).
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
    label = np.empty((height, width), dtype=np.uint8)
    sure = np.empty((height, width), dtype=np.float32) if confidence else None
    rows = max(1, (band_pixels or _BAND_PIXELS) // max(1, width))
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        band = wide[:, low[y0:y1]] * (1 - frac[y0:y1]) + wide[:, high[y0:y1]] * frac[y0:y1]
        top, arg = band.max(dim=0)
        if sure is not None:
            # max softmax = 1 / sum(exp(l - max l)); no full probability map needed.
            sure[y0:y1] = (1.0 / torch.exp(band - top).sum(dim=0)).cpu().numpy()
        label[y0:y1] = arg.to(torch.uint8).cpu().numpy()
    return label, sure

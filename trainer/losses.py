"""Losses: masked reconstruction (stage 1) and parsing (stage 2).

All losses compute in float32 whatever the autocast dtype of their inputs, so bf16 training on
CUDA sums its errors at full precision.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from trainer.recipes import CLASS_WEIGHTINGS, ClassWeighting, Region


def default_patch(image_size: int) -> int:
    """Side of the per-patch normalisation window: 1/16 of the image (32 px at 512, 4 at 64)."""
    return max(1, image_size // 16)


def _patch_stats(x: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch mean and std of (B, C, H, W), broadcast back to (B, C, H, W).

    Statistics are taken over each non-overlapping ``patch``×``patch`` window and all channels
    together (as in MAE/SparK).
    """
    b, c, h, w = x.shape
    if h % patch or w % patch:
        raise ValueError(f"image {h}×{w} is not a multiple of the {patch}-px normalisation patch")
    tiles = x.reshape(b, c, h // patch, patch, w // patch, patch)
    mean = tiles.mean(dim=(1, 3, 5), keepdim=True)
    std = (tiles.var(dim=(1, 3, 5), keepdim=True, unbiased=False) + 1e-6).sqrt()
    mean = mean.expand_as(tiles).reshape(b, c, h, w)
    std = std.expand_as(tiles).reshape(b, c, h, w)
    return mean, std


def patch_normalize(target: torch.Tensor, patch: int) -> torch.Tensor:
    """Normalise (B, C, H, W) to zero mean and unit variance within each p×p patch."""
    mean, std = _patch_stats(target, patch)
    return (target - mean) / std


def patch_denormalize(pred: torch.Tensor, reference: torch.Tensor, patch: int) -> torch.Tensor:
    """Map a per-patch normalised prediction back to the intensity range of ``reference``.

    Used to display what a ``norm_pix`` model reconstructs (with the target's patch statistics).
    """
    mean, std = _patch_stats(reference, patch)
    return pred * std + mean


def reconstruction_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    center: torch.Tensor,
    region: Region = "center",
    norm_pix: bool = False,
    patch: int | None = None,
) -> torch.Tensor:
    """Mean squared reconstruction error over a region.

    Args:
        pred: (B, 3, H, W) R-decoder output.
        target: (B, 3, H, W) the unmasked input image, normalised like the network input.
        mask: (B, 1, H, W) bool, True = masked pixel.
        center: (1, 1, H, W) or (B, 1, H, W) bool, the central region.
        region: "center" (the paper: every pixel of the central region) or "masked" (masked
            pixels only, SparK/FCMAE style).
        norm_pix: compare against per-patch normalised targets (zero mean, unit variance within
            each ``patch``×``patch`` window) instead of raw ones.
        patch: normalisation window side in pixels; default :func:`default_patch` (H // 16).

    Returns:
        Scalar float32 loss: squared error averaged over the region's pixels and channels
        (0 with a gradient when the region is empty).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if region == "center":
        weight = center.expand(pred.shape[0], 1, *pred.shape[2:])
    elif region == "masked":
        weight = mask
    else:
        raise ValueError(f"unknown loss region {region!r}; use 'center' or 'masked'")
    pred = pred.float()
    target = target.float()
    if norm_pix:
        target = patch_normalize(target, patch or default_patch(target.shape[-1]))
    weight = weight.to(device=pred.device, dtype=pred.dtype)
    squared = (pred - target.detach()).pow(2) * weight
    count = weight.sum() * pred.shape[1]
    return squared.sum() / count.clamp_min(1.0)


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255, eps: float = 1.0
) -> torch.Tensor:
    """Soft multi-class Dice loss, averaged over the classes present in the target batch.

    Args:
        logits: (B, C, H, W).
        target: (B, H, W) int64 class indices; ``ignore_index`` pixels are left out.
        eps: smoothing added to numerator and denominator.

    Returns:
        Scalar in [0, 1]: 1 − mean Dice over the present classes (0 = perfect).
    """
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    keep = valid.unsqueeze(1).to(probs.dtype)
    probs = probs * keep
    onehot = onehot * keep
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    totals = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + eps) / (totals + eps)
    present = onehot.sum(dims) > 0
    if not bool(present.any()):
        return logits.sum() * 0.0
    return 1.0 - dice[present].mean()


def parsing_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    dice_weight: float = 0.0,
    class_weights: torch.Tensor | None = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Cross-entropy, optionally plus a soft Dice term.

    Args:
        logits: (B, C, H, W) FP-decoder output.
        target: (B, H, W) int64 class indices (``ignore_index`` = unlabeled).
        dice_weight: weight of :func:`soft_dice_loss` added to the cross-entropy (0 = CE only).
        class_weights: (C,) per-class CE weights, or None.

    Returns:
        Scalar float32 loss.
    """
    weight = class_weights.to(logits.device, torch.float32) if class_weights is not None else None
    loss = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore_index)
    if dice_weight:
        loss = loss + dice_weight * soft_dice_loss(logits, target, ignore_index=ignore_index)
    return loss


def class_pixel_counts(
    labels: Iterable[np.ndarray], num_classes: int, ignore_index: int = 255
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of each class over some label maps, and pixels of the maps each class appears in.

    Args:
        labels: (H, W) integer label maps, any sizes; ``ignore_index`` pixels are not counted.
        num_classes: C.

    Returns:
        (counts, totals), both (C,) int64: ``counts[c]`` pixels labeled c, ``totals[c]`` labeled
        pixels of the maps where c appears at least once.
    """
    counts = np.zeros(num_classes, np.int64)
    totals = np.zeros(num_classes, np.int64)
    for label in labels:
        values = np.asarray(label).ravel()
        values = values[values != ignore_index]
        if values.size and int(values.max()) >= num_classes:
            raise ValueError(
                f"a label map holds class {int(values.max())}; the label set has {num_classes}"
            )
        found = np.bincount(values, minlength=num_classes)[:num_classes]
        counts += found
        totals[found > 0] += values.size
    return counts, totals


def class_weights(
    counts: np.ndarray, totals: np.ndarray, scheme: ClassWeighting
) -> torch.Tensor | None:
    """Per-class cross-entropy weights from the training labels' class frequencies.

    Schemes (classes never seen get weight 1, which no target pixel uses; cross-entropy's mean
    is weight-normalised, so only the ratios matter):

    - "none": None (plain cross-entropy).
    - "enet": ``1 / ln(1.02 + p_c)``, p_c the class's share of all labeled pixels (Paszke et al.,
      ENet, 2016): bounded, 2.4 for a class covering half the pixels and at most ~50
      (1 / ln 1.02) for the rarest.
    - "median-frequency": ``median(f) / f_c``, f_c the class's pixels over the pixels of the maps
      it appears in (Eigen & Fergus, 2015): the median class weighs 1, rarer ones more.

    Returns:
        (C,) float32 weights, or None for "none".
    """
    if scheme == "none":
        return None
    counts = np.asarray(counts, np.float64)
    totals = np.asarray(totals, np.float64)
    seen = counts > 0
    weights = np.ones(counts.shape, np.float64)
    if not seen.any():
        return torch.from_numpy(weights.astype(np.float32))
    if scheme == "enet":
        share = counts[seen] / counts.sum()
        weights[seen] = 1.0 / np.log(1.02 + share)
    elif scheme == "median-frequency":
        freq = counts[seen] / totals[seen]
        weights[seen] = np.median(freq) / freq
    else:
        raise ValueError(
            f"class weighting must be one of {', '.join(CLASS_WEIGHTINGS)}, got {scheme!r}"
        )
    return torch.from_numpy(weights.astype(np.float32))

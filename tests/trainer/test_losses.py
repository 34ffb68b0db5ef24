"""Reconstruction and parsing losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainer.data.masking import CenterPatchMasker
from trainer.losses import (
    class_pixel_counts,
    class_weights,
    parsing_loss,
    patch_denormalize,
    patch_normalize,
    reconstruction_loss,
    soft_dice_loss,
)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    masker = CenterPatchMasker(64, seed=0)
    pred = torch.randn(2, 3, 64, 64)
    target = torch.randn(2, 3, 64, 64)
    return pred, target, masker(2), masker.center_region()


def test_masked_region_ignores_unmasked_pixels(batch) -> None:
    pred, target, mask, center = batch
    before = reconstruction_loss(pred, target, mask, center, region="masked")
    changed = torch.where(mask, pred, pred + 10.0)  # only unmasked pixels change
    after = reconstruction_loss(changed, target, mask, center, region="masked")
    assert after == pytest.approx(before.item())
    worse = torch.where(mask, pred + 1.0, pred)
    assert reconstruction_loss(worse, target, mask, center, region="masked") > before


def test_center_region_ignores_the_border_but_counts_unmasked_centre_pixels(batch) -> None:
    pred, target, mask, center = batch
    before = reconstruction_loss(pred, target, mask, center, region="center")
    border_changed = torch.where(center, pred, pred + 10.0)
    assert reconstruction_loss(border_changed, target, mask, center) == pytest.approx(before.item())
    unmasked_centre = center & ~mask
    changed = torch.where(unmasked_centre, pred + 1.0, pred)
    assert reconstruction_loss(changed, target, mask, center) > before


def test_loss_is_the_mean_squared_error_over_the_region() -> None:
    center = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    center[..., 1:3, 1:3] = True
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    pred = torch.zeros(1, 3, 4, 4)
    target = torch.full((1, 3, 4, 4), 2.0)
    assert reconstruction_loss(pred, target, mask, center).item() == pytest.approx(4.0)
    empty = reconstruction_loss(pred.requires_grad_(), target, mask, center, region="masked")
    assert empty.item() == 0.0
    empty.backward()  # an empty region still gives a usable graph


def test_norm_pix_targets_are_normalised_per_patch(batch) -> None:
    pred, target, mask, center = batch
    p = 4
    # A per-patch affine change of the target (brighter, more contrast) changes nothing.
    gain = torch.rand(2, 1, 16, 16).add(0.5).repeat_interleave(p, 2).repeat_interleave(p, 3)
    offset = torch.randn(2, 1, 16, 16).repeat_interleave(p, 2).repeat_interleave(p, 3)
    a = reconstruction_loss(pred, target, mask, center, "masked", norm_pix=True, patch=p)
    b = reconstruction_loss(pred, target * gain + offset, mask, center, "masked", True, p)
    assert b.item() == pytest.approx(a.item(), rel=1e-4)
    # Predicting the normalised target is perfect; predicting the raw one is not.
    normed = patch_normalize(target, p)
    assert reconstruction_loss(normed, target, mask, center, "masked", True, p) < 1e-6
    assert reconstruction_loss(target * 3, target * 3, mask, center, "masked", True, p) > 0.1
    tiles = normed.reshape(2, 3, 16, p, 16, p)
    assert tiles.mean(dim=(1, 3, 5)).abs().max() < 1e-5
    assert torch.allclose(patch_denormalize(normed, target, p), target, atol=1e-4)


def _logits_towards(target: torch.Tensor, num_classes: int, confidence: float) -> torch.Tensor:
    return confidence * F.one_hot(target, num_classes).permute(0, 3, 1, 2).float()


def test_dice_term_decreases_as_the_prediction_improves() -> None:
    torch.manual_seed(0)
    target = torch.randint(0, 5, (2, 32, 32))
    noise = torch.randn(2, 5, 32, 32)
    dices = [
        soft_dice_loss(noise + _logits_towards(target, 5, c), target).item()
        for c in (0.0, 1.0, 3.0, 10.0)
    ]
    assert dices == sorted(dices, reverse=True)
    assert dices[-1] < 0.05 < dices[0]
    ce = parsing_loss(noise, target)
    assert parsing_loss(noise, target, dice_weight=0.5) == pytest.approx(
        ce.item() + 0.5 * dices[0], rel=1e-5
    )


def test_parsing_loss_ignores_unlabeled_pixels_and_uses_class_weights() -> None:
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 8, 8)
    target = torch.randint(0, 3, (1, 8, 8))
    holed = target.clone()
    holed[..., :4] = 255
    a = parsing_loss(logits, holed, dice_weight=1.0)
    other = logits.clone()
    other[..., :4] += 5 * torch.randn(1, 3, 8, 4)
    assert parsing_loss(other, holed, dice_weight=1.0).item() == pytest.approx(a.item(), rel=1e-5)
    weights = torch.tensor([1.0, 1.0, 20.0])
    assert parsing_loss(logits, target, class_weights=weights) != pytest.approx(
        parsing_loss(logits, target).item()
    )


def test_class_counts_skip_unlabeled_pixels_and_reject_unknown_classes() -> None:
    a = np.array([[0, 0, 1, 255]], np.uint8)
    b = np.array([[0, 2, 2, 2]], np.uint8)
    counts, totals = class_pixel_counts([a, b], 4)
    assert counts.tolist() == [3, 1, 3, 0]
    assert totals.tolist() == [7, 3, 4, 0]  # labeled pixels of the maps each class is in
    with pytest.raises(ValueError, match="class 7"):
        class_pixel_counts([np.array([[7]], np.uint8)], 4)


def test_class_weights_favour_rare_classes_and_leave_unseen_ones_at_one() -> None:
    counts = np.array([9000, 900, 90, 0])
    totals = np.array([9990, 9990, 9990, 0])
    assert class_weights(counts, totals, "none") is None
    enet = class_weights(counts, totals, "enet").tolist()
    assert enet[0] < enet[1] < enet[2] <= 1 / np.log(1.02) and enet[3] == 1.0
    median = class_weights(counts, totals, "median-frequency").tolist()
    assert median[1] == pytest.approx(1.0)  # the median class
    assert median[0] == pytest.approx(0.1) and median[2] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="median-frequency"):
        class_weights(counts, totals, "inverse")  # type: ignore[arg-type]

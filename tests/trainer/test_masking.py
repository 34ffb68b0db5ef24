"""CenterPatchMasker: patch sizes, placement, reproducibility, and the masked share."""

from __future__ import annotations

import pytest
import torch

from trainer.data.masking import CenterPatchMasker, center_bounds, center_region, mask_input


def test_center_region_is_the_centred_two_thirds_square() -> None:
    region = center_region(96)
    assert region.shape == (1, 1, 96, 96)
    assert center_bounds(96) == (16, 80)
    assert region.sum().item() == 64 * 64
    assert region[0, 0, 16, 16] and region[0, 0, 79, 79]
    assert not region[0, 0, 15, 40] and not region[0, 0, 40, 80]


@pytest.mark.parametrize("size", [64, 128, 512])
def test_single_patches_are_squares_with_sides_from_1_16_to_1_8(size: int) -> None:
    masker = CenterPatchMasker(size, num_patches=1, seed=0)
    sides = set()
    for mask in masker(24)[:, 0]:
        rows = mask.any(dim=1).nonzero().flatten()
        cols = mask.any(dim=0).nonzero().flatten()
        side = len(rows)
        assert len(cols) == side and mask.sum().item() == side * side  # a full square
        assert size / 16 <= side <= size / 8
        sides.add(side)
    assert len(sides) > 2  # the side is drawn, not fixed


@pytest.mark.parametrize("kwargs", [{"num_patches": 30}, {"mask_ratio": 0.6}])
def test_masked_pixels_never_leave_the_central_square(kwargs: dict) -> None:
    masker = CenterPatchMasker(64, seed=1, **kwargs)
    masks = masker(16)
    outside = masks & ~masker.center_region()
    assert masks.any() and not outside.any()


def test_same_seed_same_masks_and_different_seed_different_masks() -> None:
    a = CenterPatchMasker(64, seed=3)(4)
    b = CenterPatchMasker(64, seed=3)(4)
    c = CenterPatchMasker(64, seed=4)(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    masker = CenterPatchMasker(64, seed=0)
    g1 = masker(2, torch.Generator().manual_seed(9))
    g2 = masker(2, torch.Generator().manual_seed(9))
    assert torch.equal(g1, g2)
    assert not torch.equal(masker(2), masker(2))  # its own generator moves on between batches


@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.7])
def test_mask_ratio_target_is_reached_within_one_patch(ratio: float) -> None:
    masker = CenterPatchMasker(128, mask_ratio=ratio, seed=0)
    masks = masker(12)
    for mask in masks:
        share = masker.masked_share(mask[None])
        # overshoot is at most one patch: (128/8)² / (85²) ≈ 3.5% of the central region
        assert ratio <= share <= ratio + 0.04


def test_default_masks_about_forty_percent_of_the_central_region() -> None:
    masker = CenterPatchMasker(64, seed=0)
    share = masker.masked_share(masker(8))
    assert 0.4 <= share <= 0.45


def test_count_mode_masks_more_with_more_patches() -> None:
    shares = [
        CenterPatchMasker(64, num_patches=n, seed=0).masked_share(
            CenterPatchMasker(64, num_patches=n, seed=0)(8)
        )
        for n in (0, 4, 16, 64)
    ]
    assert shares[0] == 0.0
    assert shares == sorted(shares) and shares[-1] > shares[1]
    assert CenterPatchMasker(64, seed=0).masked_share(center_region(64)) == 1.0


def test_masked_input_pixels_become_zero_the_mean_colour() -> None:
    x = torch.randn(2, 3, 64, 64) + 3.0
    mask = CenterPatchMasker(64, seed=0)(2)
    out = mask_input(x, mask)
    assert (out.masked_select(mask.expand_as(x)) == 0).all()
    assert torch.equal(out.masked_select(~mask.expand_as(x)), x.masked_select(~mask.expand_as(x)))


def test_count_and_ratio_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        CenterPatchMasker(64, num_patches=3, mask_ratio=0.4)

"""Stage-1 masking: random square patches inside the face's central region.

Following the paper (see docs/METHOD.md "Masking"): patch sides are drawn uniformly from 1/16 to
1/8 of the image side (32–64 px at 512), and patches lie only inside the *central region*, the
centred square of 2/3 of the side, where aligned face crops put the face.

Placement: a patch's centre is drawn uniformly among the positions that keep the *whole* patch
inside the central square (the square shrunk by half a side on each edge). So every patch keeps
its drawn size, no masked pixel ever falls outside the central region, and nothing is clipped.

Masked input pixels are set to 0 *after* normalisation, i.e. to the dataset's mean colour, so a
masked patch carries no information and no unusual intensity (:func:`mask_input`).
"""

from __future__ import annotations

import math

import torch

#: Default target share of the central region to mask. Patches are added until the share is
#: reached; at 512 px that takes ~27 patches (20–32) and masks 40–43% of the central region
#: (≈ 18–19% of the whole image, since the central region is 4/9 of it).
DEFAULT_MASK_RATIO = 0.4


def center_bounds(image_size: int, center_frac: float = 2 / 3) -> tuple[int, int]:
    """(start, stop) pixel bounds, on both axes, of the centred square of side ``center_frac``."""
    side = max(1, round(image_size * center_frac))
    start = (image_size - side) // 2
    return start, start + side


def center_region(image_size: int, center_frac: float = 2 / 3) -> torch.Tensor:
    """The central region as a (1, 1, H, W) bool tensor, True inside the centred square."""
    start, stop = center_bounds(image_size, center_frac)
    region = torch.zeros(1, 1, image_size, image_size, dtype=torch.bool)
    region[..., start:stop, start:stop] = True
    return region


def mask_input(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Blank the masked pixels of a *normalised* batch.

    Args:
        x: (B, 3, H, W) normalised images.
        mask: (B, 1, H, W) bool, True = masked.

    Returns:
        (B, 3, H, W) with masked pixels set to 0 (the mean colour after normalisation).
    """
    return x.masked_fill(mask.to(x.device), 0.0)


class CenterPatchMasker:
    """Random square patches inside the central square of the image.

    Args:
        image_size: side H = W of the (square) images, in pixels.
        num_patches: fixed number of patches per image (they may overlap). Mutually exclusive
            with ``mask_ratio``.
        mask_ratio: target share of the central region to mask; patches are added until it is
            reached (it overshoots by at most one patch, ≤ ~3.5% of the region). Default when
            neither is given: :data:`DEFAULT_MASK_RATIO` (0.4).
        min_frac, max_frac: patch side range as fractions of ``image_size`` (paper: 1/16–1/8).
        center_frac: side of the central square as a fraction of ``image_size`` (paper: 2/3).
        seed: seeds the masker's own generator (used when ``__call__`` gets none).

    Call ``masker(batch_size)`` for a (B, 1, H, W) bool mask, True = masked.
    """

    def __init__(
        self,
        image_size: int,
        num_patches: int | None = None,
        mask_ratio: float | None = None,
        min_frac: float = 1 / 16,
        max_frac: float = 1 / 8,
        center_frac: float = 2 / 3,
        seed: int | None = None,
    ) -> None:
        if num_patches is not None and mask_ratio is not None:
            raise ValueError("give num_patches or mask_ratio, not both")
        if num_patches is None and mask_ratio is None:
            mask_ratio = DEFAULT_MASK_RATIO
        if num_patches is not None and num_patches < 0:
            raise ValueError(f"num_patches must be ≥ 0, got {num_patches}")
        if mask_ratio is not None and not 0.0 <= mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
        self.image_size = int(image_size)
        self.num_patches = num_patches
        self.mask_ratio = mask_ratio
        self.center_frac = center_frac
        self.start, self.stop = center_bounds(self.image_size, center_frac)
        region_side = self.stop - self.start
        self.min_side = max(1, math.ceil(self.image_size * min_frac))
        self.max_side = min(region_side, max(self.min_side, math.floor(self.image_size * max_frac)))
        if self.min_side > self.max_side:
            raise ValueError(
                f"patch sides {self.min_side}..{self.max_side} px do not fit a "
                f"{region_side}-px central region at image size {self.image_size}"
            )
        self._region = center_region(self.image_size, center_frac)
        self._region_pixels = region_side * region_side
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else torch.seed())

    def center_region(self, image_size: int | None = None) -> torch.Tensor:
        """(1, 1, H, W) bool, True inside the central square (of this masker's size by default)."""
        if image_size is None or image_size == self.image_size:
            return self._region.clone()
        return center_region(image_size, self.center_frac)

    def masked_share(self, mask: torch.Tensor) -> float:
        """Share of the central region that ``mask`` (B, 1, H, W) masks, averaged over the batch."""
        inside = mask.bool() & self._region.to(mask.device)
        return float(inside.sum().item()) / (self._region_pixels * mask.shape[0])

    def _draw(self, count: int, generator: torch.Generator) -> list[tuple[int, int, int]]:
        """``count`` patches as (top, left, side), each wholly inside the central square."""
        sides = torch.randint(self.min_side, self.max_side + 1, (count,), generator=generator)
        room = (self.stop - self.start) - sides + 1  # top-left positions that keep it inside
        u = torch.rand(count, 2, generator=generator)
        offsets = (u * room.unsqueeze(1)).long()
        out = []
        for (dy, dx), side in zip(offsets.tolist(), sides.tolist(), strict=True):
            out.append((self.start + dy, self.start + dx, side))
        return out

    def _one(self, mask: torch.Tensor, generator: torch.Generator) -> None:
        if self.num_patches is not None:
            for top, left, side in self._draw(self.num_patches, generator):
                mask[top : top + side, left : left + side] = True
            return
        target = self.mask_ratio * self._region_pixels
        covered = 0
        while covered < target:
            for top, left, side in self._draw(16, generator):
                window = mask[top : top + side, left : left + side]
                covered += side * side - int(window.sum())
                window.fill_(True)
                if covered >= target:
                    break

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw masks for a batch.

        Args:
            batch_size: B.
            generator: a torch.Generator for reproducible masks; default: the masker's own.

        Returns:
            (B, 1, H, W) bool tensor on the CPU, True = masked.
        """
        generator = generator if generator is not None else self.generator
        size = self.image_size
        masks = torch.zeros(batch_size, 1, size, size, dtype=torch.bool)
        for b in range(batch_size):
            self._one(masks[b, 0], generator)
        return masks

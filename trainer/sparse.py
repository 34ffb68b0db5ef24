"""Stage 1 as SparK does it for CNNs (Tian et al., ICLR 2023): a sparse encoder.

Zero-filling the masked patches and running a dense CNN over them shifts every normalisation
statistic and lets the mask pattern fade layer by layer. SparK treats the masked input as sparse:

- the mask lies on the encoder's coarsest grid (cells of ``stride`` = 32 px), so it has the same
  shape at every scale (:class:`GridMasker`);
- after every convolution and pooling of the encoder the masked positions are set to zero again,
  the mask taken at that layer's own grid (:class:`SparseEncoder`);
- batch normalisation takes its statistics over the visible positions only
  (:class:`SparseBatchNorm2d`);
- before the decoder, a learned mask token per scale fills the masked positions of each encoder
  feature (:class:`SparseReconstructor`); here the decoder is the backbone's own UNet++ decoder,
  with the R decoder after it.

The sparse parts change no weight name or shape: a stage-1 checkpoint holds the plain
:class:`~trainer.models.FaceParseNet` state and loads into stage 2 as any other. The mask tokens
live only in stage 1 (the checkpoint's metadata keeps them, so a run resumes).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from trainer.data.masking import center_bounds
from trainer.models import FaceParseNet

#: The side of a mask cell: the smp encoders' coarsest stride.
GRID_STRIDE = 32
MaskCells = Literal["center", "image"]

__all__ = [
    "GRID_STRIDE",
    "GridMasker",
    "SparseBatchNorm2d",
    "SparseEncoder",
    "SparseReconstructor",
]


class GridMasker:
    """Masks whole cells of the stride-32 grid, a fixed share of the cells that may be masked.

    Args:
        image_size: side H = W of the square images in pixels (a multiple of ``stride``).
        mask_ratio: share of the candidate cells masked in every image (rounded to whole cells,
            at least one; SparK: 0.6).
        cells: "center" (the cells whose centre lies in the central square of ``center_frac`` of
            the side, where aligned crops put the face: the paper's region) or "image" (every
            cell, as SparK masks ImageNet).
        stride: cell side in pixels.
        center_frac: side of the central square as a fraction of the image's.

    Raises:
        ValueError: the image is not a whole number of cells, or every cell would be masked.
    """

    def __init__(
        self,
        image_size: int,
        mask_ratio: float = 0.6,
        cells: MaskCells = "center",
        stride: int = GRID_STRIDE,
        center_frac: float = 2 / 3,
    ) -> None:
        if image_size % stride:
            raise ValueError(f"image size {image_size} is not a multiple of the {stride}-px grid")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        if cells not in ("center", "image"):
            raise ValueError(f"cells must be 'center' or 'image', got {cells!r}")
        self.image_size, self.stride = image_size, stride
        self.grid = image_size // stride
        if cells == "center":
            start, stop = center_bounds(image_size, center_frac)
            centres = (torch.arange(self.grid) + 0.5) * stride
            inside = (centres >= start) & (centres < stop)
            allowed = inside[:, None] & inside[None, :]
        else:
            allowed = torch.ones(self.grid, self.grid, dtype=torch.bool)
        self.candidates = allowed.flatten().nonzero().flatten()
        self.count = min(len(self.candidates), max(1, round(mask_ratio * len(self.candidates))))
        if self.count >= self.grid * self.grid:
            raise ValueError(
                f"a {image_size}-px image has {self.grid * self.grid} cells of {stride} px; "
                f"masking {self.count} of them leaves none visible: use larger images"
            )

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 1, g, g) bool on the CPU, True = masked cell; ``count`` cells in each image."""
        noise = torch.rand(batch_size, len(self.candidates), generator=generator)
        chosen = self.candidates[noise.argsort(dim=1)[:, : self.count]]
        cells = torch.zeros(batch_size, self.grid * self.grid, dtype=torch.bool)
        cells.scatter_(1, chosen, True)
        return cells.view(batch_size, 1, self.grid, self.grid)

    def pixels(self, cells: torch.Tensor) -> torch.Tensor:
        """(B, 1, g, g) cells -> (B, 1, H, W) pixel mask, True = masked."""
        return cells.repeat_interleave(self.stride, 2).repeat_interleave(self.stride, 3)

    def masked_share(self, cells: torch.Tensor) -> float:
        """Share of the candidate cells that ``cells`` masks (the same in every image)."""
        return float(cells.sum().item()) / (len(self.candidates) * cells.shape[0])


class _Visibility:
    """The visible cells of the batch in flight, at whatever grid a layer asks for (cached)."""

    def __init__(self) -> None:
        self.cells: torch.Tensor | None = None
        self._cache: dict[tuple[Any, ...], torch.Tensor] = {}

    def set(self, visible: torch.Tensor | None) -> None:
        self.cells = visible
        self._cache = {}

    def like(self, x: torch.Tensor) -> torch.Tensor | None:
        """(B, 1, h, w) in ``x``'s dtype, 1 = visible, for a feature map ``x`` (B, C, h, w)."""
        if self.cells is None:
            return None
        h, w = x.shape[-2:]
        key = (h, w, x.dtype, x.device)
        if key not in self._cache:
            g = self.cells.shape[-1]
            if h % g or w % g:
                raise ValueError(f"a {h}×{w} feature map is not on the {g}×{g} mask grid")
            grid = self.cells.to(device=x.device, dtype=x.dtype)
            self._cache[key] = grid.repeat_interleave(h // g, 2).repeat_interleave(w // g, 3)
        return self._cache[key]


class SparseBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose batch statistics come from the visible positions only; masked
    positions come out as zero. With no mask in flight it is exactly ``nn.BatchNorm2d``, and
    its weights, biases and running statistics are those of the layer it replaced (shared)."""

    visibility: _Visibility | None = None

    @classmethod
    def replacing(cls, bn: nn.BatchNorm2d, visibility: _Visibility) -> SparseBatchNorm2d:
        sparse = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        sparse.weight, sparse.bias = bn.weight, bn.bias
        sparse.running_mean, sparse.running_var = bn.running_mean, bn.running_var
        sparse.num_batches_tracked = bn.num_batches_tracked
        sparse.visibility = visibility
        return sparse.train(bn.training)

    def dense(self) -> nn.BatchNorm2d:
        """A plain BatchNorm2d holding these very weights and running statistics."""
        bn = nn.BatchNorm2d(
            self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats
        )
        bn.weight, bn.bias = self.weight, self.bias
        bn.running_mean, bn.running_var = self.running_mean, self.running_var
        bn.num_batches_tracked = self.num_batches_tracked
        return bn.train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), normalised over the visible positions."""
        visible = self.visibility.like(x) if self.visibility is not None else None
        if visible is None:
            return super().forward(x)
        batch_stats = self.training or self.running_mean is None
        if not batch_stats:
            return super().forward(x) * visible
        xf, m = x.float(), visible.float()
        count = m.sum() * 1.0  # visible positions per channel
        mean = (xf * m).sum(dim=(0, 2, 3)) / count
        centred = (xf - mean.view(1, -1, 1, 1)) * m
        var = centred.pow(2).sum(dim=(0, 2, 3)) / count
        if self.training and self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * count / (count - 1).clamp_min(1.0)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return (y * m).to(x.dtype)


_ZEROED_AFTER = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


class SparseEncoder(nn.Module):
    """An smp encoder run on a sparse input: its BatchNorm2d layers become
    :class:`SparseBatchNorm2d` and the output of each convolution and pooling layer has its
    masked positions set to zero again.

    Args:
        encoder: the smp encoder (e.g. ``FaceParseNet.encoder``); changed in place until
            :meth:`release`.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.visibility = _Visibility()
        self._swap_norms(sparse=True)
        self._hooks = [
            module.register_forward_hook(self._rezero)
            for module in encoder.modules()
            if isinstance(module, _ZEROED_AFTER)
        ]

    def _rezero(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        visible = self.visibility.like(output)
        return output if visible is None else output * visible

    def _swap_norms(self, sparse: bool) -> None:
        """Every BatchNorm2d of the encoder to its sparse form (``sparse``) or back."""
        for parent in list(self.encoder.modules()):
            for name, child in parent.named_children():
                if sparse and type(child) is nn.BatchNorm2d:
                    setattr(parent, name, SparseBatchNorm2d.replacing(child, self.visibility))
                elif not sparse and isinstance(child, SparseBatchNorm2d):
                    setattr(parent, name, child.dense())

    def forward(self, x: torch.Tensor, visible: torch.Tensor | None) -> list[torch.Tensor]:
        """Encoder features of a masked input.

        Args:
            x: (B, 3, H, W) normalised images (masked pixels need not be zero: they are zeroed).
            visible: (B, 1, g, g) bool or float on the stride-32 grid, True/1 = visible; None
                runs the encoder dense.

        Returns:
            The encoder's features, finest first, each (B, C_i, H / 2^i, W / 2^i), zero at the
            masked positions.
        """
        self.visibility.set(None if visible is None else visible.float())
        try:
            keep = self.visibility.like(x)
            return self.encoder(x if keep is None else x * keep)
        finally:
            self.visibility.set(None)

    def release(self) -> nn.Module:
        """Undo the changes: plain BatchNorm2d layers (the same weights and running
        statistics), no hooks. Returns the encoder, ready for stage 2."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._swap_norms(sparse=False)
        return self.encoder


class SparseReconstructor(nn.Module):
    """Stage 1's network in SparK's form: sparse encoder, mask tokens, UNet++ decoder, R decoder.

    Args:
        model: a FaceParseNet with a "reconstruction" head; its encoder is made sparse in place
            (see :meth:`release`).
    """

    def __init__(self, model: FaceParseNet) -> None:
        super().__init__()
        self.model = model
        self.sparse = SparseEncoder(model.encoder)
        channels = list(model.encoder.out_channels)[1:]  # the UNet++ decoder skips the input
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(nn.init.trunc_normal_(torch.empty(1, c, 1, 1), std=0.02, a=-0.04, b=0.04))
            for c in channels
        )

    def forward(self, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised masked images and (B, 1, g, g) visible cells ->
        (B, 3, H, W) reconstruction."""
        features = self.sparse(x, visible)
        filled = [features[0]]
        for feature, token in zip(features[1:], self.mask_tokens, strict=True):
            keep = self.sparse_mask(visible, feature)
            filled.append(feature * keep + token.to(feature.dtype) * (1 - keep))
        return self.model.heads["reconstruction"](self.model.decoder(filled))

    @staticmethod
    def sparse_mask(visible: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) 1 = visible, in ``feature``'s grid and dtype."""
        scale = feature.shape[-1] // visible.shape[-1]
        keep = visible.to(device=feature.device, dtype=feature.dtype)
        return keep.repeat_interleave(scale, 2).repeat_interleave(scale, 3)

    def tokens_state(self) -> list[list[float]]:
        """The mask tokens as JSON-able lists (kept in the stage-1 checkpoint's metadata)."""
        return [t.detach().float().flatten().cpu().tolist() for t in self.mask_tokens]

    def load_tokens(self, stored: list[list[float]]) -> None:
        """Restore :meth:`tokens_state` (a resumed run).

        Raises:
            ValueError: the stored tokens do not fit this encoder.
        """
        if len(stored) != len(self.mask_tokens) or any(
            len(s) != t.numel() for s, t in zip(stored, self.mask_tokens, strict=False)
        ):
            raise ValueError("the stored mask tokens do not fit this encoder")
        with torch.no_grad():
            for token, values in zip(self.mask_tokens, stored, strict=True):
                token.copy_(torch.tensor(values, dtype=token.dtype).view_as(token))

    def release(self) -> FaceParseNet:
        """The FaceParseNet with a plain encoder again (same weights and statistics)."""
        self.sparse.release()
        return self.model

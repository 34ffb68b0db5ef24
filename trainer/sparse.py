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

import logging
from typing import Any, Literal

import torch
from torch import nn

from trainer.data.masking import CenterPatchMasker, center_bounds
from trainer.models import FaceParseNet

log = logging.getLogger(__name__)

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

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) long: the visible positions of a feature map ``x`` (B, C, h, w) as row numbers
        of its (B * h * w, C) channels-last view (cached)."""
        h, w = x.shape[-2:]
        key = ("rows", h, w, x.device)
        if key not in self._cache:
            visible = self.like(x)
            assert visible is not None
            self._cache[key] = visible.reshape(-1).nonzero().squeeze(1)
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
        """(B, C, H, W) -> (B, C, H, W), normalised over the visible positions.

        The visible positions are gathered into rows (one per position, channels last), put
        through the native batch norm (statistics, running statistics and gradients as
        ``nn.BatchNorm2d`` computes them) and scattered back into zeros: a few passes over the
        visible share of the map instead of a dozen masked passes over the whole of it. The
        output is laid out channels last whatever the input's layout (the trainer's is)."""
        visible = self.visibility.like(x) if self.visibility is not None else None
        if visible is None:
            return super().forward(x)
        batch_stats = self.training or self.running_mean is None
        if not batch_stats:
            return super().forward(x) * visible
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view when x is channels_last
        index = self.visibility.rows(x)
        factor = 0.0
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
        if index.numel() < 2:  # no spread to normalise by (the native norm refuses one value)
            out = rows.new_zeros(rows.shape)
            if index.numel():
                picked = rows.index_select(0, index)
                if self.track_running_stats and self.running_mean is not None and factor:
                    with torch.no_grad():  # one value: a mean, but no variance to learn from
                        self.running_mean.lerp_(picked[0].to(self.running_mean.dtype), factor)
                y = torch.zeros_like(picked)  # x minus its own mean, whose gradient is zero
                if self.affine:
                    y = y * self.weight + self.bias
                out = out.index_copy(0, index, y.to(rows.dtype))
            return out.view(b, h, w, c).permute(0, 3, 1, 2)
        picked = torch.nn.functional.batch_norm(
            rows.index_select(0, index),
            self.running_mean if self.track_running_stats else None,
            self.running_var if self.track_running_stats else None,
            self.weight,
            self.bias,
            True,
            factor,
            self.eps,
        )
        out = rows.new_zeros(rows.shape).index_copy(0, index, picked)
        return out.view(b, h, w, c).permute(0, 3, 1, 2)


def _leaves(value: Any) -> list[Any]:
    """The non-container values inside nested tuples, lists and dicts."""
    if isinstance(value, tuple | list):
        return [leaf for item in value for leaf in _leaves(item)]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    return [value]


_ZEROED_AFTER = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


class SparseEncoder(nn.Module):
    """An smp encoder run on a sparse input: its BatchNorm2d layers become
    :class:`SparseBatchNorm2d` and the output of each convolution and pooling layer has its
    masked positions set to zero again.

    A convolution whose output goes straight into a sparse norm is not re-zeroed: the norm
    ignores the masked positions for its statistics and zeroes them in its output, so the
    features and gradients are the same, for a fifth less work (found once, by a small dense
    pass that records which layer's output each norm receives).

    Args:
        encoder: the smp encoder (e.g. ``FaceParseNet.encoder``); changed in place until
            :meth:`release`.
        prune: skip the re-zeroing a sparse norm makes redundant (False: after every
            convolution and pooling layer).
    """

    def __init__(self, encoder: nn.Module, prune: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.visibility = _Visibility()
        self._swap_norms(sparse=True)
        candidates = [m for m in encoder.modules() if isinstance(m, _ZEROED_AFTER)]
        normed = self._feeding_norms(candidates) if prune else set()
        self.rezeroed = [m for m in candidates if id(m) not in normed]
        self._hooks = [module.register_forward_hook(self._rezero) for module in self.rezeroed]

    def _feeding_norms(self, candidates: list[nn.Module]) -> set[int]:
        """ids of the ``candidates`` whose output went into a sparse norm and nowhere else in a
        small dense pass (evaluation mode, no gradient: nothing of the encoder changes). Every
        torch function applied to an output outside a sparse norm's own forward counts as
        another use (a module's ops or a plain ``bn(y) + y`` alike)."""
        convs = [m for m in self.encoder.modules() if isinstance(m, nn.Conv2d)]
        if not convs:  # nothing a norm could spare (every convolution is a candidate)
            return set()
        outputs: dict[int, tuple[nn.Module, torch.Tensor]] = {}
        fed: set[int] = set()
        other: set[int] = set()
        inside_norm = [0]  # depth of sparse-norm forwards in progress (their own ops don't count)

        def produced(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            outputs[id(output)] = (module, output)

        def producer(tensor: Any) -> nn.Module | None:
            hit = outputs.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None
            return hit[0] if hit is not None and hit[1] is tensor else None

        def norm_enters(module: nn.Module, inputs: Any) -> None:
            for tensor in inputs:
                source = producer(tensor)
                if source is not None:
                    fed.add(id(source))
            inside_norm[0] += 1

        def norm_leaves(module: nn.Module, inputs: Any, output: Any) -> None:
            inside_norm[0] -= 1

        class Uses(torch.overrides.TorchFunctionMode):
            """Every other use of a recorded output: a module's ops or a plain function call
            (``bn(y) + y``, ``torch.cat``) alike."""

            def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                if not inside_norm[0]:
                    for tensor in _leaves((args, kwargs or {})):
                        source = producer(tensor)
                        if source is not None:
                            other.add(id(source))
                return func(*args, **(kwargs or {}))

        handles = [m.register_forward_hook(produced) for m in candidates]
        for m in self.encoder.modules():
            if isinstance(m, SparseBatchNorm2d):
                handles += [m.register_forward_pre_hook(norm_enters)]
                handles += [m.register_forward_hook(norm_leaves)]
        modes = {m: m.training for m in self.encoder.modules()}
        try:
            self.encoder.eval()
            with torch.no_grad():
                weight = convs[0].weight
                side = 2 * GRID_STRIDE
                probe = torch.zeros(1, convs[0].in_channels, side, side, dtype=weight.dtype)
                with Uses():
                    self.encoder(probe.to(weight.device))
        except (RuntimeError, ValueError) as exc:  # an encoder this probe does not fit
            log.debug("sparse encoder: re-zeroing after every layer (%s)", exc)
            return set()
        finally:
            for h in handles:
                h.remove()
            for m, mode in modes.items():
                m.training = mode
        return fed - other

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


def stage1_masker(recipe: Any, size: int) -> CenterPatchMasker | GridMasker:
    """The masker a stage-1 run of ``recipe`` (a ``trainer.recipes.PretrainRecipe``) draws with
    at ``size`` px: cells of the stride-32 grid for a sparse recipe, else square patches (a
    fixed count, or a masked share of the central region)."""
    if recipe.sparse:
        return GridMasker(size, recipe.mask_ratio or 0.6, recipe.mask_cells)
    return CenterPatchMasker(
        size,
        num_patches=recipe.num_patches,
        mask_ratio=None if recipe.num_patches is not None else recipe.mask_ratio,
    )

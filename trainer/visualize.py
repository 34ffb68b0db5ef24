"""What stage 1 learns, as a picture: masked inputs beside their reconstructions.

One row per face, four columns: the original | the masked input the network sees (masked pixels
at the mean colour) | the reconstruction | the original with only its masked patches filled
from the reconstruction.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.checkpoint import load_model
from trainer.data.folders import list_images
from trainer.data.imageio import atomic_write_bytes, read_image
from trainer.data.masking import CenterPatchMasker, mask_input
from trainer.data.transforms import resize_square, to_tensor
from trainer.engine import select_device
from trainer.errors import CheckpointError, DatasetError, FaceParseError, ImageReadError
from trainer.losses import default_patch, patch_denormalize
from trainer.models import FaceParseNet
from trainer.recipes import PretrainRecipe

log = logging.getLogger(__name__)

GAP = 2  # white pixels between tiles
COLUMNS = 4


def grid_shape(num_images: int, image_size: int) -> tuple[int, int]:
    """(height, width) in pixels of the grid :func:`reconstruction_grid` writes."""
    height = num_images * image_size + (num_images - 1) * GAP
    width = COLUMNS * image_size + (COLUMNS - 1) * GAP
    return height, width


@torch.no_grad()
def reconstruct(
    model: FaceParseNet,
    images: torch.Tensor,
    mask: torch.Tensor,
    norm_pix: bool = False,
    patch: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the R decoder on masked images.

    Args:
        model: a network with a "reconstruction" head.
        images: (B, 3, H, W) float in [0, 1].
        mask: (B, 1, H, W) bool, True = masked.
        norm_pix: the model was trained on per-patch normalised targets; its output is mapped
            back with the original's patch statistics for display.
        patch: side in pixels of those patches (None: 1/16 of the image side).

    Returns:
        (masked input, reconstruction), both (B, 3, H, W) float in [0, 1] on the CPU.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    images = images.to(device)
    target = model.normalize(images)
    x = mask_input(target, mask.to(device))
    pred = model(x, head="reconstruction").float()
    if norm_pix:
        pred = patch_denormalize(pred, target, patch or default_patch(target.shape[-1]))
    model.train(was_training)
    denorm = lambda t: (t * model.std + model.mean).clamp(0, 1).cpu()  # noqa: E731
    return denorm(x), denorm(pred)


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return (t.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def reconstruction_grid(
    model: FaceParseNet,
    images: torch.Tensor,
    masker: CenterPatchMasker | _GridPixels,
    path: str | os.PathLike[str],
    seed: int = 0,
    norm_pix: bool = False,
    patch: int | None = None,
) -> Path:
    """Write a PNG grid of originals, masked inputs and reconstructions (atomically).

    Args:
        model: a network with a "reconstruction" head.
        images: (B, 3, H, W) float in [0, 1], H = W = ``masker.image_size``.
        masker: draws the masks (with a generator seeded by ``seed``).
        path: the PNG to write.
        norm_pix: the model predicts per-patch normalised pixels (see :func:`reconstruct`).
        patch: the side of those patches (see :func:`reconstruct`).

    Returns:
        The PNG written (``path``, with a ".png" suffix); its size is :func:`grid_shape`.
    """
    b, _, h, w = images.shape
    if h != masker.image_size or w != masker.image_size:
        raise ValueError(f"images are {h}×{w} but the masker expects {masker.image_size} px")
    mask = masker(b, torch.Generator().manual_seed(seed))
    images = images.float().cpu()
    masked, recon = reconstruct(model, images, mask, norm_pix=norm_pix, patch=patch)
    filled = torch.where(mask, recon, images)
    height, width = grid_shape(b, h)
    canvas = np.full((height, width, 3), 255, np.uint8)
    for row in range(b):
        for col, tile in enumerate((images[row], masked[row], recon[row], filled[row])):
            top, left = row * (h + GAP), col * (w + GAP)
            canvas[top : top + h, left : left + w] = _to_uint8(tile)
    path = grid_path(path)
    import io

    from PIL import Image, PngImagePlugin

    from trainer.outputs import GRID_TEXT, GRID_TEXT_KEY

    text = PngImagePlugin.PngInfo()
    text.add_text(GRID_TEXT_KEY, GRID_TEXT)  # marks the file as ours: a rerun may replace it
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG", pnginfo=text)
    atomic_write_bytes(path, buf.getvalue())
    return path


def grid_path(path: str | os.PathLike[str]) -> Path:
    """Where a grid asked for at ``path`` goes: a PNG (lossless: JPEG artefacts would blur the
    comparison), so ``grid.jpg`` becomes ``grid.png``."""
    path = Path(path)
    return path if path.suffix.lower() == ".png" else path.with_suffix(".png")


def write_reconstruction_grid(
    checkpoint_path: str | os.PathLike[str],
    image_dirs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out_png: str | os.PathLike[str],
    num_images: int = 8,
    seed: int = 0,
    device: str | None = "auto",
) -> Path:
    """Reconstruct a seeded sample of faces with a stage-1 checkpoint and write the grid PNG.

    The masker uses the checkpoint's own masking settings (patch count or mask ratio).

    Args:
        checkpoint_path: a checkpoint with the R decoder (written by ``faceparse pretrain``).
        image_dirs: folder(s) of face images (recursive).
        out_png: the PNG to write.
        num_images: faces in the grid (fewer if the folders hold fewer).
        seed: picks the faces and draws the masks.

    Raises:
        CheckpointError: the checkpoint has no reconstruction head (e.g. a fine-tuned one).
        DatasetError: no images found, or none of them readable (an unreadable one is skipped
            with a warning).
    """
    model, ckpt = load_model(checkpoint_path, map_location=select_device(device))
    if "reconstruction" not in ckpt.heads:
        raise CheckpointError(
            f"{checkpoint_path}: has no reconstruction head (stage {ckpt.stage!r}); "
            "use a checkpoint written by faceparse pretrain"
        )
    recipe = _stage1_recipe(ckpt.meta)
    size = ckpt.config.input_size
    masker = _masker(recipe, size)
    paths = list_images(image_dirs)
    folders = ", ".join(
        str(d) for d in ([image_dirs] if isinstance(image_dirs, str | os.PathLike) else image_dirs)
    )
    if not paths:
        raise DatasetError(f"no images found under {folders}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(paths), size=min(num_images, len(paths)), replace=False)
    # An unreadable photo is skipped, as pretrain skips it; the next of a seeded order stands in.
    stand_ins = rng.permutation(np.setdiff1d(np.arange(len(paths)), chosen))
    tiles: list[torch.Tensor] = []
    for i in [*sorted(chosen), *stand_ins]:
        if len(tiles) == num_images:
            break
        try:
            tiles.append(to_tensor(resize_square(read_image(paths[i]), size)[0]))
        except ImageReadError as exc:
            log.warning("skipping %s", exc)
    if not tiles:
        raise DatasetError(
            f"none of the {len(paths)} images under {folders} could be read (see the warnings)"
        )
    images = torch.stack(tiles)
    return reconstruction_grid(
        model, images, masker, out_png, seed=seed, norm_pix=recipe.norm_pix,
        patch=recipe.norm_patch,
    )  # fmt: skip


def _stage1_recipe(meta: dict[str, Any]) -> PretrainRecipe:
    """The stage-1 recipe a checkpoint was trained with (either stored form); the default
    recipe's settings when it records none."""
    from trainer.configs import PretrainConfig, stored_config
    from trainer.recipes import DEFAULT_PRETRAIN, pretrain_recipe

    try:
        config = stored_config({**meta, "stage": "pretrain"})
    except FaceParseError:
        return pretrain_recipe(DEFAULT_PRETRAIN)
    assert isinstance(config, PretrainConfig)
    return config.recipe


class _GridPixels:
    """A sparse recipe's cell masker as the pixel masker a grid draws with."""

    def __init__(self, cells: Any) -> None:
        self.cells = cells
        self.image_size = cells.image_size

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.cells.pixels(self.cells(batch_size, generator))


def _masker(recipe: PretrainRecipe, size: int) -> CenterPatchMasker | _GridPixels:
    """The masks the run trained with (as pretrain draws them), in pixels."""
    from trainer.sparse import GridMasker, stage1_masker

    masker = stage1_masker(recipe, size)
    return _GridPixels(masker) if isinstance(masker, GridMasker) else masker

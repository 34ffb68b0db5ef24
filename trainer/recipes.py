"""The recipes of both stages: every setting a run's result depends on, besides its data and
where its network starts, under a name the CLI, the desktop app and ``bench`` all use.

A recipe is a frozen dataclass; a caller names one and changes what it must (its length, its
batch, a seed) with :func:`dataclasses.replace` or the ``overrides`` of :func:`finetune_recipe`
and :func:`pretrain_recipe`. Adding a recipe is one entry in :data:`FINETUNE_RECIPES` or
:data:`PRETRAIN_RECIPES` (a stage-1 recipe that needs a new setting adds that field to
:class:`PretrainRecipe`, with a default that leaves the other recipes as they are).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

ClassWeighting = Literal["none", "enet", "median-frequency"]
CLASS_WEIGHTINGS: tuple[str, ...] = get_args(ClassWeighting)
# Where stage 1's reconstruction loss is taken.
Region = Literal["center", "masked"]
REGIONS: tuple[str, ...] = get_args(Region)
# Stage 1's augmentations: the flip alone, or the fine-tune's whole TrainAugment.
Augment = Literal["flip", "affine"]
AUGMENTS: tuple[str, ...] = get_args(Augment)
# Which stride-32 cells a sparse stage 1 may mask: those of the central region, or all.
MaskCells = Literal["center", "image"]
MASK_CELLS: tuple[str, ...] = get_args(MaskCells)


@dataclass(frozen=True)
class FinetuneRecipe:
    """How a parser is fine-tuned (stage 2).

    Args:
        epochs: passes over the labeled faces.
        max_steps: stop after this many optimizer steps (the schedule is fitted to it).
        batch_size: images per step.
        lr: peak learning rate of the FP decoder (AdamW, linear warm-up, then cosine to zero).
        backbone_lr_mult: the backbone's learning rate is ``lr · backbone_lr_mult``.
        weight_decay: AdamW weight decay on weight matrices/kernels (not on biases or norms).
        warmup_steps: linear warm-up steps.
        grad_clip: max gradient norm; 0 disables clipping.
        dice_weight: weight of the Dice term added to cross-entropy (0 = cross-entropy only);
            Dice weighs each class equally, so small parts count as much as skin and hair.
        class_weighting: per-class cross-entropy weights from the labeled faces' class
            frequencies: "none", "enet" (1 / ln(1.02 + share)) or "median-frequency" (see
            ``trainer.losses.class_weights``); the weights are recorded in the checkpoint.
        head_only_steps: train only the FP decoder for this many first steps, the backbone
            frozen, then everything, the backbone's rate ramped up over ``warmup_steps`` (linear
            probing, then fine-tuning: a new head sends no random gradients into a pretrained
            backbone). 0 trains everything from the first step.
        head_only_share: the same hold as a share of the run's steps (0 <= share < 1), for runs
            whose length depends on the data; the hold is the larger of the two.
        augment: the training augmentations (flip with left/right swap, scale, rotation, shift,
            colour jitter).
        seed: seed of the new head's weights, the shuffling and the augmentations.
    """

    epochs: int = 50
    max_steps: int | None = None
    batch_size: int = 8
    lr: float = 1e-2
    backbone_lr_mult: float = 1.0
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    grad_clip: float = 1.0
    dice_weight: float = 1.0
    class_weighting: ClassWeighting = "none"
    head_only_steps: int = 0
    head_only_share: float = 0.0
    augment: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check_not_negative(
            self, "lr", "backbone_lr_mult", "weight_decay", "warmup_steps", "grad_clip",
            "dice_weight",
        )  # fmt: skip
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.head_only_steps < 0:
            raise ValueError(f"head_only_steps must be 0 or more, got {self.head_only_steps}")
        if not 0.0 <= self.head_only_share < 1.0:
            raise ValueError(f"head_only_share must be in [0, 1), got {self.head_only_share}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(
                f"class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}, "
                f"got {self.class_weighting!r}"
            )

    def held_steps(self, total_steps: int) -> int:
        """How many first steps of a ``total_steps`` run train only the FP decoder."""
        return max(self.head_only_steps, int(self.head_only_share * total_steps))


@dataclass(frozen=True)
class PretrainRecipe:
    """How a backbone is pretrained by masked reconstruction (stage 1).

    Args:
        epochs: passes over the images.
        max_steps: stop after this many steps in total (smoke runs); None = all epochs.
        batch_size: images per step in each process.
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay (not on biases and norm layers).
        warmup_steps: linear warm-up length; None = 5% of the run (at least 1 step).
        grad_clip: max gradient norm; 0 disables clipping.
        num_patches: fixed patch count per image; when given, ``mask_ratio`` is ignored.
        mask_ratio: target masked share of the central region.
        loss_region: "center" (the whole central region) or "masked" (masked pixels only).
        norm_pix: per-patch normalised reconstruction targets; pair with "masked".
        augment: "flip" (a horizontal flip of half the images) or "affine" (the fine-tune's
            augmentation: flip, scale, rotation, shift and colour jitter).
        sparse: SparK's masked encoder (``trainer.sparse``): whole cells of the stride-32 grid
            are masked (``mask_ratio`` of the cells that ``mask_cells`` allows), the encoder
            zeroes the masked positions after every layer and normalises over the visible ones,
            and learned mask tokens fill them before the UNet++ decoder.
        mask_cells: with ``sparse``, the cells that may be masked: "center" (those centred in
            the central region) or "image" (all).
        norm_patch: side in pixels of the per-patch target normalisation (``norm_pix``);
            None = 1/16 of the image side.
        seed: seeds the weights, data order, augmentations and masks.
    """

    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int | None = None
    grad_clip: float = 1.0
    num_patches: int | None = None
    mask_ratio: float | None = 0.4
    loss_region: Region = "center"
    norm_pix: bool = False
    augment: Augment = "flip"
    sparse: bool = False
    mask_cells: MaskCells = "center"
    norm_patch: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mask_cells not in MASK_CELLS:
            raise ValueError(f"mask_cells must be 'center' or 'image', got {self.mask_cells!r}")
        if self.sparse and (self.num_patches is not None or self.mask_ratio is None):
            raise ValueError(
                "a sparse stage 1 masks a share of cells: give mask_ratio, not num_patches"
            )
        if self.mask_cells == "image" and not self.sparse:
            raise ValueError(
                "mask_cells 'image' needs sparse (the patch masker keeps to the centre)"
            )
        if self.norm_patch is not None and self.norm_patch < 1:
            raise ValueError(f"norm_patch must be at least 1 px, got {self.norm_patch}")
        if self.loss_region not in REGIONS:
            raise ValueError(f"loss_region must be 'center' or 'masked', got {self.loss_region!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be 'flip' or 'affine', got {self.augment!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be ≥ 1")
        _check_not_negative(self, "lr", "weight_decay", "warmup_steps", "grad_clip")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.num_patches is not None and self.num_patches < 1:
            raise ValueError(f"num_patches must be at least 1, got {self.num_patches}")
        if self.mask_ratio is not None and not 0.0 < self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1], got {self.mask_ratio}")


def _check_not_negative(recipe: Any, *names: str) -> None:
    """Raise ValueError naming the first of ``names`` set below 0 (torch's own check comes
    later, as a traceback, or not at all: a negative Dice weight trains away from the labels)."""
    for name in names:
        value = getattr(recipe, name)
        if value is not None and value < 0:
            raise ValueError(f"{name} must be 0 or more, got {value}")


@dataclass(frozen=True)
class Entry:
    """One named recipe of the registry: the recipe and one line on when to use it."""

    recipe: Any
    use: str


FINETUNE_RECIPES: dict[str, Entry] = {
    "plain": Entry(
        FinetuneRecipe(),
        "every weight trained from the first step at lr 1e-2 (the default of faceparse finetune)",
    ),
    "head-on-backbone": Entry(
        FinetuneRecipe(head_only_share=0.2),
        "a fresh FP decoder on a pretrained backbone: lr 1e-2, the backbone held for the first "
        "fifth of the steps while the decoder fits to it",
    ),
    "continue-parser": Entry(
        FinetuneRecipe(lr=1e-3),
        "train a fine-tuned parser further on new faces, at a tenth of a fresh head's rate",
    ),
    "study": Entry(
        FinetuneRecipe(epochs=10**6, max_steps=500, head_only_steps=100),
        "the label-efficiency study's fine-tune: 500 steps of 8 at lr 1e-2, the first 100 with "
        "the backbone held",
    ),
}

PRETRAIN_RECIPES: dict[str, Entry] = {
    "center": Entry(
        PretrainRecipe(),
        "the paper's: 40% of the central region masked, the loss over the whole region",
    ),
    "spark": Entry(
        PretrainRecipe(loss_region="masked", norm_pix=True, mask_ratio=0.6),
        "SparK-like: 60% masked, the loss on masked pixels only against per-patch normalised "
        "targets (the starter backbone's and the app's recipe)",
    ),
    "sparse": Entry(
        PretrainRecipe(
            loss_region="masked", norm_pix=True, mask_ratio=0.6, sparse=True, norm_patch=32
        ),
        "SparK for CNNs: 60% of the stride-32 cells of the central region masked, a sparse "
        "encoder (masked positions zeroed after every layer, normalised over the visible ones), "
        "mask tokens before the decoder, the loss on masked cells against normalised targets",
    ),
    "sparse-image": Entry(
        PretrainRecipe(
            loss_region="masked",
            norm_pix=True,
            mask_ratio=0.6,
            sparse=True,
            mask_cells="image",
            norm_patch=32,
        ),
        "sparse, with the cells drawn over the whole image as SparK does on ImageNet",
    ),
}

DEFAULT_FINETUNE = "plain"
DEFAULT_PRETRAIN = "center"


def _named(table: dict[str, Entry], kind: str, name: str, overrides: dict[str, Any]) -> Any:
    if name not in table:
        raise ValueError(f"unknown {kind} recipe {name!r}; choose one of {', '.join(table)}")
    return dataclasses.replace(table[name].recipe, **overrides) if overrides else table[name].recipe


def finetune_recipe(name: str, **overrides: Any) -> FinetuneRecipe:
    """The fine-tuning recipe called ``name``, with ``overrides`` of its fields.

    Raises:
        ValueError: no such recipe, or an override out of range.
        TypeError: an override names no field of :class:`FinetuneRecipe`.
    """
    return _named(FINETUNE_RECIPES, "fine-tuning", name, overrides)


def pretrain_recipe(name: str, **overrides: Any) -> PretrainRecipe:
    """The stage-1 recipe called ``name``, with ``overrides`` of its fields (see
    :func:`finetune_recipe`)."""
    return _named(PRETRAIN_RECIPES, "stage-1", name, overrides)


def recipe_for_start(init: str) -> str:
    """The fine-tuning recipe for a start: ``continue-parser`` for a parser (``ckpt``),
    ``head-on-backbone`` for a stage-1 backbone (``ssl``), ``plain`` otherwise."""
    kind = init.partition(":")[0]
    return {"ckpt": "continue-parser", "ssl": "head-on-backbone"}.get(kind, "plain")

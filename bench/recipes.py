"""The label-efficiency study's recipe: every setting its numbers depend on, and the names that
mark a stage 1 run with other settings.

``StudySettings`` is stored in every done marker and results file; its fine-tuning defaults are
the ``study`` recipe of ``trainer.recipes`` and its stage 1 runs the registry's stage-1 recipes
(:func:`stage1_recipe`). ``K10_RECIPE`` is the study's K = 10 fine-tune as
``bench.probe_finetune`` flags (``bench.k10_subsets`` runs it on many subsets). Why each default
is what it is: BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.harness import out_dir
from trainer.models import get_preset
from trainer.recipes import PretrainRecipe, finetune_recipe, pretrain_recipe
from trainer.run_files import RunFiles

# The registry's fine-tuning recipe of the study: StudySettings' fine-tuning defaults.
STUDY = finetune_recipe("study")


@dataclass(frozen=True)
class StudySettings:
    """Everything the study's numbers depend on (stored in every done marker and the results).

    Args:
        preset: model preset; input_size overrides its input side (pixels) in both stages;
            pretrain_input_size, stage 1's alone (the network is fully convolutional: a backbone
            trained on smaller images fine-tunes at the preset's side, at a quarter of the cost
            per stage-1 epoch at half the side).
        split_seed: seed of the val/pool split; val_size faces go to validation.
        pretrain_epochs, pretrain_batch, pretrain_lr: stage-1 length and optimiser.
        pretrain_augment: stage 1's augmentation, "flip" or "affine" (the fine-tune's flip,
            scale, rotation, shift and colour jitter; ``PretrainConfig.augment``).
        pretrain_finish_epochs, pretrain_finish_lr: when stage 1 runs at its own smaller side,
            this many more epochs at the fine-tune's side, from its weights on a schedule of
            their own (``PretrainConfig.init``); 0 = none.
        recipes: stage-1 recipes to run (names in ``trainer.recipes.PRETRAIN_RECIPES``);
            spark_mask_ratio: the share of the central region the spark recipe masks (replaces
            the registry's).
        ks: labeled-subset sizes K; recipe_ks: the K values at which the second and later recipes
            are fine-tuned (the first recipe and scratch get every K).
        seeds: subset seeds repeated at the smallest K (seed 0 is used elsewhere).
        finetune_steps, finetune_batch, lr, backbone_lr_mult, dice_weight, warmup_steps: the one
            fine-tuning recipe every arm shares; steps_for_k: (K, steps) pairs that override
            finetune_steps at some K (the same for every arm): 250 steps of 8 left every K ≥ 10
            underfit (last-10-step loss 0.85 at K = 50, 0.99 at 600; at K = 25 the SSL start's
            right eye stayed at F1 0.7), so K = 5 alone keeps 250 (the budget) and 600 gets 750;
            pretrained_lr_mult replaces backbone_lr_mult for a pretrained backbone (SSL or
            ImageNet): the lower rate that keeps what it learned; head_only_steps: the first
            steps train only the new FP decoder, the backbone held (every arm alike).
        val_limit: score on the first N validation faces only (quick mode).
    """

    preset: str = "lite"
    input_size: int | None = None
    # Stage 1: 40 epochs at 128 px and AdamW 3e-3 (~1.6x the time of 10 epochs at 256 px) led
    # scratch by +5.7 / +4.2 mIoU at K = 10 / 50 over three subsets (10 epochs at 256 px and
    # 1e-3: +2.7 / +2.4; BENCHMARKS.md, "Stage 1 settings").
    pretrain_input_size: int | None = 128
    split_seed: int = 0
    val_size: int = 100
    pretrain_epochs: int = 40
    pretrain_batch: int = 8
    pretrain_lr: float = 3e-3
    pretrain_max_steps: int | None = None
    pretrain_augment: str = "flip"
    pretrain_finish_epochs: int = 0
    pretrain_finish_lr: float = 1e-3
    checkpoint_every: int = 50
    # 75 % masked is level with 60 %: over three K = 10 subsets, two runs each, 65.4 vs 65.3 mIoU
    # on average (BENCHMARKS.md, "Stage 1 settings"); 60 % stays.
    spark_mask_ratio: float = pretrain_recipe("spark").mask_ratio  # type: ignore[assignment]
    # The first recipe gets every K and the seed repeats: spark, the better one at K = 10
    # (65.6 vs 57.4 mean F1 in the first run).
    recipes: tuple[str, ...] = ("spark", "center")
    ks: tuple[int, ...] = (5, 10, 25, 50, 100, 600)
    recipe_ks: tuple[int, ...] = (10, 50)
    seeds: tuple[int, ...] = (0, 1, 2)
    # 250 steps of 8 left K = 10 underfit too: 500 took both starts from 56.5 / 67.7 to 76.7
    # mean F1 (40-epoch SSL / scratch, subset 0). K = 5 keeps 250 to stay within the budget.
    finetune_steps: int = STUDY.max_steps  # type: ignore[assignment]
    steps_for_k: tuple[tuple[int, int], ...] = ((5, 250), (600, 750))
    finetune_batch: int = STUDY.batch_size
    # K = 10 from scratch, 250 steps: lr 1e-3 → 23 mean F1 (no brow, eye, lip or mouth);
    # 3e-3 → 52 (eyes still 0); 1e-2 → 67 with every class learned.
    lr: float = STUDY.lr
    backbone_lr_mult: float = STUDY.backbone_lr_mult
    pretrained_lr_mult: float = 1.0
    dice_weight: float = STUDY.dice_weight
    warmup_steps: int = STUDY.warmup_steps
    # LP-FT: 80-epoch start, three subsets, SSL − scratch +1.7 → +5.4 mIoU at K = 10, +2.5 →
    # +4.0 at K = 50 (BENCHMARKS.md, "Holding the backbone for the first fine-tuning steps").
    head_only_steps: int = STUDY.head_only_steps
    val_limit: int | None = None
    device: str = "auto"
    num_workers: int = 0
    finetune_workers: int | None = None
    imagenet_weights: str | None = None


QUICK = StudySettings(
    input_size=128,
    pretrain_input_size=64,
    pretrain_epochs=1,
    pretrain_batch=4,
    pretrain_max_steps=6,
    checkpoint_every=3,
    ks=(5, 10),
    recipe_ks=(10,),
    finetune_steps=6,
    steps_for_k=(),
    finetune_batch=4,
    warmup_steps=2,
    head_only_steps=2,
    val_limit=16,
)

# Settings a scratch fine-tune does not depend on (stage 1, scheduling, the ImageNet arm).
NOT_SCRATCH = {
    "pretrain_input_size", "pretrain_epochs", "pretrain_batch", "pretrain_lr",
    "pretrain_max_steps", "checkpoint_every", "recipes", "ks", "recipe_ks", "seeds",
    "imagenet_weights", "pretrained_lr_mult", "spark_mask_ratio", "pretrain_augment",
    "pretrain_finish_epochs", "pretrain_finish_lr",
}  # fmt: skip

# The study's cache and its default stage-1 checkpoint (spark, 40 epochs at 128 px, AdamW 3e-3).
STUDY_OUT = out_dir("study")
SSL_DEFAULT = RunFiles(STUDY_OUT / "pretrain_spark_128px_lr0.003", "pretrain").last
# The study's K = 10 fine-tune as bench.probe_finetune flags (500 steps of 8 at 256 px, the first
# 100 with the backbone held; the rest are probe_finetune's defaults: lr 1e-2, CE + Dice).
K10_RECIPE = ("--k", "10", "--steps", "500", "--head-only-steps", "100", "--input-size", "256")
K10_QUICK = ("--k", "10", "--steps", "4", "--head-only-steps", "2", "--input-size", "256")


def steps_for(settings: StudySettings, k: int) -> int:
    """Fine-tuning steps at subset size K: its entry in ``steps_for_k``, else ``finetune_steps``."""
    return dict(settings.steps_for_k).get(k, settings.finetune_steps)


def recipe_options(recipe: str, settings: StudySettings) -> dict[str, Any]:
    """The stage-1 options of ``recipe`` under ``settings`` that the study's records name (loss
    region, targets, mask share)."""
    named = stage1_recipe(recipe, settings)
    return {"loss_region": named.loss_region, "norm_pix": named.norm_pix, "mask_ratio": named.mask_ratio}


def stage1_recipe(recipe: str, settings: StudySettings, **changes: Any) -> PretrainRecipe:
    """The registry's stage-1 recipe ``recipe`` as the study runs it: its length, batch, rate,
    augmentation and (spark) mask share from ``settings``, seed 0, then ``changes``."""
    study = {
        "epochs": settings.pretrain_epochs,
        "batch_size": settings.pretrain_batch,
        "lr": settings.pretrain_lr,
        "max_steps": settings.pretrain_max_steps,
        "augment": settings.pretrain_augment,
        "seed": 0,
    }
    if recipe == "spark":
        study["mask_ratio"] = settings.spark_mask_ratio
    return pretrain_recipe(recipe, **{**study, **changes})


def finetune_recipe_for(settings: StudySettings, k: int, **changes: Any) -> Any:
    """The registry's ``study`` fine-tuning recipe under ``settings`` at subset size K."""
    study = {
        "max_steps": steps_for(settings, k),
        "batch_size": settings.finetune_batch,
        "lr": settings.lr,
        "backbone_lr_mult": settings.backbone_lr_mult,
        "warmup_steps": settings.warmup_steps,
        "dice_weight": settings.dice_weight,
        "head_only_steps": settings.head_only_steps,
        "seed": 0,
    }
    return finetune_recipe("study", **{**study, **changes})


def finetune_side(settings: StudySettings) -> int:
    """The side (pixels) the study fine-tunes and scores at (stage 1 may run smaller)."""
    return settings.input_size or get_preset(settings.preset).input_size


def finishes(settings: StudySettings) -> bool:
    """Whether stage 1 ends with epochs at the fine-tune's side (after a smaller-side run)."""
    return bool(settings.pretrain_finish_epochs and settings.pretrain_input_size)


def finish_suffix(settings: StudySettings) -> str:
    """``_finish<N>px_e<E>`` (``_lr<rate>`` when not 1e-3) for a stage 1 with a finish, else ""."""
    if not finishes(settings):
        return ""
    lr = settings.pretrain_finish_lr
    return f"_finish{finetune_side(settings)}px_e{settings.pretrain_finish_epochs}" + (
        f"_lr{lr:g}" if lr != 1e-3 else ""
    )


def stage1_base_tag(settings: StudySettings, recipe: str) -> str:
    """Folder suffix of a stage 1 at its own side (``_<N>px``), at a rate other than 1e-3
    (``_lr<rate>``), at a mask share other than its registry recipe's (``_m<share>``) or with
    an augmentation other than the flip (``_<augment>``).
    Its pretrain folder and its SSL arms' fine-tune folders carry it, so the cached stages of
    earlier studies (no suffix for what they left at its first value) stay valid beside it."""
    size, lr = settings.pretrain_input_size, settings.pretrain_lr
    ratio = recipe_options(recipe, settings)["mask_ratio"]
    masked = ratio != pretrain_recipe(recipe).mask_ratio
    return (
        (f"_{size}px" if size else "")
        + (f"_lr{lr:g}" if lr != 1e-3 else "")
        + (f"_m{ratio:g}" if masked else "")
        + (f"_{settings.pretrain_augment}" if settings.pretrain_augment != "flip" else "")
    )


def stage1_tag(settings: StudySettings, recipe: str) -> str:
    """``stage1_base_tag`` and, with a finish at the fine-tune's side, ``finish_suffix``: the
    suffix of the SSL arms' fine-tune folders."""
    return stage1_base_tag(settings, recipe) + finish_suffix(settings)

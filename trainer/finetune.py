"""Stage 2: fine-tune a parsing network on a (small) labeled subset.

Where the network starts is the config's ``init`` (``trainer.finetune_model``), how it learns
its recipe (``trainer.recipes``). Validation after each epoch and the publishing of the best and
last checkpoints are ``trainer.finetune_validation``'s; the files a run writes are named by
``trainer.run_files``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer.configs import FinetuneConfig, FinetuneData, FinetuneRuntime
from trainer.data.imageio import remove_temp_leftovers
from trainer.data.labeled import open_training_data
from trainer.data.sample import Sample, as_named
from trainer.engine import (
    CancelFlag,
    Hook,
    TrainLoop,
    make_scheduler,
    seed_everything,
    select_device,
)
from trainer.errors import DatasetError, FaceParseError
from trainer.finetune_model import (
    build_finetune_model,
    hold_backbone,
    param_groups,
    resolve_start,
)
from trainer.finetune_validation import ValidateAndPublish
from trainer.hooks import CallbackHook, JsonlLogger, ProgressBar
from trainer.labels import get_label_set
from trainer.precision import autocast, choose_precision
from trainer.run_files import RunFiles
from trainer.subsets import select_labeled_subset

__all__ = [
    "FinetuneConfig",
    "FinetuneData",
    "FinetuneResult",
    "FinetuneRuntime",
    "finetune",
    "finetune_on_samples",
    "result_summary",
]

log = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced.

    Attributes:
        best_path: checkpoint of the best validation epoch (the last one without validation).
        last_path: checkpoint at the end of the run.
        metrics: validation metrics of the best checkpoint (see ``trainer.evaluate.evaluate``)
            plus "epoch" and "step"; empty without validation.
        history: one record per validation: epoch, step, mean_f1, miou.
        cancelled: the run was stopped early through ``cancel``.
    """

    best_path: Path
    last_path: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False


def finetune(
    config: FinetuneConfig,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    cancel: CancelFlag | None = None,
) -> FinetuneResult:
    """Fine-tune on the labeled subset of ``config.data.root``'s training split.

    The subset is :func:`trainer.subsets.select_labeled_subset`'s, so it is the same whichever
    ``init`` a run starts from; it is validated on ``config.data.val_split`` when there is one.

    Args:
        config: the run's settings.
        on_progress: called after every step with the engine's stats plus ``phase="train"``
            (step, total_steps, epoch, epochs, loss, lr, images_per_s, eta_s), and after every
            validation with ``phase="val"`` (epoch, step, mean_f1, miou, best).
        cancel: a ``threading.Event``; when set, training stops after the current step and the
            last checkpoint is still written (as it is after a Ctrl-C, before it is re-raised).

    Returns:
        A FinetuneResult with the best and last checkpoint paths and the best metrics.

    Raises:
        DatasetError, LabelMapError, ImageReadError: bad data (the message names the file).
        CheckpointError, ModelConfigError: a bad ``init``.
    """
    resolve_start(config.init)  # a missing starter is named before any data is read
    data = config.data
    if data.root is None:
        raise DatasetError("no dataset folder given (--data); finetune_on_samples takes samples")
    train, val = open_training_data(data.root, data.data_format, data.val_split)
    names = list(train.names)
    if not names:
        raise DatasetError(
            f"{getattr(train, 'images_dir', data.root)}: no labeled images to fine-tune on "
            "(each image needs its label PNG of the same name)"
        )
    try:
        chosen = select_labeled_subset(
            names, fraction=data.fraction, num_labeled=data.num_labeled, seed=data.subset_seed
        )
    except ValueError as exc:
        raise FaceParseError(f"labeled subset: {exc}") from None
    subset = train.select(chosen)
    if data.num_labeled is not None and data.num_labeled > len(names):
        log.warning(
            "--num-labeled %d asks for more faces than the %d of %s; training on all %d",
            data.num_labeled, len(names), getattr(train, "images_dir", data.root), len(names),
        )  # fmt: skip
    log.info("training on %d of %d labeled images", len(subset), len(names))
    return finetune_on_samples(config, subset, val, on_progress=on_progress, cancel=cancel)


def finetune_on_samples(
    config: FinetuneConfig,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample] | None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    cancel: CancelFlag | None = None,
) -> FinetuneResult:
    """Fine-tune on given labeled samples (what the desktop app calls with its own faces).

    Of ``config.data`` only ``framing`` and ``val_limit`` apply here: every training sample
    given is used, and their names are recorded in the checkpoint as the label subset.

    Args:
        train_samples: Samples with labels (LaPa classes), any sizes: a reader or another
            :class:`~trainer.data.sample.NamedSamples` (read lazily), or a list of Samples.
        val_samples: the same kinds, to validate on; None or empty for no validation (the best
            checkpoint is then the last one).
        on_progress, cancel: see :func:`finetune`.

    Returns:
        A FinetuneResult.

    Raises:
        RunFolderBusy: another fine-tuning is writing ``config.runtime.out_dir``.
    """
    if len(train_samples) == 0:
        raise DatasetError("no labeled images to fine-tune on")
    from trainer.data.preflight import check_labeled_faces

    # Bad data stops the run here, not an epoch in; the face crops read the training faces
    # themselves (before the first step too).
    check_labeled_faces(
        None if config.data.framing == "detect" else as_named(train_samples),
        as_named(val_samples) if val_samples is not None and len(val_samples) else None,
        config.data.val_limit,
    )
    files = RunFiles(Path(config.runtime.out_dir), "finetune")
    with files.hold():  # one fine-tuning writes a folder at a time
        return _finetune_on_samples(config, train_samples, val_samples, files, on_progress, cancel)


def _finetune_on_samples(
    config: FinetuneConfig,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample] | None,
    files: RunFiles,
    on_progress: Callable[[dict[str, Any]], None] | None,
    cancel: CancelFlag | None,
) -> FinetuneResult:
    from torch.utils.data import DataLoader, RandomSampler

    from trainer.data.torch_datasets import EpochSampler, ParsingDataset, worker_context
    from trainer.data.transforms import TrainAugment
    from trainer.losses import class_pixel_counts, class_weights, parsing_loss

    train = as_named(train_samples)
    val = as_named(val_samples) if val_samples is not None and len(val_samples) else None
    recipe, runtime = config.recipe, config.runtime
    out_dir = files.out_dir
    device = select_device(runtime.device)
    precision = choose_precision(runtime.precision, device)  # a wrong setting stops it here
    log.info("precision: %s (%s)", precision.precision, precision.reason)
    # No resume in stage 2: a new run in the same folder replaces the old one, logs included,
    # and the temp files of a run killed mid-write.
    for path in (files.log, files.val_log):
        path.unlink(missing_ok=True)
    for pattern in (files.checkpoints_glob, files.log.name, files.val_log.name):
        remove_temp_leftovers(out_dir, pattern)
    seed_everything(recipe.seed)
    model, origin = build_finetune_model(config)
    model = model.to(device).train()
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    size = model.config.input_size
    label_set = get_label_set(model.config.label_set)
    backbone_mult = recipe.backbone_lr_mult

    names = train.names
    meta: dict[str, Any] = {
        "training": config.to_stored(),
        **origin,
        "label_subset": list(names),
        "subset_seed": config.data.subset_seed,
        "fraction": config.data.fraction,
        "num_labeled": len(names),
        "num_labeled_requested": config.data.num_labeled,
        "backbone_lr_mult": backbone_mult,
        **precision.as_meta(),
    }

    weights = None
    if recipe.class_weighting != "none":
        labels = (train[i].label for i in range(len(train)))
        counts, totals = class_pixel_counts(
            (lab for lab in labels if lab is not None), label_set.num_classes
        )
        weights = class_weights(counts, totals, recipe.class_weighting)
        meta["class_weights"] = [round(float(w), 4) for w in weights]

    augment = TrainAugment(size, label_set) if recipe.augment else None
    if config.data.framing == "detect":
        from trainer.data.face_crops import FaceCropSamples

        crops = FaceCropSamples(train, size)
        if not len(crops):
            raise DatasetError("no labeled face in the training images (every label is background)")
        meta["face_crops"] = len(crops)
        meta["photos_without_a_face"] = crops.skipped
        train = crops
    dataset = ParsingDataset(train, size, augment=augment, seed=recipe.seed)
    batch_size = min(recipe.batch_size, len(dataset))
    generator = torch.Generator().manual_seed(recipe.seed)
    sampler = EpochSampler(RandomSampler(dataset, generator=generator))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=runtime.num_workers,
        # A last batch of one or two faces would give BatchNorm noisy statistics.
        drop_last=len(dataset) > batch_size,
        pin_memory=device.type == "cuda",
        # The epoch travels with each index (EpochSampler), so workers may outlive an epoch.
        persistent_workers=runtime.num_workers > 0,
        multiprocessing_context=worker_context(runtime.num_workers),
    )

    def batches(epoch: int) -> DataLoader:
        sampler.set_epoch(epoch)
        return loader

    steps_per_epoch = len(loader)
    total = steps_per_epoch * recipe.epochs
    if recipe.max_steps is not None:
        total = min(total, recipe.max_steps)
    optimizer = torch.optim.AdamW(
        param_groups(model, recipe.lr, backbone_mult, recipe.weight_decay), lr=recipe.lr
    )
    scheduler = make_scheduler(optimizer, total, min(recipe.warmup_steps, max(0, total - 1)))
    backbone = [p for n, p in model.named_parameters() if not n.startswith("heads.")]
    hold = recipe.held_steps(total)
    meta["backbone_held_steps"] = hold

    def step_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        step = scheduler.last_epoch
        hold_backbone(optimizer, backbone, step, hold, recipe.warmup_steps)
        images, labels = batch
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        x = model.normalize(images)
        if runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision.precision):
            logits = model(x, head="parsing")
        loss = parsing_loss(
            logits.float(), labels, dice_weight=recipe.dice_weight, class_weights=weights
        )
        if not torch.isfinite(loss):
            raise FaceParseError(
                f"the loss became {loss.item()} at step {scheduler.last_epoch + 1}; "
                "lower --lr or raise --warmup-steps"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        head_lr = next(g["lr"] for g in optimizer.param_groups if g["name"].startswith("head"))
        return {
            "loss": float(loss.detach()),
            "lr": float(head_lr),
            "batch_size": int(images.shape[0]),
            "backbone_held": step < hold,
        }

    publisher = ValidateAndPublish(model, device, config, val, meta, files, on_progress)
    progress_bar = ProgressBar(disable=None if runtime.progress_bar else True, desc="finetune")
    hooks: list[Hook] = [JsonlLogger(files.log), progress_bar]
    if on_progress is not None:
        hooks.append(CallbackHook(lambda stats: on_progress({"phase": "train", **stats})))
    hooks.append(publisher)
    loop = TrainLoop(
        step_fn,
        batches_per_epoch=steps_per_epoch,
        epochs=recipe.epochs,
        hooks=hooks,
        cancel=cancel,
        data=batches,
        max_steps=recipe.max_steps,
        optimizer=optimizer,
    )
    loop.run()
    return FinetuneResult(
        best_path=publisher.best_path,
        last_path=publisher.last_path,
        metrics=publisher.best_metrics,
        history=publisher.history,
        cancelled=loop.cancelled,
    )


def result_summary(result: FinetuneResult) -> str:
    """One line for the terminal: where the best checkpoint went and its scores."""
    m = result.metrics
    if not m:
        return f"saved {result.best_path} (no validation set)"
    return (
        f"best {result.best_path} (epoch {m.get('epoch')}): mean F1 {100 * (m['mean_f1'] or 0):.2f}, "
        f"mIoU {100 * (m['miou'] or 0):.2f}; last {result.last_path}"
    )

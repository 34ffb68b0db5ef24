"""Stage 2: fine-tune a parsing network on a (small) labeled subset.

``--init`` chooses where the backbone (encoder and decoder) comes from: a stage-1 checkpoint
(``ssl:<path>``: its backbone is kept, a fresh FP decoder is attached), ImageNet encoder weights
(``imagenet``, the paper's baseline), random weights (``scratch``), or an earlier stage-2 parser
(``ckpt:<path>``, to continue training). The labeled subset is chosen by
:func:`trainer.subsets.select_labeled_subset`, so it is the same whichever ``--init`` is used.

Each epoch ends with a validation pass (mean F1 over the foreground classes at each label's own
resolution); the best epoch is published as ``finetune_best.safetensors`` and the end of the run as
``finetune_last.safetensors``. Without a validation set the best checkpoint is the last one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from trainer.checkpoint import load_model, save_checkpoint
from trainer.data.imageio import remove_temp_leftovers
from trainer.data.sample import NamedSamples, Sample, as_named
from trainer.engine import (
    CallbackHook,
    CancelFlag,
    Hook,
    JsonlLogger,
    ProgressBar,
    TrainLoop,
    autocast_for,
    make_scheduler,
    seed_everything,
    select_device,
)
from trainer.errors import CheckpointError, DatasetError, FaceParseError
from trainer.labels import get_label_set
from trainer.losses import CLASS_WEIGHTINGS, ClassWeighting
from trainer.models import FaceParseNet, build_model, get_preset
from trainer.run_files import RunFiles
from trainer.subsets import select_labeled_subset, subset_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything a fine-tuning run depends on; stored in its checkpoints.

    Args:
        data: dataset folder (LaPa layout, or CelebAMask-HQ mapped to LaPa classes).
        out_dir: where checkpoints and logs go.
        data_format: "lapa", "celebamask" or "auto" (LaPa when ``data/train/images`` exists).
        init: "scratch", "imagenet", "ssl:<stage-1 checkpoint>" or "ckpt:<stage-2 checkpoint>";
            a bare "ssl" / "ckpt" is the starter backbone / parser shipped in ``assets/models/``.
        preset: model preset for scratch/imagenet (ssl/ckpt take the checkpoint's).
        input_size: network input side in pixels; default the preset's or the checkpoint's.
        fraction: share of the training images that are labeled (K = max(1, round(f·N))).
        num_labeled: number of labeled training images K (instead of fraction).
        subset_seed: seed of the labeled subset (kept apart from ``seed`` so runs with other
            training seeds use the same faces).
        epochs: passes over the labeled subset.
        max_steps: stop after this many optimizer steps (the schedule is fitted to it).
        batch_size: images per step.
        lr: peak learning rate of the FP decoder (AdamW, warm-up then cosine). 1e-2: at 1e-3 a
            short few-label run (250 steps, K = 10) underfits even its own training faces and
            never learns brows, eyes or lips (bench/results/lr_probe.json).
        backbone_lr_mult: the backbone's learning rate is ``lr · backbone_lr_mult``. 1.0 for
            every init: a lower rate for a masked-SSL backbone hurt at K = 10 (0.1: mean F1 35
            and 41 vs 66 and 57 at 1.0 for the two stage-1 recipes; bench/results/probes.jsonl).
        weight_decay: AdamW weight decay on weight matrices/kernels (not on biases or norms).
        warmup_steps: linear warm-up steps.
        grad_clip: max gradient norm; 0 disables clipping.
        dice_weight: weight of the Dice term added to cross-entropy (0 = cross-entropy only);
            Dice weighs each class equally, so small parts count as much as skin and hair.
        class_weighting: per-class cross-entropy weights from the labeled faces' class
            frequencies: "none" (default), "enet" (1 / ln(1.02 + share)) or "median-frequency"
            (see ``trainer.losses.class_weights``). The weights are recorded in the checkpoint.
        head_only_steps: train only the FP decoder for this many first steps, the backbone
            frozen, then everything, the backbone's rate ramped up over ``warmup_steps``
            ("linear probing, then fine-tuning": the new head stops sending random gradients
            into a pretrained backbone). 0 (default) trains everything from the first step.
        head_only_share: the same hold as a share of the run's steps (0 <= share < 1), for runs
            whose length depends on the data (the desktop app's); the hold is the larger of the
            two. The study holds 100 of 500 steps (0.2) from a stage-1 backbone.
        seed: seed of weights of the new head, shuffling and augmentation.
        num_workers: DataLoader worker processes.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        val_split: LaPa split used for validation; None or "" for none.
        val_every: validate every this many epochs (and always at the end).
        val_limit: validate on the first N images of the split only (None = all).
        channels_last: channels-last memory format (faster convolutions).
        encoder_weights: a local .safetensors encoder weights file for scratch/imagenet runs
            (pickles such as .pth are refused; the error says how to convert one; overrides
            "imagenet" download for ``init="imagenet"``).
        augment: use the training augmentations (flip with left/right swap, scale, rotation,
            shift, colour jitter).
        framing: "detect" (default): every face in each labeled photo becomes one training
            crop, framed as the predictor frames faces (``trainer.data.face_crops``), and
            validation parses each photo's faces the same way; "whole": each image is one
            aligned face crop, resized (CelebAMask-HQ, the study).
        progress_bar: show a terminal progress bar (off when a GUI reports progress).
    """

    data: str
    out_dir: str
    data_format: Literal["lapa", "celebamask", "auto"] = "auto"
    init: str = "scratch"
    preset: str = "lite"
    input_size: int | None = None
    fraction: float | None = None
    num_labeled: int | None = None
    subset_seed: int = 0
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
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    val_split: str | None = "val"
    val_every: int = 1
    val_limit: int | None = None
    channels_last: bool = True
    encoder_weights: str | None = None
    augment: bool = True
    framing: str = "detect"
    progress_bar: bool = True

    def __post_init__(self) -> None:
        _parse_init(self.init)  # fail at once on a malformed --init, before any data is read
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
        if self.framing not in ("detect", "whole"):
            raise ValueError(f"framing must be detect or whole, got {self.framing!r}")
        if self.data_format not in ("lapa", "celebamask", "auto"):
            raise ValueError(f"data_format must be lapa, celebamask or auto, got {self.data_format!r}")
        subset_size(1, fraction=self.fraction, num_labeled=self.num_labeled)  # range checks

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


# ---------------------------------------------------------------------------------------------
# Data


def detect_format(root: Path) -> str:
    """"lapa" or "celebamask" from a dataset folder's contents (DatasetError if neither)."""
    if (root / "train" / "images").is_dir():
        return "lapa"
    if any((root / d).is_dir() for d in ("masks", "CelebAMask-HQ-mask-anno", "CelebA-HQ-img")):
        return "celebamask"
    raise DatasetError(
        f"{root}: neither a LaPa dataset (train/images/, train/labels/) nor CelebAMask-HQ "
        "(images/ + masks/, or CelebA-HQ-img/ + CelebAMask-HQ-mask-anno/)"
    )


def load_datasets(config: FinetuneConfig) -> tuple[NamedSamples, NamedSamples | None]:
    """Open the training reader and the validation reader (None when there is none).

    Raises:
        DatasetError: the data folder is missing or of neither layout.
    """
    root = Path(config.data)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    fmt = detect_format(root) if config.data_format == "auto" else config.data_format
    if fmt == "lapa":
        from trainer.data.lapa import LapaDataset

        train = LapaDataset(root, split="train")
        val = None
        if config.val_split:
            if (root / config.val_split / "images").is_dir():
                val = LapaDataset(root, split=config.val_split)
            else:
                log.warning(
                    "%s: no %s/images folder; training without validation (the best checkpoint "
                    "will be the last one)", root, config.val_split,
                )
        return train, val
    if fmt == "celebamask":
        from trainer.data.celebamask import CelebAMaskDataset

        log.warning(
            "%s: CelebAMask-HQ has no validation split here; training without validation. "
            "Convert it with `faceparse convert --val-fraction` to validate.", root,
        )
        return CelebAMaskDataset(root, label_set="lapa"), None
    raise DatasetError(f"unknown data format {fmt!r}; use lapa, celebamask or auto")


# ---------------------------------------------------------------------------------------------
# Model


def _parse_init(init: str) -> tuple[str, str | None]:
    from trainer.starter import resolve_init

    kind, _, path = resolve_init(init).partition(":")
    if kind in ("scratch", "imagenet") and not path:
        return kind, None
    if kind in ("ssl", "ckpt") and path:
        return kind, path
    raise FaceParseError(
        f"--init {init!r}: use scratch, imagenet, ssl:<stage-1 checkpoint> or ckpt:<stage-2 checkpoint> "
        "(bare ssl / ckpt: the starter backbone / parser in assets/models)"
    )


def build_finetune_model(config: FinetuneConfig) -> tuple[FaceParseNet, dict[str, Any]]:
    """The network a run starts from, and facts about its origin for the checkpoint metadata.

    Call after seeding: the new FP decoder's weights come from torch's generator.

    Raises:
        CheckpointError: an ssl:/ckpt: checkpoint is missing, corrupted or of the wrong stage.
        ModelConfigError: unknown preset, or ImageNet weights unavailable offline.
    """
    kind, path = _parse_init(config.init)
    origin: dict[str, Any] = {"init": config.init}
    if kind in ("scratch", "imagenet"):
        model_config = get_preset(config.preset).with_overrides(input_size=config.input_size)
        weights = config.encoder_weights or ("imagenet" if kind == "imagenet" else None)
        return build_model(model_config, heads=("parsing",), encoder_weights=weights), origin
    assert path is not None
    if kind == "ssl":
        model, ckpt = load_model(path, heads=("parsing",))
        if "reconstruction" not in ckpt.heads and ckpt.stage != "pretrain":
            raise CheckpointError(
                f"{path}: a {ckpt.stage or 'unknown'}-stage checkpoint, not a stage-1 one; "
                "use --init ckpt:<path> to continue fine-tuning a parser"
            )
        # Whatever head the file held, stage 2 starts with a fresh FP decoder.
        model.drop_head("parsing")
        model.add_head("parsing")
        origin["init_checkpoint"] = str(path)
        origin["pretrain_step"] = ckpt.meta.get("step")
    else:
        model, ckpt = load_model(path)
        if "parsing" not in ckpt.heads:
            raise CheckpointError(
                f"{path}: has no parsing head; a stage-1 checkpoint is used with --init ssl:<path>"
            )
        origin["init_checkpoint"] = str(path)
    if config.input_size is not None and config.input_size != model.config.input_size:
        # The network is fully convolutional; only the stored input size changes.
        model.config = model.config.with_overrides(input_size=config.input_size)
    return model, origin


def _param_groups(
    model: FaceParseNet, lr: float, backbone_mult: float, weight_decay: float
) -> list[dict[str, Any]]:
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = name.startswith("heads.")
        decay = param.ndim > 1  # biases and norm scales are not decayed
        groups.setdefault((is_head, decay), []).append(param)
    return [
        {
            "params": params,
            "lr": lr if is_head else lr * backbone_mult,
            "weight_decay": weight_decay if decay else 0.0,
            "name": ("head" if is_head else "backbone") + ("" if decay else "_no_decay"),
        }
        for (is_head, decay), params in sorted(groups.items())
    ]


def held_steps(config: FinetuneConfig, total_steps: int) -> int:
    """How many first steps of a ``total_steps`` run train only the FP decoder."""
    return max(config.head_only_steps, int(config.head_only_share * total_steps))


def _hold_backbone(
    optimizer: torch.optim.Optimizer,
    backbone: list[torch.nn.Parameter],
    step: int,
    hold: int,
    warmup_steps: int,
) -> None:
    """Freeze the backbone for the first ``hold`` steps, then ramp its rate up.

    Called before each step, after the scheduler has set this step's rates (a LambdaLR sets
    them afresh from the base rates each step, so the scaling here does not accumulate).
    Frozen parameters get no gradient, and AdamW leaves a parameter without one untouched.
    """
    if hold <= 0:
        return
    frozen = step < hold
    if backbone and backbone[0].requires_grad == frozen:
        for p in backbone:
            p.requires_grad_(not frozen)
    ramp = 0.0 if frozen else min(1.0, (step - hold + 1) / max(1, warmup_steps))
    if ramp < 1.0:
        for group in optimizer.param_groups:
            if group["name"].startswith("backbone"):
                group["lr"] *= ramp


# ---------------------------------------------------------------------------------------------
# Validation and publishing


class _ValidateAndPublish(Hook):
    """Validate on schedule, keep the best checkpoint, write the last one at the end."""

    def __init__(
        self,
        model: FaceParseNet,
        device: torch.device,
        config: FinetuneConfig,
        val_samples: NamedSamples | None,
        meta: dict[str, Any],
        files: RunFiles,
        on_progress: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.model = model
        self.device = device
        self.config = config
        self.val_samples = val_samples
        self.meta = meta
        self.best_path = files.best
        self.last_path = files.last
        self.val_log = files.val_log
        self.on_progress = on_progress
        self.best_score = -math.inf
        self.best_metrics: dict[str, Any] = {}
        self.last_metrics: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.validated_step = -1
        self.wrote_best = False

    def _validate(self, loop: TrainLoop, epoch: int) -> None:
        from trainer.evaluate import evaluate
        from trainer.predict import Predictor

        assert self.val_samples is not None
        samples = self.val_samples
        if self.config.val_limit is not None:
            samples = samples.subset(range(min(self.config.val_limit, len(samples))))
        predictor = Predictor(
            self.model,
            meta=self.meta,
            device=self.device,
            channels_last=self.config.channels_last,
            framing=self.config.framing,
        )
        try:
            # Faces come from the labels: the epoch is picked for parsing, not for a finder.
            results = evaluate(
                predictor,
                samples,
                batch_size=self.config.batch_size,
                faces_from_labels=self.config.framing == "detect",
            )
        finally:
            self.model.train()
        results.pop("model", None)
        results.update(epoch=epoch + 1, step=loop.step)
        self.validated_step = loop.step
        self.last_metrics = results
        record = {
            "epoch": epoch + 1,
            "step": loop.step,
            "mean_f1": results["mean_f1"],
            "miou": results["miou"],
            "pixel_accuracy": results["pixel_accuracy"],
        }
        self.history.append(record)
        with open(self.val_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        score = results["mean_f1"] if results["mean_f1"] is not None else -math.inf
        improved = score > self.best_score or not self.wrote_best
        log.info(
            "validation epoch %d: mean F1 %.4f, mIoU %.4f%s",
            epoch + 1, score, results["miou"] or float("nan"), " (best)" if improved else "",
        )
        if improved:
            self.best_score = score
            self.best_metrics = results
            self._save(self.best_path, loop, results)
            self.wrote_best = True
        if self.on_progress is not None:
            self.on_progress({"phase": "val", **record, "best": improved})

    def _save(self, path: Path, loop: TrainLoop, metrics: dict[str, Any]) -> None:
        meta = dict(self.meta, step=loop.step, epoch=loop.epoch + 1, metrics=metrics)
        save_checkpoint(path, self.model, stage="finetune", meta=meta)

    def after_epoch(self, loop: TrainLoop, epoch: int) -> None:
        if self.val_samples is None:
            return
        last_epoch = epoch + 1 >= loop.epochs
        if (epoch + 1) % max(1, self.config.val_every) == 0 or last_epoch:
            self._validate(loop, epoch)

    def after_train(self, loop: TrainLoop) -> None:
        if loop.error is not None and not isinstance(loop.error, KeyboardInterrupt):
            return  # the weights may be broken (NaN); keep what was published
        if (
            self.val_samples is not None
            and not loop.cancelled
            and self.validated_step != loop.step
            and loop.step > 0
        ):
            # max_steps ended the run mid-epoch: score the final weights too.
            self._validate(loop, loop.epoch)
        self._save(self.last_path, loop, self.last_metrics)
        if not self.wrote_best:
            self._save(self.best_path, loop, self.last_metrics)
            self.wrote_best = True


# ---------------------------------------------------------------------------------------------
# Entry points


def finetune(
    config: FinetuneConfig,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    cancel: CancelFlag | None = None,
) -> FinetuneResult:
    """Fine-tune on the labeled subset of ``config.data``'s training split.

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
    train, val = load_datasets(config)
    names = list(train.names)
    try:
        chosen = select_labeled_subset(
            names, fraction=config.fraction, num_labeled=config.num_labeled, seed=config.subset_seed
        )
    except ValueError as exc:
        raise FaceParseError(f"labeled subset: {exc}") from None
    subset = train.select(chosen)
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

    ``config.data``, ``data_format``, ``fraction``, ``num_labeled`` and ``val_split`` are not used
    here: every training sample given is used. The names of the samples are recorded in the
    checkpoint as the label subset.

    Args:
        train_samples: Samples with labels (LaPa classes), any sizes: a reader or another
            :class:`~trainer.data.sample.NamedSamples` (read lazily), or a list of Samples.
        val_samples: the same kinds, to validate on; None or empty for no validation (the best
            checkpoint is then the last one).
        on_progress, cancel: see :func:`finetune`.

    Returns:
        A FinetuneResult.
    """
    from torch.utils.data import DataLoader, RandomSampler

    from trainer.data.torch_datasets import EpochSampler, ParsingDataset, worker_context
    from trainer.data.transforms import TrainAugment
    from trainer.losses import class_pixel_counts, class_weights, parsing_loss

    if len(train_samples) == 0:
        raise DatasetError("no labeled images to fine-tune on")
    train = as_named(train_samples)
    val = as_named(val_samples) if val_samples is not None and len(val_samples) else None
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # No resume in stage 2: a new run in the same folder replaces the old one, logs included,
    # and the temp files of a run killed mid-write.
    files = RunFiles(out_dir, "finetune")
    for path in (files.log, files.val_log):
        path.unlink(missing_ok=True)
    for pattern in (files.checkpoints_glob, files.log.name, files.val_log.name):
        remove_temp_leftovers(out_dir, pattern)
    device = select_device(config.device)
    seed_everything(config.seed)
    model, origin = build_finetune_model(config)
    model = model.to(device).train()
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    size = model.config.input_size
    label_set = get_label_set(model.config.label_set)
    backbone_mult = config.backbone_lr_mult

    names = train.names
    meta: dict[str, Any] = {
        "training": config.to_dict(),
        **origin,
        "label_subset": list(names),
        "subset_seed": config.subset_seed,
        "fraction": config.fraction,
        "num_labeled": len(names),
        "num_labeled_requested": config.num_labeled,
        "backbone_lr_mult": backbone_mult,
    }

    weights = None
    if config.class_weighting != "none":
        labels = (train[i].label for i in range(len(train)))
        counts, totals = class_pixel_counts(
            (lab for lab in labels if lab is not None), label_set.num_classes
        )
        weights = class_weights(counts, totals, config.class_weighting)
        meta["class_weights"] = [round(float(w), 4) for w in weights]

    augment = TrainAugment(size, label_set) if config.augment else None
    if config.framing == "detect":
        from trainer.data.face_crops import FaceCropSamples

        crops = FaceCropSamples(train, size)
        if not len(crops):
            raise DatasetError("no labeled face in the training images (every label is background)")
        meta["face_crops"] = len(crops)
        meta["photos_without_a_face"] = crops.skipped
        train = crops
    dataset = ParsingDataset(train, size, augment=augment, seed=config.seed)
    batch_size = min(config.batch_size, len(dataset))
    generator = torch.Generator().manual_seed(config.seed)
    sampler = EpochSampler(RandomSampler(dataset, generator=generator))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=config.num_workers,
        # A last batch of one or two faces would give BatchNorm noisy statistics.
        drop_last=len(dataset) > batch_size,
        pin_memory=device.type == "cuda",
        # The epoch travels with each index (EpochSampler), so workers may outlive an epoch.
        persistent_workers=config.num_workers > 0,
        multiprocessing_context=worker_context(config.num_workers),
    )

    def batches(epoch: int) -> DataLoader:
        sampler.set_epoch(epoch)
        return loader

    steps_per_epoch = len(loader)
    total = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.lr, backbone_mult, config.weight_decay), lr=config.lr
    )
    scheduler = make_scheduler(optimizer, total, min(config.warmup_steps, max(0, total - 1)))
    backbone = [p for n, p in model.named_parameters() if not n.startswith("heads.")]
    hold = held_steps(config, total)
    meta["backbone_held_steps"] = hold

    def step_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        step = scheduler.last_epoch
        _hold_backbone(optimizer, backbone, step, hold, config.warmup_steps)
        images, labels = batch
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        x = model.normalize(images)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(device):
            logits = model(x, head="parsing")
        loss = parsing_loss(
            logits.float(), labels, dice_weight=config.dice_weight, class_weights=weights
        )
        if not torch.isfinite(loss):
            raise FaceParseError(
                f"the loss became {loss.item()} at step {scheduler.last_epoch + 1}; "
                "lower --lr or raise --warmup-steps"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        head_lr = next(g["lr"] for g in optimizer.param_groups if g["name"].startswith("head"))
        return {
            "loss": float(loss.detach()),
            "lr": float(head_lr),
            "batch_size": int(images.shape[0]),
            "backbone_held": step < hold,
        }

    publisher = _ValidateAndPublish(model, device, config, val, meta, files, on_progress)
    hooks: list[Hook] = [JsonlLogger(files.log), ProgressBar(disable=None if config.progress_bar else True, desc="finetune")]
    if on_progress is not None:
        hooks.append(CallbackHook(lambda stats: on_progress({"phase": "train", **stats})))
    hooks.append(publisher)
    loop = TrainLoop(
        step_fn,
        batches_per_epoch=steps_per_epoch,
        epochs=config.epochs,
        hooks=hooks,
        cancel=cancel,
        data=batches,
        max_steps=config.max_steps,
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


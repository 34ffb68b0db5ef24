"""Stage 1: masked self-supervised pretraining (``faceparse pretrain``).

Patches inside the central region of each face are blanked (``CenterPatchMasker``) and the
network (UNet++ backbone + R decoder) reconstructs the image; the loss covers the central region
(the paper) or the masked pixels only, optionally against per-patch normalised targets (SparK).

Runs on one device or under ``torchrun`` (DistributedDataParallel with a DistributedSampler);
only rank 0 writes checkpoints and the metrics log.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from trainer.checkpoint import checkpoint_bytes, load_checkpoint, load_model
from trainer.data.folders import list_images
from trainer.data.imageio import atomic_write_bytes, read_image, remove_temp_leftovers
from trainer.data.masking import CenterPatchMasker, mask_input
from trainer.data.torch_datasets import EpochSampler, UnlabeledDataset, worker_context
from trainer.data.transforms import TrainAugment
from trainer.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    unwrap_model,
    wrap_model,
)
from trainer.engine import (
    CallbackHook,
    CancelFlag,
    Hook,
    JsonlLogger,
    PeriodicCheckpoint,
    ProgressBar,
    TrainLoop,
    autocast_for,
    fast_forward_scheduler,
    make_scheduler,
    seed_everything,
)
from trainer.errors import (
    CheckpointError,
    DatasetError,
    FaceParseError,
    ImageReadError,
    ModelConfigError,
)
from trainer.losses import reconstruction_loss
from trainer.models import FaceParseNet, ModelConfig, build_model, get_preset
from trainer.run_files import LEGACY_PRETRAIN_LOG, RunFiles

log = logging.getLogger(__name__)

# Stage 1's augmentations: the flip alone, or the fine-tune's whole TrainAugment.
Augment = Literal["flip", "affine"]
AUGMENTS: tuple[str, ...] = get_args(Augment)
# Stage-1 recipes (the loss region, its targets and the masked share of the central region).
RECIPES: dict[str, dict[str, Any]] = {
    # The paper: loss over the whole central region; 40 % of that region masked.
    "center": {"loss_region": "center", "norm_pix": False, "mask_ratio": 0.4},
    # SparK / FCMAE-like: loss on masked pixels only, per-patch normalised targets, more masking.
    # 4.3 mIoU ahead of "center" at K = 10 in the label-efficiency study (BENCHMARKS.md), and
    # the starter backbone's recipe: what the app pretrains with.
    "spark": {"loss_region": "masked", "norm_pix": True, "mask_ratio": 0.6},
}


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of a stage-1 run; stored in every checkpoint it writes ("training").

    Args:
        image_dirs: folders of unlabeled face images (searched recursively).
        out_dir: the run folder (checkpoints and the step log; ``trainer.run_files``).
        preset: model preset ("paper", "lite", "tiny").
        input_size: override of the preset's input side in pixels (a multiple of 32).
        epochs, batch_size: batch size per process.
        lr, weight_decay: AdamW settings (no decay on biases and norm layers).
        warmup_steps: linear warm-up length; None = 5% of the run (at least 1 step).
        grad_clip: max gradient norm; 0 disables clipping.
        num_patches: fixed patch count per image; when given, ``mask_ratio`` is ignored.
        mask_ratio: target masked share of the central region (default 0.4).
        loss_region: "center" (paper) or "masked" (masked pixels only).
        norm_pix: per-patch normalised reconstruction targets (SparK); pair with "masked".
        augment: "flip" (a horizontal flip of half the images) or "affine" (the fine-tune's
            augmentation: flip, scale, rotation, shift and colour jitter).
        seed: seeds the weights, data order, augmentations and masks.
        num_workers: DataLoader worker processes.
        device: "auto", "cpu", "cuda", "cuda:N", "mps".
        checkpoint_every: also save ``pretrain_step{N}.safetensors`` every N steps (0 = none).
        checkpoint_minutes: also update the resumable ``pretrain_last.safetensors`` every this
            many minutes, so a killed run resumes with ``--resume`` from at most that long ago
            (0 = only at the end, on a cancel, a Ctrl-C, and with each step checkpoint).
        keep_checkpoints: how many ``pretrain_step{N}`` files to keep, the newest (each holds
            the optimizer state, about 3× the weights); 0 keeps all.
        channels_last: NHWC memory layout (faster convolutions on GPUs and recent CPUs).
        encoder_weights: None, "imagenet" or a local .safetensors weights file for the encoder
            (pickles such as .pth are refused; the error says how to convert one).
        init: a stage-1 checkpoint whose weights (backbone and R decoder) this run starts from,
            on a schedule of its own: e.g. the starter backbone adapted to a team's own photos,
            or a run at a smaller input size finished at a larger one. The model preset must
            match; the input size may differ (the network is fully convolutional).
        max_steps: stop after this many steps in total (smoke runs); None = all epochs.
    """

    image_dirs: tuple[str, ...]
    out_dir: str
    preset: str = "lite"
    input_size: int | None = None
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int | None = None
    grad_clip: float = 1.0
    num_patches: int | None = None
    mask_ratio: float | None = 0.4
    loss_region: str = "center"
    norm_pix: bool = False
    augment: Augment = "flip"
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    checkpoint_every: int = 0
    checkpoint_minutes: float = 5.0
    keep_checkpoints: int = 2
    channels_last: bool = True
    encoder_weights: str | None = None
    init: str | None = None
    max_steps: int | None = None

    def __post_init__(self) -> None:
        dirs = self.image_dirs
        if isinstance(dirs, str | os.PathLike):
            dirs = (dirs,)
        object.__setattr__(self, "image_dirs", tuple(str(d) for d in dirs))
        object.__setattr__(self, "out_dir", str(self.out_dir))
        if self.loss_region not in ("center", "masked"):
            raise ValueError(f"loss_region must be 'center' or 'masked', got {self.loss_region!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be 'flip' or 'affine', got {self.augment!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be ≥ 1")
        if self.checkpoint_every < 0 or self.checkpoint_minutes < 0 or self.keep_checkpoints < 0:
            raise ValueError("checkpoint_every, checkpoint_minutes and keep_checkpoints must be ≥ 0")
        if self.init is not None and self.encoder_weights is not None:
            raise ValueError("give init or encoder_weights, not both: init holds the encoder too")


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only; biases and norm parameters are left alone."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _mask_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """Masks depend only on (seed, step, rank), so a resumed run draws what an uninterrupted one
    would have drawn."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1024 + rank)


class _ItemsWithUnreadable(Dataset):
    """``UnlabeledDataset.read`` as the items: (image, position of an unreadable photo or -1), so
    the unreadable photos reach the main process whichever worker met them."""

    def __init__(self, dataset: UnlabeledDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Any) -> tuple[torch.Tensor, int]:
        return self.dataset.read(item)


def _unreadable_reason(path: Path) -> str:
    """Why a photo cannot be read, in the reader's own words (read again: once per photo)."""
    try:
        read_image(path)
    except ImageReadError as exc:
        return str(exc)
    return f"{path}: could not be read"


def _make_loader(
    config: PretrainConfig, size: int, info: DistInfo
) -> tuple[UnlabeledDataset, EpochSampler, DataLoader]:
    paths = list_images(config.image_dirs)
    if not paths:
        raise DatasetError(f"no images found under {', '.join(config.image_dirs)}")
    augment = TrainAugment(size, None) if config.augment == "affine" else None
    dataset = UnlabeledDataset(paths, size, augment_flip=True, seed=config.seed, augment=augment)
    dataset.check_readable()  # here, in one line, rather than from inside a loader worker
    # A DistributedSampler also in a single process: its order depends only on (seed, epoch),
    # which makes --resume see exactly the batches an uninterrupted run would.
    # EpochSampler hands each index over with its epoch, so persistent workers flip correctly.
    sampler = EpochSampler(
        DistributedSampler(
            dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed
        )
    )
    loader = DataLoader(
        _ItemsWithUnreadable(dataset),
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=info.device.type == "cuda",
        drop_last=len(sampler) >= config.batch_size,  # equal batches when there are enough
        persistent_workers=config.num_workers > 0,
        multiprocessing_context=worker_context(config.num_workers),
    )
    return dataset, sampler, loader


def pretrain(
    config: PretrainConfig,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    cancel: CancelFlag | None = None,
    resume: str | os.PathLike[str] | None = None,
) -> Path:
    """Run stage-1 pretraining.

    Args:
        config: the run's settings.
        on_progress: plain callback, called after every step (on every rank) with step,
            total_steps, epoch (1-based), epochs, loss, lr, images_per_s, eta_s, masked_share,
            rank.
        cancel: a ``threading.Event``; when set the run stops after the current step and still
            writes its final checkpoint (single-process runs; under torchrun stop all ranks).
        resume: a checkpoint written by a previous run (with optimizer state): training continues
            from its step, so the final step count equals an uninterrupted run's.

    Returns:
        The final checkpoint's path, ``out_dir/pretrain_last.safetensors``. The same file is
        written during the run too (``checkpoint_minutes``, ``checkpoint_every``), so it always
        holds the newest state and a killed run continues with ``resume`` set to it.

    Raises:
        DatasetError: no images under ``image_dirs``, or none of them can be read.
        CheckpointError: ``resume`` is not a resumable stage-1 checkpoint of this model.
        FaceParseError: the loss became NaN or infinite.
    """
    info = init_distributed(config.device)
    try:
        return _pretrain(config, info, on_progress, cancel, resume)
    finally:
        cleanup(info)


def _pretrain(
    config: PretrainConfig,
    info: DistInfo,
    on_progress: Callable[[dict[str, Any]], None] | None,
    cancel: CancelFlag | None,
    resume: str | os.PathLike[str] | None,
) -> Path:
    device = info.device
    out_dir = Path(config.out_dir)
    files = RunFiles(out_dir, "pretrain")
    model_config = get_preset(config.preset).with_overrides(input_size=config.input_size)
    size = model_config.input_size
    if size % 32:
        raise ModelConfigError(f"input size {size} px: must be a multiple of 32 (the UNet++ depth)")

    seed_everything(config.seed)  # identical initial weights on every rank
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels once
    dataset, sampler, loader = _make_loader(config, size, info)
    if config.init is not None:
        model = _start_from(Path(config.init), model_config).to(device)
    else:
        model = build_model(model_config, ("reconstruction",), config.encoder_weights).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)

    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    batches_per_epoch = len(loader)
    total = batches_per_epoch * config.epochs
    total_steps = min(total, config.max_steps) if config.max_steps is not None else total
    warmup = config.warmup_steps if config.warmup_steps is not None else max(1, total_steps // 20)
    scheduler = make_scheduler(optimizer, total_steps, warmup)

    start_step = 0
    share = {"sum": 0.0, "steps": 0}  # masked share of the central region, summed over steps
    unreadable: set[int] = set()  # positions in dataset.paths of the photos skipped so far
    if resume is not None:
        start_step, previous = _restore(Path(resume), model, optimizer, model_config)
        if previous.get("masked_share") is not None:
            share = {"sum": previous["masked_share"] * start_step, "steps": start_step}
        position = {str(p): i for i, p in enumerate(dataset.paths)}
        unreadable = {position[p] for p in previous.get("skipped_paths", []) if p in position}
        fast_forward_scheduler(scheduler, start_step)
        if info.is_main:
            log.info("resuming %s from step %d of %d", resume, start_step, total_steps)

    net = wrap_model(model, info)
    masker = CenterPatchMasker(
        size,
        num_patches=config.num_patches,
        mask_ratio=None if config.num_patches is not None else config.mask_ratio,
    )
    center = masker.center_region().to(device)
    done = {"steps": start_step}

    def step_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        images, replaced = batch
        for index in replaced.tolist():
            if index >= 0 and index not in unreadable:
                unreadable.add(index)
                log.warning("skipping %s", _unreadable_reason(dataset.paths[index]))
        images = images.to(device, non_blocking=True)
        step = done["steps"]
        mask = masker(images.shape[0], _mask_generator(config.seed, step, info.rank)).to(device)
        with torch.no_grad():
            target = model.normalize(images)
            x = mask_input(target, mask)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(device):
            pred = net(x, head="reconstruction")
        loss = reconstruction_loss(
            pred, target, mask, center, region=config.loss_region, norm_pix=config.norm_pix
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        value = all_reduce_mean(float(loss.detach().item()), info)
        if not math.isfinite(value):
            raise FaceParseError(
                f"reconstruction loss became {value} at step {step + 1}; lower --lr "
                f"(now {config.lr}) or check the input images"
            )
        batch_share = masker.masked_share(mask)
        share["sum"] += batch_share
        share["steps"] += 1
        done["steps"] += 1
        return {
            "loss": value,
            "lr": lr,
            "batch_size": images.shape[0] * info.world_size,
            "masked_share": batch_share,
            "rank": info.rank,
            "skipped_images": len(unreadable),
        }

    def save(loop: TrainLoop, final: bool) -> None:
        mean_share = share["sum"] / share["steps"] if share["steps"] else None
        meta = {
            "training": asdict(config),
            "step": loop.step,
            "epoch": loop.step // batches_per_epoch,  # completed epochs
            "total_steps": loop.total_steps,
            "masked_share": mean_share,
            "cancelled": loop.cancelled,
            "metrics": {"loss": loop.last_stats.get("loss")},
            "num_images": len(dataset),
            # The unreadable photos this process (rank 0 under torchrun) has met so far.
            "skipped_images": len(unreadable),
            "skipped_paths": sorted(str(dataset.paths[i]) for i in unreadable),
            "world_size": info.world_size,
        }
        data = checkpoint_bytes(unwrap_model(model), "pretrain", meta, optimizer=optimizer)
        if not final and config.checkpoint_every and loop.step % config.checkpoint_every == 0:
            atomic_write_bytes(files.step(loop.step), data)
            _prune_step_checkpoints(files, config.keep_checkpoints)
        atomic_write_bytes(files.last, data)

    def data(epoch: int) -> DataLoader:
        sampler.set_epoch(epoch)
        return loader

    hooks: list[Hook] = []
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        # What a run killed mid-write left behind (atomic writes: the published files are whole).
        for pattern in (files.checkpoints_glob, files.log.name, LEGACY_PRETRAIN_LOG):
            for leftover in remove_temp_leftovers(out_dir, pattern):
                log.info("removed %s, left by an interrupted write", leftover)
        files.adopt_legacy_log()
        hooks += [
            JsonlLogger(files.log),
            ProgressBar(desc="pretrain"),
            PeriodicCheckpoint(save, config.checkpoint_every, 60.0 * config.checkpoint_minutes),
        ]
    if on_progress is not None:
        hooks.append(CallbackHook(on_progress))

    net.train()
    TrainLoop(
        step_fn,
        batches_per_epoch,
        config.epochs,
        hooks,
        start_step=start_step,
        cancel=cancel,
        data=data,
        max_steps=config.max_steps,
        optimizer=optimizer,
    ).run()
    barrier()  # other ranks return once rank 0 has published the final checkpoint
    return files.last


def _prune_step_checkpoints(files: RunFiles, keep: int) -> None:
    """Delete all but the ``keep`` newest ``pretrain_step{N}`` files (0 keeps all)."""
    if keep <= 0:
        return
    for _, path in files.step_checkpoints()[:-keep]:
        path.unlink(missing_ok=True)


def _require_stage1(path: Path, stage: str | None, flag: str) -> None:
    if stage != "pretrain":
        raise CheckpointError(
            f"{path}: a {stage or 'unknown'}-stage checkpoint; {flag} needs one written by "
            "faceparse pretrain"
        )


def _start_from(path: Path, model_config: ModelConfig) -> FaceParseNet:
    """The network of a stage-1 checkpoint, at this run's input size (``PretrainConfig.init``)."""
    model, ckpt = load_model(path, heads=("reconstruction",))
    _require_stage1(path, ckpt.stage, "--init")
    stored = ckpt.config.with_overrides(input_size=model_config.input_size)
    if stored != model_config:
        raise CheckpointError(
            f"{path}: model {ckpt.config.preset!r} ({ckpt.config.encoder_name}) does not match "
            f"this run's {model_config.preset!r} ({model_config.encoder_name})"
        )
    model.config = stored
    return model.train()


def _restore(
    path: Path, model: FaceParseNet, optimizer: torch.optim.Optimizer, model_config: Any
) -> tuple[int, dict[str, Any]]:
    """Load weights and optimizer state from a stage-1 checkpoint.

    Returns:
        (steps done, the checkpoint's metadata).
    """
    ckpt = load_checkpoint(path)
    _require_stage1(path, ckpt.stage, "--resume")
    if ckpt.optimizer_state is None:
        raise CheckpointError(f"{path}: holds no optimizer state, so training cannot resume")
    if ckpt.config != model_config:
        raise CheckpointError(
            f"{path}: model {ckpt.config.preset!r} at {ckpt.config.input_size} px does not match "
            f"this run's {model_config.preset!r} at {model_config.input_size} px"
        )
    model.load_state_dict(ckpt.model_state)
    optimizer.load_state_dict(ckpt.optimizer_state)
    return int(ckpt.meta.get("step", 0)), ckpt.meta

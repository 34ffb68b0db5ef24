"""Stage 1: masked self-supervised pretraining (``faceparse pretrain``).

Patches inside the central region of each face are blanked (``CenterPatchMasker``) and the
network (UNet++ backbone + R decoder) reconstructs the image; the loss covers the central region
(the paper) or the masked pixels only, optionally against per-patch normalised targets (SparK).
A ``sparse`` recipe masks whole stride-32 cells and runs SparK's sparse encoder with mask tokens
(``trainer.sparse``); its checkpoint holds the same plain network as any other.

Runs on one device or under ``torchrun`` (DistributedDataParallel with a DistributedSampler);
only rank 0 writes checkpoints and the step log (``trainer.run_files``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from trainer.checkpoint import checkpoint_bytes, load_checkpoint, load_model
from trainer.configs import PretrainConfig, PretrainRuntime
from trainer.data.folders import list_images
from trainer.data.imageio import atomic_write_bytes, read_image, remove_temp_leftovers
from trainer.data.masking import center_region, mask_input
from trainer.data.torch_datasets import EpochSampler, UnlabeledDataset, worker_context
from trainer.data.transforms import TrainAugment
from trainer.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    rank0_flag,
    unwrap_model,
    wrap_model,
)
from trainer.engine import (
    CancelFlag,
    Hook,
    TrainLoop,
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
from trainer.hooks import CallbackHook, JsonlLogger, PeriodicCheckpoint, ProgressBar
from trainer.losses import reconstruction_loss
from trainer.models import FaceParseNet, ModelConfig, build_model, get_preset
from trainer.precision import PrecisionChoice, autocast, choose_precision
from trainer.run_files import LEGACY_PRETRAIN_LOG, RunFiles
from trainer.sparse import GridMasker, SparseReconstructor, stage1_masker

__all__ = ["PretrainConfig", "PretrainRuntime", "pretrain"]

log = logging.getLogger(__name__)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only; biases, norm parameters and mask tokens are
    left alone."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            wanted = param.ndim >= 2 and not name.startswith("mask_tokens.")
            (decay if wanted else no_decay).append(param)
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
    recipe, workers = config.recipe, config.runtime.num_workers
    paths = list_images(config.image_dirs)
    if not paths:
        raise DatasetError(f"no images found under {', '.join(config.image_dirs)}")
    if info.is_main:
        log.info("found %d images under %s", len(paths), ", ".join(map(str, config.image_dirs)))
    augment = TrainAugment(size, None) if recipe.augment == "affine" else None
    dataset = UnlabeledDataset(paths, size, augment_flip=True, seed=recipe.seed, augment=augment)
    dataset.check_readable()  # here, in one line, rather than from inside a loader worker
    # A DistributedSampler also in a single process: its order depends only on (seed, epoch),
    # which makes --resume see exactly the batches an uninterrupted run would.
    # EpochSampler hands each index over with its epoch, so persistent workers flip correctly.
    sampler = EpochSampler(
        DistributedSampler(
            dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=recipe.seed
        )
    )
    loader = DataLoader(
        _ItemsWithUnreadable(dataset),
        batch_size=recipe.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=info.device.type == "cuda",
        drop_last=len(sampler) >= recipe.batch_size,  # equal batches when there are enough
        persistent_workers=workers > 0,
        multiprocessing_context=worker_context(workers),
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
    info = init_distributed(config.runtime.device)
    try:
        return _pretrain(config, info, on_progress, cancel, resume)
    finally:
        cleanup(info)


def _shared_precision(requested: str, info: DistInfo) -> PrecisionChoice:
    """The run's precision, chosen on rank 0 and shared: every rank computes alike."""
    choice = choose_precision(requested, info.device) if info.is_main else None
    bf16 = rank0_flag(choice is not None and choice.precision == "bf16", info)
    if choice is None:
        choice = PrecisionChoice("bf16" if bf16 else "fp32", "rank 0's choice")
    return choice


def _pretrain(
    config: PretrainConfig,
    info: DistInfo,
    on_progress: Callable[[dict[str, Any]], None] | None,
    cancel: CancelFlag | None,
    resume: str | os.PathLike[str] | None,
) -> Path:
    device = info.device
    recipe, runtime = config.recipe, config.runtime
    out_dir = Path(runtime.out_dir)
    files = RunFiles(out_dir, "pretrain")
    model_config = get_preset(config.preset).with_overrides(input_size=config.input_size)
    size = model_config.input_size
    if size % 32:
        raise ModelConfigError(f"input size {size} px: must be a multiple of 32 (the UNet++ depth)")

    precision = _shared_precision(runtime.precision, info)
    log.info("precision: %s (%s)", precision.precision, precision.reason)
    seed_everything(recipe.seed)  # identical initial weights on every rank
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels once
    dataset, sampler, loader = _make_loader(config, size, info)
    if config.init is not None:
        model = _start_from(Path(config.init), model_config).to(device)
    else:
        model = build_model(model_config, ("reconstruction",), config.encoder_weights).to(device)
    # The module that trains: the network itself, or SparK's sparse form of it (mask tokens).
    sparse = SparseReconstructor(model).to(device) if recipe.sparse else None
    trainee = sparse if sparse is not None else model
    if runtime.channels_last:
        trainee = trainee.to(memory_format=torch.channels_last)

    optimizer = torch.optim.AdamW(_param_groups(trainee, recipe.weight_decay), lr=recipe.lr)
    batches_per_epoch = len(loader)
    total = batches_per_epoch * recipe.epochs
    total_steps = min(total, recipe.max_steps) if recipe.max_steps is not None else total
    warmup = recipe.warmup_steps if recipe.warmup_steps is not None else max(1, total_steps // 20)
    scheduler = make_scheduler(optimizer, total_steps, warmup)

    start_step = 0
    share = {"sum": 0.0, "steps": 0}  # masked share of the central region, summed over steps
    unreadable: set[int] = set()  # positions in dataset.paths of the photos skipped so far
    resumed_with: list[dict[str, Any]] = []  # settings changed at each resume, oldest first
    if resume is not None:
        start_step, previous = _restore(Path(resume), model, optimizer, model_config)
        if sparse is not None:
            if "mask_tokens" not in previous:
                raise CheckpointError(
                    f"{resume}: holds no mask tokens; a sparse run resumes "
                    "only from a sparse run's checkpoint"
                )
            sparse.load_tokens(previous["mask_tokens"])
        if previous.get("masked_share") is not None:
            share = {"sum": previous["masked_share"] * start_step, "steps": start_step}
        position = {str(p): i for i, p in enumerate(dataset.paths)}
        unreadable = {position[p] for p in previous.get("skipped_paths", []) if p in position}
        fast_forward_scheduler(scheduler, start_step)
        resumed_with = list(previous.get("changed_on_resume") or [])
        changes = _changed_on_resume(previous.get("training"), config)
        # The precision is resolved per session (auto: per host and device), so a resumed run
        # may compute in another one than the steps it continues: recorded like a changed recipe.
        before = previous.get("precision", "not recorded")
        if before != precision.precision:
            changes["precision"] = [before, precision.precision]
        if changes:
            resumed_with.append({"step": start_step, **changes})
        if info.is_main:
            log.info("resuming %s from step %d of %d", resume, start_step, total_steps)
            if changes:
                log.warning(
                    "resuming %s with settings that differ from the run's: %s; it will not "
                    "match an uninterrupted run (the checkpoint records the change)", resume,
                    ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changes.items()),
                )  # fmt: skip
            if start_step >= total_steps:
                log.warning(
                    "%s is at step %d, past this run's %d steps: nothing left to train",
                    resume, start_step, total_steps,
                )  # fmt: skip

    net = wrap_model(trainee, info)
    masker = stage1_masker(recipe, size)
    center = center_region(size).to(device)
    done = {"steps": start_step}

    def step_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        images, replaced = batch
        for index in replaced.tolist():
            if index >= 0 and index not in unreadable:
                unreadable.add(index)
                log.warning("skipping %s", _unreadable_reason(dataset.paths[index]))
        images = images.to(device, non_blocking=True)
        step = done["steps"]
        drawn = masker(images.shape[0], _mask_generator(recipe.seed, step, info.rank)).to(device)
        # A sparse run draws cells of the stride-32 grid; the loss wants pixels.
        mask = masker.pixels(drawn) if isinstance(masker, GridMasker) else drawn
        with torch.no_grad():
            target = model.normalize(images)
            x = mask_input(target, mask)
        if runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision.precision):
            pred = net(x, ~drawn) if sparse is not None else net(x, head="reconstruction")
        loss = reconstruction_loss(
            pred,
            target,
            mask,
            center,
            region=recipe.loss_region,
            norm_pix=recipe.norm_pix,
            patch=recipe.norm_patch,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(trainee.parameters(), recipe.grad_clip)
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        value = all_reduce_mean(float(loss.detach().item()), info)
        if not math.isfinite(value):
            raise FaceParseError(
                f"reconstruction loss became {value} at step {step + 1}; lower --lr "
                f"(now {recipe.lr}) or check the input images"
            )
        batch_share = masker.masked_share(drawn)
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
            "training": config.to_stored(),
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
            **precision.as_meta(),
        }
        if resumed_with:
            meta["changed_on_resume"] = resumed_with
        if sparse is not None:  # stage 1's alone: kept here so that a run resumes
            meta["mask_tokens"] = sparse.tokens_state()
        data = checkpoint_bytes(unwrap_model(model), "pretrain", meta, optimizer=optimizer)
        if not final and runtime.checkpoint_every and loop.step % runtime.checkpoint_every == 0:
            atomic_write_bytes(files.step(loop.step), data)
            _prune_step_checkpoints(files, runtime.keep_checkpoints)
        atomic_write_bytes(files.last, data)

    def data(epoch: int) -> DataLoader:
        sampler.set_epoch(epoch)
        return loader

    hooks: list[Hook] = []
    with contextlib.ExitStack() as held:
        if info.is_main:
            # One stage-1 run writes a folder at a time; rank 0 alone writes it.
            held.enter_context(files.hold())
            out_dir.mkdir(parents=True, exist_ok=True)
            # What a run killed mid-write left behind (atomic writes: the published files are whole).
            for pattern in (files.checkpoints_glob, files.log.name, LEGACY_PRETRAIN_LOG):
                for leftover in remove_temp_leftovers(out_dir, pattern):
                    log.info("removed %s, left by an interrupted write", leftover)
            files.adopt_legacy_log()
            hooks += [
                JsonlLogger(files.log),
                ProgressBar(disable=None if runtime.progress_bar else True, desc="pretrain"),
                PeriodicCheckpoint(
                    save, runtime.checkpoint_every, 60.0 * runtime.checkpoint_minutes
                ),
            ]
        if on_progress is not None:
            hooks.append(CallbackHook(on_progress))

        net.train()
        TrainLoop(
            step_fn,
            batches_per_epoch,
            recipe.epochs,
            hooks,
            start_step=start_step,
            cancel=cancel,
            data=data,
            max_steps=recipe.max_steps,
            optimizer=optimizer,
        ).run()
    if sparse is not None:
        sparse.release()  # plain BatchNorm2d again, with the running statistics stage 1 set
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
            f"this run's {model_config.preset!r} ({model_config.encoder_name}); run with "
            f"--preset {ckpt.config.preset}"
        )
    model.config = stored
    return model.train()


def _changed_on_resume(stored: Any, config: PretrainConfig) -> dict[str, list[Any]]:
    """The settings of how the network learns (and its photo folders) that a resumed run
    changes: name -> [the checkpoint's, this run's]. A longer ``epochs`` is a documented warm
    restart and is not listed; where and how the run executes (runtime) does not count."""
    if not isinstance(stored, dict):
        return {}
    before = dict(stored.get("recipe") or {}, image_dirs=stored.get("image_dirs"))
    now = dict(config.to_stored()["recipe"], image_dirs=list(config.image_dirs))
    return {
        key: [before[key], value]
        for key, value in now.items()
        if key != "epochs" and key in before and _as_json(before[key]) != _as_json(value)
    }


def _as_json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


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
            f"this run's {model_config.preset!r} at {model_config.input_size} px; resume with "
            f"--preset {ckpt.config.preset} --input-size {ckpt.config.input_size}"
        )
    model.load_state_dict(ckpt.model_state)
    optimizer.load_state_dict(ckpt.optimizer_state)
    return int(ckpt.meta.get("step", 0)), ckpt.meta

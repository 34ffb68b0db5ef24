"""Multi-process training through ``torchrun``: process-group set-up, DDP wrapping, rank checks.

``torchrun --nproc_per_node N -m trainer.cli pretrain ...`` (or ``--nnodes`` for several machines)
sets RANK, WORLD_SIZE and LOCAL_RANK; :func:`init_distributed` reads them. Without them everything
here degrades to a single process: rank 0 of a world of 1, no process group.

Only rank 0 writes checkpoints, logs and progress; every rank trains on its own shard of the data
(DistributedSampler) and DDP averages the gradients, so the weights stay identical across ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from trainer.engine import select_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 = the main process, the only one that writes files).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        device: this process's device.
        initialized: True when this call created the process group (and must destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """WORLD_SIZE from the environment (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: str | None = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment variables.

    Args:
        device: as for :func:`trainer.engine.select_device`. Under torchrun on CUDA, each process
            takes ``cuda:LOCAL_RANK``.

    Returns:
        The process's DistInfo. Backend: NCCL on CUDA, gloo otherwise.
    """
    world_size = env_world_size()
    chosen = select_device(device)
    if world_size <= 1:
        return DistInfo(device=chosen)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    created = False
    if not dist.is_initialized():
        kwargs = {"device_id": chosen} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
        created = True
    return DistInfo(rank, world_size, local_rank, chosen, created)


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """Wrap in DistributedDataParallel when running with several processes, else return as is."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper (what gets saved)."""
    return getattr(model, "module", model)


def rank0_flag(value: bool | None, info: DistInfo) -> bool:
    """Rank 0's ``value`` on every rank (a choice all ranks must share, such as the run's
    precision: ranks that measured for themselves could disagree). Other ranks pass None."""
    if not info.distributed:
        return bool(value)
    flag = torch.tensor([int(bool(value)) if info.is_main else 0], device=info.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a scalar over all ranks (for logging the global loss)."""
    if not info.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / info.world_size


def cleanup(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.initialized and dist.is_initialized():
        dist.destroy_process_group()

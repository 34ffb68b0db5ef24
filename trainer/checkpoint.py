"""Checkpoints: safetensors weights plus JSON metadata in the same file, published atomically.

The JSON sits in the safetensors header (``__metadata__["faceparse"]``), so one ``os.replace``
publishes weights and metadata together and loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer import __version__
from trainer.data.imageio import atomic_write_bytes
from trainer.errors import CheckpointError
from trainer.labels import get_label_set
from trainer.models import FaceParseNet, ModelConfig, build_model

FORMAT = "faceparse-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "faceparse"
_OPT_PREFIX = "optimizer.state."


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        config: the model config to rebuild the network.
        meta: the JSON metadata (stage, training config, label subset, metrics, ...).
        model_state: network tensors (backbone and whichever heads were saved).
        optimizer_state: optimizer tensors and groups when saved for --resume, else None.
    """

    config: ModelConfig
    meta: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def stage(self) -> str:
        return str(self.meta.get("stage", ""))

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(sorted({k.split(".")[1] for k in self.model_state if k.startswith("heads.")}))


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPT_PREFIX}{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, key = name[len(_OPT_PREFIX) :].split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, extra in info.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(extra)
    return {"state": state, "param_groups": info["param_groups"]}


def save_checkpoint(
    path: str | os.PathLike[str],
    model: FaceParseNet,
    stage: str,
    meta: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write model weights and metadata to one safetensors file, atomically.

    Args:
        path: destination (``.safetensors``).
        model: the network; its config is stored.
        stage: "pretrain" or "finetune".
        meta: extra JSON-able metadata: "training" (config), "label_subset", "metrics", "step", ...
        optimizer: when given, its state is stored too so training can resume.

    Returns:
        The path written.
    """
    path = Path(path)
    atomic_write_bytes(path, checkpoint_bytes(model, stage, meta, optimizer))
    return path


def checkpoint_bytes(
    model: FaceParseNet,
    stage: str,
    meta: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> bytes:
    """The bytes :func:`save_checkpoint` writes (to publish one state under several names)."""
    from safetensors.torch import save

    config = model.config
    label_set = get_label_set(config.label_set)
    info: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stage": stage,
        "model": config.to_dict(),
        "classes": list(label_set.classes) if stage != "pretrain" else [],
        "input_size": config.input_size,
        "normalization": {"mean": list(config.mean), "std": list(config.std)},
    }
    info.update(meta or {})
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if optimizer is not None:
        opt_tensors, opt_info = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
        info["optimizer"] = opt_info
    try:
        header = json.dumps(info, default=_json_default)
    except TypeError as exc:
        raise CheckpointError(f"checkpoint metadata is not JSON-serialisable: {exc}") from None
    return save(tensors, metadata={_META_KEY: header})


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read only the JSON metadata of a checkpoint (fast: the weights are not loaded)."""
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    return _parse_meta(path, raw)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.suffix in (".pt", ".pth", ".ckpt", ".bin", ".pkl"):
        raise CheckpointError(
            f"{path}: pickle-based checkpoints are never loaded (they can run code); "
            "use a .safetensors checkpoint written by faceparse"
        )


def _parse_meta(path: Path, raw: str | None) -> dict[str, Any]:
    if raw is None:
        raise CheckpointError(f"{path}: a safetensors file without faceparse metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupted checkpoint metadata ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a faceparse checkpoint")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer faceparse (format {meta['format_version']}); upgrade"
        )
    return meta


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load a checkpoint without unpickling.

    Raises:
        CheckpointError: missing, truncated/corrupted, pickle-based, or not a faceparse file.
    """
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
            meta = _parse_meta(path, raw)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupted or truncated checkpoint ({exc})") from None
    opt_tensors = {k: v for k, v in tensors.items() if k.startswith(_OPT_PREFIX)}
    model_state = {k: v for k, v in tensors.items() if not k.startswith(_OPT_PREFIX)}
    optimizer_state = (
        _unflatten_optimizer(opt_tensors, meta["optimizer"]) if "optimizer" in meta else None
    )
    meta.pop("optimizer", None)
    return Checkpoint(
        config=ModelConfig.from_dict(meta["model"]),
        meta=meta,
        model_state=model_state,
        optimizer_state=optimizer_state,
    )


def load_model(
    path: str | os.PathLike[str],
    heads: tuple[str, ...] | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[FaceParseNet, Checkpoint]:
    """Rebuild the network stored in a checkpoint.

    Args:
        heads: heads to build; default: those saved. A head asked for but not saved starts fresh
            (e.g. "parsing" on a stage-1 checkpoint: the backbone is kept, the FP decoder is new).

    Returns:
        (model, checkpoint) with the model on ``map_location`` in eval mode.
    """
    ckpt = load_checkpoint(path)
    wanted = ckpt.heads if heads is None else heads
    model = build_model(ckpt.config, heads=tuple(wanted))
    state = {
        k: v
        for k, v in ckpt.model_state.items()
        if not k.startswith("heads.") or k.split(".")[1] in wanted
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing_backbone = [k for k in missing if not k.startswith("heads.")]
    if missing_backbone or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the stored config "
            f"({len(missing_backbone)} missing, {len(unexpected)} unexpected)"
        )
    return model.to(map_location).eval(), ckpt

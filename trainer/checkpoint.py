"""Checkpoints: safetensors weights plus JSON metadata in the same file, published atomically.

The JSON sits in the safetensors header (``__metadata__["faceparse"]``), so one ``os.replace``
publishes weights and metadata together and loading never unpickles anything.

Loading trusts nothing in the file: the metadata is checked (types, ranges, known preset, encoder
and label set) and every stored tensor's shape is compared with the network the config
describes, built on the ``meta`` device (no memory), before a real network is built or any
tensor data is read. A damaged or edited file is one CheckpointError line, never a traceback or a
network of gigabytes. The metadata also holds the SHA-256 of the safetensors data section
("tensor_sha256"), checked on load, so flipped bits in the weights are caught. Files written
before it carry none: the shipped starter models are checked against digests kept here
(``_DIGESTS_OF_OLDER_FILES``); any other older file loads without that check.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer import __version__
from trainer.checkpoint_fields import run_field_problem
from trainer.data.imageio import atomic_write_bytes
from trainer.errors import CheckpointError
from trainer.labels import LABEL_SETS, get_label_set
from trainer.models import (
    FEATURE_CHANNELS,
    PRESETS,
    FaceParseNet,
    ModelConfig,
    build_model,
    is_pickle_file,
)

FORMAT = "faceparse-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "faceparse"
_OPT_PREFIX = "optimizer.state."
CHECKSUM_KEY = "tensor_sha256"
# Files shipped before the checksum was stored: SHA-256 of the header (length prefix and JSON)
# -> SHA-256 of the data section. The starter models in trainer/assets/models, which every project
# starts from.
_DIGESTS_OF_OLDER_FILES = {
    "5aad9cd74dd8f8454bf51d3c5a3fe3212b32c76214091cb116a3dd8063a011de": (  # starter_backbone
        "b5a15bb01d8d297f922a68404e88e65d938caeb063f7e22b3063a3fb8f701cb8"
    ),
    "b17371e16ac94a17e176896c20f3dc2708259cc46e97bcaddd55513026660446": (  # starter_parser
        "39e8d08c4a31f953f02d48dd5f3addeb50d10f7f1fe805b74b195f4b3391bd7b"
    ),
}
# Stands in for the checksum until the data section it covers exists (same length as a digest).
_CHECKSUM_PLACEHOLDER = "faceparse-tensor-checksum-to-be-written-here".ljust(64, "-")
# The largest network input side a checkpoint may ask for (the paper works at 512).
MAX_INPUT_SIZE = 4096


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
    info[CHECKSUM_KEY] = _CHECKSUM_PLACEHOLDER
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if optimizer is not None:
        opt_tensors, opt_info = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
        info["optimizer"] = opt_info
    try:
        header = json.dumps(info, default=_json_default)
    except TypeError as exc:
        raise CheckpointError(f"checkpoint metadata is not JSON-serialisable: {exc}") from None
    return _with_checksum(save(tensors, metadata={_META_KEY: header}))


def _data_offset(blob: bytes | memoryview) -> int:
    """Where a safetensors file's data section starts (after the 8-byte length and the header)."""
    return 8 + int.from_bytes(blob[:8], "little")


def _with_checksum(blob: bytes) -> bytes:
    """Write the data section's SHA-256 over the placeholder in the header (same length, so no
    offset moves)."""
    start = _data_offset(blob)
    digest = hashlib.sha256(memoryview(blob)[start:]).hexdigest()
    header = blob[:start]
    placeholder = _CHECKSUM_PLACEHOLDER.encode()
    assert header.count(placeholder) == 1, "checksum placeholder not found exactly once"
    return header.replace(placeholder, digest.encode()) + blob[start:]


def _older_file_digest(f: Any) -> str | None:
    """The data digest kept for a file shipped before the checksum (by its header), or None."""
    f.seek(0)
    head = f.read(8)
    header = head + f.read(int.from_bytes(head, "little"))
    return _DIGESTS_OF_OLDER_FILES.get(hashlib.sha256(header).hexdigest())


def _verify_checksum(path: Path, f: Any, expected: Any) -> None:
    """Hash the data section of the open file ``f`` (streamed) and compare it with the digest."""
    digest = hashlib.sha256()
    f.seek(0)
    f.seek(_data_offset(f.read(8)))
    while chunk := f.read(1 << 22):
        digest.update(chunk)
    if digest.hexdigest() != expected:
        raise CheckpointError(
            f"{path}: damaged: tensor data does not match its checksum (the file changed after "
            "it was written, e.g. a disk or copy error); use another copy of it"
        )


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
    if path.suffix in (".pt", ".pth", ".ckpt", ".bin", ".pkl") or is_pickle_file(path):
        raise CheckpointError(
            f"{path}: pickle-based checkpoints are never loaded (they can run code); "
            "use a .safetensors checkpoint written by faceparse"
        )


def _parse_meta(path: Path, raw: str | None) -> dict[str, Any]:
    if raw is None:
        raise CheckpointError(
            f"{path}: a safetensors file without faceparse metadata, not a checkpoint that "
            "faceparse pretrain or finetune wrote (an encoder's weights go to --encoder-weights)"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupted checkpoint metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a faceparse checkpoint")
    version = meta.get("format_version", 0)
    if not _is_int(version) or version < 0:
        raise _bad_meta(path, f"format_version {version!r} is not a version number")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer faceparse (format {version}); upgrade"
        )
    if not isinstance(meta.get("model"), dict):
        raise _bad_meta(path, "no model config (the 'model' entry)")
    if (problem := run_field_problem(meta)) is not None:
        raise _bad_meta(path, problem)
    # The encoder name is checked on load: its list means importing smp (seconds), and this
    # path serves read_metadata, which must stay fast.
    model_config_from_meta(path, meta["model"], check_encoder=False)
    return meta


def _bad_meta(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: bad checkpoint metadata: {problem}; the file is damaged or was edited"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def model_config_from_meta(
    path: str | os.PathLike[str], raw: dict[str, Any], check_encoder: bool = True
) -> ModelConfig:
    """The ModelConfig a checkpoint's "model" entry describes, every field checked.

    Args:
        path: the file, for the error message.
        raw: the "model" entry of the metadata.
        check_encoder: also check that smp knows the encoder (imports smp).

    Raises:
        CheckpointError: a field is missing, of the wrong type, out of range, or names a preset,
            encoder or label set this package does not know.
    """
    path = Path(path)
    defaults = ModelConfig(preset="tiny", encoder_name="mobilenet_v2")
    value = {f: raw.get(f, getattr(defaults, f)) for f in ModelConfig.__dataclass_fields__}
    for required in ("preset", "encoder_name"):
        if required not in raw:
            raise _bad_meta(path, f"the model config has no {required}")
    preset, encoder = value["preset"], value["encoder_name"]
    if preset not in PRESETS:
        raise _bad_meta(path, f"preset {preset!r} is not one of {', '.join(PRESETS)}")
    if not isinstance(encoder, str):
        raise _bad_meta(path, f"encoder {encoder!r} is not an encoder name")
    if check_encoder:
        from segmentation_models_pytorch.encoders import get_encoder_names

        if encoder not in get_encoder_names():
            raise _bad_meta(path, f"encoder {encoder!r} is not an encoder this package knows")
    depth = value["encoder_depth"]
    if not _is_int(depth) or not 1 <= depth <= 5:
        raise _bad_meta(path, f"encoder_depth {depth!r} is not 1..5")
    channels = value["decoder_channels"]
    if (
        not isinstance(channels, list | tuple)
        or len(channels) != depth
        or not all(_is_int(c) and c > 0 for c in channels)
        or channels[-1] != FEATURE_CHANNELS
    ):
        raise _bad_meta(
            path,
            f"decoder_channels {channels!r} are not {depth} positive widths ending in "
            f"{FEATURE_CHANNELS}",
        )
    size = value["input_size"]
    if not _is_int(size) or not 32 <= size <= MAX_INPUT_SIZE or size % 32:
        raise _bad_meta(
            path, f"input_size {size!r} is not a multiple of 32 from 32 to {MAX_INPUT_SIZE}"
        )
    for key in ("mean", "std"):
        stats = value[key]
        if not isinstance(stats, list | tuple) or len(stats) != 3 or not all(map(_is_number, stats)):
            raise _bad_meta(path, f"{key} {stats!r} is not three numbers")
    if not all(v > 0 for v in value["std"]):
        raise _bad_meta(path, f"std {value['std']!r} must be positive")
    label_set = value["label_set"]
    if not isinstance(label_set, str) or label_set not in LABEL_SETS:
        raise _bad_meta(path, f"label set {label_set!r} is not one of {', '.join(LABEL_SETS)}")
    classes = get_label_set(label_set).num_classes
    if value["num_classes"] != classes or not _is_int(value["num_classes"]):
        raise _bad_meta(
            path,
            f"num_classes {value['num_classes']!r}, but label set {label_set!r} has {classes}",
        )
    return ModelConfig.from_dict(value)


def _check_shapes(path: Path, config: ModelConfig, shapes: dict[str, tuple[int, ...]]) -> None:
    """Compare the stored tensors' shapes with the network ``config`` builds (on the meta
    device: nothing is allocated, whatever the config says)."""
    heads = sorted({k.split(".")[1] for k in shapes if k.startswith("heads.") and k.count(".") > 1})
    unknown = [h for h in heads if h not in ("reconstruction", "parsing")]
    if unknown:
        raise CheckpointError(f"{path}: holds weights of an unknown head {unknown[0]!r}")
    try:
        with torch.device("meta"):
            expected = {
                k: tuple(v.shape)
                for k, v in FaceParseNet(config, heads=tuple(heads)).state_dict().items()
            }
    except Exception as exc:
        raise _bad_meta(path, f"the model config cannot be built ({exc})") from None
    what = f"model {config.preset!r} ({config.encoder_name})"
    for key, shape in shapes.items():
        if key not in expected:
            raise CheckpointError(
                f"{path}: tensor {key} has no place in {what}: the weights do not match the "
                "stored config"
            )
        if shape != expected[key]:
            raise CheckpointError(
                f"{path}: tensor {key} is {shape} but {what} has {expected[key]}: the weights "
                "do not match the stored config"
            )
    missing = [k for k in expected if k not in shapes]
    if missing:
        raise CheckpointError(
            f"{path}: {len(missing)} tensors of {what} are missing (e.g. {missing[0]}): the "
            "weights do not match the stored config"
        )


def _read_checked(path: Path) -> tuple[dict[str, Any], ModelConfig, dict[str, torch.Tensor]]:
    """Metadata, config and tensors of one file, checked in the order that costs least."""
    from safetensors import safe_open

    for _ in range(3):
        with open(path, "rb") as handle, safe_open(str(path), framework="pt") as f:
            if os.fstat(handle.fileno()).st_ino != os.stat(path).st_ino:
                # Published anew between the two opens (a training run saving): the checksum
                # must be of the file the tensors come from, so read it again.
                continue
            meta = _parse_meta(path, (f.metadata() or {}).get(_META_KEY))
            config = model_config_from_meta(path, meta["model"])
            shapes = {
                k: tuple(f.get_slice(k).get_shape())
                for k in f.keys()
                if not k.startswith(_OPT_PREFIX)
            }
            _check_shapes(path, config, shapes)
            expected = meta[CHECKSUM_KEY] if CHECKSUM_KEY in meta else _older_file_digest(handle)
            if expected is not None:  # other files written before the checksum have none
                _verify_checksum(path, handle, expected)
            return meta, config, {k: f.get_tensor(k) for k in f.keys()}
    raise CheckpointError(f"{path}: replaced again and again while being read; try again later")


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load a checkpoint without unpickling.

    The metadata and every tensor's shape are checked before any tensor data is read, and the
    data against its checksum where the file has one (see the module docstring).

    Raises:
        CheckpointError: missing, truncated/corrupted, pickle-based, not a faceparse file,
            metadata and weights that do not describe one network, or weights that changed
            after they were written.
    """
    path = Path(path)
    _check_file(path)
    try:
        meta, config, tensors = _read_checked(path)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupted or truncated checkpoint ({exc})") from None
    opt_tensors = {k: v for k, v in tensors.items() if k.startswith(_OPT_PREFIX)}
    model_state = {k: v for k, v in tensors.items() if not k.startswith(_OPT_PREFIX)}
    optimizer_state = None
    if "optimizer" in meta:
        try:
            optimizer_state = _unflatten_optimizer(opt_tensors, meta["optimizer"])
        except (AttributeError, KeyError, TypeError, ValueError):
            raise _bad_meta(
                path, "the optimizer record is damaged, so no run can resume from this file"
            ) from None
    meta.pop("optimizer", None)
    return Checkpoint(
        config=config,
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

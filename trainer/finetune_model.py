"""Stage 2's network and optimiser: where the network starts, its parameter groups, and the
hold of the backbone while a new FP decoder fits to it."""

from __future__ import annotations

from typing import Any

import torch

from trainer.checkpoint import load_model
from trainer.configs import FinetuneConfig, check_init
from trainer.errors import CheckpointError
from trainer.models import FaceParseNet, build_model, get_preset


def resolve_start(init: str) -> tuple[str, str | None]:
    """(kind, checkpoint path) of an ``init``; a bare ssl / ckpt names the shipped starter.

    Raises:
        FaceParseError: a malformed ``init``; CheckpointError: the starter file is missing.
    """
    from trainer.starter import resolve_init

    kind, _, path = resolve_init(check_init(init)).partition(":")
    return kind, path or None


def preset_of_start(init: str, preset: str | None) -> str:
    """The model preset a run from ``init`` trains: an ssl:/ckpt: checkpoint's own (its
    weights fix it), else ``preset`` (None: the config's default).

    Raises:
        CheckpointError: ``preset`` was asked for and the checkpoint is of another one (the
            run would silently train the checkpoint's).
    """
    default = FinetuneConfig.__dataclass_fields__["preset"].default
    kind, path = resolve_start(init)
    if path is None:
        return preset or default  # type: ignore[return-value]
    from trainer.checkpoint import read_metadata
    from trainer.errors import FaceParseError

    try:
        theirs = (read_metadata(path).get("model") or {}).get("preset")
    except FaceParseError:
        theirs = None  # the run itself says what is wrong with the file
    if not isinstance(theirs, str):
        return preset or default  # type: ignore[return-value]
    if preset is not None and preset != theirs:
        raise CheckpointError(
            f"{path}: a '{theirs}' model, and a run from it keeps its preset, so --preset "
            f"{preset} cannot apply; leave --preset out, or use --init scratch for a new "
            f"'{preset}' model"
        )
    return theirs


def build_finetune_model(config: FinetuneConfig) -> tuple[FaceParseNet, dict[str, Any]]:
    """The network a run starts from, and facts about its origin for the checkpoint metadata.

    ``ssl:<path>`` keeps a stage-1 checkpoint's backbone (encoder and UNet++ decoder) and adds a
    fresh FP decoder; ``ckpt:<path>`` continues a stage-2 parser, head included; ``imagenet``
    and ``scratch`` build the preset with ImageNet or random encoder weights. Call after
    seeding: the new FP decoder's weights come from torch's generator.

    Raises:
        CheckpointError: an ssl:/ckpt: checkpoint is missing, corrupted or of the wrong stage.
        ModelConfigError: unknown preset, or ImageNet weights unavailable offline.
    """
    kind, path = resolve_start(config.init)
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


def param_groups(
    model: FaceParseNet, lr: float, backbone_mult: float, weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW groups: the FP decoder at ``lr``, the backbone at ``lr · backbone_mult``; weight
    decay on weight matrices and kernels only. Each group is named ("head", "backbone", with
    "_no_decay" for biases and norm scales)."""
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


def hold_backbone(
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

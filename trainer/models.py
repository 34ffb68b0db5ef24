"""Model presets and the two-stage network: UNet++ backbone -> 16-channel features -> one-conv heads.

Stage 1 uses the R decoder (16 -> 3, reconstruction); stage 2 drops it and attaches the FP decoder
(16 -> classes, parsing). Both heads are a single 3×3 convolution, as in the paper.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.errors import ModelConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_CHANNELS = 16


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network; stored inside every checkpoint.

    Args:
        preset: registry name this config came from.
        encoder_name: smp encoder ("resnet50", "mobilenet_v2", ...).
        decoder_channels: UNet++ decoder widths; the last one is the feature width (16).
        input_size: side in pixels of the square network input.
        mean, std: per-channel RGB normalisation applied to [0, 1] images.
        num_classes: FP decoder outputs (11 for LaPa).
    """

    preset: str
    encoder_name: str
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, FEATURE_CHANNELS)
    encoder_depth: int = 5
    input_size: int = 512
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 11
    label_set: str = "lapa"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("decoder_channels", "mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def with_overrides(self, **changes: Any) -> ModelConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS: dict[str, ModelConfig] = {
    # The paper's setting: UNet++ with a ResNet-50 encoder on 512×512 faces.
    "paper": ModelConfig(preset="paper", encoder_name="resnet50", input_size=512),
    # CPU-friendly, same two-stage design: MobileNetV2 UNet++ at 256 px.
    "lite": ModelConfig(preset="lite", encoder_name="mobilenet_v2", input_size=256),
    # For tests and smoke runs only: a narrow decoder so a CPU step takes milliseconds.
    "tiny": ModelConfig(
        preset="tiny",
        encoder_name="mobilenet_v2",
        decoder_channels=(32, 32, 16, 16, FEATURE_CHANNELS),
        input_size=64,
    ),
}


def get_preset(name: str) -> ModelConfig:
    """Return the named preset's config (see PRESETS)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ModelConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


class FaceParseNet(nn.Module):
    """UNet++ backbone with two one-conv heads.

    Args:
        config: the model config.
        heads: which heads to build: "reconstruction" (R decoder) and/or "parsing" (FP decoder).
    """

    HEAD_OUT = {"reconstruction": 3}

    def __init__(self, config: ModelConfig, heads: tuple[str, ...] = ("parsing",)) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        if config.decoder_channels[-1] != FEATURE_CHANNELS:
            raise ModelConfigError(
                f"the last decoder width must be {FEATURE_CHANNELS} (the feature map), "
                f"got {config.decoder_channels}"
            )
        self.config = config
        unet = smp.UnetPlusPlus(
            encoder_name=config.encoder_name,
            encoder_depth=config.encoder_depth,
            encoder_weights=None,
            decoder_channels=tuple(config.decoder_channels),
            classes=1,
        )
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.heads = nn.ModuleDict()
        for name in heads:
            self.add_head(name)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)

    def add_head(self, name: str) -> None:
        """Attach a fresh one-conv head ("reconstruction" or "parsing")."""
        if name not in ("reconstruction", "parsing"):
            raise ModelConfigError(f"unknown head {name!r}")
        out = self.HEAD_OUT.get(name, self.config.num_classes)
        self.heads[name] = nn.Conv2d(FEATURE_CHANNELS, out, kernel_size=3, padding=1)

    def drop_head(self, name: str) -> None:
        if name in self.heads:
            del self.heads[name]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> normalised network input."""
        return (images - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised input -> (B, 16, H, W) backbone features."""
        return self.decoder(self.encoder(x))

    def forward(self, x: torch.Tensor, head: str = "parsing") -> torch.Tensor:
        """(B, 3, H, W) normalised input -> (B, out, H, W) head output (logits or RGB)."""
        return self.heads[head](self.features(x))

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """Encoder + decoder weights only (what stage 1 hands to stage 2)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("heads.")}


def _hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


# Files torch.save writes (pickles): loading one can run any code it holds.
PICKLE_SUFFIXES = frozenset({".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle", ".tar"})


def is_pickle_file(path: Path) -> bool:
    """Whether ``path`` is a torch.save file whatever its name: a zip archive (torch >= 1.6) or
    a bare pickle stream (protocol 2-5). A safetensors file starts with its header length, a
    little-endian integer far below these bytes' value for any header we write."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _pickle_refused(path: Path) -> str:
    """Why a pickle is refused, and the one command that converts a trusted one."""
    target = path.with_suffix(".safetensors")
    if target == path:  # a pickle under a safetensors name: keep the source apart
        target = path.with_name(f"{path.stem}.converted.safetensors")
    convert = (
        "import torch; from safetensors.torch import save_file; "
        f"s = torch.load({str(path)!r}, map_location='cpu', weights_only=True); "
        "save_file({k: v.contiguous() for k, v in s.get('state_dict', s).items()}, "
        f"{str(target)!r})"
    )
    return (
        f"{path}: this is a pickle (a torch.save file), and pickles are refused: loading one can "
        f'run any code it holds. If you trust this file, convert it once: python -c "{convert}" '
        "and pass "
        f"--encoder-weights {target}"
    )


def load_encoder_weights(model: FaceParseNet, weights: str | None) -> None:
    """Load encoder weights into a model.

    Args:
        weights: None (random init), a local ``.safetensors`` state dict (keys with or without
            an ``encoder.`` prefix), or "imagenet" (smp's download or its cached copy). Pickle
            files (``.pth``, ``.pt``) are refused, never unpickled: the error gives the one
            command that converts a trusted one.

    Raises:
        ModelConfigError: the file is missing, unreadable, a pickle, or does not fit the
            encoder, or "imagenet" is asked for offline with no cached copy (fails in about a
            second, never hangs).
    """
    if weights is None or weights == "none":
        return
    if weights == "imagenet":
        _load_imagenet(model)
        return
    path = Path(weights)
    if not path.is_file():
        raise ModelConfigError(
            f"encoder weights {weights!r}: not a file; give a local .safetensors file, "
            "'imagenet', or none"
        )
    if path.suffix.lower() in PICKLE_SUFFIXES or is_pickle_file(path):
        raise ModelConfigError(_pickle_refused(path))
    if path.suffix.lower() != ".safetensors":
        raise ModelConfigError(f"{path}: encoder weights must be a .safetensors state dict")
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:  # SafetensorError, OSError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelConfigError(
            f"{path}: not a readable .safetensors file ({reason}); it may be truncated or not "
            "safetensors at all"
        ) from None
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    # Count the fit ourselves: some smp encoders override load_state_dict and return nothing.
    own = model.encoder.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = len(own) - len(fitting)
    if missing > len(own) // 2:
        raise ModelConfigError(
            f"{path}: does not fit encoder {model.config.encoder_name!r} "
            f"({missing} of {len(own)} tensors missing or of another shape)"
        )
    # BatchNorm's step counters are left out of many exports and change nothing learned.
    unfit = [k for k in own if k not in fitting and not k.endswith("num_batches_tracked")]
    if unfit:
        logging.getLogger(__name__).warning(
            "%s: %d of the %d tensors of encoder %r are missing or of another shape (e.g. %s); "
            "they keep their random start", path, len(unfit), len(own),
            model.config.encoder_name, unfit[0],
        )  # fmt: skip
    model.encoder.load_state_dict(fitting, strict=False)


def _set_hub_offline(offline: bool) -> bool:
    """Switch huggingface_hub's offline mode at run time; return the previous setting.

    Offline, smp would retry the download for ~24 s; in offline mode the hub finds a cached copy
    or fails in well under a second. The hub reads HF_HUB_OFFLINE once at import, so the module
    constant is what must change.
    """
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - smp depends on it
        return offline
    previous = bool(constants.HF_HUB_OFFLINE)
    constants.HF_HUB_OFFLINE = offline
    return previous


def _load_imagenet(model: FaceParseNet) -> None:
    import segmentation_models_pytorch as smp

    online = _hub_reachable()
    previous = _set_hub_offline(not online) if not online else None
    try:
        ref = smp.UnetPlusPlus(
            encoder_name=model.config.encoder_name,
            encoder_depth=model.config.encoder_depth,
            encoder_weights="imagenet",
            decoder_channels=tuple(model.config.decoder_channels),
            classes=1,
        )
    except Exception as exc:
        where = "the network is unreachable and no cached copy was found" if not online else str(exc)
        raise ModelConfigError(
            f"ImageNet weights for {model.config.encoder_name!r} unavailable: {where}. "
            "Pass a local weights file with --encoder-weights PATH, or use none."
        ) from None
    finally:
        if previous is not None:
            _set_hub_offline(previous)
    model.encoder.load_state_dict(ref.encoder.state_dict())


def build_model(
    config: ModelConfig,
    heads: tuple[str, ...] = ("parsing",),
    encoder_weights: str | None = None,
) -> FaceParseNet:
    """Build a FaceParseNet from a config, optionally loading encoder weights."""
    model = FaceParseNet(config, heads=heads)
    load_encoder_weights(model, encoder_weights)
    return model

"""The settings of a training run, stored in every checkpoint it writes ("training").

A run's config has a start and three parts:

- the start (plain fields): where the network comes from (``init``, ``preset``, ``input_size``,
  ``encoder_weights``);
- ``recipe``: how it learns (:mod:`trainer.recipes`, named in the registry there);
- ``data``: what it learns from (:class:`FinetuneData`; stage 1's is ``image_dirs``);
- ``runtime``: where and how the run executes (folder, device, workers, progress bar), which
  changes nothing it learns.

Every config also has a flat view, one value per setting under its command-line name
(:meth:`RunConfig.flat`, :meth:`RunConfig.from_flat`): the CLI builds configs from it, and it is
how checkpoints written before the split stored them, so :func:`stored_config` reads both.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from trainer.errors import FaceParseError
from trainer.recipes import (
    DEFAULT_FINETUNE,
    DEFAULT_PRETRAIN,
    FinetuneRecipe,
    PretrainRecipe,
    finetune_recipe,
    pretrain_recipe,
)
from trainer.subsets import subset_size

C = TypeVar("C", bound="RunConfig")

FRAMINGS = ("detect", "whole")
DATA_FORMATS = ("lapa", "celebamask", "auto")


def check_init(init: str) -> str:
    """Check the form of a fine-tuning ``init`` (the files are checked when the run starts).

    Raises:
        FaceParseError: not scratch, imagenet, ssl[:<path>] or ckpt[:<path>].
    """
    kind, _, path = init.partition(":")
    if (kind in ("scratch", "imagenet") and not path) or kind in ("ssl", "ckpt"):
        return init
    raise FaceParseError(
        f"--init {init!r}: use scratch, imagenet, ssl:<stage-1 checkpoint> or ckpt:<stage-2 "
        "checkpoint> (bare ssl / ckpt: the starter backbone / parser shipped with the package)"
    )


def _check_input_size(size: int | None) -> None:
    """An input side the UNet++ can take: a positive multiple of 32 pixels (None: the
    preset's or the checkpoint's)."""
    if size is not None and (size < 32 or size % 32):
        raise ValueError(f"input_size must be a multiple of 32 px from 32 up, got {size}")


@dataclass(frozen=True)
class Runtime:
    """Where and how a run executes; nothing here changes the recipe (bf16's rounding aside).

    Args:
        out_dir: the run folder: checkpoints and logs, each named <stage>_<what>
            (``<stage>_last.safetensors``, ``<stage>_log.jsonl``, ...).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        num_workers: DataLoader worker processes.
        channels_last: channels-last memory format (faster convolutions on GPUs and recent CPUs).
        progress_bar: show a terminal progress bar (off when a GUI reports progress, or for a
            log file).
        precision: the training steps' arithmetic: bf16 mixed precision (weights, gradients
            and checkpoints stay float32) or fp32. auto takes bf16 on a GPU with bf16 units
            and on a CPU where a check made once per host measures it faster (about 2x with
            AMX; CPUs without native bf16 train in fp32 unchecked), else fp32;
            FACEPARSE_PRECISION=fp32|bf16 overrides auto.
    """

    out_dir: str
    device: str = "auto"
    num_workers: int = 0
    channels_last: bool = True
    progress_bar: bool = True
    precision: str = "auto"

    def __post_init__(self) -> None:
        from trainer.precision import require_precision

        object.__setattr__(self, "out_dir", str(self.out_dir))
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {self.num_workers}")
        require_precision(self.precision)


@dataclass(frozen=True)
class FinetuneRuntime(Runtime):
    """How a fine-tuning run executes.

    Args:
        val_every: validate every this many epochs (and always at the end).
    """

    val_every: int = 1


@dataclass(frozen=True)
class PretrainRuntime(Runtime):
    """How a stage-1 run executes and how often it saves.

    Args:
        checkpoint_every: also save ``pretrain_step{N}.safetensors`` every N steps (0 = none).
        checkpoint_minutes: also update the resumable ``pretrain_last.safetensors`` every this
            many minutes, so a killed run resumes with ``--resume`` from at most that long ago
            (0 = only at the end, on a cancel, a Ctrl-C, and with each step checkpoint).
        keep_checkpoints: how many ``pretrain_step{N}`` files to keep, the newest (each holds
            the optimizer state, about 3× the weights); 0 keeps all.
    """

    checkpoint_every: int = 0
    checkpoint_minutes: float = 5.0
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.checkpoint_every < 0 or self.checkpoint_minutes < 0 or self.keep_checkpoints < 0:
            raise ValueError(
                "checkpoint_every, checkpoint_minutes and keep_checkpoints must be ≥ 0"
            )


@dataclass(frozen=True)
class FinetuneData:
    """What a fine-tuning run learns from and is validated on.

    Args:
        root: dataset folder (LaPa layout, or CelebAMask-HQ mapped to LaPa classes); None when
            the caller hands the samples over itself (``finetune_on_samples``).
        data_format: "lapa", "celebamask" or "auto" (LaPa when ``data/train/images`` exists).
        fraction: share of the training images that are labeled (K = max(1, round(f·N))); with
            neither fraction nor num_labeled, every training image.
        num_labeled: number of labeled training images K (instead of fraction; at most N).
        subset_seed: seed of the labeled subset (kept apart from the recipe's seed so runs with
            other training seeds use the same faces).
        val_split: LaPa split used for validation; None or "" for none.
        val_limit: validate on the first N images of the split only (None = all).
        framing: "detect": every face in each labeled photo becomes one training crop, framed
            as the predictor frames faces (``trainer.data.face_crops``), and validation parses
            each photo's faces the same way; "whole": each image is one aligned face crop,
            resized (CelebAMask-HQ).
    """

    root: str | None = None
    data_format: Literal["lapa", "celebamask", "auto"] = "auto"
    fraction: float | None = None
    num_labeled: int | None = None
    subset_seed: int = 0
    val_split: str | None = "val"
    val_limit: int | None = None
    framing: Literal["detect", "whole"] = "detect"

    def __post_init__(self) -> None:
        if self.root is not None:
            object.__setattr__(self, "root", str(self.root) or None)
        if self.framing not in FRAMINGS:
            raise ValueError(f"framing must be detect or whole, got {self.framing!r}")
        if self.data_format not in DATA_FORMATS:
            raise ValueError(
                f"data_format must be lapa, celebamask or auto, got {self.data_format!r}"
            )
        subset_size(1, fraction=self.fraction, num_labeled=self.num_labeled)  # range checks
        if self.val_limit is not None and self.val_limit < 1:
            raise ValueError(f"val_limit must be at least 1, got {self.val_limit}")


class RunConfig:
    """What both run configs share: the flat view and the stored form.

    A subclass is a frozen dataclass whose fields are start settings (plain values) and the
    parts named in ``PARTS``; ``FLAT_NAMES`` renames a part's field in the flat view.
    """

    PARTS: ClassVar[dict[str, type]] = {}
    FLAT_NAMES: ClassVar[dict[tuple[str, str], str]] = {}
    DEFAULT_RECIPE: ClassVar[str] = ""

    @classmethod
    def named_recipe(cls, name: str, **overrides: Any) -> Any:
        """The recipe called ``name`` in this stage's registry."""
        raise NotImplementedError

    @classmethod
    def layout(cls) -> dict[str, tuple[str | None, str]]:
        """Every setting's flat name -> (its part, or None for a start setting; its field)."""
        out: dict[str, tuple[str | None, str]] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in cls.PARTS:
                for pf in dataclasses.fields(cls.PARTS[f.name]):
                    out[cls.FLAT_NAMES.get((f.name, pf.name), pf.name)] = (f.name, pf.name)
            else:
                out[f.name] = (None, f.name)
        return out

    def flat(self) -> dict[str, Any]:
        """Every setting under its flat (command-line) name."""
        return {
            name: getattr(getattr(self, part), attr) if part else getattr(self, attr)
            for name, (part, attr) in self.layout().items()
        }

    @classmethod
    def from_flat(
        cls: type[C], values: Mapping[str, Any], recipe: Any = None, strict: bool = True
    ) -> C:
        """A config from flat settings; the recipe's fields not given come from ``recipe`` (a
        recipe, a registry name, or None for the stage's default recipe).

        Raises:
            TypeError: with ``strict``, a setting this config does not have.
            ValueError: a value out of range.
        """
        layout = cls.layout()
        unknown = sorted(set(values) - set(layout))
        if unknown and strict:
            raise TypeError(f"{cls.__name__} has no setting {', '.join(unknown)}")
        start: dict[str, Any] = {}
        parts: dict[str, dict[str, Any]] = {p: {} for p in cls.PARTS}
        for name, value in values.items():
            if name in layout:
                part, attr = layout[name]
                (parts[part] if part else start)[attr] = value
        base = cls.named_recipe(recipe or cls.DEFAULT_RECIPE) if not is_recipe(recipe) else recipe
        kwargs: dict[str, Any] = dict(start)
        for part, part_type in cls.PARTS.items():
            if part == "recipe":
                kwargs[part] = dataclasses.replace(base, **parts[part])
            else:
                kwargs[part] = part_type(**parts[part])
        return cls(**kwargs)

    def changed(self: C, **values: Any) -> C:
        """A copy with some settings changed, given by their flat names."""
        return type(self).from_flat({**self.flat(), **values}, recipe=self.recipe)

    def to_stored(self) -> dict[str, Any]:
        """The JSON-able form kept in checkpoints: start settings, then each part as a dict."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_stored(cls: type[C], stored: Mapping[str, Any]) -> C:
        """The config a checkpoint stored: the nested form, or the flat one of checkpoints
        written before the split. Settings that file does not know take their defaults;
        settings this version no longer has are left out.
        """
        if not isinstance(stored.get("recipe"), Mapping):
            return cls.from_flat(stored, strict=False)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in stored:
                continue
            value = stored[f.name]
            if f.name in cls.PARTS:
                known = {pf.name for pf in dataclasses.fields(cls.PARTS[f.name])}
                value = cls.PARTS[f.name](**{k: v for k, v in value.items() if k in known})
            kwargs[f.name] = value
        return cls(**kwargs)


def is_recipe(value: Any) -> bool:
    return isinstance(value, FinetuneRecipe | PretrainRecipe)


@dataclass(frozen=True)
class FinetuneConfig(RunConfig):
    """Everything a fine-tuning run depends on; stored in its checkpoints.

    Args:
        runtime: where and how it runs (:class:`FinetuneRuntime`).
        init: "scratch", "imagenet", "ssl:<stage-1 checkpoint>" or "ckpt:<stage-2 checkpoint>";
            a bare "ssl" / "ckpt" is the starter backbone / parser shipped with the package.
        preset: model preset for scratch/imagenet (ssl/ckpt take the checkpoint's).
        input_size: network input side in pixels; default the preset's or the checkpoint's.
        encoder_weights: a local .safetensors encoder weights file for scratch/imagenet runs
            (pickles such as .pth are refused; the error says how to convert one; overrides
            the "imagenet" download for ``init="imagenet"``).
        recipe: how it learns (``trainer.recipes``; default the "plain" recipe).
        data: what it learns from (:class:`FinetuneData`).
    """

    PARTS: ClassVar[dict[str, type]] = {
        "recipe": FinetuneRecipe,
        "data": FinetuneData,
        "runtime": FinetuneRuntime,
    }
    FLAT_NAMES: ClassVar[dict[tuple[str, str], str]] = {("data", "root"): "data"}
    DEFAULT_RECIPE: ClassVar[str] = DEFAULT_FINETUNE

    runtime: FinetuneRuntime
    init: str = "scratch"
    preset: str = "lite"
    input_size: int | None = None
    encoder_weights: str | None = None
    recipe: FinetuneRecipe = field(default_factory=lambda: finetune_recipe(DEFAULT_FINETUNE))
    data: FinetuneData = field(default_factory=FinetuneData)

    def __post_init__(self) -> None:
        check_init(self.init)  # fail at once on a malformed --init, before any data is read
        _check_input_size(self.input_size)

    @classmethod
    def named_recipe(cls, name: str, **overrides: Any) -> FinetuneRecipe:
        return finetune_recipe(name, **overrides)


@dataclass(frozen=True)
class PretrainConfig(RunConfig):
    """Everything a stage-1 run depends on; stored in every checkpoint it writes.

    Args:
        image_dirs: folders of unlabeled face images (searched recursively).
        runtime: where and how it runs (:class:`PretrainRuntime`).
        init: a stage-1 checkpoint whose weights (backbone and R decoder) this run starts from,
            on a schedule of its own: e.g. the starter backbone adapted to a team's own photos,
            or a run at a smaller input size finished at a larger one. The model preset must
            match; the input size may differ (the network is fully convolutional).
        preset: model preset ("paper", "lite", "tiny").
        input_size: override of the preset's input side in pixels (a multiple of 32).
        encoder_weights: None, "imagenet" or a local .safetensors weights file for the encoder
            (pickles such as .pth are refused; the error says how to convert one).
        recipe: how it learns (``trainer.recipes``; default the "center" recipe).
    """

    PARTS: ClassVar[dict[str, type]] = {"recipe": PretrainRecipe, "runtime": PretrainRuntime}
    DEFAULT_RECIPE: ClassVar[str] = DEFAULT_PRETRAIN

    image_dirs: tuple[str, ...]
    runtime: PretrainRuntime
    init: str | None = None
    preset: str = "lite"
    input_size: int | None = None
    encoder_weights: str | None = None
    recipe: PretrainRecipe = field(default_factory=lambda: pretrain_recipe(DEFAULT_PRETRAIN))

    def __post_init__(self) -> None:
        dirs = self.image_dirs
        if isinstance(dirs, str | os.PathLike):
            dirs = (dirs,)
        object.__setattr__(self, "image_dirs", tuple(str(d) for d in dirs))
        if self.init is not None:
            object.__setattr__(self, "init", str(self.init))
        if self.init is not None and self.encoder_weights is not None:
            raise ValueError("give init or encoder_weights, not both: init holds the encoder too")
        _check_input_size(self.input_size)

    @classmethod
    def named_recipe(cls, name: str, **overrides: Any) -> PretrainRecipe:
        return pretrain_recipe(name, **overrides)


def stored_config(meta: Mapping[str, Any]) -> FinetuneConfig | PretrainConfig:
    """The run config a checkpoint's metadata holds (either form; see the module docstring).

    Raises:
        FaceParseError: the metadata holds no training config, or one that does not load.
    """
    stored = meta.get("training")
    if not isinstance(stored, Mapping):
        raise FaceParseError("the checkpoint holds no training config")
    cls: type[RunConfig] = PretrainConfig if meta.get("stage") == "pretrain" else FinetuneConfig
    try:
        return cls.from_stored(stored)  # type: ignore[return-value]
    except (TypeError, ValueError) as exc:
        raise FaceParseError(f"the checkpoint's training config does not load: {exc}") from None

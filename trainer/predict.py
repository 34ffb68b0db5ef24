"""Inference: an RGB photo in; a label map, per-pixel confidence and the faces found out. The one
inference path: ``faceparse predict``, ``evaluate``, ONNX and the app's pre-labels all call
:meth:`Predictor.predict_batch`.

Two framings (recorded in every output):

- ``detect`` (default): every face is found (:mod:`trainer.face_detect`), cropped square as the
  training crops are framed and turned upright (:mod:`trainer.faces`), parsed at the model's
  input size, and its logits are warped back into the photo; faces that overlap are merged by
  confidence, and everything outside every face is background. Any photo, any size or aspect.
- ``whole``: the whole image is resized to the model's square input, for data that is already
  aligned face crops (CelebAMask-HQ, LaPa's own crops).

Either way the class logits (never the labels) are resized to the output size before the argmax
(:mod:`trainer.label_maps`), so the label map matches the image pixel for pixel. A folder of photos:
:mod:`trainer.predict_folder`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trainer.checkpoint import load_model
from trainer.data.imageio import image_size, read_image
from trainer.data.transforms import resize_square, to_tensor
from trainer.errors import CheckpointError, ImageReadError, PredictionInterrupted
from trainer.face_parses import parse_faces, whole_if_aligned
from trainer.faces import Face, parse_transforms, scale_faces
from trainer.label_maps import label_and_confidence, mean_entropy
from trainer.labels import get_label_set
from trainer.models import FaceParseNet
from trainer.paste import paste_logits

FRAMINGS: tuple[str, ...] = ("detect", "whole")
DEFAULT_FRAMING = "detect"
CROP_BATCH = 8  # face crops per forward pass


def check_framing(framing: str) -> str:
    """``framing`` if it is one of FRAMINGS, else a ValueError naming them."""
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing {framing!r}; choose one of {', '.join(FRAMINGS)}")
    return framing


@dataclass
class Prediction:
    """One image's parsing.

    Attributes:
        label: (H, W) uint8 class map at the output size (the image's, unless asked otherwise).
        confidence: (H, W) float32 in [0, 1], the top class's probability per pixel (1.0 outside
            every face with ``detect``); None when the caller asked for none.
        faces: the faces parsed, in photo pixels (``detect``; empty for ``whole``).
        score: how unsure the model is, in [0, 1]: the mean normalised entropy of its class
            probabilities over each face crop, averaged over the faces (``whole``: over the
            network input); NaN when no face was found.
        framing: "detect" or "whole".
    """

    label: np.ndarray
    confidence: np.ndarray | None
    faces: list[Face] = field(default_factory=list)
    score: float = float("nan")
    framing: str = "whole"


class Predictor:
    """A stage-2 (parsing) network ready for inference.

    Args:
        model: a FaceParseNet with a "parsing" head.
        meta: the checkpoint metadata (shown by ``model_info``).
        device: "auto", "cpu", "cuda", "mps" or a torch.device.
        channels_last: use the channels-last memory format (faster convolutions on CPU and GPU).
        framing: "detect" (find and crop every face) or "whole" (the image is one aligned
            face crop); see the module docstring.
        precision: "fp32", or "bf16" (bf16 autocast on a CPU: the runtime choice takes it only
            where oneDNN runs bf16 natively, it is faster, and its labels agree with float32's:
            :mod:`trainer.runtime_choice`). CUDA always computes in bf16.
        finder: the face finder for ``detect``; default :func:`trainer.face_detect.get_finder`,
            loaded on first use.
    """

    def __init__(
        self,
        model: FaceParseNet,
        meta: dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        channels_last: bool = True,
        framing: str = DEFAULT_FRAMING,
        finder: Callable[[np.ndarray], list[Face]] | None = None,
        precision: str = "fp32",
    ) -> None:
        if "parsing" not in model.heads:
            raise CheckpointError("the model has no parsing head; fine-tune it before predicting")
        from trainer.engine import select_device

        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.channels_last = channels_last
        self.model = model.to(self.device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.meta = dict(meta or {})
        self.label_set = get_label_set(model.config.label_set)
        self.framing = check_framing(framing)
        self._finder = finder
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.precision = precision

    def in_precision(self, precision: str) -> Predictor:
        """The same network and face finder computing in ``precision`` (no copy of the weights)."""
        if precision == self.precision:
            return self
        return Predictor(
            self.model,
            meta=self.meta,
            device=self.device,
            channels_last=self.channels_last,
            framing=self.framing,
            finder=self._finder,
            precision=precision,
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "auto",
        framing: str = DEFAULT_FRAMING,
    ) -> Predictor:
        """Load a fine-tuned checkpoint.

        Raises:
            CheckpointError: missing, corrupted, or a stage-1 checkpoint with no parsing head.
        """
        model, ckpt = load_model(path)
        if "parsing" not in ckpt.heads:
            raise CheckpointError(
                f"{path}: a {ckpt.stage or 'stage-1'} checkpoint without a parsing head; "
                "fine-tune it first (faceparse finetune --init ssl:<this file>)"
            )
        meta = dict(ckpt.meta)
        meta["path"] = str(path)
        return cls(model, meta=meta, device=device, framing=framing)

    @property
    def input_size(self) -> int:
        """Side in pixels of the square network input."""
        return int(self.model.config.input_size)

    @property
    def num_classes(self) -> int:
        return int(self.model.config.num_classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_set.classes

    @property
    def model_info(self) -> dict[str, Any]:
        """What the model is: preset, classes, stage, package version, input size, metrics, path."""
        return {
            "preset": self.model.config.preset,
            "encoder": self.model.config.encoder_name,
            "classes": list(self.class_names),
            "label_set": self.label_set.name,
            "stage": self.meta.get("stage", "finetune"),
            "version": self.meta.get("package_version"),
            "input_size": self.input_size,
            "created": self.meta.get("created"),
            "metrics": self.meta.get("metrics"),
            "path": self.meta.get("path"),
            "framing": self.framing,
            "runtime": "torch-bf16" if self.precision == "bf16" else "torch",
            "finder": getattr(self._finder, "name", None) if self.framing == "detect" else None,
        }

    def _unit_batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """List of (H, W, 3) uint8 RGB -> (B, 3, S, S) float in [0, 1] at the input size (CPU)."""
        batch = []
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ImageReadError(
                    f"image {i}: expected an (H, W, 3) uint8 RGB array, got {image.dtype} "
                    f"{tuple(image.shape)}"
                )
            # The same resize as the training data gets, so the network sees what it learned on.
            square, _ = resize_square(image, self.input_size)
            batch.append(to_tensor(square))
        return torch.stack(batch)

    def _to_input(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """List of (H, W, 3) uint8 RGB -> (B, 3, S, S) normalised network input on the device."""
        x = self.model.normalize(self._unit_batch(images).to(self.device))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def logits(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, C, S, S) float32 class logits at the network input size."""
        from trainer.engine import autocast_for

        with torch.inference_mode(), autocast_for(self.device, self.precision):
            return self.model(self._to_input(images), head="parsing").float()

    @property
    def finder(self) -> Callable[[np.ndarray], list[Face]]:
        """The face finder (``detect``), loaded on first use."""
        if self._finder is None:
            from trainer.face_detect import get_finder

            self._finder = get_finder()
        return self._finder

    def find_faces(self, image: np.ndarray) -> list[Face]:
        """Every face in a (H, W, 3) uint8 RGB photo, in photo pixels."""
        return list(self.finder(image))

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        output_sizes: Sequence[tuple[int, int]] | None = None,
        faces: Sequence[Sequence[Face] | None] | None = None,
        interrupt: Callable[[], bool] | None = None,
        confidence: bool = True,
    ) -> list[Prediction]:
        """Parse several photos.

        Args:
            images: (H, W, 3) uint8 RGB arrays, any sizes.
            output_sizes: (H, W) per image to predict at instead of the image's own size (e.g. a
                label map stored at another resolution).
            faces: ``detect`` only: per image, the faces to parse instead of finding them (None
                for an image: find them), e.g. the faces an annotator kept, added or drew.
            interrupt: ``detect`` only: asked between the steps of a photo (after finding its
                faces, before each batch of crops, before pasting); True stops the work.
            confidence: False leaves ``Prediction.confidence`` None and makes no confidence
                map (a 200-megapixel photo's is 800 MB; ``faceparse predict`` and the app's
                pre-labels use labels only), with either framing.

        Returns:
            One Prediction per image, at its output size.

        Raises:
            PredictionInterrupted: ``interrupt`` returned True; nothing is returned.
        """
        if not images:
            return []
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ImageReadError(
                    f"image {i}: expected an (H, W, 3) uint8 RGB array, got {image.dtype} "
                    f"{tuple(image.shape)}"
                )
        sizes = [
            tuple(output_sizes[i]) if output_sizes is not None else tuple(img.shape[:2])
            for i, img in enumerate(images)
        ]
        if self.framing == "whole":
            return self._predict_whole(images, sizes, confidence)
        return [
            self._predict_faces(image, size, None if faces is None else faces[i], interrupt, confidence)
            for i, (image, size) in enumerate(zip(images, sizes, strict=True))
        ]

    def predict_file(
        self, path: str | os.PathLike[str], confidence: bool = True
    ) -> tuple[Prediction, np.ndarray]:
        """Parse a photo file into a label map at its full size.

        With ``detect`` framing a large JPEG is first read at a reduced size (the decoder's own
        scaling, :func:`read_image`'s ``reduce``) that still holds every pass of the face finder,
        and its faces are parsed from the smallest reduction (1/8, 1/4, 1/2 or none) at which
        every face's crop still shrinks the photo or keeps its scale: a small face is cropped from
        the photo at full resolution, a large one never needs it. Other formats are read whole.
        The label map is at the full size either way, and the faces are in its pixels.

        Returns:
            (the Prediction, the image the faces were parsed from: the photo at full or reduced
            size).

        Raises:
            ImageReadError: the file cannot be read (see :func:`read_image`).
        """
        return self.predict_decoded(path, *self.decode_file(path), confidence=confidence)

    def decode_file(self, path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[int, int]]:
        """The first half of :meth:`predict_file`, the decoding (safe to run in another thread
        once :attr:`finder` is loaded): (the photo at full or reduced size, its full (H, W))."""
        full = tuple(image_size(path))
        reduce = self._reduce_for(full) if self.framing == "detect" else 1
        return read_image(path, reduce=reduce), full

    def predict_decoded(
        self,
        path: str | os.PathLike[str],
        image: np.ndarray,
        full: tuple[int, int],
        confidence: bool = True,
    ) -> tuple[Prediction, np.ndarray]:
        """The second half of :meth:`predict_file`: parse what :meth:`decode_file` returned."""
        if image.shape[:2] == tuple(full):  # read whole (not reduced, or not a JPEG)
            return self.predict_batch([image], confidence=confidence)[0], image
        faces = self.find_faces(image)
        found = scale_faces(faces, *_ratio(full, image))
        reduced = round(full[1] / image.shape[1])
        # The largest reduction at which no face's crop enlarges the photo.
        need = max((_crop_scale(f, self.input_size) for f in found), default=0.0)
        reduce = max([k for k in (1, 2, 4, 8) if k <= reduced and k * need <= 1.0], default=1)
        if reduce != reduced:
            image = read_image(path, reduce=reduce)
            if image.shape[:2] == tuple(full):
                return self.predict_batch([image], faces=[found], confidence=confidence)[0], image
            sx, sy = _ratio(full, image)
            faces = scale_faces(found, 1 / sx, 1 / sy)
        pred = self.predict_batch(
            [image], output_sizes=[full], faces=[faces], confidence=confidence
        )[0]
        pred.faces = found
        return pred, image

    def _reduce_for(self, shape: tuple[int, int]) -> int:
        """The largest JPEG reduction (1, 2, 4 or 8) that keeps the finder's largest pass sharp."""
        scales = getattr(self.finder, "detection_scales", None)
        if scales is None:
            return 1
        largest = max(scales(shape))
        # A pass that enlarges the photo (a small one) needs every pixel: no reduction.
        return max([k for k in (2, 4, 8) if k * largest <= 1.0], default=1)

    def __call__(self, image: np.ndarray) -> Prediction:
        """Parse one (H, W, 3) uint8 RGB photo; see ``predict_batch``."""
        return self.predict_batch([image])[0]

    def crop_logits(
        self, crops: Sequence[np.ndarray], interrupt: Callable[[], bool] | None = None
    ) -> list[torch.Tensor]:
        """(C, S, S) logits of each (S, S, 3) crop, CROP_BATCH crops a forward pass."""
        out: list[torch.Tensor] = []
        for start in range(0, len(crops), CROP_BATCH):
            _check(interrupt)
            out.extend(self.logits(crops[start : start + CROP_BATCH]).cpu())
        return out

    def _predict_whole(
        self, images: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]], confidence: bool = True
    ) -> list[Prediction]:
        logits = self.logits(images)
        out: list[Prediction] = []
        with torch.inference_mode():
            for i, size in enumerate(sizes):
                label, sure = label_and_confidence(logits[i], size, confidence=confidence)
                out.append(
                    Prediction(
                        label=label,
                        confidence=sure,
                        score=mean_entropy(logits[i]),
                        framing="whole",
                    )
                )
        return out

    def _predict_faces(
        self,
        image: np.ndarray,
        size: tuple[int, int],
        given: Sequence[Face] | None,
        interrupt: Callable[[], bool] | None = None,
        confidence: bool = True,
    ) -> Prediction:
        found = list(given) if given is not None else self.find_faces(image)
        _check(interrupt)
        side = self.input_size
        h, w = image.shape[:2]
        # The output may be at another resolution than the photo (a label map stored smaller).
        to_out = np.diag([w / size[1], h / size[0], 1.0])
        if len(found) == 1 and whole_if_aligned(parse_transforms(found[0], side)[0], (h, w), side) is not None:
            # The photo is one aligned face crop: exactly what whole framing gives it.
            pred = self._predict_whole([image], [size], confidence)[0]
            pred.faces, pred.framing = found, "detect"
            return pred
        parses = parse_faces(self, image, found, interrupt)
        _check(interrupt)
        own, fill, hair = (([*x], [m @ to_out for m in t]) for x, t in (parses.own, parses.fill, parses.hair))
        with torch.inference_mode():
            label, sure = paste_logits(
                *own, size, fill=fill, confidence=confidence, hair=(*hair, parses.hair_masks),
                fill_masks=parses.fill_masks or None,
            )
            scores = [mean_entropy(x) for x in parses.own[0]]
        return Prediction(
            label=label,
            confidence=sure,
            faces=found,
            score=float(np.mean(scores)) if scores else float("nan"),
            framing="detect",
        )


def _check(interrupt: Callable[[], bool] | None) -> None:
    if interrupt is not None and interrupt():
        raise PredictionInterrupted("the prediction was interrupted by its caller")


def _ratio(full: tuple[int, int], image: np.ndarray) -> tuple[float, float]:
    """(x, y) photo pixels per pixel of ``image``, the photo read at a reduced size."""
    return full[1] / image.shape[1], full[0] / image.shape[0]


def _crop_scale(face: Face, side: int) -> float:
    """Crop pixels per photo pixel of a face's own crop at ``side`` (above 1: the crop enlarges)."""
    m = parse_transforms(face, side)[0]
    return float(np.hypot(m[0, 0], m[1, 0]))

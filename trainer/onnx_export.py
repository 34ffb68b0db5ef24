"""Export a fine-tuned parser to ONNX (``faceparse export-onnx``) and run it with ONNX Runtime.

The exported graph takes (B, 3, S, S) float32 RGB in [0, 1] and returns (B, C, S, S) class logits:
the input normalisation is part of the graph, so a caller only resizes and scales to [0, 1]
(exactly what :class:`~trainer.predict.Predictor` does before its own forward pass). The batch axis
is dynamic; the side S is fixed at export time so ONNX Runtime can plan every convolution.

The checkpoint's JSON metadata travels inside the ONNX file (``metadata_props["faceparse"]``), so
an :class:`OnnxPredictor` knows its classes, input size and training facts without the
checkpoint.

``onnx`` and ``onnxruntime`` are optional dependencies, imported only here.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer.checkpoint import CHECKSUM_KEY, load_model, model_config_from_meta
from trainer.data.imageio import atomic_write_bytes
from trainer.errors import CheckpointError, FaceParseError
from trainer.faces import Face
from trainer.labels import get_label_set
from trainer.models import ModelConfig
from trainer.predict import DEFAULT_FRAMING, Predictor, check_framing

__all__ = ["OnnxPredictor", "export_onnx", "PARITY_TOLERANCE"]

#: Largest absolute logit difference between torch and ONNX Runtime that an export accepts.
PARITY_TOLERANCE = 1e-4
_META_KEY = "faceparse"
_OPSET = 17


class _Exported(nn.Module):
    """The graph that is exported: [0, 1] RGB in, parsing logits out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.model.normalize(images), head="parsing")


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise FaceParseError(
            f"ONNX export needs the optional package {module!r}: pip install onnx onnxruntime"
        ) from None


def _session(model_bytes: bytes | str, threads: int | None = None) -> Any:
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    input_size: int | None = None,
    parity_batch: int = 2,
    seed: int = 0,
) -> Path:
    """Export a fine-tuned checkpoint to ONNX and check it against torch.

    Args:
        checkpoint: a stage-2 (parsing) checkpoint.
        out_path: the ``.onnx`` file to write (atomically: a failed export leaves no file).
        input_size: side S in pixels of the exported input; default the checkpoint's input size.
            A multiple of 32 (the encoder downsamples five times).
        parity_batch: images in the parity check (random [0, 1] tensors, seeded).
        seed: seed of the parity inputs.

    Returns:
        ``out_path``.

    Raises:
        CheckpointError: the checkpoint has no parsing head (a stage-1 backbone).
        FaceParseError: ``onnx``/``onnxruntime`` are missing, the size is not a multiple of 32,
            or ONNX Runtime's logits differ from torch's by more than :data:`PARITY_TOLERANCE`.
    """
    onnx = _require("onnx")
    model, ckpt = load_model(checkpoint)
    if "parsing" not in ckpt.heads:
        raise CheckpointError(
            f"{checkpoint}: a {ckpt.stage or 'stage-1'} checkpoint without a parsing head; "
            "only fine-tuned parsers can be exported"
        )
    size = int(input_size or model.config.input_size)
    if size % 32:
        raise FaceParseError(f"input size {size} px is not a multiple of 32")
    model.config = model.config.with_overrides(input_size=size)
    # eval() on the wrapper itself: the exporter restores the wrapper's mode afterwards, and a
    # wrapper left in training mode would switch the model's BatchNorm back to batch statistics.
    graph = _Exported(model.float()).eval()

    x = torch.rand(parity_batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    buffer = io.BytesIO()
    with torch.no_grad():
        expected = graph(x).numpy()
        torch.onnx.export(
            graph,
            (x,),
            buffer,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=_OPSET,
            dynamo=False,
        )

    proto = onnx.load_from_string(buffer.getvalue())
    # The checksum covers the checkpoint's tensors, not the graph's.
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("optimizer", CHECKSUM_KEY)}
    meta.update(model=model.config.to_dict(), input_size=size, source_checkpoint=str(checkpoint))
    entry = proto.metadata_props.add()
    entry.key, entry.value = _META_KEY, json.dumps(meta, default=str)
    data = proto.SerializeToString()

    got = _session(data).run(["logits"], {"images": x.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    if not diff <= PARITY_TOLERANCE:
        raise FaceParseError(
            f"ONNX export of {checkpoint} failed its parity check: logits differ from torch by "
            f"{diff:.2e} (> {PARITY_TOLERANCE:.0e}); nothing was written"
        )
    out_path = Path(out_path)
    atomic_write_bytes(out_path, data)
    return out_path


class _ConfigOnly:
    """Stands in for the torch model where Predictor reads ``model.config`` only."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config


def _check_graph(path: Path, session: Any, config: ModelConfig) -> None:
    """One (B, 3, S, S) float input and one (B, C, S, S) float output, S and C as the metadata
    says: what export_onnx writes. Anything else fails here, not at the first image."""
    size, classes = config.input_size, config.num_classes

    def fits(shape: list[Any], channels: int) -> bool:
        # Dynamic axes come back as names or None; only fixed ones can disagree.
        want = [None, channels, size, size]
        return len(shape) == 4 and all(
            w is None or not isinstance(d, int) or d == w for d, w in zip(shape, want, strict=True)
        )

    def shown(shape: list[Any]) -> str:
        return "[" + ", ".join(str(d) if isinstance(d, int) else "batch" for d in shape) + "]"

    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise CheckpointError(
            f"{path}: a graph with {len(inputs)} inputs and {len(outputs)} outputs; a faceparse "
            "parser has one of each (images in, logits out); export it with export_onnx"
        )
    expected = f"(batch, 3, {size}, {size}) float"
    if inputs[0].type != "tensor(float)" or not fits(inputs[0].shape, 3):
        raise CheckpointError(
            f"{path}: the graph's input is {inputs[0].type} {shown(inputs[0].shape)}, but its "
            f"metadata says {expected} (input_size {size}); export it with export_onnx"
        )
    if outputs[0].type != "tensor(float)" or not fits(outputs[0].shape, classes):
        raise CheckpointError(
            f"{path}: the graph's output is {outputs[0].type} {shown(outputs[0].shape)}, but "
            f"its metadata says (batch, {classes}, {size}, {size}) float logits; export it "
            "with export_onnx"
        )


class OnnxPredictor(Predictor):
    """A :class:`Predictor` whose forward pass runs in ONNX Runtime (CPU).

    Same calls as Predictor (``predictor(image)``, ``predict_batch``, ``model_info``) and the
    same framings (faces are found and cropped before the graph runs); ``evaluate`` accepts it.

    Args:
        path: an ``.onnx`` file written by :func:`export_onnx`.
        threads: ONNX Runtime intra-op threads (default: its own choice, all cores).

    Raises:
        CheckpointError: the file is missing or unreadable, its metadata is missing or bad, or
            its graph's input or output does not have the shape the metadata says.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        threads: int | None = None,
        framing: str = DEFAULT_FRAMING,
        finder: Callable[[np.ndarray], list[Face]] | None = None,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX model not found")
        try:
            self.session = _session(str(path), threads)
        except FaceParseError:
            raise
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable ONNX model ({exc})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(_META_KEY)
        if raw is None:
            raise CheckpointError(f"{path}: no faceparse metadata; export it with export_onnx")
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: corrupted faceparse metadata ({exc})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
            raise CheckpointError(
                f"{path}: bad faceparse metadata: no model config; export it with export_onnx"
            )
        config = model_config_from_meta(path, meta["model"], check_encoder=False)
        _check_graph(path, self.session, config)
        self.meta = meta
        self.meta["path"] = str(path)
        self.model = _ConfigOnly(config)  # type: ignore[assignment]
        self.device = torch.device("cpu")
        self.channels_last = False
        self.label_set = get_label_set(config.label_set)
        self.framing = check_framing(framing)
        self._finder = finder
        self.precision = "fp32"
        self._input_name = self.session.get_inputs()[0].name

    @property
    def model_info(self) -> dict[str, Any]:
        info = super().model_info
        info["runtime"] = "onnxruntime"
        return info

    def logits(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, C, S, S) float32 class logits at the network input size."""
        x = self._unit_batch(images).numpy()  # [0, 1]: the graph normalises
        out = self.session.run(None, {self._input_name: x})[0]
        return torch.from_numpy(out)

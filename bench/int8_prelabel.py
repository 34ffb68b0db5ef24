"""An int8 pre-label path (issue 34): ONNX Runtime static quantization calibrated on faces,
against the fp32 paths, for speed and mean F1; and torch in bf16 (autocast), which the runtime
choice takes per host (:mod:`trainer.runtime_choice`).

Usage:
    python -m bench.int8_prelabel [--data bench/out/study/data] [--calibration 32]
        [--rounds 10] [--limit 100]

The starter parser (``lite``, 256 px) is exported to ONNX, pre-processed
(``quant_pre_process``) and quantized statically (QDQ, int8 weights per channel, uint8
activations, MinMax calibration on ``--calibration`` faces of the study's pool, as the Predictor
feeds them). Speed: one forward pass of 2 face crops (a face and its context), torch
channels_last, ONNX Runtime fp32 and int8 called round-robin for ``--rounds`` rounds, fastest
call of each. Quality: mean F1 of each on the study's validation faces (``whole`` framing: the
parser alone). Kept only if int8 is ≥ 1.5× the fastest fp32 path and within 0.5 mean-F1 points.
bf16 is scored by the same rule (the runtime choice asks ≥ 1.25× on the host it runs on, and
considers bf16 only where oneDNN runs it natively; ``--no-bf16`` leaves it out).

ONNX Runtime picks its kernels from the CPU itself: ``ONEDNN_MAX_CPU_ISA`` and
``MKL_ENABLE_INSTRUCTIONS`` cap torch's kernels, not ONNX Runtime's (its figures are native).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import ROOT, SHARED, argument_parser, command_line, machine, utc_now, write_json

STARTER = ROOT / "trainer" / "assets" / "models" / "starter_parser.safetensors"


def quantize(fp32: Path, int8: Path, faces: list[np.ndarray], predictor: Any) -> None:
    """Static QDQ quantization of ``fp32`` calibrated on ``faces``; the faceparse metadata is
    carried over so OnnxPredictor can load the result."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Faces(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(faces)

        def get_next(self) -> dict[str, np.ndarray] | None:
            face = next(self.items, None)
            return None if face is None else {"images": predictor._unit_batch([face]).numpy()}

    prepared = int8.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(int8),
        Faces(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    source, model = onnx.load(str(fp32)), onnx.load(str(int8))
    del model.metadata_props[:]
    model.metadata_props.extend(source.metadata_props)
    onnx.save(model, str(int8))


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, experiment="speed", results="int8_prelabel.json")
    parser.add_argument("--data", default=str(ROOT / "bench" / "out" / "study"), help="the study's out folder (its data/ is made if missing)")
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--limit", type=int, default=100, help="validation faces scored")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="also torch channels_last in bf16")  # fmt: skip
    args = parser.parse_args(argv)

    from bench.faces import prepare_data, validation_faces
    from bench.recipes import StudySettings
    from trainer.data.lapa import LapaDataset
    from trainer.evaluate import evaluate
    from trainer.onnx_export import OnnxPredictor, export_onnx
    from trainer.predict import Predictor

    out = Path(args.data)
    prepare_data(SHARED / "celebamask-hq-dev", out, StudySettings())
    pool = LapaDataset(out / "data", split="train")
    val = validation_faces(out / "data", args.limit)
    result: dict[str, Any] = {"date": utc_now(), "machine": machine(), "command": command_line(__spec__.name, argv)}
    torch_cl = Predictor.from_checkpoint(STARTER, device="cpu", framing="whole")
    import torch

    threads = torch.get_num_threads()
    result["threads"] = threads
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(STARTER, Path(tmp) / "fp32.onnx")
        int8 = Path(tmp) / "int8.onnx"
        t0 = time.perf_counter()
        quantize(fp32, int8, [pool[i].image for i in range(args.calibration)], torch_cl)
        result["quantize_s"] = round(time.perf_counter() - t0, 1)
        paths: dict[str, Any] = {
            "torch_channels_last": torch_cl,
            # As many threads as torch (OMP_NUM_THREADS), as the runtime choice gives ONNX
            # Runtime: its own default is every core, which compared 2 threads with 1.
            "onnxruntime_fp32": OnnxPredictor(fp32, threads=threads, framing="whole"),
            "onnxruntime_int8": OnnxPredictor(int8, threads=threads, framing="whole"),
        }
        if args.bf16:
            paths["torch_bf16"] = torch_cl.in_precision("bf16")
        side = torch_cl.input_size
        crops = list(np.random.default_rng(0).integers(0, 256, (2, side, side, 3), np.uint8))
        best = {name: float("inf") for name in paths}
        for p in paths.values():
            p.logits(crops)  # warm-up
        for _ in range(args.rounds):
            for name, p in paths.items():
                t0 = time.perf_counter()
                p.logits(crops)
                best[name] = min(best[name], time.perf_counter() - t0)
        result["forward_2_crops_s"] = {k: round(v, 4) for k, v in best.items()}
        print(json.dumps(result["forward_2_crops_s"]), flush=True)
        scores = {}
        for name, p in paths.items():
            scores[name] = round(100 * evaluate(p, val)["mean_f1"], 2)
            print(name, scores[name], flush=True)
        result["mean_f1"] = scores
    fastest_fp32 = min(best["torch_channels_last"], best["onnxruntime_fp32"])
    result["int8_speedup_over_best_fp32"] = round(fastest_fp32 / best["onnxruntime_int8"], 2)
    result["int8_f1_drop"] = round(scores["torch_channels_last"] - scores["onnxruntime_int8"], 2)
    result["keep_int8"] = (
        result["int8_speedup_over_best_fp32"] >= 1.5 and abs(result["int8_f1_drop"]) <= 0.5
    )
    if args.bf16:  # (whether oneDNN runs bf16 natively: result["machine"]["onednn_bf16"])
        result["bf16_speedup_over_best_fp32"] = round(fastest_fp32 / best["torch_bf16"], 2)
        result["bf16_f1_drop"] = round(scores["torch_channels_last"] - scores["torch_bf16"], 2)
    result["validation_faces"] = len(val)
    result["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    print(f"wrote {write_json(args.results, result, result['command'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

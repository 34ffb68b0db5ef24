"""The pre-label runtime, chosen per model and host: torch channels_last or ONNX Runtime.

Which one is faster depends on the CPU (AVX-512 or AVX2 only), the preset and the versions
installed, so neither is a fixed default. On first use of a model on a CPU, :func:`load_predictor`
exports it to ONNX (parity-checked), runs both on the same crops (their logits must agree, then
the faster of a few interleaved calls wins) and remembers the answer in a small JSON file in the
user cache dir, keyed by the model's tensors and the host (CPU model, ISA, torch and ONNX Runtime
versions, threads). Later loads read the answer; a runtime that fails to load or to agree with
torch is never used: the model falls back to torch and the cache says why.

``onnxruntime`` stays optional: without it every model runs in torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.checkpoint import CHECKSUM_KEY
from trainer.data.imageio import atomic_write_bytes
from trainer.predict import DEFAULT_FRAMING, Predictor

log = logging.getLogger(__name__)

RUNTIMES: tuple[str, ...] = ("auto", "torch", "onnxruntime")
CACHE_NAME = "runtimes.json"
CACHE_ENV = "FACEPARSE_CACHE_DIR"
# Largest logit difference the self-check accepts between the runtimes (export_onnx's own check
# is 1e-4 against eager NCHW; channels_last sums in another order).
AGREEMENT = 1e-3
SELF_CHECK_CALLS = 3
SELF_CHECK_CROPS = 2  # one face: its own crop and its context crop, one forward pass


def user_cache_dir() -> Path:
    """Where the runtime choices and exported graphs live: ``$FACEPARSE_CACHE_DIR``, else the
    platform's user cache folder (``~/.cache/faceparse`` on Linux)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "faceparse" / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "faceparse"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "faceparse"


def host_key() -> str:
    """What makes one CPU runtime faster than the other on this machine."""
    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = "none"
    return "|".join(
        [
            _cpu_model(),
            torch.backends.cpu.get_cpu_capability(),
            # An ISA cap set for oneDNN or MKL changes the kernels without changing the CPU.
            os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
            os.environ.get("MKL_ENABLE_INSTRUCTIONS", ""),
            f"torch {torch.__version__}",
            f"onnxruntime {ort}",
            f"threads {torch.get_num_threads()}",
        ]
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_key(predictor: Predictor, checkpoint: str | os.PathLike[str]) -> str:
    """The model's identity: the checksum of its tensors (else the file's size and time) and
    its input size."""
    ident = predictor.meta.get(CHECKSUM_KEY)
    if not ident:
        stat = Path(checkpoint).stat()
        ident = f"{Path(checkpoint).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return f"{ident}@{predictor.input_size}"


def load_predictor(
    checkpoint: str | os.PathLike[str],
    device: str | torch.device = "auto",
    framing: str = DEFAULT_FRAMING,
    runtime: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
) -> Predictor:
    """A fine-tuned checkpoint ready to parse photos, in the fastest correct runtime here.

    Args:
        checkpoint: a stage-2 (parsing) checkpoint.
        device: as :class:`Predictor`; ONNX Runtime is considered on the CPU only.
        framing: "detect" or "whole".
        runtime: "auto" (the self-checked choice, cached), "torch" or "onnxruntime" (exported
            and run in ONNX Runtime; its errors are raised).
        cache_dir: default :func:`user_cache_dir`.

    Returns:
        A :class:`Predictor` or an :class:`~trainer.onnx_export.OnnxPredictor`; its
        ``model_info["runtime"]`` says which.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    torch_predictor = Predictor.from_checkpoint(checkpoint, device=device, framing=framing)
    if runtime == "torch" or torch_predictor.device.type != "cpu":
        return torch_predictor
    cache = Path(cache_dir) if cache_dir is not None else user_cache_dir()
    if runtime == "onnxruntime":
        return _onnx_predictor(torch_predictor, checkpoint, cache)
    key = f"{model_key(torch_predictor, checkpoint)}|{host_key()}"
    choices = read_choices(cache)
    entry = choices.get(key)
    if entry is None:
        entry = _choose(torch_predictor, checkpoint, cache)
        choices[key] = entry
        write_choices(cache, choices)
    if entry.get("runtime") == "onnxruntime":
        try:
            return _onnx_predictor(torch_predictor, checkpoint, cache)
        except Exception as exc:  # noqa: BLE001 - any failure of the optional runtime: torch
            log.warning("ONNX Runtime failed to load %s (%s); using torch", checkpoint, exc)
            choices[key] = {**entry, "runtime": "torch", "reason": f"failed to load: {exc}"}
            write_choices(cache, choices)
    return torch_predictor


def read_choices(cache_dir: Path) -> dict[str, dict[str, Any]]:
    """The cached choices; an unreadable file counts as empty (it is rewritten)."""
    try:
        data = json.loads((cache_dir / CACHE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_choices(cache_dir: Path, choices: dict[str, dict[str, Any]]) -> None:
    """Write the cache atomically; a cache that cannot be written only costs a self-check."""
    try:
        atomic_write_bytes(cache_dir / CACHE_NAME, json.dumps(choices, indent=1).encode())
    except OSError as exc:
        log.warning("could not write the runtime cache in %s (%s)", cache_dir, exc)


def _onnx_path(predictor: Predictor, checkpoint: str | os.PathLike[str], cache: Path) -> Path:
    digest = hashlib.sha256(model_key(predictor, checkpoint).encode()).hexdigest()[:24]
    return cache / "onnx" / f"{digest}.onnx"


def _onnx_predictor(
    torch_predictor: Predictor, checkpoint: str | os.PathLike[str], cache: Path
) -> Predictor:
    from trainer.onnx_export import OnnxPredictor, export_onnx

    path = _onnx_path(torch_predictor, checkpoint, cache)
    if not path.is_file():
        export_onnx(checkpoint, path)  # parity-checked; atomic
    # As many threads as torch has (OMP_NUM_THREADS, one per rank under torchrun), not all cores.
    onnx_predictor = OnnxPredictor(
        path, threads=torch.get_num_threads(), framing=torch_predictor.framing
    )
    onnx_predictor._finder = torch_predictor._finder
    onnx_predictor.meta["path"] = str(checkpoint)
    return onnx_predictor


def _choose(
    torch_predictor: Predictor, checkpoint: str | os.PathLike[str], cache: Path
) -> dict[str, Any]:
    """Self-check: ONNX Runtime if it loads, agrees with torch and is faster; else torch."""
    entry: dict[str, Any] = {"checked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        onnx_predictor = _onnx_predictor(torch_predictor, checkpoint, cache)
    except Exception as exc:  # noqa: BLE001 - no onnxruntime, a failed export: torch
        return {**entry, "runtime": "torch", "reason": f"ONNX Runtime unavailable: {exc}"}
    return {**entry, **self_check(torch_predictor, onnx_predictor)}


def self_check(
    torch_predictor: Predictor, other: Predictor, calls: int = SELF_CHECK_CALLS
) -> dict[str, Any]:
    """Time ``other`` against torch on the same crops (interleaved, fastest of ``calls`` after
    a warm-up) once their logits agree within :data:`AGREEMENT`.

    Returns:
        {"runtime": "torch" or "onnxruntime", "torch_s", "onnxruntime_s" (per forward pass of
        SELF_CHECK_CROPS crops), "reason"}.
    """
    side = torch_predictor.input_size
    crops = list(
        np.random.default_rng(0).integers(0, 256, (SELF_CHECK_CROPS, side, side, 3), np.uint8)
    )
    try:
        expected = torch_predictor.logits(crops).numpy()
        got = other.logits(crops).numpy()
    except Exception as exc:  # noqa: BLE001
        return {"runtime": "torch", "reason": f"ONNX Runtime failed to run: {exc}"}
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not diff <= AGREEMENT:
        return {"runtime": "torch", "reason": f"logits differ from torch by {diff:.2e}"}
    best = {"torch": float("inf"), "onnxruntime": float("inf")}
    runs: dict[str, Callable[[], Any]] = {
        "torch": lambda: torch_predictor.logits(crops),
        "onnxruntime": lambda: other.logits(crops),
    }
    for _ in range(calls):  # interleaved: a busy moment on the machine hits both alike
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    winner = min(best, key=best.__getitem__)
    return {
        "runtime": winner,
        "torch_s": round(best["torch"], 5),
        "onnxruntime_s": round(best["onnxruntime"], 5),
        "reason": f"faster ({best[winner]:.4f} s a pass) and agrees to {diff:.1e}",
    }

"""The arithmetic a training run uses: float32, or bfloat16 mixed precision where it is faster.

On CUDA, bf16 autocast is the default on GPUs with bf16 units (compute capability 8.0 on; older
ones emulate it and train in float32). On a CPU it depends on the chip: with AMX (Intel Xeon
from Sapphire Rapids on) oneDNN's bf16 convolutions run a training step about twice as fast as
float32; with AVX-512 but no bf16 instructions bf16 is emulated and several times slower, and on
AVX2 it is over ten times slower. So ``auto`` asks the CPU:

- no bf16 kernels in oneDNN (``torch.ops.mkldnn._is_mkldnn_bf16_supported``; false below
  AVX-512, e.g. on AVX2): float32, at once;
- else (AVX-512, where oneDNN has bf16 kernels but emulates them without AVX512-BF16 or AMX,
  and the CPUs that have them) a short check (:func:`measure_bf16_speedup`): forward and backward of a few 3×3
  convolutions of a UNet++ decoder's shapes on one thread, float32 and bf16 autocast
  interleaved; bf16 only if it is at least :data:`MIN_SPEEDUP` times faster. The answer is kept
  per host (CPU model, ISA, ISA caps, torch version: :func:`_check_key`) in ``precision.json``
  in the user cache dir, so it is measured once.

Mixed precision keeps the weights, their gradients and the optimizer in float32 (autocast casts
the convolutions' inputs), so checkpoints are float32 either way; only the forward pass's
arithmetic changes. ``FACEPARSE_PRECISION`` (``fp32`` or ``bf16``) overrides ``auto`` for every
run; the ``--precision`` flag overrides both.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.errors import FaceParseError

if TYPE_CHECKING:  # torch is imported where it is used: the CLI's --help stays fast
    import torch

log = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
ENV = "FACEPARSE_PRECISION"
CACHE_NAME = "precision.json"
# bf16 is chosen on a CPU only when its check step is at least this much faster: a near tie
# would buy nothing for bf16's rounding.
MIN_SPEEDUP = 1.25
_CHECK_ROUNDS = 5


class PrecisionSettingError(FaceParseError, ValueError):
    """``$FACEPARSE_PRECISION`` names no precision (a user's setting: the CLI prints one line)."""


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run computes in, and why (recorded in its checkpoints' meta and its log)."""

    precision: str  # "fp32" or "bf16"
    reason: str

    def as_meta(self) -> dict[str, str]:
        return {"precision": self.precision, "precision_reason": self.reason}


def require_precision(value: str) -> None:
    """Raise ValueError unless ``value`` is one of :data:`PRECISIONS`."""
    if value not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU, as capped by ``ONEDNN_MAX_CPU_ISA``: false
    below AVX-512 (AVX2: no check is worth making), true from AVX-512 on, where they are fast
    only with AVX512-BF16 or AMX; without those they emulate bf16 and the timed checks (training's
    and the pre-labels') find them slower (measured: this Xeon capped to AVX512_CORE answers
    true, bf16 4.1x slower)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_has_native_bf16(device: torch.device | str) -> bool:
    """Whether a CUDA device computes bf16 in its own units (compute capability 8.0 on: Ampere
    and later); older GPUs (V100, T4) emulate it, far slower than their float32. ROCm GPUs that
    run PyTorch have bf16."""
    import torch

    if torch.version.hip:
        return True
    try:
        return torch.cuda.get_device_capability(device) >= (8, 0)
    except (AssertionError, RuntimeError, ValueError):  # no such device, or no CUDA at all
        return False


def _check_key() -> str:
    """The cache key of this host's check: :func:`trainer.host_cache.host_key` without the
    thread count (the check times one thread whatever a run uses, so its answer holds for
    every count), the ONNX Runtime version (training does not use it) and the bf16 flag (the
    CPU model and the ISA cap already fix it)."""
    from trainer.host_cache import host_key

    ignored = ("threads ", "onnxruntime ", "bf16 ")
    return "|".join(part for part in host_key().split("|") if not part.startswith(ignored))


# The check's own process: ``python -m trainer.precision`` (see :func:`measure_bf16_speedup`).
_CHECK_COMMAND: list[str] = [sys.executable, "-m", "trainer.precision"]
_CHECK_TIMEOUT_S = 300


class PrecisionCheckFailed(RuntimeError):
    """The bf16 check's process failed or printed no timing."""


def measure_bf16_speedup(rounds: int = _CHECK_ROUNDS) -> dict[str, float]:
    """Float32 against bf16 autocast on this CPU: forward and backward of two 3×3 convolutions
    with BatchNorm and ReLU (64 channels at 64², a batch of 4, channels-last: a UNet++ decoder
    block of the ``lite`` preset), the two interleaved ``rounds`` times after a warm-up; the
    fastest of each. About a second where bf16 is native, plus a process start.

    Timed on one thread (the kernels' own speed, which is what differs between float32 and bf16;
    two OpenMP threads on a busy machine wait for each other and made the ratio a coin toss:
    0.43x at load 4 where the quiet machine gives 2.2x), in a process of its own: torch's thread
    count is process-wide, and a thread of the caller (the app's pre-label worker) whose first
    torch call fell in the check would have kept one thread for good.

    Raises:
        PrecisionCheckFailed: the process failed, timed out or printed no timing.
    """
    import subprocess

    package_root = str(Path(__file__).resolve().parents[1])  # where ``trainer`` is importable
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": path}
    try:
        done = subprocess.run(
            [*_CHECK_COMMAND, str(rounds)], capture_output=True, text=True, env=env,
            timeout=_CHECK_TIMEOUT_S,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PrecisionCheckFailed(str(exc)) from None
    lines = done.stdout.strip().splitlines()
    try:
        if done.returncode != 0 or not lines:
            raise ValueError(f"exit status {done.returncode}: {done.stderr.strip()[-300:]}")
        timing = json.loads(lines[-1])
        if not (isinstance(timing, dict) and float(timing["speedup"]) > 0):
            raise ValueError(f"no timing in {lines[-1]!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise PrecisionCheckFailed(str(exc)) from None
    return timing


def _time_block(rounds: int) -> dict[str, float]:
    import torch

    block = torch.nn.Sequential(
        torch.nn.Conv2d(64, 64, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(64),
        torch.nn.ReLU(),
        torch.nn.Conv2d(64, 64, 3, padding=1, bias=False),
    ).to(memory_format=torch.channels_last)
    x = torch.randn(4, 64, 64, 64).contiguous(memory_format=torch.channels_last)

    def step(bf16: bool) -> float:
        block.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = block(x)
        out.float().square().mean().backward()
        return time.perf_counter() - t0

    step(False), step(True)  # warm-up: oneDNN builds its kernels on the first call
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for bf16 in (False, True):
            times[bf16].append(step(bf16))
    fp32, bf16 = min(times[False]), min(times[True])
    return {"fp32_s": round(fp32, 5), "bf16_s": round(bf16, 5), "speedup": round(fp32 / bf16, 3)}


def _cpu_choice() -> PrecisionChoice:
    from trainer.host_cache import read_choices, update_choices, user_cache_dir

    if not cpu_has_native_bf16():
        return PrecisionChoice("fp32", "this CPU has no native bf16 (AVX512-BF16 or AMX)")
    cache, host = user_cache_dir(), _check_key()
    entry = read_choices(cache, CACHE_NAME).get(host)
    if not (isinstance(entry, dict) and isinstance(entry.get("speedup"), (int, float))):
        try:
            timing = measure_bf16_speedup()
        except PrecisionCheckFailed as exc:  # not kept: the next run checks again
            log.warning("the bf16 check failed (%s); training in float32", exc)
            return PrecisionChoice("fp32", f"the bf16 check failed ({exc})")
        entry = {**timing, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        # Merged into the file as it is now: another process may have added its own entry while
        # this one measured. A cache that cannot be written: measure again next time.
        update_choices(cache, {host: entry}, CACHE_NAME)
    speedup = float(entry["speedup"])
    if speedup >= MIN_SPEEDUP:
        return PrecisionChoice("bf16", f"bf16 measured {speedup:.2f}x float32 on this CPU")
    return PrecisionChoice(
        "fp32", f"bf16 measured {speedup:.2f}x float32 on this CPU (below {MIN_SPEEDUP}x)"
    )


def choose_precision(requested: str, device: torch.device | str) -> PrecisionChoice:
    """Resolve a run's ``precision`` ("auto", "fp32" or "bf16") for ``device``.

    ``auto`` takes ``$FACEPARSE_PRECISION`` when set, then bf16 on a GPU with bf16 units
    (float32 on older ones), float32 on MPS and, on a CPU, bf16 only where this host's check
    says it is faster (measured once, cached).

    Raises:
        ValueError: an unknown ``requested`` precision.
        PrecisionSettingError: an unknown one in ``$FACEPARSE_PRECISION`` (a ValueError too).
    """
    import torch

    require_precision(requested)
    if requested != "auto":
        return PrecisionChoice(requested, "asked for")
    env = os.environ.get(ENV, "").strip().lower()
    if env:
        if env not in PRECISIONS:
            raise PrecisionSettingError(
                f"{ENV}={os.environ[ENV]!r}: use one of {', '.join(PRECISIONS)}, or unset it"
            )
        if env != "auto":
            return PrecisionChoice(env, f"{ENV}={env}")
    device = torch.device(device)
    if device.type == "cuda":
        if cuda_has_native_bf16(device):
            return PrecisionChoice("bf16", "bf16 autocast on CUDA")
        return PrecisionChoice("fp32", "this GPU has no native bf16 (compute capability < 8.0)")
    if device.type != "cpu":
        return PrecisionChoice("fp32", f"float32 on {device.type}")
    return _cpu_choice()


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a resolved precision ("fp32": none)."""
    import torch

    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _check_main(argv: list[str]) -> int:
    """``python -m trainer.precision [ROUNDS]``: the check, one JSON line on stdout."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    timing = _time_block(int(argv[0]) if argv else _CHECK_ROUNDS)
    print(json.dumps({**timing, "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(_check_main(sys.argv[1:]))

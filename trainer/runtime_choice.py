"""The pre-label runtime, chosen per model and host: torch channels_last (float32, or bf16 where
the CPU has it natively) or ONNX Runtime.

Which one is faster depends on the CPU (AVX-512 or AVX2 only; AVX512-BF16 or AMX for bf16), the
preset and the versions installed, so none is a fixed default. bf16 is a candidate only where
oneDNN runs it natively (elsewhere it is many times slower) and ``$FACEPARSE_PRECISION`` is not
``fp32`` (:func:`~trainer.host_cache.bf16_prelabels_unavailable`, part of the host key); it must be :data:`BF16_MIN_SPEEDUP` times as fast as the faster float32 path and give
the float32 class on :data:`LABEL_AGREEMENT` of the check crops' pixels (its logits differ by far
more than 1e-3, so the label is what is compared). Two answers are kept in a small JSON file in the user
cache dir (:func:`user_cache_dir`), both for this host (CPU model, ISA, torch and ONNX Runtime
versions, threads: :func:`host_key`):

- *speed*, per architecture (:func:`arch_key`: encoder, decoder widths, input size, classes;
  what fixes the compute graph): which runtime is faster, from a few interleaved calls of both
  on the same crops (ONNX Runtime must win by :data:`MARGIN`; a near tie keeps torch). Every
  fine-tuned version of a model shares it.
- *agreement*, per model (:func:`model_key`: the checksum of its tensors): whether ONNX
  Runtime's logits match torch's within :data:`AGREEMENT` (bf16: its labels, within
  :data:`LABEL_AGREEMENT`) for these weights.

So the first model of an architecture on a CPU is exported to ONNX (parity-checked), checked
and timed; a fine-tuned version of it is only exported and checked (:func:`choose_runtime`), and
not even that where torch is the faster. A runtime that fails to load or to agree with torch is
never used: the model falls back to torch and the cache says why. Entries written before the
speed answer was shared (one per model, with its timing) are read as they are.

``onnxruntime`` stays optional: without it every model runs in torch. ``python -m
trainer.runtime_choice CHECKPOINT`` makes the choice in a process of its own (the app runs it
there, at low priority, so pre-labels never wait for it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.checkpoint import CHECKSUM_KEY
from trainer.host_cache import (  # noqa: F401 - also this module's names, as they always were
    CACHE_ENV,
    CACHE_NAME,
    bf16_prelabels_unavailable,
    host_key,
    read_choices,
    update_choices,
    user_cache_dir,
    write_choices,
)
from trainer.predict import DEFAULT_FRAMING, Predictor

log = logging.getLogger(__name__)

RUNTIMES: tuple[str, ...] = ("auto", "torch", "torch-bf16", "onnxruntime")
# Largest logit difference the self-check accepts between the runtimes (export_onnx's own check
# is 1e-4 against eager NCHW; channels_last sums in another order).
AGREEMENT = 1e-3
# ONNX Runtime is chosen only when at least this much faster than torch: a near tie flips between
# runs on a busy machine, and ONNX Runtime costs an export of every new version of a model.
MARGIN = 0.05
# bf16 pre-labels are chosen only when at least this many times as fast as the faster float32
# path (as for training: :data:`trainer.precision.MIN_SPEEDUP`) ...
BF16_MIN_SPEEDUP = 1.25
# ... and when they give float32's class to at least this share of the check crops' pixels
# (the starter parser: 0.998 on the random crops; mean F1 on the validation faces within 0.01).
LABEL_AGREEMENT = 0.99
SELF_CHECK_CALLS = 3
SELF_CHECK_CROPS = 2  # one face: its own crop and its context crop, one forward pass
KEEP_EXPORTS = 8  # exported graphs kept in the cache, the most recently used


def model_key(predictor: Predictor, checkpoint: str | os.PathLike[str]) -> str:
    """The model's identity: the checksum of its tensors (else the file's size and time) and
    its input size."""
    ident = predictor.meta.get(CHECKSUM_KEY)
    if not ident:
        stat = Path(checkpoint).stat()
        ident = f"{Path(checkpoint).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return f"{ident}@{predictor.input_size}"


def arch_key(predictor: Predictor) -> str:
    """What fixes the compute graph, and so which runtime is faster: the encoder, its depth, the
    decoder widths, the input size and the classes. Not the weights (a fine-tuned version runs
    the same graph), the preset's name, the normalisation or the framing (the timed pass is the
    network on face crops, whatever framed them)."""
    c = predictor.model.config
    decoder = "-".join(str(int(w)) for w in c.decoder_channels)
    return (
        f"{c.encoder_name} depth {c.encoder_depth} decoder {decoder} "
        f"{int(c.input_size)}px {int(c.num_classes)} classes"
    )


def speed_key(predictor: Predictor) -> str:
    """The cache key of the speed answer for the predictor's architecture on this host."""
    return f"speed {arch_key(predictor)}|{host_key()}"


def choice_key(predictor: Predictor, checkpoint: str | os.PathLike[str]) -> str:
    """The cache key of one model's answer on this host (the format of the first cache)."""
    return f"{model_key(predictor, checkpoint)}|{host_key()}"


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
        runtime: "auto" (the self-checked choice, cached: :func:`choose_runtime`), "torch",
            "torch-bf16" (bf16 autocast, wherever asked) or "onnxruntime" (exported and run in
            ONNX Runtime; its errors are raised).
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
    if runtime == "torch-bf16":
        return torch_predictor.in_precision("bf16")
    cache = Path(cache_dir) if cache_dir is not None else user_cache_dir()
    if runtime == "onnxruntime":
        return onnx_predictor(torch_predictor, checkpoint, cache)
    entry = choose_runtime(torch_predictor, checkpoint, cache)
    if entry.get("runtime") == "torch-bf16":
        return torch_predictor.in_precision("bf16")
    if entry.get("runtime") == "onnxruntime":
        try:
            return onnx_predictor(torch_predictor, checkpoint, cache)
        except Exception as exc:  # noqa: BLE001 - any failure of the optional runtime: torch
            log.warning("ONNX Runtime failed to load %s (%s); using torch", checkpoint, exc)
            record_failure(torch_predictor, checkpoint, cache, f"failed to load: {exc}")
    return torch_predictor


def _with_margin(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """A cached answer as the :data:`MARGIN` reads it: an ONNX Runtime win by less (written
    before the margin existed) is torch."""
    if entry is None or entry.get("runtime") != "onnxruntime":
        return entry
    torch_s, ort_s = entry.get("torch_s"), entry.get("onnxruntime_s")
    if torch_s is None or ort_s is None or ort_s <= torch_s * (1 - MARGIN):
        return entry
    return {
        **entry,
        "runtime": "torch",
        "reason": f"ONNX Runtime faster by less than the {MARGIN:.0%} margin "
        f"({ort_s:.4f} against {torch_s:.4f} s a pass, cached)",
    }


def known_choice(
    torch_predictor: Predictor, checkpoint: str | os.PathLike[str], cache: Path
) -> dict[str, Any] | None:
    """The runtime for this model here if the cache answers it without any work: the model's
    own entry, or the architecture's speed answer when that is torch (no export, no check).
    None: :func:`choose_runtime` has work to do."""
    choices = read_choices(cache)
    entry = _with_margin(choices.get(choice_key(torch_predictor, checkpoint)))
    if entry is not None:
        return entry
    speed = _with_margin(choices.get(speed_key(torch_predictor)))
    if speed is not None and speed.get("runtime") == "torch":
        return {
            **speed,
            "reason": f"torch is the faster for this architecture here ({speed.get('reason', '')})",
        }
    return None


def choose_runtime(
    torch_predictor: Predictor, checkpoint: str | os.PathLike[str], cache: Path
) -> dict[str, Any]:
    """The runtime for this model on this host, doing only the work the cache leaves.

    The model's own answer, else: the architecture's speed answer says torch -> torch; says ONNX
    Runtime -> export these tensors and check their logits (no timing); says bf16 -> check these
    weights' labels (a failure: float32 torch); none yet -> export, check and time
    (:func:`self_check`), remembered for the architecture and for the model.

    Returns:
        {"runtime": "torch", "torch-bf16" or "onnxruntime", "reason", and where measured
        "torch_s", "onnxruntime_s", "torch_bf16_s" (a pass of SELF_CHECK_CROPS crops),
        "agreement" (largest logit difference), "label_agreement" (bf16: share of pixels of
        float32's class), "checked" (UTC)}.
    """
    entry = known_choice(torch_predictor, checkpoint, cache)
    if entry is not None:
        return entry
    speed = _with_margin(read_choices(cache).get(speed_key(torch_predictor)))
    entry = {"checked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    bf16_why = bf16_prelabels_unavailable()
    other, ort_why = None, None
    if speed is None or speed.get("runtime") == "onnxruntime":
        try:
            other = onnx_predictor(torch_predictor, checkpoint, cache)
        except Exception as exc:  # noqa: BLE001 - no onnxruntime, a failed export: torch
            ort_why = f"ONNX Runtime unavailable: {exc}"
    if speed is None:
        if other is None and bf16_why is not None:
            entry.update(runtime="torch", reason=ort_why)
            update_choices(cache, {choice_key(torch_predictor, checkpoint): entry})
            return entry
        entry.update(self_check(torch_predictor, other, bf16=bf16_why is None))
        if ort_why:
            entry["reason"] += f"; {ort_why}"
        found = {choice_key(torch_predictor, checkpoint): entry}
        if "torch_s" in entry:  # timed (a candidate agreed): the answer for the architecture
            found[speed_key(torch_predictor)] = {k: entry[k] for k in _SPEED_KEYS if k in entry}
        update_choices(cache, found)
        return entry
    # The architecture's answer is known (onnxruntime or torch-bf16): check these weights only.
    timing = {k: speed[k] for k in _TIMING_KEYS if k in speed}
    if speed.get("runtime") == "torch-bf16":
        share, failure = label_agreement(torch_predictor, torch_predictor.in_precision("bf16"))
        found = dict(runtime="torch-bf16", label_agreement=share)
    elif other is None:
        failure, found = ort_why, {}
    else:
        diff, failure = agreement(torch_predictor, other)
        found = dict(runtime="onnxruntime", agreement=diff)
    if failure:
        entry.update(runtime="torch", reason=failure)
    else:
        entry.update(
            **found,
            **timing,
            reason=f"faster for this architecture here ({speed.get('reason', '')}); these "
            "weights agree",
        )
    update_choices(cache, {choice_key(torch_predictor, checkpoint): entry})
    return entry


_TIMING_KEYS = ("torch_s", "onnxruntime_s", "torch_bf16_s")
_SPEED_KEYS = ("checked", "runtime", *_TIMING_KEYS, "reason")


def record_failure(
    torch_predictor: Predictor, checkpoint: str | os.PathLike[str], cache: Path, reason: str
) -> None:
    """Remember that ONNX Runtime failed for this model here: it runs in torch from now on."""
    key = choice_key(torch_predictor, checkpoint)
    entry = read_choices(cache).get(key, {})
    update_choices(cache, {key: {**entry, "runtime": "torch", "reason": reason}})


def onnx_path(predictor: Predictor, checkpoint: str | os.PathLike[str], cache: Path) -> Path:
    """Where the model's exported graph lives in the cache (named by its tensors)."""
    digest = hashlib.sha256(model_key(predictor, checkpoint).encode()).hexdigest()[:24]
    return cache / "onnx" / f"{digest}.onnx"


def ensure_export(predictor: Predictor, checkpoint: str | os.PathLike[str], cache: Path) -> Path:
    """The model's graph in the cache, exported (parity-checked, atomic) if it is not there yet.
    Only the :data:`KEEP_EXPORTS` most recently used graphs are kept: the app publishes a
    fine-tuned version after every training run."""
    path = onnx_path(predictor, checkpoint, cache)
    if path.is_file():
        try:
            os.utime(path)  # recently used: the last to be pruned
        except OSError:
            pass
        return path
    from trainer.onnx_export import export_onnx

    export_onnx(checkpoint, path)
    _prune_exports(path.parent, keep=path)
    return path


def _prune_exports(folder: Path, keep: Path) -> None:
    def used(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    graphs = sorted((p for p in folder.glob("*.onnx") if p != keep), key=used, reverse=True)
    for old in graphs[KEEP_EXPORTS - 1 :]:
        try:
            old.unlink()
        except OSError:
            pass


def onnx_predictor(
    torch_predictor: Predictor, checkpoint: str | os.PathLike[str], cache: Path
) -> Predictor:
    """The model in ONNX Runtime (exported first if need be), framed as ``torch_predictor``
    and sharing its face finder."""
    from trainer.onnx_export import OnnxPredictor

    path = ensure_export(torch_predictor, checkpoint, cache)
    # As many threads as torch has (OMP_NUM_THREADS, one per rank under torchrun), not all cores.
    other = OnnxPredictor(path, threads=torch.get_num_threads(), framing=torch_predictor.framing)
    other._finder = torch_predictor._finder
    other.meta["path"] = str(checkpoint)
    return other


def _check_crops(side: int) -> list[np.ndarray]:
    return list(
        np.random.default_rng(0).integers(0, 256, (SELF_CHECK_CROPS, side, side, 3), np.uint8)
    )


def agreement(torch_predictor: Predictor, other: Predictor) -> tuple[float, str | None]:
    """The largest logit difference between ``other`` and torch on the self-check crops, and
    why ``other`` must not be used (None: it agrees within :data:`AGREEMENT`)."""
    crops = _check_crops(torch_predictor.input_size)
    try:
        expected = torch_predictor.logits(crops).numpy()
        got = other.logits(crops).numpy()
    except Exception as exc:  # noqa: BLE001
        return float("inf"), f"ONNX Runtime failed to run: {exc}"
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not diff <= AGREEMENT:
        return diff, f"logits differ from torch by {diff:.2e}"
    return diff, None


def label_agreement(torch_predictor: Predictor, other: Predictor) -> tuple[float, str | None]:
    """The share of the self-check crops' pixels that ``other`` (bf16) gives float32's class,
    and why it must not be used (None: at least :data:`LABEL_AGREEMENT`)."""
    crops = _check_crops(torch_predictor.input_size)
    try:
        expected = torch_predictor.logits(crops).argmax(1)
        got = other.logits(crops).argmax(1)
    except Exception as exc:  # noqa: BLE001
        return 0.0, f"bf16 failed to run: {exc}"
    share = float((got == expected).float().mean())
    if not share >= LABEL_AGREEMENT:
        return share, f"bf16 gives float32's class to only {share:.2%} of the pixels"
    return share, None


def time_runtimes(
    torch_predictor: Predictor,
    other: Predictor | None,
    calls: int = SELF_CHECK_CALLS,
    bf16: Predictor | None = None,
) -> dict[str, float]:
    """Seconds of the fastest of ``calls`` passes of torch, ``other`` (ONNX Runtime) and
    ``bf16`` (torch in bf16), those given, on the self-check crops, interleaved (a busy moment
    on the machine hits all alike), after a warm-up of each."""
    crops = _check_crops(torch_predictor.input_size)
    runs: dict[str, Callable[[], Any]] = {"torch": lambda: torch_predictor.logits(crops)}
    if other is not None:
        runs["onnxruntime"] = lambda: other.logits(crops)
    if bf16 is not None:
        runs["torch-bf16"] = lambda: bf16.logits(crops)
    for run in runs.values():
        run()
    best = {name: float("inf") for name in runs}
    for _ in range(calls):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def self_check(
    torch_predictor: Predictor,
    other: Predictor | None,
    calls: int = SELF_CHECK_CALLS,
    bf16: bool = False,
) -> dict[str, Any]:
    """Time the candidates against float32 torch (:func:`time_runtimes`): ``other`` (ONNX
    Runtime) once its logits agree (:func:`agreement`), and with ``bf16`` torch in bf16 once
    its labels agree (:func:`label_agreement`).

    Returns:
        {"runtime": "torch", "onnxruntime" or "torch-bf16", "torch_s" and the candidates'
        "onnxruntime_s", "torch_bf16_s" (per forward pass of SELF_CHECK_CROPS crops),
        "agreement", "label_agreement", "reason"}.
    """
    found: dict[str, Any] = {}
    failures: list[str] = []
    if other is not None:
        diff, failure = agreement(torch_predictor, other)
        failures += [failure] if failure else []
        found.update({} if failure else {"agreement": diff})
    low = torch_predictor.in_precision("bf16") if bf16 else None
    if low is not None:
        share, failure = label_agreement(torch_predictor, low)
        failures += [failure] if failure else []
        found.update({} if failure else {"label_agreement": share})
    if not found:
        return {"runtime": "torch", "reason": "; ".join(failures) or "no other runtime here"}
    best = time_runtimes(
        torch_predictor,
        other if "agreement" in found else None,
        calls,
        bf16=low if "label_agreement" in found else None,
    )
    ort_s = best.get("onnxruntime") if "agreement" in found else None
    bf16_s = best.get("torch-bf16") if "label_agreement" in found else None
    if ort_s is not None and ort_s <= best["torch"] * (1 - MARGIN):
        winner, reason = "onnxruntime", f"faster ({ort_s:.4f} s a pass)"
    elif ort_s is not None and ort_s < best["torch"]:
        winner = "torch"
        reason = (
            f"ONNX Runtime faster by less than the {MARGIN:.0%} margin "
            f"({ort_s:.4f} against {best['torch']:.4f} s a pass)"
        )
    else:
        winner, reason = "torch", f"faster ({best['torch']:.4f} s a pass)"
    if bf16_s is not None:
        fp32_s = min(best["torch"], ort_s if winner == "onnxruntime" else best["torch"])
        if bf16_s * BF16_MIN_SPEEDUP <= fp32_s:
            winner = "torch-bf16"
            reason = f"bf16 {fp32_s / bf16_s:.2f}x the faster float32 path ({bf16_s:.4f} s a pass)"
        else:
            reason += f"; bf16 {fp32_s / bf16_s:.2f}x (below {BF16_MIN_SPEEDUP}x)"
    timing = {"torch_s": best["torch"], "onnxruntime_s": ort_s, "torch_bf16_s": bf16_s}
    answer = {"runtime": winner, **{k: round(v, 5) for k, v in timing.items() if v is not None}}
    if "agreement" in found:
        reason += f"; ONNX Runtime agrees to {found['agreement']:.1e}"
    if "label_agreement" in found:
        reason += f"; bf16 labels agree on {found['label_agreement']:.2%}"
    return {**answer, **found, "reason": "; ".join([reason, *failures])}


def watch_parent(pid: int, poll_s: float = 0.5) -> None:
    """End this process (exit code 3) as soon as its parent ``pid`` is gone, from a daemon
    thread: the app's background check must not outlive an app killed with SIGKILL. POSIX only
    (an orphan is adopted by another process, so its parent id changes); elsewhere a no-op."""
    if os.name != "posix":
        return

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(poll_s)
        print(
            f"runtime check: process {pid}, which started it, is gone; stopping",
            file=sys.stderr,
            flush=True,
        )
        os._exit(3)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Make the choice for one checkpoint and print it as one JSON line (for the app, which
    runs this in a process of its own so that quitting never waits for an export)."""
    parser = argparse.ArgumentParser(
        prog="python -m trainer.runtime_choice", description=main.__doc__
    )
    parser.add_argument("checkpoint")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (the caller's)")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's priority")
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="end when this process (the app) is gone"
    )
    args = parser.parse_args(argv)
    if args.parent_pid:
        watch_parent(args.parent_pid)
    if args.nice and hasattr(os, "nice"):
        os.nice(args.nice)
    if args.threads:
        torch.set_num_threads(args.threads)  # part of the host key: the caller's answer
    cache = Path(args.cache_dir) if args.cache_dir else user_cache_dir()
    torch_predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    entry = choose_runtime(torch_predictor, args.checkpoint, cache)
    if entry.get("runtime") == "onnxruntime":
        ensure_export(torch_predictor, args.checkpoint, cache)  # pruned since it was checked
    print(json.dumps(entry), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

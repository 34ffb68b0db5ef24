"""The user cache of per-host answers (which pre-label runtime, which training precision): where
it lives, what identifies this host, and how its small JSON files are read and merged.

Used by :mod:`trainer.runtime_choice` (``runtimes.json``) and :mod:`trainer.precision`
(``precision.json``); it imports neither, so each can use it without the other.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from trainer.data.imageio import atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_NAME = "runtimes.json"
CACHE_ENV = "FACEPARSE_CACHE_DIR"


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


def bf16_prelabels_unavailable() -> str | None:
    """Why bf16 is not a pre-label candidate here (None: it is): ``$FACEPARSE_PRECISION=fp32``,
    or a CPU on which oneDNN has no native bf16 (many times slower there)."""
    from trainer.precision import ENV, cpu_has_native_bf16

    if os.environ.get(ENV, "").strip().lower() == "fp32":
        return f"{ENV}=fp32"
    if not cpu_has_native_bf16():
        return "this CPU has no native bf16"
    return None


def host_key() -> str:
    """What makes one CPU runtime or precision faster than another on this machine."""
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
            # Whether bf16 pre-labels are a candidate (answers from before they were, or
            # made while they were not, never timed them).
            f"bf16 {'no' if bf16_prelabels_unavailable() else 'yes'}",
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


def read_choices(cache_dir: Path, name: str = CACHE_NAME) -> dict[str, dict[str, Any]]:
    """The cached choices in ``name`` (``runtimes.json``; ``precision.json`` for
    :mod:`trainer.precision`); an unreadable file counts as empty (it is rewritten)."""
    path = cache_dir / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring the unreadable %s cache %s (%s)", Path(name).stem, path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def write_choices(
    cache_dir: Path, choices: dict[str, dict[str, Any]], name: str = CACHE_NAME
) -> None:
    """Write the cache atomically; a cache that cannot be written only costs a self-check."""
    try:
        atomic_write_bytes(cache_dir / name, json.dumps(choices, indent=1).encode())
    except OSError as exc:
        log.warning("could not write the %s cache in %s (%s)", Path(name).stem, cache_dir, exc)


def update_choices(
    cache_dir: Path, entries: dict[str, dict[str, Any]], name: str = CACHE_NAME
) -> None:
    """Add entries to the cache as it is now on disk (another process may have added its own
    since this one read it)."""
    write_choices(cache_dir, {**read_choices(cache_dir, name), **entries}, name)

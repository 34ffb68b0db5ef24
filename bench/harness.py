"""What every benchmark shares: where things go, done markers, JSON lines, the results manifest,
the machine record, the command line and the base argument parser.

Where things go:
    bench/out/<experiment>/       caches, checkpoints, scratch (git-ignored)
    bench/results/<experiment>/   results that are committed; ``MANIFEST.json`` beside them names,
                                  for each file, the command that wrote it, the date and the
                                  machine (CPU ISA included)
    ../shared/data/               the real faces (beside the project root; never copied here)

Every JSON-lines record has one envelope: ``{"experiment", "run", "time", "machine", "command",
...payload}`` (:func:`jsonl_record`). Records written before the envelope carry ``name``,
``date`` and a machine string instead; :func:`read_jsonl` gives them ``run`` and ``time``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "results"
MANIFEST_NAME = "MANIFEST.json"
DONE_NAME = "done.json"
ENVELOPE = ("experiment", "run", "time", "machine", "command")
# Environment variables that change what a command measures, written in front of it.
COMMAND_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "STUDY_SECONDS",
    # CPU ISA caps (a host without AVX-512 emulated on one with it)
    "ONEDNN_MAX_CPU_ISA",
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
)

log = logging.getLogger("bench")


# ---------------------------------------------------------------------------------------------
# Paths


def out_dir(experiment: str) -> Path:
    """``bench/out/<experiment>``: an experiment's caches and scratch (git-ignored)."""
    return OUT / experiment


def results_dir(experiment: str) -> Path:
    """``bench/results/<experiment>``: an experiment's committed results and their manifest."""
    return RESULTS / experiment


def experiment_of(path: str | os.PathLike[str], default: str) -> str:
    """The experiment a results file belongs to: its folder's name when that folder is
    ``bench/results/<experiment>``, else ``default`` (e.g. a file written to a device's $OUT)."""
    folder = Path(path).resolve().parent
    return folder.name if folder.parent == RESULTS.resolve() else default


def require(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` when it exists; otherwise exit with what it is and where it should come from.

    Args:
        path: a file or folder the command needs.
        what: what it is, for the message (e.g. "the study's data stage").
    """
    p = Path(path)
    if p.exists():
        return p
    resolved = p.resolve()
    if resolved == SHARED or SHARED in resolved.parents:
        hint = (
            f"the benchmarks read real faces from {SHARED} (../shared/data beside the project "
            "root); it is not there on this machine: put the shared data there or pass the "
            "folder's path"
        )
    else:
        hint = "make it first (the script's --help says which command does) or pass its path"
    raise SystemExit(f"{p}: {what} not found; {hint}")


# ---------------------------------------------------------------------------------------------
# Done markers: a stage's result and the settings it ran with


def done_path(stage_dir: Path) -> Path:
    return Path(stage_dir) / DONE_NAME


def read_done(stage_dir: Path) -> dict[str, Any] | None:
    """The stage's done marker, whatever settings it ran with (None if it has not finished)."""
    path = done_path(stage_dir)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def load_done(stage_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The stage's stored result if it finished with these settings, else None."""
    done = read_done(stage_dir)
    if done is None:
        return None
    if done.get("settings") != json.loads(json.dumps(settings)):
        log.info("%s: settings changed since it ran; running it again", Path(stage_dir).name)
        return None
    return done


def mark_done(stage_dir: Path, settings: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Store ``result`` with ``settings`` as the stage's done marker; returns the marker."""
    record = {"settings": settings, **result}
    write_bytes(done_path(stage_dir), json.dumps(record, indent=1).encode())
    return record


# ---------------------------------------------------------------------------------------------
# The machine and the command


def utc_now() -> str:
    """The time as every record writes it: ``2026-11-30 03:42 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def study_precision(device: str, asked: str = "study") -> str:
    """A bench run's ``Runtime.precision``: ``study`` (the default) is how every recorded study
    trained, float32 on a CPU and bf16 autocast on CUDA, from before the trainer took bf16 on
    CPUs where it is faster; ``auto``, ``fp32`` and ``bf16`` are the trainer's own."""
    if asked != "study":
        return asked
    from trainer.engine import select_device

    return "fp32" if select_device(device).type == "cpu" else "auto"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What a measurement ran on: CPU model and ISA, cores, torch and its threads, the GPU, load.

    ``isa`` is ``torch.backends.cpu.get_cpu_capability()`` (the kernels torch dispatches to,
    e.g. AVX512 or AVX2) and ``avx512f`` whether /proc/cpuinfo lists that flag: speed figures
    from machines with and without AVX-512 are not comparable. ``bf16`` names the CPU's bf16
    instructions (``amx_bf16``, ``avx512_bf16``) and ``onednn_bf16`` whether oneDNN uses them as
    capped: they decide whether training runs in bf16 (``trainer.precision``).
    """
    import torch

    from trainer.precision import cpu_has_native_bf16

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    flags = cpu_flags()
    return {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "avx512f": "avx512f" in flags,
        "bf16": sorted(flags & {"amx_bf16", "avx512_bf16"}),
        "onednn_bf16": cpu_has_native_bf16(),
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "gpu": gpu,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def command_line(module: str | None = None, argv: Sequence[str] | None = None) -> str:
    """The command as it would be typed: ``python -m bench.<script> ARGS``, with the thread
    variables that were set (``OMP_NUM_THREADS=1 ...``) in front.

    Args:
        module: the script's module name (``__spec__.name``, e.g. ``bench.study``); default:
            the running ``__main__``'s.
        argv: its arguments; default: this process's.
    """
    if module is None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec is not None else None
    args = list(sys.argv[1:] if argv is None else argv)
    env = [f"{k}={os.environ[k]}" for k in COMMAND_ENV if k in os.environ]
    head = ["python", "-m", module] if module else ["python", sys.argv[0]]
    return shlex.join([*env, *head, *args])


def module_command(module: str, args: Sequence[str]) -> list[str]:
    """The argv that runs ``bench.<module>`` in a child process with this interpreter."""
    return [sys.executable, "-m", module, *args]


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment with the project root importable (a child started from
    another folder still finds ``bench`` and ``trainer``) and ``extra`` set."""
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""),
        **extra,
    }


# ---------------------------------------------------------------------------------------------
# Files: atomic writes, JSON lines, the manifest


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a temp file beside ``path``, fsync, then replace ``path`` with it."""
    from trainer.data.imageio import atomic_write_bytes

    atomic_write_bytes(path, data)


def write_json(
    path: str | os.PathLike[str], payload: Any, command: str | None = None, note: str | None = None
) -> Path:
    """Write ``payload`` as indented JSON (atomically) and name the file in its manifest."""
    path = Path(path)
    write_bytes(path, (json.dumps(payload, indent=1) + "\n").encode())
    record_output(path, command, note)
    return path


def jsonl_record(
    experiment: str, run: str, payload: dict[str, Any], command: str | None = None
) -> dict[str, Any]:
    """One JSON-lines record: the envelope (experiment, run name, time, machine, command) and
    then ``payload``, whose keys must not repeat the envelope's."""
    clash = sorted(set(ENVELOPE) & set(payload))
    if clash:
        raise ValueError(f"payload repeats the envelope's keys {clash}")
    return {
        "experiment": experiment,
        "run": run,
        "time": utc_now(),
        "machine": machine(),
        "command": command or command_line(),
        **payload,
    }


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append ``record`` as one line. The line goes out in one ``write`` on a file opened for
    appending, so processes appending to the same file side by side never interleave lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (none yet: empty); a line cut short is skipped.
    Records from before the envelope get ``run`` from their ``name`` and ``time`` from their
    ``date``."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "run" not in record and "name" in record:
            record["run"] = record["name"]
        if "time" not in record and "date" in record:
            record["time"] = record["date"]
        records.append(record)
    return records


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (processes side by side update one manifest; the lock is
    on the folder because the manifest itself is replaced, not rewritten, on every update)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A results folder's manifest (``{"files": {}}`` when it has none)."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return {"files": {}}
    return json.loads(path.read_text())


def record_output(
    path: str | os.PathLike[str], command: str | None = None, note: str | None = None
) -> dict[str, Any]:
    """Name ``path`` in the ``MANIFEST.json`` of its folder: the command that wrote it (default:
    this process's), the date and the machine. A file written again by the same command gets
    the new date and machine; by another command, the entry it had moves into ``earlier``.
    Returns the file's entry."""
    path = Path(path)
    manifest_path = path.parent / MANIFEST_NAME
    entry: dict[str, Any] = {
        "command": command or command_line(),
        "date": utc_now(),
        "machine": machine(),
    }
    with _locked(path.parent):
        manifest = read_manifest(path.parent)
        files = manifest.setdefault("files", {})
        old = files.get(path.name)
        if old is not None:
            earlier = old.pop("earlier", [])
            if old.get("command") != entry["command"]:
                earlier = [old, *earlier]
            elif note is None and "note" in old:
                entry["note"] = old["note"]
            if earlier:
                entry["earlier"] = earlier
        if note is not None:
            entry["note"] = note
        files[path.name] = entry
        manifest["files"] = dict(sorted(files.items()))
        write_bytes(manifest_path, (json.dumps(manifest, indent=1) + "\n").encode())
    return entry


# ---------------------------------------------------------------------------------------------
# The base argument parser


def argument_parser(doc: str | None, **common: Any) -> argparse.ArgumentParser:
    """An argument parser whose ``--help`` shows the script's docstring (first line as the
    description, the rest, usage included, below the options), with :func:`add_common`'s
    options."""
    text = (doc or "").strip()
    head, _, rest = text.partition("\n")
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    parser = argparse.ArgumentParser(
        prog=f"python -m {spec.name}"
        if spec is not None and spec.name.startswith("bench.")
        else None,
        description=head,
        epilog=rest.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser, **common)
    return parser


def add_common(
    parser: argparse.ArgumentParser,
    experiment: str | None = None,
    *,
    out: str | os.PathLike[str] | bool | None = None,
    results: str | os.PathLike[str] | None = None,
    device: str | None = None,
    threads: bool = False,
    seed: int | None = None,
    seed_help: str = "seed",
    quick: str | None = None,
) -> argparse.ArgumentParser:
    """The options every script spells the same way, each added only when asked for.

    Args:
        experiment: names the default folders: ``bench/out/<experiment>`` and
            ``bench/results/<experiment>``.
        out: ``--out-dir`` (as everywhere in the project; ``--out`` is kept as an alias), the
            working folder (caches, checkpoints; git-ignored): True for
            ``bench/out/<experiment>``, a path for another default, None for none; a script that
            computes its default later passes "" (the option then defaults to None).
        results: ``--results``, the committed result file (or stem), relative to
            ``bench/results/<experiment>``; "" for a default the script computes.
        device: ``--device`` with this default (auto: a GPU when present).
        threads: ``--threads``, torch's intra-op threads (see :func:`set_threads`).
        seed: ``--seed`` with this default; seed_help says what it seeds.
        quick: ``--quick`` with this help text (tiny budgets that check the pipeline).
    """
    if out is not None and out is not False:
        if out is True:
            if experiment is None:
                raise ValueError("out=True needs an experiment")
            out = out_dir(experiment)
        parser.add_argument(
            "--out-dir",
            "--out",
            dest="out",
            default=str(out) if out != "" else None,
            help="working folder: caches, checkpoints, scratch (git-ignored; default %(default)s)"
            if out != ""
            else "working folder: caches, checkpoints, scratch (git-ignored)",
        )
    if results is not None:
        if experiment is None:
            raise ValueError("results needs an experiment")
        default = str(results_dir(experiment) / results) if results != "" else None
        parser.add_argument(
            "--results",
            default=default,
            help="result file, committed and named in its folder's MANIFEST.json"
            + (" (default %(default)s)" if default else ""),
        )
    if device is not None:
        parser.add_argument(
            "--device", default=device, help="auto (a GPU when present), cpu, cuda or cuda:N"
        )
    if threads:
        parser.add_argument(
            "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
        )
    if seed is not None:
        parser.add_argument(
            "--seed", type=int, default=seed, help=f"{seed_help} (default %(default)s)"
        )
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    return parser


def set_threads(threads: int | None) -> None:
    """Give torch ``threads`` intra-op threads (None or 0: leave torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def int_range(text: str) -> list[int]:
    """'0-39', '0,3,7' or '5' -> the integers they name (subset seeds)."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    return seeds


def setup_logging() -> None:
    """INFO to stderr with the time and the logger's name, as every long benchmark logs."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )

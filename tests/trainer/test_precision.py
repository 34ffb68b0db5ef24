"""A training run's arithmetic: float32, or bf16 mixed precision where this CPU runs it faster
(issue 34). The choice is measured once per host and kept; the run records what it used."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import trainer.precision as precision
from tests.conftest import ROOT, synthetic_face
from trainer.checkpoint import load_checkpoint, read_metadata
from trainer.configs import FinetuneConfig, FinetuneRuntime
from trainer.data.sample import Sample
from trainer.finetune import finetune_on_samples
from trainer.precision import CACHE_NAME, ENV, choose_precision

pytestmark = pytest.mark.uses_precision_check


def _host(monkeypatch: pytest.MonkeyPatch, native: bool, speedup: float | None) -> list[int]:
    """This CPU as a test wants it: native bf16 or not, and what its check would measure
    (None: the check must not run). Returns a list that counts the checks run."""
    calls: list[int] = []

    def measure() -> dict[str, float]:
        assert speedup is not None, "the check ran where it should not"
        calls.append(1)
        return {"fp32_s": 0.02, "bf16_s": 0.02 / speedup, "speedup": speedup}

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(precision, "measure_bf16_speedup", measure)
    return calls


def _cache() -> Path:
    return Path(os.environ["FACEPARSE_CACHE_DIR"]) / CACHE_NAME


def test_asked_for_precision_is_taken_as_it_is_and_a_typo_is_refused(monkeypatch) -> None:
    _host(monkeypatch, native=False, speedup=None)
    assert choose_precision("bf16", "cpu").precision == "bf16"  # the user knows best
    assert choose_precision("fp32", "cpu").precision == "fp32"
    with pytest.raises(ValueError, match="auto, fp32, bf16.*'half'"):
        choose_precision("half", "cpu")
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        FinetuneRuntime(out_dir="x", precision="fp16")


def test_a_cpu_without_native_bf16_trains_in_float32_without_a_check(monkeypatch) -> None:
    _host(monkeypatch, native=False, speedup=None)
    choice = choose_precision("auto", "cpu")
    assert choice.precision == "fp32" and "no native bf16" in choice.reason
    assert not _cache().exists()


def test_bf16_where_the_check_measures_it_faster_and_the_answer_is_kept(monkeypatch) -> None:
    calls = _host(monkeypatch, native=True, speedup=2.1)
    choice = choose_precision("auto", "cpu")
    assert choice.precision == "bf16" and "2.10x" in choice.reason
    assert choose_precision("auto", torch.device("cpu")).precision == "bf16"
    assert len(calls) == 1  # measured once; the second run read the kept answer
    kept = json.loads(_cache().read_text())
    assert [entry["speedup"] for entry in kept.values()] == [2.1]


def test_float32_where_bf16_is_not_faster_enough(monkeypatch) -> None:
    _host(monkeypatch, native=True, speedup=1.1)  # a Cooper Lake-like AVX512-BF16 host
    choice = choose_precision("auto", "cpu")
    assert choice.precision == "fp32" and "1.10x" in choice.reason and "below" in choice.reason


def test_a_damaged_cache_is_measured_again_and_rewritten(monkeypatch, caplog) -> None:
    _cache().parent.mkdir(parents=True, exist_ok=True)
    _cache().write_bytes(b"\x00\xff not json")
    calls = _host(monkeypatch, native=True, speedup=1.8)
    assert choose_precision("auto", "cpu").precision == "bf16"
    assert len(calls) == 1 and "unreadable precision cache" in caplog.text
    assert len(json.loads(_cache().read_text())) == 1


def test_the_environment_overrides_auto_but_not_an_explicit_flag(monkeypatch) -> None:
    _host(monkeypatch, native=True, speedup=None)
    monkeypatch.setenv(ENV, "fp32")
    assert choose_precision("auto", "cpu").precision == "fp32"
    assert choose_precision("bf16", "cpu").precision == "bf16"
    monkeypatch.setenv(ENV, "fp16")
    with pytest.raises(ValueError, match=f"{ENV}='fp16'"):
        choose_precision("auto", "cpu")


def test_cuda_takes_bf16_and_other_devices_float32_without_a_check(monkeypatch) -> None:
    _host(monkeypatch, native=True, speedup=None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # an H100
    assert choose_precision("auto", "cuda:0").precision == "bf16"
    assert choose_precision("auto", "mps").precision == "fp32"


def test_the_check_runs_apart_and_leaves_this_process_as_it_was(monkeypatch) -> None:
    """The check is timed on one thread, and torch's thread count is process-wide: a thread of
    the app (a pre-label worker) whose first torch call fell in the check's second kept one
    thread for good. So the check runs in a process of its own and never sets this one's."""
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    threads = torch.get_num_threads()
    set_to: list[int] = []
    real_set = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: set_to.append(n) or real_set(n))
    timing = precision.measure_bf16_speedup(rounds=1)
    assert torch.equal(torch.rand(4), expected)
    assert set_to == [] and torch.get_num_threads() == threads
    assert timing["fp32_s"] > 0 and timing["bf16_s"] > 0 and timing["threads"] == 1
    assert timing["speedup"] == pytest.approx(timing["fp32_s"] / timing["bf16_s"], rel=0.01)


def test_a_check_that_fails_trains_in_float32_and_is_not_kept(monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "_CHECK_COMMAND", [sys.executable, "-c", "import sys; sys.exit(3)"])
    choice = choose_precision("auto", "cpu")
    assert choice.precision == "fp32" and "check failed" in choice.reason
    assert not _cache().exists()  # measured again next time


def _faces(n: int) -> list[Sample]:
    return [Sample(*synthetic_face(64, 70 + i), f"f{i}", Path(f"f{i}.png"), None) for i in range(n)]


def _finetune(out: Path, prec: str) -> Path:
    config = FinetuneConfig.from_flat(dict(
        out_dir=str(out), preset="tiny", batch_size=2, epochs=1, max_steps=2, device="cpu",
        warmup_steps=0, progress_bar=False, precision=prec, data="unused",
    ))  # fmt: skip
    return finetune_on_samples(config, _faces(4), None).last_path


def test_a_bf16_fine_tune_trains_keeps_float32_weights_and_says_so(tmp_path, monkeypatch) -> None:
    calls = _host(monkeypatch, native=True, speedup=2.0)
    import trainer.finetune

    dtypes: list[torch.dtype] = []
    real_autocast = trainer.finetune.autocast

    def spy(device, prec):  # what the forward pass computes in, step by step
        dtypes.append(torch.bfloat16 if prec == "bf16" else torch.float32)
        return real_autocast(device, prec)

    monkeypatch.setattr(trainer.finetune, "autocast", spy)
    last = _finetune(tmp_path / "bf16", "auto")
    assert dtypes == [torch.bfloat16, torch.bfloat16]  # both steps
    meta = read_metadata(last)
    assert meta["precision"] == "bf16" and "2.00x" in meta["precision_reason"]
    assert len(calls) == 1
    ckpt = load_checkpoint(last)
    assert {t.dtype for t in ckpt.model_state.values() if t.is_floating_point()} == {torch.float32}
    assert all(torch.isfinite(t).all() for t in ckpt.model_state.values() if t.is_floating_point())
    log = [json.loads(line) for line in (tmp_path / "bf16" / "finetune_log.jsonl").read_text().split("\n") if line]
    assert log and all(r["loss"] == r["loss"] and r["loss"] > 0 for r in log if "loss" in r)
    dtypes.clear()
    fp32 = read_metadata(_finetune(tmp_path / "fp32", "fp32"))
    assert fp32["precision"] == "fp32" and fp32["precision_reason"] == "asked for"
    assert dtypes == [torch.float32, torch.float32]


def test_the_cli_takes_precision_and_names_the_choices_of_a_typo(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "trainer", "finetune", "--data", str(tmp_path), "--out-dir",
           str(tmp_path / "o"), "--precision", "half"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert "--precision" in done.stderr and "'auto', 'fp32', 'bf16'" in done.stderr


# ---------------------------------------------------------------------------------------------
# Under torchrun every rank computes alike: rank 0 chooses


def _rank(rank: int, port: int, root: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    os.environ.pop(ENV, None)
    os.environ["FACEPARSE_CACHE_DIR"] = str(Path(root) / f"cache{rank}")
    from trainer.distributed import cleanup, init_distributed
    from trainer.pretrain import _shared_precision

    speedup = 3.0 if rank == 0 else 0.5  # each rank's own check would disagree
    precision.cpu_has_native_bf16 = lambda: True
    precision.measure_bf16_speedup = lambda: {"fp32_s": 1.0, "bf16_s": 1 / speedup, "speedup": speedup}
    info = init_distributed("cpu")
    choice = _shared_precision("auto", info)
    (Path(root) / f"rank{rank}.txt").write_text(choice.precision)
    cleanup(info)


@pytest.mark.slow
def test_two_ranks_train_in_rank_0s_precision(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(port, str(tmp_path)), nprocs=2)
    assert (tmp_path / "rank0.txt").read_text() == "bf16"
    assert (tmp_path / "rank1.txt").read_text() == "bf16"
    assert not (tmp_path / "cache1" / CACHE_NAME).exists()  # rank 1 never measured

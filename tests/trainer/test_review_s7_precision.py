"""Review s7 of the training precision (issue 34): a GPU without bf16 units, a check kept across
thread counts, and a resumed pretraining that runs in another precision than it started in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import trainer.precision as precision
from tests.conftest import write_face_photos
from trainer.checkpoint import read_metadata
from trainer.configs import PretrainConfig
from trainer.precision import choose_precision
from trainer.pretrain import pretrain

pytestmark = pytest.mark.uses_precision_check


def test_a_gpu_without_bf16_units_trains_in_float32(monkeypatch) -> None:
    # A V100 or T4 (compute capability 7.x) emulates bf16: far slower than its float32.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    choice = choose_precision("auto", "cuda:0")
    assert choice.precision == "fp32" and "no native bf16" in choice.reason
    assert choose_precision("bf16", "cuda:0").precision == "bf16"  # asked for: taken as it is
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert choose_precision("auto", "cuda:0").precision == "bf16"


def test_the_check_is_kept_whatever_thread_count_a_run_uses(monkeypatch) -> None:
    # The check times one thread whatever the run's count, so its answer holds for every count.
    calls: list[int] = []

    def measure() -> dict[str, float]:
        calls.append(1)
        return {"fp32_s": 0.02, "bf16_s": 0.01, "speedup": 2.0}

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "measure_bf16_speedup", measure)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            assert choose_precision("auto", "cpu").precision == "bf16"
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 1


def _pretrain(faces: Path, out: Path, epochs: int, prec: str, resume: Path | None = None) -> Path:
    config = PretrainConfig.from_flat(dict(
        image_dirs=[str(faces)], out_dir=str(out), preset="tiny", input_size=64, epochs=epochs,
        batch_size=2, device="cpu", progress_bar=False, precision=prec,
    ))  # fmt: skip
    return pretrain(config, resume=resume)


def test_a_resumed_pretraining_in_another_precision_records_the_change(tmp_path, caplog) -> None:
    faces = write_face_photos(tmp_path / "faces")
    last = _pretrain(faces, tmp_path / "run", 1, "fp32")
    assert read_metadata(last)["precision"] == "fp32"
    last = _pretrain(faces, tmp_path / "run", 2, "bf16", resume=last)
    meta = read_metadata(last)
    assert meta["precision"] == "bf16"
    # The checkpoint keeps its first two steps' precision on record, and the log says so.
    assert {"step": 2, "precision": ["fp32", "bf16"]} in meta["changed_on_resume"]
    assert "precision fp32 -> bf16" in caplog.text


def test_a_wrong_faceparse_precision_is_a_one_line_error_that_keeps_the_folder(
    tmp_path, monkeypatch, capsys
) -> None:
    from tests.conftest import write_synthetic_lapa
    from trainer.cli import main

    lapa = write_synthetic_lapa(tmp_path / "lapa", {"train": 2, "val": 1})
    out = tmp_path / "run"
    out.mkdir()
    (out / "finetune_log.jsonl").write_text('{"step": 1, "loss": 1.0}\n')  # an earlier run's
    monkeypatch.setenv("FACEPARSE_PRECISION", "half")
    code = main(["finetune", "--data", str(lapa), "--out-dir", str(out), "--preset", "tiny",
                 "--max-steps", "1", "--device", "cpu", "--no-progress-bar"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "FACEPARSE_PRECISION='half'" in err and "Traceback" not in err
    assert (out / "finetune_log.jsonl").read_text() == '{"step": 1, "loss": 1.0}\n'


def test_a_check_made_meanwhile_by_another_process_is_kept(monkeypatch) -> None:
    # Two processes (another torch version's venv, say) check at once: each adds its own entry.
    import json
    import os

    cache = Path(os.environ["FACEPARSE_CACHE_DIR"]) / precision.CACHE_NAME

    def measure() -> dict[str, float]:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"another host": {"speedup": 0.3}}))  # written meanwhile
        return {"fp32_s": 0.02, "bf16_s": 0.01, "speedup": 2.0}

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "measure_bf16_speedup", measure)
    assert choose_precision("auto", "cpu").precision == "bf16"
    kept = json.loads(cache.read_text())
    assert kept["another host"] == {"speedup": 0.3} and len(kept) == 2

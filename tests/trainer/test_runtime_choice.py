"""The pre-label runtime per model and host: self-checked once, cached, never a broken one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import synthetic_face
from trainer import runtime_choice
from trainer.checkpoint import save_checkpoint
from trainer.models import build_model, get_preset
from trainer.onnx_export import OnnxPredictor
from trainer.predict import Predictor
from trainer.runtime_choice import CACHE_NAME, load_predictor, read_choices


def _only_entry(cache: Path) -> dict:
    """The one model's entry (beside it, at most its architecture's speed answer)."""
    choices = {k: v for k, v in read_choices(cache).items() if not k.startswith("speed ")}
    assert len(choices) == 1
    return next(iter(choices.values()))


def _tiny_parser(path: Path, seed: int, input_size: int = 64) -> Path:
    torch.manual_seed(seed)
    config = get_preset("tiny").with_overrides(input_size=input_size)
    return save_checkpoint(
        path, build_model(config, heads=("parsing",)).eval(), stage="finetune", meta={}
    )


@pytest.fixture
def count_calls(monkeypatch):
    """Counts of the timing and of the agreement check, by the runtime_choice name patched."""
    counts = {"time_runtimes": 0, "agreement": 0}
    for name in counts:
        real = getattr(runtime_choice, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(runtime_choice, name, counted)
    return counts


def test_auto_checks_once_then_reads_the_cached_choice(
    parser_ckpt: Path, tmp_path: Path, monkeypatch
) -> None:
    first = load_predictor(parser_ckpt, device="cpu", framing="whole", cache_dir=tmp_path)
    entry = _only_entry(tmp_path)
    assert entry["runtime"] in ("torch", "onnxruntime")
    assert entry["torch_s"] > 0 and entry["onnxruntime_s"] > 0
    assert first.model_info["runtime"] == entry["runtime"]

    def no_second_check(*args, **kwargs):
        raise AssertionError("the self-check ran again although the choice was cached")

    monkeypatch.setattr(runtime_choice, "agreement", no_second_check)
    monkeypatch.setattr(runtime_choice, "time_runtimes", no_second_check)
    second = load_predictor(parser_ckpt, device="cpu", framing="whole", cache_dir=tmp_path)
    assert second.model_info["runtime"] == entry["runtime"]
    image, _ = synthetic_face(64, 1)
    assert (first(image).label == second(image).label).mean() > 0.999


def test_a_cached_onnx_choice_that_fails_to_load_falls_back_to_torch(
    parser_ckpt: Path, tmp_path: Path, monkeypatch
) -> None:
    load_predictor(parser_ckpt, device="cpu", cache_dir=tmp_path)
    choices = read_choices(tmp_path)
    key = next(iter(choices))
    choices[key] = {"runtime": "onnxruntime", "reason": "planted"}
    (tmp_path / CACHE_NAME).write_text(json.dumps(choices))

    def broken(*args, **kwargs):
        raise RuntimeError("onnxruntime is broken on this host")

    monkeypatch.setattr(OnnxPredictor, "__init__", broken)
    predictor = load_predictor(parser_ckpt, device="cpu", cache_dir=tmp_path)
    assert predictor.model_info["runtime"] == "torch"
    entry = _only_entry(tmp_path)
    assert entry["runtime"] == "torch" and "broken" in entry["reason"]


def test_a_runtime_that_disagrees_with_torch_is_never_chosen(
    parser_ckpt: Path, tmp_path: Path, monkeypatch
) -> None:
    real = OnnxPredictor.logits
    monkeypatch.setattr(OnnxPredictor, "logits", lambda self, images: real(self, images) + 0.1)
    predictor = load_predictor(parser_ckpt, device="cpu", cache_dir=tmp_path)
    assert predictor.model_info["runtime"] == "torch"
    assert "differ" in _only_entry(tmp_path)["reason"]


def test_without_onnxruntime_every_model_runs_in_torch(
    parser_ckpt: Path, tmp_path: Path, monkeypatch
) -> None:
    from trainer.errors import FaceParseError

    def missing(*args, **kwargs):
        raise FaceParseError("ONNX export needs the optional package 'onnxruntime'")

    monkeypatch.setattr("trainer.onnx_export.export_onnx", missing)
    predictor = load_predictor(parser_ckpt, device="cpu", cache_dir=tmp_path)
    assert predictor.model_info["runtime"] == "torch"
    assert "unavailable" in _only_entry(tmp_path)["reason"]


def test_a_corrupt_cache_file_is_replaced(parser_ckpt: Path, tmp_path: Path) -> None:
    (tmp_path / CACHE_NAME).write_text("{not json")
    load_predictor(parser_ckpt, device="cpu", cache_dir=tmp_path)
    assert _only_entry(tmp_path)["runtime"] in ("torch", "onnxruntime")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_forced_runtimes(parser_ckpt: Path, tmp_path: Path) -> None:
    ort = load_predictor(parser_ckpt, device="cpu", runtime="onnxruntime", cache_dir=tmp_path)
    assert isinstance(ort, OnnxPredictor)
    assert (
        load_predictor(parser_ckpt, device="cpu", runtime="torch").model_info["runtime"] == "torch"
    )
    assert not (tmp_path / CACHE_NAME).exists()  # a forced runtime is not a choice to remember
    with pytest.raises(ValueError, match="auto, torch, torch-bf16, onnxruntime"):
        load_predictor(parser_ckpt, device="cpu", runtime="tensorrt")
    assert np.isfinite(ort.logits([synthetic_face(64, 0)[0]]).numpy()).all()


def test_a_fine_tuned_version_reuses_the_timing_but_is_still_checked(
    parser_ckpt: Path, tmp_path: Path, count_calls
) -> None:
    cache = tmp_path / "cache"
    load_predictor(parser_ckpt, device="cpu", cache_dir=cache)
    assert count_calls == {"time_runtimes": 1, "agreement": 1}
    # Same architecture, other weights: the version a fine-tune publishes.
    tuned = _tiny_parser(tmp_path / "v2.safetensors", seed=1)
    predictor = load_predictor(tuned, device="cpu", cache_dir=cache)
    speed = [v for k, v in read_choices(cache).items() if k.startswith("speed ")]
    assert len(speed) == 1
    assert predictor.model_info["runtime"] == speed[0]["runtime"]
    assert count_calls["time_runtimes"] == 1  # not timed again
    if speed[0]["runtime"] == "onnxruntime":  # its own tensors exported and checked
        assert count_calls["agreement"] == 2
        assert len(list((cache / "onnx").glob("*.onnx"))) == 2
    # Another architecture (input size) is timed anew.
    other = _tiny_parser(tmp_path / "big.safetensors", seed=1, input_size=96)
    load_predictor(other, device="cpu", cache_dir=cache)
    assert count_calls["time_runtimes"] == 2
    assert len([k for k in read_choices(cache) if k.startswith("speed ")]) == 2


def _plant_speed(cache: Path, checkpoint: Path, runtime: str) -> None:
    key = runtime_choice.speed_key(Predictor.from_checkpoint(checkpoint, device="cpu"))
    runtime_choice.update_choices(
        cache,
        {key: {"runtime": runtime, "torch_s": 0.2, "onnxruntime_s": 0.1, "reason": "planted"}},
    )


def test_a_fine_tuned_version_that_disagrees_runs_in_torch_though_onnx_is_the_faster(
    parser_ckpt: Path, tmp_path: Path, monkeypatch, count_calls
) -> None:
    _plant_speed(tmp_path, parser_ckpt, "onnxruntime")
    assert (
        load_predictor(parser_ckpt, device="cpu", cache_dir=tmp_path).model_info["runtime"]
        == "onnxruntime"
    )
    real = OnnxPredictor.logits
    monkeypatch.setattr(OnnxPredictor, "logits", lambda self, images: real(self, images) + 0.1)
    tuned = _tiny_parser(tmp_path / "v2.safetensors", seed=1)
    predictor = load_predictor(tuned, device="cpu", cache_dir=tmp_path)
    assert predictor.model_info["runtime"] == "torch"
    assert count_calls == {"time_runtimes": 0, "agreement": 2}
    key = runtime_choice.choice_key(predictor, tuned)
    assert "differ" in read_choices(tmp_path)[key]["reason"]


def test_where_torch_is_the_faster_a_fine_tuned_version_is_not_even_exported(
    parser_ckpt: Path, tmp_path: Path, count_calls
) -> None:
    _plant_speed(tmp_path, parser_ckpt, "torch")
    tuned = _tiny_parser(tmp_path / "v2.safetensors", seed=1)
    assert load_predictor(tuned, device="cpu", cache_dir=tmp_path).model_info["runtime"] == "torch"
    assert count_calls == {"time_runtimes": 0, "agreement": 0}
    assert not (tmp_path / "onnx").exists()


def test_an_entry_of_the_first_cache_format_is_still_read(
    parser_ckpt: Path, tmp_path: Path, count_calls
) -> None:
    """Written before the speed answer was shared: one entry per model with its own timing."""
    predictor = Predictor.from_checkpoint(parser_ckpt, device="cpu")
    old = {
        "checked": "2026-12-05T10:00:00Z",
        "runtime": "onnxruntime",
        "torch_s": 0.02,
        "onnxruntime_s": 0.01,
        "reason": "faster (0.0100 s a pass) and agrees to 1.0e-06",
    }
    (tmp_path / CACHE_NAME).write_text(
        json.dumps({runtime_choice.choice_key(predictor, parser_ckpt): old})
    )
    assert (
        load_predictor(parser_ckpt, device="cpu", cache_dir=tmp_path).model_info["runtime"]
        == "onnxruntime"
    )
    assert count_calls == {"time_runtimes": 0, "agreement": 0}


def test_only_the_most_recently_used_exports_are_kept(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(runtime_choice, "KEEP_EXPORTS", 2)
    paths = [_tiny_parser(tmp_path / f"v{i}.safetensors", seed=i) for i in range(3)]
    for path in paths:
        load_predictor(path, device="cpu", runtime="onnxruntime", cache_dir=tmp_path / "cache")
    graphs = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(graphs) == 2
    newest = runtime_choice.onnx_path(
        Predictor.from_checkpoint(paths[2], device="cpu"), paths[2], tmp_path / "cache"
    )
    assert newest in graphs


@pytest.mark.parametrize(
    ("torch_s", "ort_s", "expected"),
    [(0.239, 0.236, "torch"), (0.239, 0.200, "onnxruntime"), (0.200, 0.239, "torch")],
)
def test_onnx_runtime_must_win_by_a_clear_margin(
    parser_ckpt: Path, monkeypatch, torch_s: float, ort_s: float, expected: str
) -> None:
    """A near tie (1% here, which flips between runs on a busy machine) keeps torch: ONNX
    Runtime costs an export of every new version and is used only when clearly faster."""
    predictor = Predictor.from_checkpoint(parser_ckpt, device="cpu", framing="whole")
    monkeypatch.setattr(
        runtime_choice, "time_runtimes", lambda *a, **k: {"torch": torch_s, "onnxruntime": ort_s}
    )
    monkeypatch.setattr(runtime_choice, "agreement", lambda *a, **k: (1e-5, None))
    answer = runtime_choice.self_check(predictor, predictor)
    assert answer["runtime"] == expected
    assert ("margin" in answer["reason"]) == (expected == "torch" and ort_s < torch_s)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="a POSIX parent to kill")
def test_the_check_process_ends_when_the_app_that_started_it_is_killed(tmp_path: Path) -> None:
    """kill -9 of the app must not leave its background check running on (it would export and
    time for tens of seconds with nobody to read the answer)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "child.pid"
    # The app gives the check its own pid (--parent-pid), as here: a pid the child asked for
    # with os.getppid() after saying it runs could already be its adopter's, the app killed
    # in between on a loaded machine (the test then failed, though the app's check is right).
    child = (
        "import os, sys, time; from trainer.runtime_choice import watch_parent; "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        "watch_parent(int(sys.argv[1]), poll_s=0.05); time.sleep(600)"
    )
    parent = (
        "import os, subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid())]); time.sleep(600)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    app = subprocess.Popen([sys.executable, "-c", parent], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child_pid = int(pid_file.read_text())
        os.kill(child_pid, 0)  # running
        app.send_signal(signal.SIGKILL)
        app.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = Path(f"/proc/{child_pid}/status")
            try:
                os.kill(child_pid, 0)
                if status.exists() and "\nState:\tZ" in status.read_text():
                    break  # ended, not yet reaped by whoever adopted it
            except (ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.05)
        else:
            os.kill(child_pid, signal.SIGKILL)
            pytest.fail("the check process outlived the app that started it")
    finally:
        if app.poll() is None:
            app.kill()


def test_a_cached_near_tie_from_before_the_margin_is_read_as_torch(
    parser_ckpt: Path, tmp_path: Path
) -> None:
    """Answers written before the margin existed (ONNX Runtime 1% faster) are not obeyed as
    they stand: every version would be exported for a tie."""
    predictor = Predictor.from_checkpoint(parser_ckpt, device="cpu", framing="whole")
    tie = {"runtime": "onnxruntime", "torch_s": 0.2391, "onnxruntime_s": 0.2360, "reason": "faster"}
    runtime_choice.write_choices(
        tmp_path,
        {
            runtime_choice.speed_key(predictor): tie,
            runtime_choice.choice_key(predictor, parser_ckpt): {**tie, "agreement": 1e-5},
        },
    )
    answer = runtime_choice.known_choice(predictor, parser_ckpt, tmp_path)
    assert answer is not None and answer["runtime"] == "torch" and "margin" in answer["reason"]
    runtime_choice.write_choices(tmp_path, {runtime_choice.speed_key(predictor): tie})
    answer = runtime_choice.known_choice(predictor, parser_ckpt, tmp_path)
    assert answer is not None and answer["runtime"] == "torch"

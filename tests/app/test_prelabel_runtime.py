"""The pre-label queue's runtime: torch at once, ONNX Runtime once the background check chose it,
never waiting for the check, and quitting never waiting for it either."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QStatusBar

from faceparse_app import runtime_check
from faceparse_app.prelabel_queue import PrelabelQueue
from faceparse_app.runtime_check import BF16_TEXT, ONNX_TEXT
from faceparse_app.widgets.status_bar import CanvasStatus
from tests.conftest import synthetic_face
from trainer import runtime_choice
from trainer.checkpoint import save_checkpoint
from trainer.data.imageio import read_image, write_image
from trainer.labels import LAPA
from trainer.models import build_model, get_preset
from trainer.onnx_export import OnnxPredictor
from trainer.predict import Predictor

pytestmark = pytest.mark.uses_runtime_check

# How long a test waits for the check's answer. The check runs at a lower priority than the
# window (PRELABEL_NICE): with every core busy it got a few percent of one, and loading ONNX
# Runtime took over the 30 s these waits gave it, though nothing was wrong.
CHECK_WAIT_MS = 120_000


def _parser(path: Path, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    model = build_model(get_preset("tiny"), heads=("parsing",)).eval()
    return save_checkpoint(path, model, stage="finetune", meta={})


@pytest.fixture(scope="module")
def parser(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _parser(tmp_path_factory.mktemp("ckpt") / "parser.safetensors", seed=0)


@pytest.fixture
def face_files(tmp_path: Path) -> dict[int, Path]:
    files = {}
    for i in range(1, 5):
        files[i] = tmp_path / f"face{i}.png"
        write_image(files[i], synthetic_face(64, seed=i)[0])
    return files


@pytest.fixture
def onnx_faster(monkeypatch) -> None:
    """ONNX Runtime times faster than torch, whatever this busy machine says."""
    monkeypatch.setattr(
        runtime_choice, "time_runtimes", lambda *a, **k: {"torch": 0.2, "onnxruntime": 0.1}
    )


@pytest.fixture
def onnx_calls(monkeypatch) -> list[int]:
    """One entry per forward pass run in ONNX Runtime (in this process)."""
    calls: list[int] = []
    real = OnnxPredictor.logits

    def counted(self, images):
        calls.append(len(images))
        return real(self, images)

    monkeypatch.setattr(OnnxPredictor, "logits", counted)
    return calls


def _choose_here(checkpoint: Path) -> dict:
    """The choice made in this process (the queue's check then only reads it)."""
    torch_predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    cache = runtime_choice.user_cache_dir()
    return runtime_choice.choose_runtime(torch_predictor, checkpoint, cache)


def _torch_label(checkpoint: Path, path: Path) -> np.ndarray:
    return Predictor.from_checkpoint(checkpoint, device="cpu")(read_image(path)).label


def _is_onnx(text: str) -> bool:
    return text == ONNX_TEXT


def test_the_queue_predicts_in_the_runtime_the_check_chose(
    qtbot, parser, face_files, onnx_faster, onnx_calls
) -> None:
    assert _choose_here(parser)["runtime"] == "onnxruntime"
    queue = PrelabelQueue(lookahead=0, device="cpu", runtime="auto")
    try:
        with qtbot.waitSignal(queue.runtime_changed, timeout=CHECK_WAIT_MS, check_params_cb=_is_onnx):
            queue.set_model(parser, "v0001")
            queue.request(1, face_files[1])
        onnx_calls.clear()  # (the agreement check's)
        with qtbot.waitSignal(queue.ready, timeout=20000) as blocker:
            queue.request(2, face_files[2])
        assert onnx_calls, "the image after the switch was not predicted in ONNX Runtime"
        expected = _torch_label(parser, face_files[2])
        assert (blocker.args[1].label == expected).mean() > 0.999  # agree within the tolerance
        assert queue.runtime_text == ONNX_TEXT
    finally:
        queue.stop()


def test_pre_labels_never_wait_for_the_check_and_are_torch_s_until_it_ends(
    qtbot, monkeypatch, parser, face_files, onnx_faster, onnx_calls
) -> None:
    gate = threading.Event()

    def slow_check(self, command):  # the check's process, held until the gate opens
        while not gate.wait(0.05):
            if self.cancelled.is_set():
                return None
        return _choose_here(parser)

    monkeypatch.setattr(runtime_check.RuntimeCheck, "_run_child", slow_check)
    texts: list[str] = []
    queue = PrelabelQueue(lookahead=0, device="cpu", runtime="auto")
    queue.runtime_changed.connect(texts.append)
    try:
        queue.set_model(parser, "v0001")
        for image_id in (1, 2):
            with qtbot.waitSignal(queue.ready, timeout=20000) as blocker:
                queue.request(image_id, face_files[image_id])
            # Exactly what torch gives: predicted while the check was still going on.
            assert np.array_equal(blocker.args[1].label, _torch_label(parser, face_files[image_id]))
        assert texts == ["torch"] and not onnx_calls
        with qtbot.waitSignal(queue.runtime_changed, timeout=CHECK_WAIT_MS, check_params_cb=_is_onnx):
            gate.set()
        onnx_calls.clear()  # (the agreement check's)
        with qtbot.waitSignal(queue.ready, timeout=20000):
            queue.request(3, face_files[3])
        assert onnx_calls
    finally:
        gate.set()
        queue.stop()


def test_quitting_during_a_check_kills_it_instead_of_waiting(
    qtbot, monkeypatch, parser, face_files
) -> None:
    # A check that would take ten minutes: an export on a very slow machine.
    monkeypatch.setattr(
        runtime_check,
        "child_command",
        lambda *args: [sys.executable, "-c", "import time; time.sleep(600)"],
    )
    queue = PrelabelQueue(lookahead=0, device="cpu", runtime="auto")
    queue.set_model(parser, "v0001")
    with qtbot.waitSignal(queue.ready, timeout=20000):
        queue.request(1, face_files[1])
    qtbot.waitUntil(
        lambda: queue._switch.check is not None and queue._switch.check.process is not None,
        timeout=20000,
    )
    process = queue._switch.check.process
    try:
        assert queue.stop(timeout_ms=5000)
        # Killed, not waited for: it would have slept for ten minutes.
        assert process.wait(timeout=5) != 0
        assert queue.runtime_text == "torch"
    finally:
        if process.poll() is None:  # the test failed: no sleeper left behind
            process.kill()


def test_without_onnxruntime_torch_stays_and_one_line_says_why(
    qtbot, monkeypatch, caplog, parser, face_files
) -> None:
    monkeypatch.setattr(
        runtime_check, "onnxruntime_missing", lambda: "onnxruntime is not installed"
    )
    started: list[list[str]] = []
    monkeypatch.setattr(subprocess, "Popen", lambda command, **k: started.append(command))
    failures: list[tuple[int, str]] = []
    caplog.set_level(logging.INFO, logger="faceparse_app")
    queue = PrelabelQueue(lookahead=0, device="cpu", runtime="auto")
    queue.failed.connect(lambda *args: failures.append(args))
    try:
        with qtbot.waitSignal(
            queue.runtime_changed, timeout=20000, check_params_cb=lambda t: "not installed" in t
        ):
            queue.set_model(parser, "v0001")
            queue.request(1, face_files[1])
        with qtbot.waitSignal(queue.ready, timeout=20000):
            queue.request(2, face_files[2])
    finally:
        queue.stop()
    said = [r.getMessage() for r in caplog.records if "runtime_check" in r.name]
    assert said == ["pre-labels run in torch: onnxruntime is not installed"]
    assert not failures and not started


def test_a_published_version_goes_through_the_check_in_a_process_of_its_own(
    qtbot, tmp_path, parser, face_files, onnx_faster
) -> None:
    """The speed answer of the first version is reused; the new version's own graph is exported
    and checked by ``python -m trainer.runtime_choice`` (its tensors differ)."""
    assert _choose_here(parser)["runtime"] == "onnxruntime"
    tuned = _parser(tmp_path / "v0002.safetensors", seed=1)
    queue = PrelabelQueue(lookahead=0, device="cpu", runtime="auto")
    try:
        with qtbot.waitSignal(queue.runtime_changed, timeout=CHECK_WAIT_MS, check_params_cb=_is_onnx):
            queue.set_model(parser, "v0001")
            queue.request(1, face_files[1])
        texts: list[str] = []
        queue.runtime_changed.connect(texts.append)
        with qtbot.waitSignal(queue.runtime_changed, timeout=CHECK_WAIT_MS, check_params_cb=_is_onnx):
            queue.set_model(tuned, "v0002")
            queue.request(2, face_files[2])
        assert texts[0] == "torch"  # at once, while its check ran
        torch_predictor = Predictor.from_checkpoint(tuned, device="cpu")
        cache = runtime_choice.user_cache_dir()
        entry = runtime_choice.read_choices(cache)[
            runtime_choice.choice_key(torch_predictor, tuned)
        ]
        assert entry["runtime"] == "onnxruntime" and entry["agreement"] <= runtime_choice.AGREEMENT
        assert runtime_choice.onnx_path(torch_predictor, tuned, cache).is_file()
    finally:
        queue.stop()


def test_the_status_bar_shows_the_runtime_beside_the_model(qtbot) -> None:
    bar = QStatusBar()
    qtbot.addWidget(bar)
    status = CanvasStatus(bar, LAPA)
    status.show_model("v0002")
    status.show_runtime(ONNX_TEXT)
    assert status.runtime.text() == "ONNX Runtime"
    assert "chosen on this CPU" in status.runtime.toolTip()
    status.show_model("v0003")  # until the new model says what it runs in
    assert status.runtime.text() == ""


def test_the_runtime_setting_defaults_to_auto_and_reads_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(runtime_check.RUNTIME_ENV, raising=False)
    assert runtime_check.runtime_setting() == "auto"
    monkeypatch.setenv(runtime_check.RUNTIME_ENV, " Torch ")
    assert runtime_check.runtime_setting() == "torch"
    monkeypatch.setenv(runtime_check.RUNTIME_ENV, "cuda")  # not a setting: a warning, then auto
    assert runtime_check.runtime_setting() == "auto"


@pytest.fixture
def bf16_cpu(monkeypatch, parser) -> None:
    """A CPU with native bf16 (the suite's float32 pin lifted); the check's process answers as
    this process does (a process of its own would time for real)."""
    from trainer import precision

    monkeypatch.delenv(precision.ENV, raising=False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(runtime_check.RuntimeCheck, "_run_child", lambda s, c: _choose_here(parser))


def _start_until(qtbot, queue: PrelabelQueue, parser: Path, photo: Path, text: str) -> None:
    """Set the model, ask for a pre-label and wait until the runtime in use says ``text``."""
    with qtbot.waitSignal(queue.runtime_changed, timeout=CHECK_WAIT_MS, check_params_cb=lambda t: t == text):
        queue.set_model(parser, "v0001")
        queue.request(1, photo)


def test_the_queue_hands_over_to_bf16_where_the_check_chose_it(
    qtbot, monkeypatch, parser, face_files, bf16_cpu
) -> None:
    """On a CPU with native bf16 where bf16 is clearly the faster, the pre-labels move to it
    (the status bar says so) and still label as float32 does."""
    monkeypatch.setattr(
        runtime_choice,
        "time_runtimes",
        lambda *a, **k: {"torch": 0.2, "onnxruntime": 0.3, "torch-bf16": 0.08},
    )
    assert _choose_here(parser)["runtime"] == "torch-bf16"
    in_bf16: list[int] = []
    real = Predictor.logits

    def counted(self, images):
        if self.precision == "bf16":
            in_bf16.append(len(images))
        return real(self, images)

    monkeypatch.setattr(Predictor, "logits", counted)
    queue = PrelabelQueue(lookahead=0, device="cpu", runtime="auto")
    try:
        _start_until(qtbot, queue, parser, face_files[1], BF16_TEXT)
        with qtbot.waitSignal(queue.ready, timeout=20000) as blocker:
            queue.request(2, face_files[2])
        assert in_bf16, "the image after the switch was not predicted in bf16"
        expected = _torch_label(parser, face_files[2])
        assert (blocker.args[1].label == expected).mean() >= 0.99
    finally:
        queue.stop()
    assert runtime_check.runtime_text(Predictor.from_checkpoint(parser).in_precision("bf16")) == (
        "torch bf16"
    )


def test_without_onnxruntime_a_cpu_with_native_bf16_still_checks_bf16(
    qtbot, monkeypatch, parser, face_files, bf16_cpu
) -> None:
    """ONNX Runtime not installed no longer means float32 torch at once: bf16 is checked."""
    monkeypatch.setattr(
        runtime_check, "onnxruntime_missing", lambda: "onnxruntime is not installed"
    )

    def no_onnx(*args):
        raise ImportError("No module named 'onnxruntime'")

    monkeypatch.setattr(runtime_choice, "onnx_predictor", no_onnx)
    monkeypatch.setattr(
        runtime_choice, "time_runtimes", lambda *a, **k: {"torch": 0.2, "torch-bf16": 0.08}
    )
    queue = PrelabelQueue(lookahead=0, device="cpu", runtime="auto")
    try:
        _start_until(qtbot, queue, parser, face_files[1], BF16_TEXT)
    finally:
        queue.stop()
    entry = _choose_here(parser)
    assert entry["runtime"] == "torch-bf16" and "onnxruntime" in entry["reason"]

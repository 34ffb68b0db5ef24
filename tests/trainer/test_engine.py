"""The shared training loop: schedule, devices, cancellation, hooks, logs."""

from __future__ import annotations

import threading

import pytest
import torch

from trainer.engine import (
    DeviceError,
    Hook,
    TrainLoop,
    autocast_for,
    make_scheduler,
    select_device,
    warmup_cosine,
)
from trainer.hooks import CallbackHook, JsonlLogger, PeriodicCheckpoint, ProgressBar, read_jsonl


def test_select_device_honours_cpu_and_rejects_missing_devices() -> None:
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    assert select_device(None) == select_device("auto")
    missing = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    with pytest.raises(DeviceError, match="cuda"):
        select_device(missing)
    with pytest.raises(DeviceError, match="unknown device"):
        select_device("gpu0")


def test_autocast_keeps_float32_on_cpu() -> None:
    a = torch.randn(4, 4)
    with autocast_for(torch.device("cpu")):
        assert (a @ a).dtype == torch.float32


def test_warmup_cosine_rises_peaks_then_decays_to_min() -> None:
    total, warmup = 100, 10
    values = [warmup_cosine(s, total, warmup, min_ratio=0.1) for s in range(total + 1)]
    assert values[0] == 0.0
    assert values[warmup] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(values[:warmup], values[1 : warmup + 1], strict=True))
    assert all(a >= b for a, b in zip(values[warmup:], values[warmup + 1 :], strict=False))
    assert values[55] == pytest.approx(0.55, abs=0.01)  # halfway through the decay
    assert values[total] == pytest.approx(0.1)


def test_scheduler_started_mid_run_matches_an_uninterrupted_one() -> None:
    def lrs(start: int, steps: int) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
        sched = make_scheduler(opt, total_steps=20, warmup_steps=4, start_step=start)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    full = lrs(0, 20)
    assert full[0] > 0.0  # no step is wasted at lr 0
    assert max(full) == pytest.approx(0.5)
    assert lrs(7, 13) == pytest.approx(full[7:])


class _Recorder(Hook):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def before_train(self, loop: TrainLoop) -> None:
        self.events.append(("before",))

    def after_epoch(self, loop: TrainLoop, epoch: int) -> None:
        self.events.append(("epoch", epoch, loop.step))

    def after_train(self, loop: TrainLoop) -> None:
        self.events.append(("after", loop.step))


def test_cancel_stops_within_one_step_and_still_saves(tmp_path) -> None:
    cancel = threading.Event()
    seen: list[int] = []

    def step_fn(batch: int) -> dict[str, float]:
        seen.append(batch)
        if batch == 4:
            cancel.set()  # e.g. the user pressed Stop during the 5th step
        return {"loss": 1.0 / (batch + 1), "batch_size": 2}

    saves: list[tuple[int, bool]] = []
    recorder = _Recorder()
    loop = TrainLoop(
        step_fn,
        batches_per_epoch=3,
        epochs=10,
        hooks=[
            JsonlLogger(tmp_path / "metrics.jsonl"),
            PeriodicCheckpoint(lambda lp, final: saves.append((lp.step, final)), every_steps=2),
            recorder,
        ],
        cancel=cancel,
    ).run()
    assert loop.cancelled
    assert loop.step == 5 and seen == [0, 1, 2, 3, 4]
    assert saves == [(2, False), (4, False), (5, True)]
    assert recorder.events[-1] == ("after", 5)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert {"step", "epoch", "loss", "lr", "images_per_s", "time"} <= set(records[0])
    assert records[-1]["loss"] == pytest.approx(0.2)
    assert records[-1]["epoch"] == 2


def test_callback_receives_progress_and_epochs_are_reported() -> None:
    stats: list[dict] = []
    recorder = _Recorder()
    loop = TrainLoop(
        lambda b: {"loss": 0.5, "lr": 0.1, "batch_size": 4},
        batches_per_epoch=2,
        epochs=3,
        hooks=[CallbackHook(stats.append), recorder],
    ).run()
    assert not loop.cancelled and loop.step == loop.total_steps == 6
    expected = {"step", "total_steps", "epoch", "epochs", "loss", "lr", "images_per_s", "eta_s"}
    assert expected <= set(stats[0])
    assert [s["epoch"] for s in stats] == [1, 1, 2, 2, 3, 3]
    assert stats[-1]["eta_s"] == 0.0 and stats[-1]["total_steps"] == 6
    assert [e for e in recorder.events if e[0] == "epoch"] == [
        ("epoch", 0, 2),
        ("epoch", 1, 4),
        ("epoch", 2, 6),
    ]


def test_a_step_limit_reports_the_epochs_the_run_will_reach() -> None:
    # The app's panel showed "epoch 2/30" for a run limited to 6 steps of 4 per epoch.
    stats: list[dict] = []
    TrainLoop(
        lambda b: {"loss": 0.5, "lr": 0.1, "batch_size": 4},
        batches_per_epoch=4,
        epochs=30,
        max_steps=6,
        hooks=[CallbackHook(stats.append)],
    ).run()
    assert [s["epoch"] for s in stats] == [1, 1, 1, 1, 2, 2]
    assert {s["epochs"] for s in stats} == {2} and stats[-1]["total_steps"] == 6


def test_resumed_loop_skips_the_batches_already_seen() -> None:
    batches: list[tuple[int, int]] = []

    def data(epoch: int):
        return [(epoch, i) for i in range(3)]

    loop = TrainLoop(
        lambda b: batches.append(b) or {"loss": 0.0},
        batches_per_epoch=3,
        epochs=3,
        start_step=4,
        data=data,
    ).run()
    assert loop.step == 9
    assert batches == [(1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]


def test_max_steps_stops_mid_epoch() -> None:
    loop = TrainLoop(lambda b: {"loss": 0.0}, batches_per_epoch=4, epochs=5, max_steps=6).run()
    assert loop.step == loop.total_steps == 6


def test_failed_step_skips_the_final_save_and_reraises() -> None:
    saves: list[bool] = []
    recorder = _Recorder()

    def step_fn(batch: int) -> dict[str, float]:
        if batch == 2:
            raise RuntimeError("boom")
        return {"loss": 0.0}

    hooks = [PeriodicCheckpoint(lambda lp, final: saves.append(final)), recorder]
    with pytest.raises(RuntimeError, match="boom"):
        TrainLoop(step_fn, batches_per_epoch=5, epochs=1, hooks=hooks).run()
    assert saves == []
    assert recorder.events[-1] == ("after", 2)  # hooks still closed their resources


def test_progress_bar_shows_loss_on_rank_0_and_stays_silent_elsewhere(monkeypatch, capsys) -> None:
    def run() -> str:
        TrainLoop(
            lambda b: {"loss": 0.25, "batch_size": 2}, 2, 1, hooks=[ProgressBar(desc="t")]
        ).run()
        return capsys.readouterr().err

    monkeypatch.setenv("RANK", "1")
    assert run() == ""
    monkeypatch.setenv("RANK", "0")
    assert "loss=0.2500" in run()


def test_checkpoints_also_follow_the_clock(monkeypatch) -> None:
    # A slow run (large preset, a CPU) may take minutes a step; a kill then must not lose them.
    clock = {"now": 0.0}
    monkeypatch.setattr("trainer.hooks.time.monotonic", lambda: clock["now"])

    def step_fn(batch: int) -> dict[str, float]:
        clock["now"] += 40.0  # 40 s a step
        return {"loss": 0.0}

    saves: list[tuple[int, bool]] = []
    hook = PeriodicCheckpoint(lambda lp, final: saves.append((lp.step, final)), every_seconds=100)
    TrainLoop(step_fn, batches_per_epoch=10, epochs=1, hooks=[hook]).run()
    assert saves == [(3, False), (6, False), (9, False), (10, True)]


def test_ctrl_c_still_writes_a_resumable_checkpoint() -> None:
    saves: list[tuple[int, bool]] = []

    def step_fn(batch: int) -> dict[str, float]:
        if batch == 3:
            raise KeyboardInterrupt
        return {"loss": 0.0}

    hook = PeriodicCheckpoint(lambda lp, final: saves.append((lp.step, final)))
    loop = TrainLoop(step_fn, batches_per_epoch=5, epochs=1, hooks=[hook])
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert loop.cancelled and saves == [(3, True)]


def test_a_resumed_log_drops_the_steps_after_the_checkpoint(tmp_path) -> None:
    # Killed at step 5 with its last checkpoint at step 3: steps 4 and 5 are trained again.
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(f'{{"step": {s}, "loss": 9}}\n' for s in range(1, 6)) + '{"step": 6, "lo')
    TrainLoop(
        lambda b: {"loss": 0.5}, batches_per_epoch=4, epochs=2, start_step=3,
        hooks=[JsonlLogger(log)],
    ).run()
    records = read_jsonl(log)
    assert [r["step"] for r in records] == list(range(1, 9))
    assert [r["loss"] for r in records] == [9] * 3 + [0.5] * 5

"""The training panel shows its LoopState and turns clicks into the state's requests."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from faceparse_app.loop_state import LoopState, RunOutcome
from faceparse_app.model_store import ModelVersion
from faceparse_app.training_settings import (
    FINETUNE_LENGTH,
    PRETRAIN_LENGTH,
    FinetuneRequest,
    PretrainRequest,
    RunLength,
    available_devices,
)
from faceparse_app.widgets.loss_plot import LossPlot
from faceparse_app.widgets.train_panel import TrainPanel
from faceparse_app.widgets.train_progress import format_duration


@pytest.fixture
def state() -> LoopState:
    return LoopState(devices=["cpu", "cuda"])


@pytest.fixture
def panel(qtbot, state) -> TrainPanel:
    widget = TrainPanel(state)
    qtbot.addWidget(widget)
    widget.resize(420, 760)
    widget.show()
    return widget


def version(vid: str, kind: str = "parser", f1: float | None = None, parent: str | None = None) -> ModelVersion:
    metrics = {"mean_f1": f1, "miou": f1 and f1 - 0.1} if f1 is not None else {}
    return ModelVersion(id=vid, kind=kind, dir=Path("/nowhere") / vid, created="2026-11-28T02:00:00+0000", metrics=metrics, parent=parent)


def requests(state: LoopState) -> list[object]:
    """Every start the state asks for, in order."""
    asked: list[object] = []
    state.finetune_requested.connect(asked.append)
    state.pretrain_requested.connect(asked.append)
    return asked


def listed(panel: TrainPanel) -> list[str]:
    tree = panel.versions.tree
    return [tree.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole) for i in range(tree.topLevelItemCount())]


def select(panel: TrainPanel, version_id: str) -> None:
    tree = panel.versions.tree
    tree.setCurrentItem(tree.topLevelItem(listed(panel).index(version_id)))


def shown_error(panel: TrainPanel) -> str:
    label = panel.progress.error_label
    return "" if label.isHidden() else label.text()


def test_start_finetune_asks_with_the_form_and_locks_the_controls(panel, state, qtbot):
    asked = requests(state)
    form = panel.form
    state.set_start_options("/p/models/v0001/model.safetensors", "/app/starter.safetensors")
    form.device_combo.setCurrentIndex(form.device_combo.findData("cuda"))
    form.finetune.epochs_spin.setValue(7)
    form.finetune.steps_spin.setValue(120)
    qtbot.mouseClick(form.finetune_button, Qt.MouseButton.LeftButton)
    [request] = asked
    assert isinstance(request, FinetuneRequest)
    assert request.init == "project"
    assert request.init_path == Path("/p/models/v0001/model.safetensors")
    assert (request.device, request.length.epochs, request.length.max_steps) == ("cuda", 7, 120)
    assert request.length.batch_size == FINETUNE_LENGTH.batch_size
    assert not form.finetune_button.isEnabled() and not form.pretrain_button.isEnabled()
    assert not form.finetune.epochs_spin.isEnabled() and not form.pretrain.epochs_spin.isEnabled()
    assert form.cancel_button.isEnabled()
    cancelled: list[bool] = []
    state.cancel_requested.connect(lambda: cancelled.append(True))
    qtbot.mouseClick(form.cancel_button, Qt.MouseButton.LeftButton)
    assert cancelled == [True] and panel.progress.status_label.text() == "Cancelling…"


def test_pretraining_has_its_own_length_boxes_with_its_own_defaults(panel, state, qtbot):
    form = panel.form
    assert form.finetune.epochs_spin.value() == FINETUNE_LENGTH.epochs
    assert form.pretrain.epochs_spin.value() == PRETRAIN_LENGTH.epochs
    assert form.pretrain.batch_spin.value() == PRETRAIN_LENGTH.batch_size
    form.finetune.epochs_spin.setValue(3)  # fine-tuning's length does not change pretraining's
    form.pretrain.steps_spin.setValue(50)
    asked = requests(state)
    qtbot.mouseClick(form.pretrain_button, Qt.MouseButton.LeftButton)
    [request] = asked
    assert isinstance(request, PretrainRequest)
    assert (request.length.epochs, request.length.max_steps) == (PRETRAIN_LENGTH.epochs, 50)
    assert state.running == "pretrain" and panel.progress.status_label.text() == "Preparing pretraining…"


def test_the_form_shows_settings_changed_in_the_state(panel, state):
    state.update_settings(device="cuda", preset="tiny", pretrain=RunLength(epochs=3, batch_size=2, max_steps=9))
    form = panel.form
    assert form.device_combo.currentData() == "cuda" and form.preset_combo.currentText() == "tiny"
    assert [spin.value() for spin in form.pretrain.spins] == [3, 9, 2]
    assert state.settings.pretrain == RunLength(epochs=3, batch_size=2, max_steps=9)  # not echoed back


def test_the_start_choices_follow_what_exists(panel, state):
    combo = panel.form.init_combo
    item = combo.model().item(combo.findData("project"))
    assert not item.isEnabled()
    state.set_start_options(None, "/app/starter.safetensors", "/app/parser.safetensors")
    assert combo.currentData() == "starter_parser"  # measured better for K = 10
    state.set_start_options("/p/bb.safetensors", "/app/starter.safetensors", "/app/parser.safetensors")
    assert item.isEnabled() and combo.currentData() == "starter_parser"
    index = combo.findData("project")
    combo.setCurrentIndex(index)
    combo.activated.emit(index)  # the user picked it
    state.set_start_options("/p/bb2.safetensors", "/app/starter.safetensors", "/app/parser.safetensors")
    assert combo.currentData() == "project"
    assert state.finetune_request().init_path == Path("/p/bb2.safetensors")  # kept
    state.set_start_file("/mine/backbone.safetensors")
    assert combo.currentData() == "file" and combo.currentText() == "File: backbone.safetensors"
    # Devices: auto first, then what the machine has.
    assert panel.form.device_combo.itemData(0) == "auto"
    assert [panel.form.device_combo.itemData(i) for i in (1, 2)] == ["cpu", "cuda"]
    assert "cpu" in available_devices()


def test_pretrain_button_offers_resume(panel, state, qtbot):
    state.set_resume_point({"step": 40, "total_steps": 100, "preset": "tiny"})
    button = panel.form.pretrain_button
    assert "Resume" in button.text() and "40/100" in button.text()
    asked = requests(state)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert asked[0].resume is True and asked[0].preset == "tiny"
    assert asked[0].init_path is None  # a resumed run has its own weights
    state.finish(RunOutcome("pretrain", cancelled=True))
    state.set_resume_point(None)
    assert button.text() == "Start pretraining"


def test_pretraining_continues_the_best_backbone_there_is(panel, state):
    button = panel.form.pretrain_button
    assert state.pretrain_request().init_path is None
    assert "random weights" in button.toolTip()
    state.set_start_options(None, "/app/starter.safetensors", "/app/parser.safetensors")
    assert state.pretrain_request().init_path == Path("/app/starter.safetensors")
    assert "starter backbone" in button.toolTip()
    state.set_start_options("/p/bb.safetensors", "/app/starter.safetensors")
    assert state.pretrain_request().init_path == Path("/p/bb.safetensors")
    assert "project's backbone" in button.toolTip()


def test_progress_updates_labels_and_plot(panel, state, qtbot):
    state.start_finetune()
    progress = panel.progress
    for step in (1, 2, 3):
        state.report_progress({
            "phase": "train", "step": step, "total_steps": 10, "epoch": 1, "epochs": 5,
            "loss": 1.0 / step, "images_per_s": 12.5, "eta_s": 150.0,
        })
    state.report_progress({"phase": "val", "epoch": 1, "step": 3, "mean_f1": 0.625, "miou": 0.5, "best": True})
    assert progress.step_label.text() == "step 3/10 · epoch 1/5"
    assert progress.status_label.text() == "Fine-tuning…"
    assert progress.loss_label.text() == "loss 0.3333"
    assert progress.speed_label.text() == "12.5 img/s"
    assert progress.eta_label.text() == "2 min left"
    assert "62.5" in progress.val_label.text() and "50.0" in progress.val_label.text()
    assert (progress.progress_bar.maximum(), progress.progress_bar.value()) == (10, 3)
    assert [s for s, _ in progress.plot.loss_points] == [1, 2, 3]
    assert progress.plot.val_points == [(3, 0.625, 0.5)]
    progress.plot.grab()  # paints without error

    state.finish(RunOutcome("finetune", "v0004", {"mean_f1": 0.7, "miou": 0.6}))
    assert "v0004" in progress.status_label.text() and "70.0" in progress.status_label.text()
    assert panel.form.finetune_button.isEnabled() and not panel.form.cancel_button.isEnabled()


def test_progress_says_when_the_backbone_is_held(panel, state, qtbot):
    state.start_finetune()
    report = {"phase": "train", "step": 1, "total_steps": 10, "epoch": 1, "epochs": 5, "loss": 1.0}
    state.report_progress({**report, "backbone_held": True})
    assert "backbone held" in panel.progress.status_label.text()
    state.report_progress({**report, "step": 3, "backbone_held": False})
    assert panel.progress.status_label.text() == "Fine-tuning…"


def test_error_is_shown_and_the_panel_is_usable_again(panel, state, qtbot):
    button = panel.form.finetune_button
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    state.fail("fine-tuning failed: labels/0007.png: class value 42 out of range")
    assert panel.progress.error_label.isVisible()
    assert "labels/0007.png" in shown_error(panel)
    assert button.isEnabled()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # a new start clears it
    assert shown_error(panel) == ""


def test_versions_list_activate_and_rollback(panel, state, qtbot):
    box = panel.versions
    assert box.no_model_label.isVisible()
    versions = [version("v0001", "backbone"), version("v0002", f1=0.61), version("v0003", f1=0.7, parent="v0002")]
    state.set_versions(versions, active_ids={"v0001", "v0003"})
    assert listed(panel) == ["v0003", "v0002", "v0001"]
    assert not box.no_model_label.isVisible()
    top = box.tree.topLevelItem(0)
    assert top.text(0) == "★ v0003" and top.text(2) == "70.0" and top.font(0).bold()
    select(panel, "v0003")
    assert not box.activate_button.isEnabled()  # already active
    select(panel, "v0002")
    asked: list[str] = []
    state.activate_requested.connect(asked.append)
    qtbot.mouseClick(box.activate_button, Qt.MouseButton.LeftButton)
    assert asked == ["v0002"]
    assert box.rollback_button.isEnabled()
    rolled: list[bool] = []
    state.rollback_requested.connect(lambda: rolled.append(True))
    qtbot.mouseClick(box.rollback_button, Qt.MouseButton.LeftButton)
    assert rolled == [True]
    state.set_versions(versions[:2], active_ids=["v0002"])
    assert not box.rollback_button.isEnabled()  # one parser: nothing to roll back to


def test_auto_retrain_switch_sets_the_states_policy(panel, state, qtbot):
    asked = requests(state)
    state.note_labeled(5)
    assert asked == []  # off by default
    panel.auto_spin.setValue(3)
    panel.auto_check.setChecked(True)
    state.note_labeled()
    state.note_labeled()
    assert asked == []
    state.note_labeled()
    assert len(asked) == 1 and asked[0].init == state.finetune_request().init
    assert panel.progress.status_label.text() == "Enough new labels: retraining…"
    assert not panel.form.finetune_button.isEnabled()
    panel.auto_check.setChecked(False)
    state.finish(RunOutcome("finetune", "v0002"))
    state.note_labeled(10)
    assert len(asked) == 1


def test_loss_plot_scales_and_draws(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(300, 160)
    image_empty = plot.grab().toImage()
    plot.add_progress({"phase": "train", "step": 1, "total_steps": 4, "loss": 2.3})
    plot.add_progress({"phase": "train", "step": 2, "total_steps": 4, "loss": float("nan")})  # skipped
    plot.add_progress({"phase": "train", "step": 3, "total_steps": 4, "loss": 1.1})
    plot.add_progress({"phase": "val", "step": 4, "mean_f1": 0.5, "miou": None})
    assert plot.loss_points == [(1, 2.3), (3, 1.1)]
    assert plot.total_steps == 4 and plot._loss_max() == 2.5
    assert plot.grab().toImage() != image_empty  # the curves changed the picture


def test_format_duration():
    assert format_duration(None) == ""
    assert format_duration(42) == "42 s"
    assert format_duration(600) == "10 min"
    assert format_duration(4800) == "1 h 20 min"

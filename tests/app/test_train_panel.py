"""The training panel: its buttons ask for the right things, and it shows what it is told."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from faceparse_app.model_store import ModelVersion
from faceparse_app.widgets.loss_plot import LossPlot
from faceparse_app.widgets.train_panel import TrainPanel, available_devices, format_duration


@pytest.fixture
def panel(qtbot) -> TrainPanel:
    widget = TrainPanel(devices=["cpu", "cuda"])
    qtbot.addWidget(widget)
    widget.resize(420, 760)
    widget.show()
    return widget


def version(vid: str, kind: str = "parser", f1: float | None = None, parent: str | None = None) -> ModelVersion:
    metrics = {"mean_f1": f1, "miou": f1 and f1 - 0.1} if f1 is not None else {}
    return ModelVersion(id=vid, kind=kind, dir=Path("/nowhere") / vid, created="2026-11-28T02:00:00+0000", metrics=metrics, parent=parent)


def test_start_finetune_emits_settings_and_locks_the_controls(panel, qtbot):
    panel.set_init_options("/p/models/v0001/model.safetensors", "/app/starter.safetensors")
    panel.device_combo.setCurrentIndex(panel.device_combo.findData("cuda"))
    panel.epochs_spin.setValue(7)
    panel.steps_spin.setValue(120)
    with qtbot.waitSignal(panel.start_finetune_requested, timeout=1000) as blocker:
        qtbot.mouseClick(panel.finetune_button, Qt.MouseButton.LeftButton)
    settings = blocker.args[0]
    assert settings["init"] == "project"
    assert settings["init_path"] == str(Path("/p/models/v0001/model.safetensors"))
    assert (settings["device"], settings["epochs"], settings["max_steps"]) == ("cuda", 7, 120)
    assert not panel.finetune_button.isEnabled() and not panel.pretrain_button.isEnabled()
    assert panel.cancel_button.isEnabled()
    with qtbot.waitSignal(panel.cancel_requested, timeout=1000):
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)


def test_init_choices_follow_what_exists(panel):
    panel.set_init_options(None, None)
    assert panel.finetune_settings()["init"] == "scratch"
    assert panel.finetune_settings()["init_path"] is None
    panel.set_init_options(None, "/app/starter.safetensors")
    assert panel.finetune_settings()["init"] == "starter"
    panel.set_init_options(None, "/app/starter.safetensors", "/app/parser.safetensors")
    assert panel.finetune_settings()["init"] == "starter_parser"  # measured better for K = 10
    assert panel.finetune_settings()["init_path"] == str(Path("/app/parser.safetensors"))
    # Pretraining finished: the starter parser stays the choice (measured better with few labels).
    panel.set_init_options("/p/bb.safetensors", "/app/starter.safetensors", "/app/parser.safetensors")
    assert panel.finetune_settings()["init"] == "starter_parser"
    index = panel.init_combo.findData("project")
    panel.init_combo.setCurrentIndex(index)
    panel.init_combo.activated.emit(index)  # the user picked it
    panel.set_init_options("/p/bb2.safetensors", "/app/starter.safetensors", "/app/parser.safetensors")
    assert panel.finetune_settings()["init_path"] == str(Path("/p/bb2.safetensors"))  # kept
    panel.set_init_options("/p/bb.safetensors", "/app/starter.safetensors")
    assert panel.finetune_settings()["init"] == "project"
    panel.set_init_file("/mine/backbone.safetensors")
    assert panel.finetune_settings()["init_path"] == str(Path("/mine/backbone.safetensors"))
    # Devices: auto first, then what the machine has.
    assert panel.device_combo.itemData(0) == "auto"
    assert "cpu" in available_devices()


def test_pretrain_button_offers_resume(panel, qtbot):
    panel.set_pretrain_resume({"step": 40, "total_steps": 100, "preset": "tiny"})
    assert "Resume" in panel.pretrain_button.text() and "40/100" in panel.pretrain_button.text()
    with qtbot.waitSignal(panel.start_pretrain_requested, timeout=1000) as blocker:
        qtbot.mouseClick(panel.pretrain_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0]["resume"] is True and blocker.args[0]["preset"] == "tiny"
    assert blocker.args[0]["init_path"] is None  # a resumed run has its own weights
    panel.on_cancelled()
    panel.set_pretrain_resume(None)
    assert panel.pretrain_button.text() == "Start pretraining"


def test_pretraining_continues_the_best_backbone_there_is(panel):
    panel.set_init_options(None, None)
    assert panel.pretrain_settings()["init_path"] is None
    assert "random weights" in panel.pretrain_button.toolTip()
    panel.set_init_options(None, "/app/starter.safetensors", "/app/parser.safetensors")
    assert panel.pretrain_settings()["init_path"] == str(Path("/app/starter.safetensors"))
    assert "starter backbone" in panel.pretrain_button.toolTip()
    panel.set_init_options("/p/bb.safetensors", "/app/starter.safetensors")
    assert panel.pretrain_settings()["init_path"] == str(Path("/p/bb.safetensors"))
    assert "project's backbone" in panel.pretrain_button.toolTip()


def test_progress_updates_labels_and_plot(panel, qtbot):
    panel.set_running("finetune")
    for step in (1, 2, 3):
        panel.on_progress({
            "phase": "train", "step": step, "total_steps": 10, "epoch": 1, "epochs": 5,
            "loss": 1.0 / step, "images_per_s": 12.5, "eta_s": 150.0,
        })
    panel.on_progress({"phase": "val", "epoch": 1, "step": 3, "mean_f1": 0.625, "miou": 0.5, "best": True})
    assert panel.step_label.text() == "step 3/10 · epoch 1/5"
    assert panel.status_label.text() == "Fine-tuning…"
    assert panel.loss_label.text() == "loss 0.3333"
    assert panel.speed_label.text() == "12.5 img/s"
    assert panel.eta_label.text() == "2 min left"
    assert "62.5" in panel.val_label.text() and "50.0" in panel.val_label.text()
    assert (panel.progress_bar.maximum(), panel.progress_bar.value()) == (10, 3)
    assert [s for s, _ in panel.plot.loss_points] == [1, 2, 3]
    assert panel.plot.val_points == [(3, 0.625, 0.5)]
    panel.plot.grab()  # paints without error

    panel.on_finished({"kind": "finetune", "version": "v0004", "metrics": {"mean_f1": 0.7, "miou": 0.6}})
    assert "v0004" in panel.status_label.text() and "70.0" in panel.status_label.text()
    assert panel.finetune_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_progress_says_when_the_backbone_is_held(panel, qtbot):
    panel.set_running("finetune")
    report = {"phase": "train", "step": 1, "total_steps": 10, "epoch": 1, "epochs": 5, "loss": 1.0}
    panel.on_progress({**report, "backbone_held": True})
    assert "backbone held" in panel.status_label.text()
    panel.on_progress({**report, "step": 3, "backbone_held": False})
    assert panel.status_label.text() == "Fine-tuning…"


def test_error_is_shown_and_the_panel_is_usable_again(panel, qtbot):
    qtbot.mouseClick(panel.finetune_button, Qt.MouseButton.LeftButton)
    panel.on_error("fine-tuning failed: labels/0007.png: class value 42 out of range")
    assert panel.error_label.isVisible()
    assert "labels/0007.png" in panel.error_text
    assert panel.finetune_button.isEnabled()
    qtbot.mouseClick(panel.finetune_button, Qt.MouseButton.LeftButton)  # a new start clears it
    assert panel.error_text == ""


def test_versions_list_activate_and_rollback(panel, qtbot):
    assert panel.no_model_label.isVisible()
    versions = [version("v0001", "backbone"), version("v0002", f1=0.61), version("v0003", f1=0.7, parent="v0002")]
    panel.set_versions(versions, active_ids={"v0001", "v0003"})
    assert panel.version_ids() == ["v0003", "v0002", "v0001"]
    assert not panel.no_model_label.isVisible()
    top = panel.versions_tree.topLevelItem(0)
    assert top.text(0) == "★ v0003" and top.text(2) == "70.0" and top.font(0).bold()
    panel.select_version("v0003")
    assert not panel.activate_button.isEnabled()  # already active
    panel.select_version("v0002")
    with qtbot.waitSignal(panel.activate_requested, timeout=1000) as blocker:
        qtbot.mouseClick(panel.activate_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["v0002"]
    assert panel.rollback_button.isEnabled()
    with qtbot.waitSignal(panel.rollback_requested, timeout=1000):
        qtbot.mouseClick(panel.rollback_button, Qt.MouseButton.LeftButton)
    panel.set_versions([v.to_dict() for v in versions[:2]], active_ids=["v0002"])  # dicts work too
    assert not panel.rollback_button.isEnabled()  # one parser: nothing to roll back to


def test_auto_retrain_fires_after_n_new_labels(panel, qtbot):
    fired: list[dict] = []
    panel.auto_retrain_requested.connect(fired.append)
    panel.notify_labeled(5)
    assert fired == []  # off by default
    panel.auto_spin.setValue(3)
    panel.auto_check.setChecked(True)
    panel.notify_labeled()
    panel.notify_labeled()
    assert fired == []
    panel.notify_labeled()
    assert len(fired) == 1 and fired[0]["init"] == panel.finetune_settings()["init"]
    assert panel.running == "finetune"
    # Crossing the threshold during a run waits for the run to end.
    for _ in range(3):
        panel.notify_labeled()
    assert len(fired) == 1
    panel.on_finished({"kind": "finetune", "version": "v0002"})
    assert len(fired) == 2 and panel.running == "finetune"


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

"""User trial 15 (a round trip between the app and the `faceparse` CLI): the engineer's
fine-tuned parser from `faceparse finetune` is a start the app takes, and the file dialog says so."""

from __future__ import annotations

from faceparse_app.loop_state import LoopState
from faceparse_app.widgets.train_panel import TrainPanel


def test_choose_file_asks_for_a_fine_tuned_parser_or_a_backbone(qtbot, monkeypatch) -> None:
    """The trial: the dialog behind Start from → Choose file… asked for "a pretrained backbone",
    so a parser fine-tuned with the CLI (finetune_best.safetensors), which it takes and continues
    from, looked refused."""
    captions: list[str] = []
    monkeypatch.setattr("faceparse_app.widgets.train_form.QFileDialog.getOpenFileName",
                        lambda parent, caption, *a, **k: captions.append(caption) or ("", ""))
    panel = TrainPanel(LoopState(devices=["cpu"]))
    qtbot.addWidget(panel)
    combo = panel.form.init_combo
    combo.activated.emit(combo.findData("file"))
    assert len(captions) == 1
    assert "fine-tuned" in captions[0] and "backbone" in captions[0]

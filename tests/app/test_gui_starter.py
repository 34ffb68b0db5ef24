"""A new project with the shipped starter models: the first real face opened gets a useful
pre-label, and fine-tuning starts from the starter parser and publishes the project's own model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.app.test_gui_canvas import make_window
from tests.app.test_gui_model_loop import WAIT_MS, key, status
from trainer.checkpoint import read_metadata
from trainer.data.imageio import read_label
from trainer.starter import STARTER_PARSER

pytestmark = pytest.mark.uses_starter_models


def mean_f1(pred: np.ndarray, truth: np.ndarray) -> float:
    scores = []
    for c in range(1, 11):
        p, t = pred == c, truth == c
        if t.any() or p.any():
            scores.append(2 * (p & t).sum() / (p.sum() + t.sum()))
    return float(np.mean(scores))


def test_first_real_face_gets_a_starter_prelabel_and_training_starts_from_it(
    qtbot, tmp_path, shared_data
):
    helen = shared_data / "lapa-format-helen" / "test"
    names = sorted(p.stem for p in (helen / "images").iterdir())[:2]
    folder = tmp_path / "faces"
    folder.mkdir()
    for name in names:
        shutil.copy(helen / "images" / f"{name}.png", folder / f"{name}.png")
    window = make_window(qtbot, tmp_path, open_project=False)
    panel, state = window.train_panel, window.loop_state
    assert window.open_project(folder)
    session = window.session
    first = session.current

    # The project has no model: the starter parser pre-labels, and says so in the status bar.
    qtbot.waitUntil(lambda: status(window, first.id) == ("pre-labeled", "starter"), timeout=WAIT_MS)
    assert window.canvas_status.model.text() == "model starter"
    truth = read_label(helen / "labels" / first.relpath)
    assert mean_f1(session.document.label, truth) > 0.5, "HELEN was never trained on"
    assert not window.train_offer.isVisible()  # no "no model yet" offer

    # Fine-tuning starts from the starter parser by default (BENCHMARKS.md, "Starter models").
    assert state.finetune_request().init == "starter_parser"
    assert state.finetune_request().init_path == STARTER_PARSER
    key(window, "a")  # accept the pre-label as this face's label
    panel.form.device_combo.setCurrentIndex(panel.form.device_combo.findData("cpu"))
    panel.form.finetune.steps_spin.setValue(1)
    panel.form.finetune.batch_spin.setValue(2)
    with qtbot.waitSignal(window.model_loop.training.job_done, timeout=WAIT_MS):
        panel.form.finetune_button.click()
    (version,) = window.model_loop.store.versions("parser")
    assert version.parent == "starter"
    assert read_metadata(version.path)["init"] == f"ckpt:{STARTER_PARSER}"
    # Trained on an accepted pre-label only, nothing could score it: it is kept aside and the
    # starter goes on pre-labeling (until the annotator activates it, or a scored one wins).
    assert version.metrics["activated"] is False
    assert window.model_loop.store.active("parser") is None
    # The bar over the canvas says why, as the panel does: nothing scored it (it did not score
    # below anything).
    said = window.message_bar.message
    assert "scored below" not in said and "not validated" in said and version.id in said
    assert window.canvas_status.model.text() == "model starter"

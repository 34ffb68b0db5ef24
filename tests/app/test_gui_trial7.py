"""Trial 7: the model loop in the real window (training panel, versions, gate, pre-labels).

Each test reproduces what a team lead or an ML engineer saw in the trial of 2026-12-07.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from faceparse_app.loop_state import LoopState, RunOutcome
from faceparse_app.model_store import ModelVersion
from faceparse_app.widgets.train_panel import TrainPanel


@pytest.fixture
def panel(qtbot) -> TrainPanel:
    widget = TrainPanel(LoopState(devices=["cpu"]))
    qtbot.addWidget(widget)
    widget.resize(420, 760)
    widget.show()
    return widget


def parser(vid: str, **metrics: object) -> ModelVersion:
    return ModelVersion(id=vid, kind="parser", dir=Path("/nowhere") / vid,
                        created="2026-12-07T04:33:00+0000", metrics=dict(metrics))


KEPT_ASIDE = {"mean_f1": 0.973, "miou": 0.951, "num_val": 1, "epoch": 1, "activated": False,
              "baseline_mean_f1": 0.998, "candidate_mean_f1": 0.973, "baseline_version": "starter"}
REPLACED = {"mean_f1": 0.9, "miou": 0.8, "num_val": 2, "epoch": 2, "activated": True,
            "baseline_mean_f1": 0.85, "candidate_mean_f1": 0.9, "baseline_version": "starter"}


def test_outcome_follows_activating_the_kept_aside_version(panel: TrainPanel) -> None:
    """The trial: v0001 was kept aside ("starter stays in use; activate v0001 below"); the lead
    activated it, and the panel went on saying the starter stays in use, beside a list whose ★
    said v0001 was the model in use."""
    state = panel.state
    state.set_versions([parser("v0001", **KEPT_ASIDE)], ())
    state.finish(RunOutcome(kind="finetune", version="v0001", metrics=KEPT_ASIDE))
    assert "stays in use" in panel.progress.status_label.text()
    state.set_versions([parser("v0001", **KEPT_ASIDE)], ("v0001",))
    text = panel.progress.status_label.text()
    assert "stays in use" not in text and "activate v0001 below" not in text
    assert "v0001 is in use" in text
    assert "97.3" in text and "99.8" in text  # the gate's comparison is still there to read
    state.set_versions([parser("v0001", **KEPT_ASIDE)], ())  # rolled back: as it was
    assert "stays in use" in panel.progress.status_label.text()


def test_outcome_follows_rolling_back_the_version_it_published(panel: TrainPanel) -> None:
    """A version that passed the gate and was rolled back: the panel must not go on saying
    it replaces the starter."""
    state = panel.state
    state.set_versions([parser("v0001", **REPLACED)], ("v0001",))
    state.finish(RunOutcome(kind="finetune", version="v0001", metrics=REPLACED))
    assert "which it replaces" in panel.progress.status_label.text()
    state.set_versions([parser("v0001", **REPLACED)], ())
    text = panel.progress.status_label.text()
    assert "which it replaces" not in text
    assert "no longer in use" in text

"""Review of trial 13's merge (t63): what an annotator would still notice."""

from __future__ import annotations

from pathlib import Path


def test_the_versions_list_scores_the_replaced_parser_as_the_outcome_did(qtbot, tmp_path: Path) -> None:
    """v0001's own run compared it with the starter on the one face held out then (99.0%);
    v0002's run, with more faces held out, said "96.7% against 96.4% for v0001, which it
    replaces". The list must not show v0001 at 99.0 above v0002 at 96.7 (the trial's "the new
    model in use looked worse than the one it replaced"): v0001 reads as that outcome scored it."""
    from tests.app.test_gui_trial13 import versions_rows

    first = {
        "mean_f1": 0.842, "miou": 0.76, "baseline_version": "starter", "baseline_mean_f1": 0.95,
        "baseline_miou": 0.90, "candidate_mean_f1": 0.99, "candidate_miou": 0.97,
    }  # fmt: skip
    second = {
        "mean_f1": 0.837, "miou": 0.753, "baseline_version": "v0001", "baseline_mean_f1": 0.964,
        "baseline_miou": 0.93, "candidate_mean_f1": 0.967, "candidate_miou": 0.94,
    }  # fmt: skip
    rows = versions_rows(qtbot, tmp_path, [first, second])
    assert (rows["v0002"].text(2), rows["v0002"].text(3)) == ("96.7", "94.0")
    assert (rows["v0001"].text(2), rows["v0001"].text(3)) == ("96.4", "93.0")

"""A parser is judged on the faces an annotator labeled by hand, and never swapped in when it
scores below the one in use (issue 31): accepted pre-labels are the model's own output."""

from __future__ import annotations

import dataclasses

import pytest

from faceparse_app import training
from faceparse_app.model_store import ModelStore
from faceparse_app.training import run_finetune_on_files, split_by_hand
from faceparse_app.widgets.train_progress import finetune_outcome_text
from tests.app.test_training_jobs import TINY, faces_dir, labeled_files  # noqa: F401 (fixture)


def test_validation_faces_are_hand_labeled_ones_only(faces_dir):  # noqa: F811
    files = labeled_files(faces_dir)
    accepted = [dataclasses.replace(f, by_hand=False) for f in files]
    assert split_by_hand(accepted) == ([0, 1, 2, 3, 4], [])
    mixed = accepted[:3] + files[3:]  # two faces drawn by hand
    train, val = split_by_hand(mixed, 0.5)
    assert val and set(val) <= {3, 4} and sorted(train + val) == list(range(5))


def test_a_run_without_hand_labels_is_published_as_not_validated(faces_dir, tmp_path):  # noqa: F811
    store = ModelStore(tmp_path / "models")
    files = [dataclasses.replace(f, by_hand=False) for f in labeled_files(faces_dir)]
    result = run_finetune_on_files(files, tmp_path / "run", max_steps=1, store=store, **TINY)
    assert result.val_names == [] and len(result.train_names) == 5
    assert result.version.metrics.get("mean_f1") is None and result.version.metrics["num_val"] == 0
    text = finetune_outcome_text(result.version.id, result.version.metrics)
    assert "not validated" in text and "%" not in text


@pytest.mark.parametrize("candidate, swapped", [(0.50, False), (0.70, True)])
def test_a_worse_parser_is_kept_but_not_swapped_in(faces_dir, tmp_path, monkeypatch, candidate, swapped):  # noqa: F811
    store = ModelStore(tmp_path / "models")
    first = run_finetune_on_files(labeled_files(faces_dir), tmp_path / "run1", max_steps=1, store=store, **TINY)
    held_out: list[int] = []

    def compare(new, baseline, val_samples, device):  # the two scores, without two evaluations
        held_out.append(len(val_samples))
        return {"baseline_version": baseline[1], "baseline_mean_f1": 0.60, "candidate_mean_f1": candidate}

    monkeypatch.setattr(training, "compare_on_holdout", compare)
    second = run_finetune_on_files(
        labeled_files(faces_dir), tmp_path / "run2", max_steps=1, store=store,
        baseline=store.parser_for_prelabel(), **TINY,
    )  # fmt: skip
    assert held_out == [len(second.val_names)] and held_out[0] >= 1
    assert (store.active("parser").id == second.version.id) is swapped
    metrics = second.version.metrics
    assert metrics["baseline_mean_f1"] == 0.60 and metrics["candidate_mean_f1"] == candidate
    text = finetune_outcome_text(second.version.id, metrics)
    assert (f"{first.version.id} stays in use" in text) is not swapped


def test_the_comparison_scores_both_parsers_on_the_same_faces(faces_dir, tmp_path):  # noqa: F811
    store = ModelStore(tmp_path / "models")
    files = labeled_files(faces_dir)
    run = run_finetune_on_files(files, tmp_path / "run", max_steps=1, store=store, **TINY)
    same = training.compare_on_holdout(
        run.version.path, (run.version.path, run.version.id), training.LazySamples(files[:2]), "cpu"
    )
    assert same["baseline_version"] == run.version.id
    assert same["candidate_mean_f1"] == pytest.approx(same["baseline_mean_f1"])


def test_an_unscored_parser_never_replaces_the_one_in_use(faces_dir, tmp_path):  # noqa: F811
    """Trial 9: a fine-tune with no hand-labeled face to hold out was made active unscored, and
    its pre-labels were worse (a pink wall as hair, a neck as a brow). With a parser in use it
    is now kept aside, and the outcome and the versions list say how to use it anyway."""
    from faceparse_app.widgets.model_versions import version_note

    store = ModelStore(tmp_path / "models")
    first = run_finetune_on_files(labeled_files(faces_dir), tmp_path / "run1", max_steps=1, store=store, **TINY)
    accepted = [dataclasses.replace(f, by_hand=False) for f in labeled_files(faces_dir)]
    second = run_finetune_on_files(
        accepted, tmp_path / "run2", max_steps=1, store=store,
        baseline=store.parser_for_prelabel(), **TINY,
    )  # fmt: skip
    assert store.active("parser").id == first.version.id
    assert second.version.metrics["activated"] is False
    text = finetune_outcome_text(second.version.id, second.version.metrics)
    assert "not validated" in text and f"{first.version.id} stays in use" in text
    assert "activate" in text and "not validated" in version_note(second.version)


def test_the_first_parser_of_a_project_without_a_starter_is_used_unscored(faces_dir, tmp_path):  # noqa: F811
    """With no parser at all to pre-label (no starter installed), an unscored one is better than
    none: it is made active."""
    store = ModelStore(tmp_path / "models")
    accepted = [dataclasses.replace(f, by_hand=False) for f in labeled_files(faces_dir)]
    run = run_finetune_on_files(accepted, tmp_path / "run", max_steps=1, store=store, baseline=None, **TINY)
    assert store.active("parser").id == run.version.id

"""The model in the loop's state, without Qt: start choice, requests, retrain policy, jobs."""

from __future__ import annotations

from pathlib import Path

from faceparse_app.loop_state import LoopState, RetrainPolicy, RunOutcome
from faceparse_app.training_settings import (
    FINETUNE_LENGTH,
    PRETRAIN_LENGTH,
    FinetuneRequest,
    PretrainRequest,
    RunLength,
    TrainingSettings,
)


class Recorder:
    """Every event a state emits, in order, as (name, args)."""

    NAMES = ("running_changed", "finished", "failed", "retraining", "finetune_requested",
             "pretrain_requested", "cancel_requested", "activate_requested", "rollback_requested")

    def __init__(self, state: LoopState) -> None:
        self.events: list[tuple[str, tuple]] = []
        for name in self.NAMES:
            getattr(state, name).connect(lambda *args, name=name: self.events.append((name, args)))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def requests(self) -> list[object]:
        return [args[0] for name, args in self.events if name.endswith("_requested") and args]


def test_fine_tuning_and_pretraining_have_their_own_defaults():
    state = LoopState()
    ft, pt = state.finetune_request(), state.pretrain_request()
    assert ft.length == FINETUNE_LENGTH and pt.length == PRETRAIN_LENGTH
    assert FINETUNE_LENGTH != PRETRAIN_LENGTH  # the form's fine-tuning boxes no longer feed pretraining
    # The request's own defaults are the same numbers: one place.
    assert FinetuneRequest().length == TrainingSettings().finetune == FINETUNE_LENGTH
    assert PretrainRequest().length == TrainingSettings().pretrain == PRETRAIN_LENGTH
    state.update_settings(finetune=RunLength(epochs=5, batch_size=2, max_steps=2))
    assert state.pretrain_request().length == PRETRAIN_LENGTH


def test_the_start_follows_what_exists_until_the_user_picks():
    state = LoopState()
    assert state.finetune_request().init == "scratch" and state.finetune_request().init_path is None
    state.set_start_options(None, "/app/starter.safetensors")
    assert state.finetune_request().init == "starter"
    state.set_start_options(None, "/app/starter.safetensors", "/app/parser.safetensors")
    request = state.finetune_request()
    assert (request.init, request.init_path) == ("starter_parser", Path("/app/parser.safetensors"))
    # A pretrained project backbone does not displace the starter parser (better with few labels).
    state.set_start_options("/p/bb.safetensors", "/app/starter.safetensors", "/app/parser.safetensors")
    assert state.finetune_request().init == "starter_parser"
    state.choose_start("project")  # the user's pick stays while its file exists
    state.set_start_options("/p/bb2.safetensors", "/app/starter.safetensors", "/app/parser.safetensors")
    assert state.finetune_request().init_path == Path("/p/bb2.safetensors")
    state.set_start_options(None, "/app/starter.safetensors", "/app/parser.safetensors")
    assert state.finetune_request().init == "starter_parser"  # gone: the best there is again
    state.choose_start("file")  # the file dialog was cancelled: nothing changes
    assert state.finetune_request().init == "starter_parser"
    state.set_start_file("/mine/backbone.safetensors")
    assert state.finetune_request().init_path == Path("/mine/backbone.safetensors")
    # A fresh pretraining run continues the best backbone; a resumed one keeps its own preset.
    assert state.pretrain_request().init_path == Path("/app/starter.safetensors")
    state.set_resume_point({"step": 40, "total_steps": 100, "preset": "tiny"})
    resumed = state.pretrain_request()
    assert resumed.resume and resumed.init_path is None and resumed.preset == "tiny"


def test_a_start_locks_out_a_second_one_until_the_job_ends():
    state = LoopState()
    events = Recorder(state)
    assert state.start_finetune() and state.running == "finetune"
    assert not state.start_pretrain() and not state.start_finetune()
    state.cancel()
    state.finish(RunOutcome("finetune", cancelled=True))
    assert state.running is None
    assert events.names() == ["running_changed", "finetune_requested", "cancel_requested",
                              "running_changed", "finished"]
    assert isinstance(events.requests()[0], FinetuneRequest)
    state.cancel()  # nothing running: nothing to ask
    assert events.names().count("cancel_requested") == 1


def test_a_failed_start_says_why_and_the_next_start_clears_it():
    state = LoopState()
    state.start_finetune()
    state.fail("No labeled faces yet")
    assert state.running is None and state.error == "No labeled faces yet"
    state.start_pretrain()
    assert state.error == "" and state.running == "pretrain"


def test_retrain_policy_counts_only_while_on():
    policy = RetrainPolicy(every=3, enabled=False)
    assert [policy.labeled() for _ in range(5)] == [False] * 5  # off: never fires, never counts
    policy.enabled = True
    assert [policy.labeled() for _ in range(7)] == [False, False, True, False, False, True, False]
    assert policy.remaining == 2
    assert policy.labeled(5) is True  # a batch of labels crossing the threshold
    assert RetrainPolicy(every=0).every == 1


def test_a_retrain_due_during_a_run_starts_when_it_ends_and_not_after_a_failure():
    state = LoopState()
    events = Recorder(state)
    state.note_labeled(5)
    assert events.events == []  # off by default
    state.set_retrain(enabled=True, every=2)
    state.note_labeled()
    state.note_labeled()
    assert state.running == "finetune" and events.names()[-2:] == ["retraining", "finetune_requested"]
    for _ in range(2):
        state.note_labeled()  # due during the run: waits
    assert events.names().count("finetune_requested") == 1 and state.retrain.pending
    state.finish(RunOutcome("finetune", version="v0002"))
    assert events.names().count("finetune_requested") == 2 and state.running == "finetune"
    # A failure drops a retrain that came due meanwhile; so does closing the project.
    state.note_labeled(2)
    state.fail("out of memory")
    assert state.running is None and not state.retrain.pending
    state.start_pretrain()
    state.note_labeled(2)
    state.abandon(RunOutcome("pretrain", cancelled=True))
    assert state.running is None and events.names().count("finetune_requested") == 2


def test_run_outcome_from_a_job_summary():
    outcome = RunOutcome.from_summary(
        {"kind": "pretrain", "version": "v0003", "metrics": {"loss": 0.2}, "cancelled": False,
         "note": "1 unreadable photo left out"}
    )
    assert outcome == RunOutcome("pretrain", "v0003", {"loss": 0.2}, False, "1 unreadable photo left out")

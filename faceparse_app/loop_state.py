"""The model in the loop as a Qt-free state: training jobs, model versions, the retrain policy
and where fine-tuning starts. The training panel observes it; the controllers drive it.

Views (``widgets/train_panel.py``) show a :class:`LoopState` and turn the user's clicks into its
intents (:meth:`LoopState.start_finetune`, :meth:`~LoopState.cancel`, ...); the state decides
(no double start, when an automatic retrain is due) and says what should happen through its
events, which :class:`faceparse_app.training_runs.TrainingRuns` and
:class:`faceparse_app.model_loop.ModelLoop` carry out. They report back through
:meth:`~LoopState.report_progress`, :meth:`~LoopState.finish`, :meth:`~LoopState.fail`,
:meth:`~LoopState.set_versions` and friends. Events are psygnal signals: synchronous, in the
caller's thread (here always the GUI thread), no Qt needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from psygnal import Signal

from faceparse_app.training_settings import (
    FinetuneRequest,
    PretrainRequest,
    StartKey,
    TrainingSettings,
)

if TYPE_CHECKING:  # model_store loads torch (seconds); the panel that shows this state must not
    from faceparse_app.model_store import ModelVersion

JobKind = Literal["finetune", "pretrain"]

# The start chosen until the user picks one: the first available. The starter parser first: for
# K = 10 new labels it beat a backbone start by 7.2 mIoU on CelebA faces and 10.6 on HELEN, and a
# backbone continued on the photos (what the app's pretraining makes) fine-tunes no better than
# the starter backbone (BENCHMARKS.md, "Starter models"); then the project's own backbone.
DEFAULT_START_ORDER: tuple[StartKey, ...] = ("starter_parser", "project", "starter", "scratch")
NEEDS_FILE: tuple[StartKey, ...] = ("project", "starter", "starter_parser")


class StartChoice:
    """Where fine-tuning starts: a checkpoint that exists, or random weights.

    Until the user picks, the best available start (``DEFAULT_START_ORDER``) is chosen and
    follows what exists; a start the user picked stays while its file exists.

    Attributes:
        key: the start chosen.
        paths: the checkpoint of each start that needs one (None: not available).
        automatic: True until the user picks.
    """

    def __init__(self) -> None:
        self.paths: dict[StartKey, Path | None] = dict.fromkeys(
            ("project", "starter", "starter_parser", "file"), None
        )
        self.key: StartKey = "scratch"
        self.automatic = True

    def available(self, key: StartKey) -> bool:
        """Whether the start can be chosen now ("file" can always be: a file is asked for)."""
        return key not in NEEDS_FILE or self.paths[key] is not None

    @property
    def path(self) -> Path | None:
        """The checkpoint the chosen start uses (None: random weights)."""
        return None if self.key == "scratch" else self.paths[self.key]

    @property
    def pretrain_start(self) -> Path | None:
        """The backbone a fresh pretraining run continues: the project's, else the starter."""
        return self.paths["project"] or self.paths["starter"]

    def set_options(
        self, project: Path | str | None, starter: Path | str | None, starter_parser: Path | str | None
    ) -> None:
        for key, value in (("project", project), ("starter", starter), ("starter_parser", starter_parser)):
            self.paths[key] = Path(value) if value else None
        if self.automatic or not self.available(self.key):
            self._choose_best()

    def choose(self, key: StartKey) -> None:
        """The user picked a start (for "file", :meth:`set_file` follows with the file)."""
        self.key = key
        self.automatic = False
        if key == "file" and self.paths["file"] is None:
            self._choose_best()  # no file (the dialog was cancelled): back to the best start

    def set_file(self, path: Path | str) -> None:
        """Start from a checkpoint the user chose."""
        self.paths["file"] = Path(path)
        self.key = "file"
        self.automatic = False

    def _choose_best(self) -> None:
        self.key = next(k for k in DEFAULT_START_ORDER if self.available(k))
        self.automatic = True


class RetrainPolicy:
    """When to fine-tune again on its own: after ``every`` newly labeled faces, when switched on.

    Attributes:
        enabled: whether automatic retraining is on (off by default).
        every: retrain after this many new labels (≥ 1).
        count: new labels counted since the last (re)start.
        pending: a retrain came due during a run; it starts when the run ends.
    """

    def __init__(self, every: int = 10, enabled: bool = False) -> None:
        self.every = max(1, int(every))
        self.enabled = enabled
        self.count = 0
        self.pending = False

    def labeled(self, n: int = 1) -> bool:
        """Record ``n`` newly labeled faces; True when the threshold is reached.

        Reaching the threshold resets the count, so the next trigger needs ``every`` more faces.
        Nothing is counted while disabled, so turning it on never triggers at once.
        """
        if not self.enabled:
            return False
        self.count += int(n)
        if self.count >= self.every:
            self.count = 0
            return True
        return False

    def reset(self) -> None:
        """Start counting afresh (after a training run started)."""
        self.count = 0

    @property
    def remaining(self) -> int:
        """New labels still needed before the next retrain."""
        return max(0, self.every - self.count)


@dataclass(frozen=True)
class RunOutcome:
    """How a training run ended (not an error: see :meth:`LoopState.fail`).

    Attributes:
        kind: "finetune" or "pretrain".
        version: the version it published, or None.
        metrics: the published version's scores (mean_f1, miou, ...).
        cancelled: it stopped early and published nothing.
        note: something the user should know (e.g. photos left out).
    """

    kind: JobKind
    version: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    note: str = ""

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> RunOutcome:
        """From a job result's ``summary()`` dict (``faceparse_app.training``)."""
        return cls(
            kind=summary["kind"],
            version=summary.get("version"),
            metrics=dict(summary.get("metrics") or {}),
            cancelled=bool(summary.get("cancelled")),
            note=summary.get("note") or "",
        )


class LoopState:
    """What the training panel shows and asks for; Qt-free.

    Args:
        devices: the devices the panel offers besides "auto" (see
            ``training_settings.available_devices``).

    Attributes:
        devices: as given.
        settings: the training form (device, model size, each kind's length).
        start: where fine-tuning starts.
        retrain: the automatic retrain policy.
        running: the kind of job going ("finetune", "pretrain") or None.
        resume_point: the unfinished pretraining run ({"step", "total_steps", "preset", "path"}),
            or None.
        versions: the project's model versions; active_ids: those active.
        error: why the last run failed ("" after a new start).

    Events (view-facing):
        running_changed(kind_or_None), settings_changed(), start_changed(), resume_changed(),
        versions_changed(), project_left() (the panel's last run belonged to the project left),
        progress(report), finished(RunOutcome), failed(text), refused(kind, text) (a start
        that could not begin), retraining() (an automatic retrain began).
    Events (controller-facing, the state's decisions):
        finetune_requested(FinetuneRequest), pretrain_requested(PretrainRequest),
        cancel_requested(), activate_requested(version_id), rollback_requested().
    """

    running_changed = Signal(object)
    settings_changed = Signal()
    start_changed = Signal()
    resume_changed = Signal()
    versions_changed = Signal()
    project_left = Signal()
    progress = Signal(dict)
    finished = Signal(object)
    failed = Signal(str)
    refused = Signal(str, str)
    retraining = Signal()

    finetune_requested = Signal(object)
    pretrain_requested = Signal(object)
    cancel_requested = Signal()
    activate_requested = Signal(str)
    rollback_requested = Signal()

    def __init__(self, devices: Sequence[str] = ("cpu",)) -> None:
        self.devices = tuple(devices)
        self.settings = TrainingSettings()
        self.start = StartChoice()
        self.retrain = RetrainPolicy()
        self.running: JobKind | None = None
        self.resume_point: Mapping[str, Any] | None = None
        self.versions: tuple[ModelVersion, ...] = ()
        self.active_ids: frozenset[str] = frozenset()
        self.error = ""

    # -- requests -------------------------------------------------------------------------------

    def finetune_request(self) -> FinetuneRequest:
        """What a fine-tuning start asks for now."""
        s = self.settings
        return FinetuneRequest(self.start.key, self.start.path, s.device, s.preset, s.finetune)

    def pretrain_request(self) -> PretrainRequest:
        """What a pretraining start asks for now: resume the unfinished run (with its preset),
        else continue the best backbone there is."""
        s, point = self.settings, self.resume_point
        if point is not None:
            return PretrainRequest(s.device, point.get("preset") or s.preset, s.pretrain, True, None)
        return PretrainRequest(s.device, s.preset, s.pretrain, True, self.start.pretrain_start)

    # -- the user's intents ---------------------------------------------------------------------

    def update_settings(self, **changes: Any) -> None:
        """Change the form (``device``, ``preset``, ``finetune``, ``pretrain``)."""
        settings = replace(self.settings, **changes)
        if settings != self.settings:
            self.settings = settings
            self.settings_changed.emit()

    def start_finetune(self) -> bool:
        """Fine-tune now (False while a job runs: no double start)."""
        if self.running is not None:
            return False
        self.retrain.reset()
        request = self.finetune_request()
        self._set_running("finetune")
        self.finetune_requested.emit(request)
        return True

    def start_pretrain(self) -> bool:
        """Pretrain now, or resume the unfinished run (False while a job runs)."""
        if self.running is not None:
            return False
        request = self.pretrain_request()
        self._set_running("pretrain")
        self.pretrain_requested.emit(request)
        return True

    def cancel(self) -> None:
        """Stop the running job (it stops within one step and publishes nothing)."""
        if self.running is not None:
            self.cancel_requested.emit()

    def activate(self, version_id: str) -> None:
        self.activate_requested.emit(version_id)

    def rollback(self) -> None:
        """Go back to the previous parser version."""
        self.rollback_requested.emit()

    def choose_start(self, key: StartKey) -> None:
        self.start.choose(key)
        self.start_changed.emit()

    def set_start_file(self, path: Path | str) -> None:
        self.start.set_file(path)
        self.start_changed.emit()

    def set_retrain(self, enabled: bool | None = None, every: int | None = None) -> None:
        """Switch automatic retraining on or off (the count starts afresh), or set its threshold."""
        if enabled is not None:
            self.retrain.enabled = enabled
            self.retrain.reset()
        if every is not None:
            self.retrain.every = max(1, int(every))

    def note_labeled(self, n: int = 1) -> None:
        """``n`` more faces were labeled: start a retrain when one is due (after the run, if one
        is going)."""
        if not self.retrain.labeled(n):
            return
        if self.running is None:
            self._retrain()
        else:
            self.retrain.pending = True

    # -- what the controllers report ------------------------------------------------------------

    def set_start_options(
        self,
        project: Path | str | None,
        starter: Path | str | None,
        starter_parser: Path | str | None = None,
    ) -> None:
        """Which starting checkpoints exist (the project's backbone, the starter ones)."""
        self.start.set_options(project, starter, starter_parser)
        self.start_changed.emit()

    def set_resume_point(self, point: Mapping[str, Any] | None) -> None:
        """The unfinished pretraining run to offer resuming (``pretraining.pretrain_resume_point``)."""
        self.resume_point = point
        self.resume_changed.emit()

    def set_versions(self, versions: Iterable[ModelVersion], active_ids: Iterable[str] = ()) -> None:
        self.versions = tuple(versions)
        self.active_ids = frozenset(active_ids)
        self.versions_changed.emit()

    def leave_project(self) -> None:
        """The project closed: its versions and its last run's outcome are no longer shown."""
        self.error = ""
        self.set_versions([], ())
        self.project_left.emit()

    def job_started(self, kind: JobKind) -> None:
        """A job started that no intent asked for (a controller called directly)."""
        if self.running != kind:
            self.error = ""
            self._set_running(kind)

    def report_progress(self, report: dict[str, Any]) -> None:
        """A trainer progress dict (``phase`` "train", "val" or "pretrain")."""
        self.progress.emit(report)

    def finish(self, outcome: RunOutcome) -> None:
        """The job ended (published, finished or cancelled); a retrain due meanwhile starts now."""
        self._set_running(None)
        self.finished.emit(outcome)
        if self.retrain.pending and self.running is None:
            self._retrain()

    def abandon(self, outcome: RunOutcome) -> None:
        """The job was stopped because the project closed: idle, and no retrain starts."""
        self.retrain.pending = False
        self._set_running(None)
        self.finished.emit(outcome)

    def fail(self, text: str) -> None:
        """The job failed: say why; a retrain due meanwhile is dropped."""
        self.retrain.pending = False
        self.error = text
        self._set_running(None)
        self.failed.emit(text)

    def refuse(self, text: str) -> None:
        """The job could not start (nothing to train on, no project): say why, as
        :meth:`fail` does, but ``refused`` tells the views that nothing ran."""
        self.retrain.pending = False
        self.error = text
        kind = self.running
        self._set_running(None)
        self.refused.emit(kind or "", text)

    # -------------------------------------------------------------------------------------------

    def _set_running(self, kind: JobKind | None) -> None:
        if kind is not None:
            self.error = ""
        self.running = kind
        self.running_changed.emit(kind)

    def _retrain(self) -> None:
        self.retrain.pending = False
        request = self.finetune_request()
        self._set_running("finetune")
        self.retraining.emit()
        self.finetune_requested.emit(request)


def kept_aside_message(version: ModelVersion) -> str:
    """The bar's word on a fine-tuned version the gate kept aside: it scored below the model in
    use, or no hand-labeled face could score it (accepted pre-labels and imported predictions
    are a model's own output)."""
    if version.metrics.get("mean_f1") is None:
        why = (
            "was published not validated: no face labeled or corrected by hand could be held out "
            "to score it, so it was kept aside and not made active"
        )
    else:
        why = "scored below the model in use on your hand-labeled faces, so it was kept but not made active"
    return f"Model {version.id} {why} (Training panel: activate it to use it anyway)."

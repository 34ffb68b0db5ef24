"""Training runs from the app: fine-tuning and pretraining in the background, asked for by the
:class:`LoopState`.

:class:`TrainingRuns` carries out the state's frozen requests: it takes a snapshot of the labeled
faces, runs the job in a :class:`FunctionWorker` at a lower thread priority, reports progress and
the outcome back to the state and says when a run published a model version (``published``);
:class:`faceparse_app.model_loop.ModelLoop` then swaps the new parser in. Nothing here runs a
model on the GUI thread.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from faceparse_app.loop_state import LoopState, RunOutcome
from faceparse_app.model_store import STARTER_ID, ModelStore
from faceparse_app.pretraining import pretrain_resume_point, run_pretrain_job
from faceparse_app.project import FINISHED
from faceparse_app.session import AnnotationSession
from faceparse_app.training import LabeledFile, drop_run_checkpoints, run_finetune_on_files
from faceparse_app.training_settings import FinetuneRequest, PretrainRequest
from faceparse_app.workers import TRAINING_NICE, FunctionWorker, at_lower_priority
from trainer.errors import FaceParseError
from trainer.hooks import read_jsonl
from trainer.run_files import RunFiles

log = logging.getLogger(__name__)

RUNNING_MARKER = "running"  # in a fine-tuning run's folder while its job runs


def killed_run_note(run_dir: Path) -> str:
    """What a fine-tuning run that the app's end cut short (killed, crashed) had got to."""
    step = total = None
    try:  # the log's last whole line: a kill can cut the one being written
        records = read_jsonl(RunFiles(run_dir, "finetune").log)
        last = records[-1] if records else {}
        step, total = last.get("step"), last.get("total_steps")
    except (OSError, AttributeError):
        pass
    where = f" at step {step} of {total}" if step and total else ""
    stamp = run_dir.name.removeprefix("finetune-")[:15]
    try:
        started = " started " + time.strftime("%Y-%m-%d %H:%M", time.strptime(stamp, "%Y%m%d-%H%M%S"))
    except ValueError:
        started = ""
    return (
        f"The fine-tuning run{started} was stopped{where} "
        "when FaceParse Studio ended without finishing it (killed or crashed); nothing was "
        "published. Start fine-tuning again."
    )


def _drop_running_marker(worker: FunctionWorker) -> None:
    """Remove the marker of the fine-tuning run ``worker`` ran (its second argument, the run
    folder; a pretraining's folder holds none)."""
    run_dir = worker.args[1] if len(worker.args) > 1 else None
    if isinstance(run_dir, Path):
        (run_dir / RUNNING_MARKER).unlink(missing_ok=True)


class TrainingRuns(QObject):
    """Runs the state's fine-tuning and pretraining requests on the open project.

    Args:
        state: the loop state (its start and cancel requests are connected; it is told each
            job's progress and outcome).

    Signals:
        message(text, level): something the user should know.
        published(kind, version): a job ("finetune"/"pretrain") published a model version.
        job_done(kind): a job ended, whatever the outcome.
    """

    message = Signal(str, str)
    published = Signal(str, object)
    job_done = Signal(str)

    def __init__(self, state: LoopState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.session: AnnotationSession | None = None
        self.store: ModelStore | None = None
        self.worker: FunctionWorker | None = None
        self.job_kind: str | None = None
        self._outcome: RunOutcome | str | None = None  # the running job's, reported when done
        state.finetune_requested.connect(self.start_finetune)
        state.pretrain_requested.connect(self.start_pretrain)
        state.cancel_requested.connect(self.cancel)

    def attach(self, session: AnnotationSession, store: ModelStore) -> None:
        """Train on this session's project, publishing into `store`."""
        self.session, self.store = session, store
        session.status_changed.connect(self._on_status_changed)
        # Runs of a window that was killed mid-run kept their weights and their marker; none is
        # going now (one window holds the project).
        killed = []
        for run_dir in sorted(self.run_root.glob("finetune-*")):
            drop_run_checkpoints(run_dir)
            if (run_dir / RUNNING_MARKER).exists():
                killed.append(run_dir)
                (run_dir / RUNNING_MARKER).unlink(missing_ok=True)
        self.state.set_resume_point(pretrain_resume_point(self.pretrain_dir))
        if killed:  # else the panel says "no training yet" of a project that trained
            self.state.abandon(RunOutcome("finetune", cancelled=True, note=killed_run_note(killed[-1])))

    def detach(self) -> None:
        """Cancel a running job (waiting for it) and leave the project."""
        self.stop_job()
        if self.session is not None:
            self.session.status_changed.disconnect(self._on_status_changed)
        self.session, self.store = None, None

    def stop_job(self, timeout_ms: int = 60_000) -> None:
        """Cancel a running training job and wait for its thread (closing the project or app)."""
        worker, kind = self.worker, self.job_kind
        # Events the worker still has queued are ignored from now on (see _start).
        self.worker, self.job_kind, self._outcome = None, None, None
        if worker is not None and worker.is_running:
            worker.cancel()
            if worker.wait(timeout_ms):
                # Quit exits before the worker's queued `done` arrives: a run that ended here
                # must not be reported as killed at the next launch. One still going keeps it.
                _drop_running_marker(worker)
            self.state.abandon(RunOutcome(kind or "finetune", cancelled=True))

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.is_running

    @property
    def run_root(self) -> Path:
        assert self.store is not None
        return self.store.dir.parent / "runs"

    @property
    def pretrain_dir(self) -> Path:
        """The project's pretraining run folder (fixed, so an unfinished run can resume)."""
        assert self.store is not None
        return self.store.dir.parent / "pretrain"

    def labeled_files(self) -> list[LabeledFile]:
        """The finished (labeled or reviewed) faces with a label on disk, to train on."""
        assert self.session is not None
        project = self.session.project
        files = []
        for rec in project.images():
            if rec.status in FINISHED and not rec.missing:
                label = project.label_path(rec)
                if label.is_file():
                    files.append(LabeledFile(
                        rec.relpath, project.image_path(rec), label, rec.content_hash,
                        by_hand=rec.label_source != "model",
                    ))  # fmt: skip
        return files

    def _new_run_dir(self, kind: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            path = self.run_root / (f"{kind}-{stamp}" + (f"-{n}" if n else ""))
            if not path.exists():
                return path
        raise RuntimeError(f"no free run folder name in {self.run_root}")

    def _ready_to_train(self) -> bool:
        """A project is open and no run is going; otherwise say why and return False."""
        if self.session is None or self.store is None:
            self.state.refuse("Open a project first.")
            return False
        if self.running:
            self.message.emit("A training run is already going; cancel it first.", "warning")
            return False
        return True

    def start_finetune(self, request: FinetuneRequest) -> bool:
        """Fine-tune on the labeled faces (a snapshot taken now) and publish a new parser."""
        if not self._ready_to_train():
            return False
        self.session.save_all()  # the snapshot includes the latest strokes
        try:
            files = self.labeled_files()
            run_dir = self._new_run_dir("finetune")
            if files:  # until the job ends: a run dir that keeps it was killed mid-run
                run_dir.mkdir(parents=True)
                (run_dir / RUNNING_MARKER).touch()
        except (FaceParseError, OSError, RuntimeError) as exc:
            self.state.refuse(f"Cannot start fine-tuning: {exc}")
            return False
        if not files:
            self.state.refuse(
                "No labeled faces yet: label a few faces (A or Ctrl+Return marks one labeled), "
                "then start fine-tuning."
            )
            return False
        active = self.store.active("parser")
        parent = active.id if active is not None else None
        if request.init == "starter_parser":
            parent = STARTER_ID
        length = request.length
        worker = FunctionWorker(
            at_lower_priority(run_finetune_on_files, TRAINING_NICE),
            files,
            run_dir,
            store=self.store,
            init_backbone=request.init_path if request.init != "scratch" else None,
            device=request.device,
            preset=request.preset,
            epochs=length.epochs,
            max_steps=length.max_steps,
            batch_size=length.batch_size,
            parent=parent,
            note=f"{len(files)} labeled faces",
            baseline=self.store.parser_for_prelabel(),
        )
        self._start(worker, "finetune")
        return True

    def start_pretrain(self, request: PretrainRequest) -> bool:
        """Self-supervised pretraining on all project images; resumes an unfinished run."""
        if not self._ready_to_train():
            return False
        length = request.length
        worker = FunctionWorker(
            at_lower_priority(run_pretrain_job, TRAINING_NICE),
            [self.session.project.root],
            self.pretrain_dir,
            preset=request.preset,
            epochs=length.epochs,
            batch_size=length.batch_size,
            max_steps=length.max_steps,
            device=request.device,
            resume=request.resume,
            init_backbone=request.init_path,
            store=self.store,
            note="pretrained on the project's images",
        )
        self._start(worker, "pretrain")
        return True

    def cancel(self) -> None:
        """Ask the running job to stop (it does within one training step)."""
        if self.worker is not None:
            self.worker.cancel()

    def _start(self, worker: FunctionWorker, kind: str) -> None:
        self.worker, self.job_kind, self._outcome = worker, kind, None
        self.state.job_started(kind)
        # Each handler first checks that this worker is still the current job: a job left
        # behind by closing the project must not touch the next one.
        worker.progress.connect(lambda r, w=worker: w is self.worker and self.state.report_progress(r))
        worker.finished.connect(lambda r, w=worker: w is self.worker and self._on_job_ended(r))
        worker.cancelled.connect(lambda r, w=worker: w is self.worker and self._on_job_ended(r))
        worker.errored.connect(lambda t, w=worker: w is self.worker and self._on_job_error(t))
        worker.done.connect(lambda w=worker: self._on_job_done(w))
        worker.start()

    def _on_job_ended(self, result: Any) -> None:
        """Finished or cancelled: keep the outcome for ``done`` (the worker is still running)."""
        self._outcome = RunOutcome.from_summary(result.summary())
        version = getattr(result, "version", None)
        if version is not None:
            self.published.emit(self.job_kind or "", version)

    def _on_job_error(self, text: str) -> None:
        worker = self.worker
        if worker is not None and worker.traceback:
            log.error("training job failed:\n%s", worker.traceback)
        self._outcome = text

    def _on_job_done(self, worker: FunctionWorker) -> None:
        """Report the outcome once the worker is gone, so a retrain due meanwhile can start."""
        _drop_running_marker(worker)
        if worker is not self.worker:
            return
        kind, outcome = self.job_kind or "", self._outcome
        self.worker, self.job_kind, self._outcome = None, None, None
        if kind == "pretrain" and self.store is not None:
            self.state.set_resume_point(pretrain_resume_point(self.pretrain_dir))
        if isinstance(outcome, str):
            self.state.fail(outcome)
            self.message.emit(
                f"Training stopped with an error: {outcome} No model was published and no label "
                "was changed.",
                "error",
            )
        else:
            outcome = outcome or RunOutcome(kind or "finetune", cancelled=True)  # never silent
            if kind == "pretrain" and outcome.version is not None:
                self._say_backbone_published(outcome)
            self.state.finish(outcome)
        self.job_done.emit(kind)

    def _say_backbone_published(self, outcome: RunOutcome) -> None:
        if self.state.start.key == "project":
            then = "the next fine-tuning starts from it."
        else:
            then = (
                "fine-tuning still starts from the starter parser (better with few "
                "labels); choose Project backbone under Start from to use it."
            )
        note = outcome.note
        self.message.emit(
            f"Pretrained backbone {outcome.version} published; {then}"
            + (f" {note[0].upper()}{note[1:]}." if note else ""),
            "warning" if note else "info",
        )

    def _on_status_changed(self, _image_id: int, old: str, new: str) -> None:
        if new in FINISHED and old not in FINISHED:
            self.state.note_labeled(1)  # may start an automatic retrain

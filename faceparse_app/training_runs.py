"""Training runs from the app: fine-tuning and pretraining in the background, driven by the
:class:`TrainPanel`.

:class:`TrainingRuns` takes a snapshot of the labeled faces, runs the job in a
:class:`FunctionWorker` at a lower thread priority, reports progress to the panel and says when
a run published a model version (``published``); :class:`faceparse_app.model_loop.ModelLoop`
then swaps the new parser in. Nothing here runs a model on the GUI thread.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from faceparse_app.model_store import STARTER_ID, ModelStore
from faceparse_app.project import FINISHED
from faceparse_app.session import AnnotationSession
from faceparse_app.training import (
    LabeledFile,
    pretrain_resume_point,
    run_finetune_on_files,
    run_pretrain_job,
)
from faceparse_app.widgets.train_panel import TrainPanel
from faceparse_app.workers import TRAINING_NICE, FunctionWorker, at_lower_priority
from trainer.errors import FaceParseError

log = logging.getLogger(__name__)


class TrainingRuns(QObject):
    """Runs the panel's fine-tuning and pretraining jobs on the open project.

    Args:
        panel: the training panel (its start, cancel and auto-retrain requests are connected).

    Signals:
        message(text, level): something the user should know.
        published(kind, version_or_None): a job finished ("finetune"/"pretrain"), with the
            model version it published.
        job_done(kind): a job ended, whatever the outcome.
    """

    message = Signal(str, str)
    published = Signal(str, object)
    job_done = Signal(str)

    def __init__(self, panel: TrainPanel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.panel = panel
        self.session: AnnotationSession | None = None
        self.store: ModelStore | None = None
        self.worker: FunctionWorker | None = None
        self.job_kind: str | None = None
        panel.start_finetune_requested.connect(self.start_finetune)
        panel.auto_retrain_requested.connect(self.start_finetune)
        panel.start_pretrain_requested.connect(self.start_pretrain)
        panel.cancel_requested.connect(self.cancel)

    def attach(self, session: AnnotationSession, store: ModelStore) -> None:
        """Train on this session's project, publishing into `store`."""
        self.session, self.store = session, store
        session.status_changed.connect(self._on_status_changed)
        self.panel.set_pretrain_resume(pretrain_resume_point(self.pretrain_dir))

    def detach(self) -> None:
        """Cancel a running job (waiting for it) and leave the project."""
        self.stop_job()
        if self.session is not None:
            self.session.status_changed.disconnect(self._on_status_changed)
        self.session, self.store = None, None

    def stop_job(self, timeout_ms: int = 60_000) -> None:
        """Cancel a running training job and wait for its thread (closing the project or app)."""
        worker = self.worker
        if worker is not None and worker.is_running:
            worker.cancel()
            worker.wait(timeout_ms)
            self.panel.on_cancelled()
        # Events the worker still has queued are ignored from now on (see _start).
        self.worker = None
        self.job_kind = None

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
                    files.append(LabeledFile(rec.relpath, project.image_path(rec), label, rec.content_hash))
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
            self.panel.on_error("Open a project first.")
            return False
        if self.running:
            self.message.emit("A training run is already going; cancel it first.", "warning")
            return False
        return True

    def start_finetune(self, settings: dict[str, Any]) -> bool:
        """Fine-tune on the labeled faces (a snapshot taken now) and publish a new parser.

        Args:
            settings: ``TrainPanel.finetune_settings()``: init, init_path, device, preset,
                epochs, max_steps, batch_size.
        """
        if not self._ready_to_train():
            return False
        self.session.save_all()  # the snapshot includes the latest strokes
        try:
            files = self.labeled_files()
            run_dir = self._new_run_dir("finetune")
        except (FaceParseError, OSError, RuntimeError) as exc:
            self.panel.on_error(f"Cannot start fine-tuning: {exc}")
            return False
        if not files:
            self.panel.on_error(
                "No labeled faces yet: label a few faces (A or Ctrl+Return marks one labeled), "
                "then start fine-tuning."
            )
            return False
        init_path = settings.get("init_path") if settings.get("init") != "scratch" else None
        active = self.store.active("parser")
        parent = active.id if active is not None else None
        if settings.get("init") == "starter_parser":
            parent = STARTER_ID
        worker = FunctionWorker(
            at_lower_priority(run_finetune_on_files, TRAINING_NICE),
            files,
            run_dir,
            store=self.store,
            init_backbone=init_path,
            device=settings.get("device") or "auto",
            preset=settings.get("preset") or "lite",
            epochs=int(settings.get("epochs") or 30),
            max_steps=settings.get("max_steps"),
            batch_size=int(settings.get("batch_size") or 4),
            parent=parent,
            note=f"{len(files)} labeled faces",
        )
        self._start(worker, "finetune")
        return True

    def start_pretrain(self, settings: dict[str, Any]) -> bool:
        """Self-supervised pretraining on all project images; resumes an unfinished run.

        Args:
            settings: ``TrainPanel.pretrain_settings()``: device, preset, epochs, max_steps,
                batch_size, resume, init_path (the backbone a fresh run continues).
        """
        if not self._ready_to_train():
            return False
        worker = FunctionWorker(
            at_lower_priority(run_pretrain_job, TRAINING_NICE),
            [self.session.project.root],
            self.pretrain_dir,
            preset=settings.get("preset") or "lite",
            epochs=int(settings.get("epochs") or 10),
            batch_size=int(settings.get("batch_size") or 8),
            max_steps=settings.get("max_steps"),
            device=settings.get("device") or "auto",
            resume=bool(settings.get("resume", True)),
            init_backbone=settings.get("init_path"),
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
        self.worker, self.job_kind = worker, kind
        if self.panel.running != kind:
            self.panel.set_running(kind)
        # Each handler first checks that this worker is still the current job: a job left
        # behind by closing the project must not touch the next one.
        worker.progress.connect(lambda r, w=worker: w is self.worker and self.panel.on_progress(r))
        worker.finished.connect(lambda r, w=worker: w is self.worker and self._on_job_finished(r))
        worker.cancelled.connect(lambda r, w=worker: w is self.worker and self._on_job_cancelled(r))
        worker.errored.connect(lambda t, w=worker: w is self.worker and self._on_job_error(t))
        worker.done.connect(lambda w=worker: self._on_job_done(w))
        worker.start()

    def _on_job_finished(self, result: Any) -> None:
        self.panel.on_finished(result.summary())
        version = getattr(result, "version", None)
        kind = self.job_kind or ""
        self.published.emit(kind, version)
        if kind == "pretrain":
            self.panel.set_pretrain_resume(pretrain_resume_point(self.pretrain_dir))
            if version is not None:
                if self.panel.finetune_settings()["init"] == "project":
                    then = "the next fine-tuning starts from it."
                else:
                    then = (
                        "fine-tuning still starts from the starter parser (better with few "
                        "labels); choose Project backbone under Start from to use it."
                    )
                note = result.summary().get("note")
                self.message.emit(
                    f"Pretrained backbone {version.id} published; {then}"
                    + (f" {note[0].upper()}{note[1:]}." if note else ""),
                    "warning" if note else "info",
                )

    def _on_job_cancelled(self, _result: Any) -> None:
        self.panel.on_cancelled()
        if self.job_kind == "pretrain" and self.store is not None:
            self.panel.set_pretrain_resume(pretrain_resume_point(self.pretrain_dir))

    def _on_job_error(self, text: str) -> None:
        worker = self.worker
        if worker is not None and worker.traceback:
            log.error("training job failed:\n%s", worker.traceback)
        self.panel.on_error(text)
        self.message.emit(
            f"Training stopped with an error: {text} No model was published and no label was "
            "changed.",
            "error",
        )

    def _on_job_done(self, worker: FunctionWorker) -> None:
        if worker is self.worker:
            kind = self.job_kind or ""
            self.worker, self.job_kind = None, None
            self.job_done.emit(kind)

    def _on_status_changed(self, _image_id: int, old: str, new: str) -> None:
        if new in FINISHED and old not in FINISHED:
            self.panel.notify_labeled(1)  # may ask for an auto-retrain

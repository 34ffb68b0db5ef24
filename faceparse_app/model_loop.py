"""The model in the loop: pre-labels, the confidence view, training jobs, versions, "least sure".

:class:`ModelLoop` is the controller between one open :class:`AnnotationSession`, the project's
:class:`ModelStore`, a background :class:`PrelabelQueue` and the training runs
(:class:`TrainingRuns`); it keeps the Qt-free :class:`LoopState` (which the training panel
observes) up to date and tells the window what to show through its signals. Nothing here runs a model on the GUI thread:

- opening an image asks the queue for its prediction (and the next few unfinished images
  ahead, cached); the result is applied through ``AnnotationSession.apply_prelabel``, which
  refuses it for an image the annotator has edited; an image that opened with no label and was
  painted before its first pre-label came takes it around the strokes;
- fine-tuning and pretraining run in a :class:`FunctionWorker` on a snapshot of the labels;
  a published parser is hot-swapped into the queue; the pre-label on screen is refreshed at
  once and every other one nobody edited in the background (:class:`PrelabelRefresher`);
- every unfinished image is scored in the background (mean per-pixel entropy over its faces),
  for the "least sure first" order and "next least sure"; a photo with no face found comes
  first, since it needs a person;
- the faces each prediction parses are kept and edited by :class:`FaceLoop`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from faceparse_app.face_loop import STROKE_RETRY_MS, FaceLoop
from faceparse_app.loop_state import LoopState, kept_aside_message
from faceparse_app.model_store import ModelStore, ModelStoreError
from faceparse_app.prelabel_queue import PrelabelQueue
from faceparse_app.prelabel_refresh import PrelabelRefresher
from faceparse_app.project import FINISHED, ImageRecord, ProjectError
from faceparse_app.project_scan import read_photo
from faceparse_app.scan_texts import without_path
from faceparse_app.session import AnnotationSession
from faceparse_app.store_open import MODELS_DIR
from faceparse_app.training_runs import TrainingRuns
from faceparse_app.uncertainty import rank_by_uncertainty
from faceparse_app.workers import PRELABEL_NICE, at_lower_priority
from trainer.predict import Prediction

log = logging.getLogger(__name__)

NO_MODEL_TEXT = (
    "No model yet: images open without a pre-label. Label a few faces (A or Ctrl+Return marks "
    "one labeled), then train a model; its pre-labels will appear here."
)
SCORES_EMIT_MS = 400  # batch the background scores so the image list is not rebuilt per image
class ModelLoop(QObject):
    """Connects the open project to its models.

    Args:
        state: the loop state the training panel shows (its activate and rollback requests are
            connected here).
        device: torch device for pre-labels ("auto": the GPU when present, else the CPU).
        lookahead: unfinished images after the current one to predict ahead.
        starter_backbone: the backbone shipped with the app (None: the default in
            ``trainer/assets/models/``; used for fine-tuning when the project has none).
        starter_parser: the parser shipped with the app (None: the default in
            ``trainer/assets/models/``; pre-labels until the project has a parser of its own).
        loader: reads an image file for the pre-label thread (None: ``read_image``).

    Signals:
        message(text, level): something the user should know.
        no_model(text): the project has no model; offer to train one.
        model_changed(version_or_None): the parser now pre-labeling (None: none; "vN (not
            loaded)" when its file could not be loaded, so no pre-label will come).
        runtime_changed(text): what it runs in (e.g. "ONNX Runtime (chosen on this CPU)").
        heat_changed(confidence_or_None): (H, W) float32 top-class probability of the current
            image, or None when not (yet) known.
        scores_changed(dict): image id -> uncertainty score (larger = less sure).
        scores_kept(dict): the scores kept from an earlier open for the model now in use; they
            are not news arriving while the annotator works, so the list takes their order.

    Attributes:
        training: the training runs (fine-tuning, pretraining) on the open project.
        faces: the faces of the images (kept, shown, added and removed).
    """

    message = Signal(str, str)
    no_model = Signal(str)
    model_changed = Signal(object)
    runtime_changed = Signal(str)
    heat_changed = Signal(object)
    scores_changed = Signal(object)
    scores_kept = Signal(object)

    def __init__(
        self,
        state: LoopState,
        device: str = "auto",
        lookahead: int = 3,
        starter_backbone: str | Path | None = None,
        starter_parser: str | Path | None = None,
        loader: Callable[[Path], np.ndarray] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.device = device
        self.lookahead = lookahead
        self.starter_backbone = starter_backbone
        self.starter_parser = starter_parser
        self.loader = loader
        self.session: AnnotationSession | None = None
        self.store: ModelStore | None = None
        self.queue: PrelabelQueue | None = None
        self.refresher: PrelabelRefresher | None = None
        self.training = TrainingRuns(state, parent=self)
        self.training.message.connect(self.message)
        self.training.published.connect(self._on_published)
        self.faces = FaceLoop(parent=self)
        self.faces.message.connect(self.message)
        self.confidence: np.ndarray | None = None
        # The image on screen opened with no label at all: its first pre-label fills around
        # the strokes made while it was on its way (it used to be dropped by the first one).
        self._blank: int | None = None
        self._accept_asked: int | None = None  # A was pressed before that image's pre-label came
        self._arrived: int | None = None  # the image on screen whose prediction came
        self._pictures: dict[int, str] = {}  # image id -> the content hash it was predicted for
        self._load_error: str | None = None  # why the model in use could not be loaded
        self._scores_timer = QTimer(self)
        self._scores_timer.setSingleShot(True)
        self._scores_timer.setInterval(SCORES_EMIT_MS)
        self._scores_timer.timeout.connect(self._emit_scores)
        state.activate_requested.connect(self.activate)
        state.rollback_requested.connect(self.rollback)

    # ------------------------------------------------------------------ project
    def attach(self, session: AnnotationSession) -> None:
        """Work on this session's project (call before its first image opens)."""
        self.detach()
        self.session = session
        self.store = ModelStore(
            session.project.store_dir / MODELS_DIR, self.starter_backbone, self.starter_parser
        )
        loader = at_lower_priority(self.loader or read_photo, PRELABEL_NICE)
        queue = PrelabelQueue(
            lookahead=self.lookahead, device=self.device, loader=loader,
            faces_for=self.faces.kept_faces, parent=self,
        )
        queue.ready.connect(self._on_ready)
        queue.confidence_ready.connect(self._on_confidence)
        queue.scored.connect(self._on_scored)
        queue.failed.connect(self._on_failed)
        queue.runtime_changed.connect(self.runtime_changed)
        self.queue = queue
        self.refresher = PrelabelRefresher(session, queue, parent=self)
        self.refresher.message.connect(self.message)
        self.faces.attach(session, queue)
        session.image_changed.connect(self._on_image_changed)
        self._show_store()
        self.training.attach(session, self.store)
        self._use_active_model(refresh_current=False)

    def detach(self) -> None:
        """Leave the project: cancel a training run (waiting for it) and stop pre-labeling."""
        self.training.detach()
        session, self.session = self.session, None
        self._pictures.clear()  # image ids are the project's
        if session is not None:
            session.image_changed.disconnect(self._on_image_changed)
        if self.refresher is not None:
            self.refresher.cancel()
            self.refresher.message.disconnect(self.message)
            self.refresher.deleteLater()
            self.refresher = None
        if self.queue is not None:
            self._keep_scores(session)
            self.queue.close()
            self.faces.detach()
            self.queue = None
        self.store = None
        self.confidence = None
        self.state.leave_project()
        self.scores_changed.emit({})

    # ----------------------------------------------------------------- versions
    @property
    def version(self) -> str | None:
        """The parser version now pre-labeling, or None."""
        return self.queue.version if self.queue is not None and self.queue.has_model else None

    @property
    def model(self) -> tuple[Any, str | None]:
        """(the active model: a checkpoint path or a Predictor, its version), (None, None)
        without one; what the canvas's assisted tools load."""
        queue = self.queue
        if queue is None or not queue.has_model:
            return None, None
        return queue.model_source, queue.version

    def _show_store(self) -> None:
        store = self.store
        if store is None:
            return
        versions = store.versions()
        active = [v.id for v in (store.active("parser"), store.active("backbone")) if v is not None]
        self.state.set_versions(versions, active)
        own = store.active("backbone")
        starter = store.starter_backbone if store.starter_backbone.is_file() else None
        parser = store.starter_parser if store.starter_parser.is_file() else None
        self.state.set_start_options(own.path if own is not None else None, starter, parser)
        for note in store.problems:
            self.message.emit(f"Model store: {note}", "warning")

    def _use_active_model(self, refresh_current: bool = True) -> str:
        """Pre-label with the store's active parser, else the starter parser (or say there is none).

        Returns:
            What happens to the other pre-labels nobody edited, for the swap's message.
        """
        if self.store is None or self.queue is None:
            return ""
        model = self.store.parser_for_prelabel()
        self._load_error = None
        if model is None:
            self.queue.set_model(None, None)
            self.model_changed.emit(None)
            self.no_model.emit(NO_MODEL_TEXT)
        else:
            self.queue.set_model(*model)
            self.model_changed.emit(model[1])
        self.scores_changed.emit({})
        if model is not None and self.session is not None:
            # The scores of the last open, the finished images' too (only the unfinished are
            # scored again): the Unsure column reads as it did before the project was closed.
            self.queue.seed_scores(self.session.project.kept_scores(_scores_key(*model)))
            if self.scores():
                self.scores_kept.emit(self.scores())
            self._scores_timer.start()
        if refresh_current and self.session is not None:
            self._on_image_changed(self.session.current)
        # Queued behind the image on screen; the sweep below reuses the refreshes' scores.
        n = self.refresher.start(model[1] if model is not None else None) if self.refresher else 0
        self.score_unfinished()
        return f"refreshing {n} other pre-label{'s' if n != 1 else ''} nobody edited in the background" if n else ""

    def activate(self, version_id: str) -> bool:
        """Make a version active; a parser is hot-swapped in and unedited pre-labels refresh."""
        if self.store is None:
            return False
        try:
            version = self.store.activate(version_id)
        except ModelStoreError as exc:
            self.message.emit(str(exc), "error")
            return False
        self._show_store()
        if version.kind == "parser":
            refresh = self._use_active_model()
            self.message.emit(f"Model {version.id} is active" + (f"; {refresh}." if refresh else "."), "info")
        return True

    def _on_published(self, kind: str, version: object) -> None:
        """A training run finished: show the new version; a new parser pre-labels from now on."""
        self._show_store()
        active = self.store.active("parser") if self.store is not None else None
        if kind == "finetune" and version is not None and (active is None or active.id != version.id):
            self.message.emit(kept_aside_message(version), "warning")  # the gate kept it out
        elif kind == "finetune" and version is not None:
            refresh = self._use_active_model()
            self.message.emit(
                f"Model {version.id} published and active" + (f"; {refresh}." if refresh else "."), "info"
            )

    def rollback(self) -> bool:
        """Go back to the previous parser version (pre-labels nobody edited refresh likewise)."""
        if self.store is None:
            return False
        store = self.store
        active = store.active("parser")
        older = [v for v in store.versions("parser") if active is not None and v.number < active.number]
        try:
            if active is not None and not older and store.starter_parser.is_file():
                store.use_starter("parser")  # past the oldest version: the starter parser
                name = "the starter parser"
            else:
                name = f"model {store.rollback('parser').id}"
        except ModelStoreError as exc:
            self.message.emit(str(exc), "warning")
            return False
        self._show_store()
        refresh = self._use_active_model()
        self.message.emit(f"Rolled back to {name}" + (f"; {refresh}." if refresh else "."), "info")
        return True

    # --------------------------------------------------------------- pre-labels
    def _upcoming(self, rec: ImageRecord) -> list[tuple[int, Path]]:
        """The next unfinished images after `rec` in list order (wrapping), to predict ahead."""
        assert self.session is not None
        records = [r for r in self.session.records() if not r.missing]
        ids = [r.id for r in records]
        start = ids.index(rec.id) + 1 if rec.id in ids else 0
        ordered = records[start:] + records[:start]
        project = self.session.project
        ahead = [r for r in ordered if r.id != rec.id and r.status not in FINISHED][: self.lookahead]
        self._pictures.update((r.id, r.content_hash) for r in ahead)
        return [(r.id, project.image_path(r)) for r in ahead]

    def _on_image_changed(self, rec: ImageRecord | None) -> None:
        self.confidence = None
        self._blank = self._accept_asked = self._arrived = None
        if rec is not None and self.session is not None and rec.status == "new":
            self._blank = None if self.session.project.label_path(rec).exists() else rec.id
        self.heat_changed.emit(None)
        self.faces.on_image_changed(rec)
        session, queue = self.session, self.queue
        if rec is None or session is None or queue is None or session.document is None:
            return
        if not queue.has_model:
            return
        if self._pictures.get(rec.id, rec.content_hash) != rec.content_hash:
            queue.forget(rec.id)  # another picture under its name now: its prediction is stale
        self._pictures[rec.id] = rec.content_hash
        # Every shown image is predicted (for the confidence view); the label is applied
        # only where the session allows it. A cached result arrives inside this call.
        queue.request(rec.id, session.project.image_path(rec), self._upcoming(rec))

    def _on_ready(self, image_id: int, pred: Prediction) -> None:
        session, version = self.session, self.version
        if session is None or version is None or session.current is None:
            return
        if session.current.id != image_id:
            return  # a look-ahead result: cached until its image opens
        self._arrived = image_id
        # 1.0 outside every face: the confidence view shows doubt about faces, not background.
        # None for a look-ahead's prediction: the map follows (_on_confidence).
        self.confidence = pred.confidence
        self.heat_changed.emit(pred.confidence)
        if session.apply_prelabel(image_id, pred.label, version):
            self._blank = None
            if self._accept_asked == image_id:  # "still being predicted" is said: no longer
                self.message.emit(f"The pre-label of {session.current.relpath} is here; A accepts it.", "info")
        elif self._blank == image_id:
            self._fill_around_strokes(image_id, pred.label)
        self.faces.on_ready(image_id, pred)

    def _on_confidence(self, image_id: int, confidence: np.ndarray) -> None:
        """The confidence map of the image on screen, after its label came from the look-ahead."""
        session = self.session
        if session is None or session.current is None or session.current.id != image_id:
            return
        self.confidence = confidence
        self.heat_changed.emit(confidence)

    def _fill_around_strokes(self, image_id: int, label: np.ndarray) -> None:
        """The first pre-label of an image painted before it came: the model's classes go
        everywhere but on the strokes (``History.hand_edited``), as one undo step."""
        session = self.session
        if session is None or session.current is None or session.current.id != image_id:
            return
        doc = session.document
        if doc is None or label.shape != doc.shape or self._blank != image_id:
            return
        if not session.edited_here(image_id) or session.project.read_only:
            return  # refused for another reason (e.g. a read-only project): nothing to fill
        if doc.in_stroke:  # put it in once the stroke ends
            QTimer.singleShot(STROKE_RETRY_MS, lambda: self._fill_around_strokes(image_id, label))
            return
        self._blank = None
        if doc.replace_where(label, np.ones(doc.shape, bool), by_hand=False) is not None:
            self.message.emit(
                f"The pre-label of {session.current.relpath} came after your first strokes: it "
                "fills everything but them (Ctrl+Z undoes it).",
                "info",
            )

    def accept(self) -> bool:
        """Accept the current image's pre-label (A): refused while its first pre-label is still
        on its way, since the label shown is still empty and accepting it would mark the face
        all background (and keep every later pre-label out of it)."""
        session, queue = self.session, self.queue
        if session is None:
            return False
        current = session.current
        waiting = (  # an empty label on screen, a model at work, and nothing came from it yet
            current is not None and self._blank == current.id and self._arrived != current.id
            and queue is not None and queue.has_model
        )  # fmt: skip
        if waiting and self._load_error is not None:
            self.message.emit(
                f"No pre-label will come for {current.relpath}: the model {self.version} could not "
                f"be loaded ({self._load_error}). Label it by hand and press Ctrl+Return, or "
                "activate another version or roll back in the Training panel (Panels → Training).",
                "error",
            )
            return False
        if waiting:
            self._accept_asked = current.id
            self.message.emit(
                f"The pre-label of {current.relpath} is still being predicted; press A once it "
                "shows (or Ctrl+Return to mark your own strokes labeled).",
                "info",
            )
            return False
        faces = len(session.project.faces(current) or []) if current is not None else 0
        doc = session.document
        if faces and current.status not in FINISHED and doc is not None and not doc.label.any():
            # No pre-label to accept (one that came out empty, or an old label that no longer
            # fits its photo): A would mark found faces all background.
            self.message.emit(
                f"Nothing to accept in {current.relpath}: its label is all background, yet "
                f"{faces} face{'s were' if faces != 1 else ' was'} found in it. Label "
                f"{'them' if faces != 1 else 'it'} (or remove a false face box: W, click it, "
                "Delete); Ctrl+Return marks it labeled as it is.",
                "warning",
            )
            return False
        return session.accept()

    def _on_failed(self, image_id: int, text: str) -> None:
        if image_id < 0:
            self._load_error = text
            self.model_changed.emit(f"{self.version} (not loaded)")
            self.message.emit(f"The model {self.version or ''} could not be loaded: {text}", "error")
            return
        session = self.session
        if session is None:
            return
        try:
            rec = session.project.get(image_id)
        except (KeyError, ProjectError):  # gone from the store meanwhile: nothing to flag
            return
        text = without_path(text, session.project.image_path(rec))  # told beside its name
        if session.current is None or session.current.id != image_id:
            # Met ahead or in the background sweep: flagged in the list (icon, tooltip, the
            # "problems" filter); the message bar stays on the image at hand.
            session.problems[image_id] = f"No pre-label: {text}"
            session.records_changed.emit()
            return
        if self._blank == image_id:
            self._blank = None  # no pre-label will come: what is shown may be accepted
        self.message.emit(f"No pre-label for {rec.relpath}: {text}", "warning")

    # ------------------------------------------------------------- uncertainty
    def score_unfinished(self) -> None:
        """Score every unfinished image in the background (after the images asked for), then
        the finished ones no kept score covers (labeled before they were scored, or scored by
        another model, or in a session killed before it kept its scores): the Unsure column has
        a value for every photo, as it had while they were labeled."""
        if self.session is None or self.queue is None or not self.queue.has_model:
            return
        project, present = self.session.project, [r for r in self.session.records() if not r.missing]
        self.queue.score_all(
            [(r.id, project.image_path(r)) for r in present if r.status not in FINISHED]
            + [(r.id, project.image_path(r)) for r in present if r.status in FINISHED]
        )

    def scores(self) -> dict[int, float]:
        """Image id -> uncertainty score of the active model (0 sure .. 1 unsure)."""
        return self.queue.scores() if self.queue is not None else {}

    def _on_scored(self, _image_id: int, _score: float) -> None:
        if not self._scores_timer.isActive():
            self._scores_timer.start()

    def _keep_scores(self, session: AnnotationSession | None) -> None:
        version = self.version
        if session is None or version is None or session.project.read_only or self.queue is None:
            return
        try:
            session.project.keep_scores(_scores_key(self.queue.model_source, version), self.scores())
        except ProjectError as exc:  # they are computed again on the next open
            log.warning("could not keep the uncertainty scores: %s", exc)

    def _emit_scores(self) -> None:
        self.scores_changed.emit(self.scores())

    def least_sure_unfinished(self) -> int | None:
        """The unfinished image (not the current one) the model is least sure of, if scored;
        one with no face found comes first (a person must draw its faces)."""
        if self.session is None:
            return None
        scores = self.scores()
        current = self.session.current.id if self.session.current is not None else None
        ranked = rank_by_uncertainty({
            r.id: scores[r.id] for r in self.session.records()
            if r.status not in FINISHED and not r.missing and r.id != current and r.id in scores
        })
        return ranked[0] if ranked else None


def _scores_key(source: Any, version: str | None) -> str:
    """What kept uncertainty scores belong to: the version name, and for a checkpoint file its
    size and time (the shipped starter parser is always named 'starter', whatever its weights,
    and a version name comes back when the models folder is emptied)."""
    try:
        stat = Path(source).stat()
    except (TypeError, OSError):  # a ready Predictor, or no file: the name alone
        return str(version)
    return f"{version} {stat.st_size} {stat.st_mtime_ns}"

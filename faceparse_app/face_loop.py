"""The faces in the loop: each image's faces kept in the project store, shown on the canvas,
added and removed by the annotator, and the pre-label following at once.

The model's first prediction of an image finds its faces; :class:`FaceLoop` keeps them, and from
then on every prediction of that image parses the kept ones (no second search; what the
annotator added or removed sticks, across model versions too). Adding or removing a face
stores the new list, drops the image's old prediction and asks for a new one off the GUI thread;
when it arrives, only the pixels the changed face's crop covers are replaced by it, as one undo
step that spares protected classes and the annotator's own edits still in the undo history. A
photo in which no face was found says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from faceparse_app.document import LabelDocument
from faceparse_app.faces import MIN_FACE_BOX, coverage, same_face, union_coverage, user_face
from faceparse_app.history import Delta, FaceChange
from faceparse_app.prelabel_queue import PrelabelQueue
from faceparse_app.project import FINISHED, ImageRecord, ProjectError
from faceparse_app.session import AnnotationSession
from trainer.errors import LabelMapError
from trainer.faces import Face
from trainer.predict import Prediction

log = logging.getLogger(__name__)

STROKE_RETRY_MS = 150  # a re-prediction that lands mid-stroke waits for the stroke to end


def no_face_text(name: str) -> str:
    """What the message bar says when no face was found in a photo (not yet labeled)."""
    return (
        f"No face found in {name}: draw a box around each face with the face tool (W), or "
        "press A if it has none (all background)"
    )


class FaceLoop(QObject):
    """Keeps, shows and edits the faces of the open project's images.

    Signals:
        faces_changed(list[Face]): the faces of the image on screen ([] while not known).
        no_face(text): the image on screen has no face; '' when that is no longer so.
        message(text, level): something the user should know.
        status(text): a short note for the status bar.
    """

    faces_changed = Signal(object)
    no_face = Signal(str)
    message = Signal(str, str)
    status = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session: AnnotationSession | None = None
        self.queue: PrelabelQueue | None = None
        self.shown: list[Face] = []
        self._predicted: int | None = None  # the image whose prediction gave `shown`
        # image id -> the faces added or removed since its last prediction: their pixels take
        # the next prediction of that image.
        self._edits: dict[int, list[Face]] = {}
        self._drawn_note: int | None = None  # the image whose "Parsing the face you drew" is up
        # image id -> the face change that sent it back to in progress, and its status before:
        # undoing that change brings the finished label back, and so the status.
        self._reopened: dict[int, tuple[FaceChange, str]] = {}
        # The label of the last prediction of the image on screen (with the faces kept then),
        # when its label was a person's as it opened: where the label differs from it, someone
        # edited it (edits of an earlier session are in no undo history).
        self._parsed: tuple[int, np.ndarray] | None = None
        self._by_hand = False

    def attach(self, session: AnnotationSession, queue: PrelabelQueue) -> None:
        self.session, self.queue = session, queue
        self._edits, self._reopened = {}, {}
        queue.faces_found.connect(self.keep_found)
        session.status_changed.connect(self._on_status_changed)

    def detach(self) -> None:
        if self.queue is not None:
            self.queue.faces_found.disconnect(self.keep_found)
        if self.session is not None:
            self.session.status_changed.disconnect(self._on_status_changed)
        self.session, self.queue, self._edits, self._reopened = None, None, {}, {}
        self._show([])

    # ------------------------------------------------------------------ the store
    def kept_faces(self, image_id: int) -> list[Face] | None:
        """The faces kept for an image; None: not looked for yet. Runs on the pre-label thread."""
        session = self.session
        if session is None:
            return None
        project = session.project
        return project.faces(project.get(image_id))

    def keep_found(self, image_id: int, faces: list[Face]) -> None:
        """Keep the faces the finder found in an image, unless some are kept already."""
        session = self.session
        if session is None or session.project.read_only:
            return
        project = session.project
        try:
            rec = project.get(image_id)
            if project.faces(rec) is None:
                project.set_faces(rec, faces)
        except (KeyError, ProjectError) as exc:
            log.warning("could not keep the faces found in image %s: %s", image_id, exc)

    # ------------------------------------------------------------------ the image on screen
    def on_image_changed(self, rec: ImageRecord | None) -> None:
        """A new image is on screen: show its kept faces until its prediction comes."""
        self.no_face.emit("")
        self._predicted, self._drawn_note, self._parsed = None, None, None
        faces: list[Face] | None = None
        self._by_hand = False
        if rec is not None and self.session is not None:
            try:
                faces = self.session.project.faces(rec)
                self._by_hand = self.session.project.label_by_hand(rec)
            except (KeyError, ProjectError):
                faces = None
        self._show(faces or [])
        doc = self.session.document if rec is not None and self.session is not None else None
        if doc is not None and self._on_face_step not in doc.on_faces:
            doc.on_faces.append(self._on_face_step)

    def on_ready(self, image_id: int, pred: Prediction) -> None:
        """The prediction of the image on screen arrived: show its faces, put a face change
        into the label, or say that no face was found."""
        session = self.session
        if session is None or session.current is None or session.current.id != image_id:
            return
        self._show(list(pred.faces))
        self._predicted = image_id
        before = self._parsed
        self._parsed = (image_id, pred.label) if self._by_hand else None
        changed = self._edits.get(image_id)
        if changed:
            earlier = before[1] if before is not None and before[0] == image_id else None
            self._apply_edit(image_id, pred, changed, earlier)
        elif pred.faces:
            n = len(pred.faces)
            self.status.emit(f"{n} face{'s' if n != 1 else ''} in {session.current.relpath}")
        if pred.framing == "detect" and not pred.faces and session.current.status not in FINISHED:
            self.no_face.emit(no_face_text(session.current.relpath))
        else:
            self.no_face.emit("")

    def _on_status_changed(self, image_id: int, _old: str, new: str) -> None:
        """A photo labeled as it is (a face-free one accepted as background): stop asking."""
        session = self.session
        if new != "in_progress":  # finished (or set) by hand since: an undo leaves it so
            self._reopened.pop(image_id, None)
        if new in FINISHED and session is not None and session.current is not None and session.current.id == image_id:
            self.no_face.emit("")

    # ------------------------------------------------------------------ editing
    def add_face(self, box: Sequence[float]) -> bool:
        """Add a face the finder missed, drawn as a box (x0, y0, x1, y1) in image pixels from
        the hairline to the chin, ear to ear; its pre-label follows. False when refused."""
        rec, kept = self._editable()
        if rec is None or kept is None:
            return False
        face = user_face(tuple(box))  # type: ignore[arg-type]
        doc = self.session.document
        if min(face.box[2] - face.box[0], face.box[3] - face.box[1]) < MIN_FACE_BOX:
            self.status.emit(
                f"A face box needs at least {MIN_FACE_BOX}×{MIN_FACE_BOX} image pixels; zoom in "
                "to draw a smaller face."
            )
            return False
        if coverage(face, doc.shape) is None:
            self.status.emit("That box is outside the image; draw it over the face.")
            return False
        if not kept:
            # The no-face message is up: say what happens instead of hiding it (the canvas
            # would jump by the bar's height under the next box being drawn).
            self.message.emit(
                f"Parsing the face you drew in {rec.relpath}; draw a box around each other face.",
                "info",
            )
            self._drawn_note = rec.id
        return self._change(rec, kept, [*kept, face], face, f"Parsing the face you drew in {rec.relpath}…")

    def remove_face(self, face: Face) -> bool:
        """Remove a face (a false find, or one drawn by mistake): its pixels take the
        prediction without it (background where no other face claims them)."""
        rec, kept = self._editable()
        if rec is None or kept is None:
            return False
        rest = [f for f in kept if not same_face(f, face)]
        if len(rest) == len(kept):
            return False
        return self._change(rec, kept, rest, face, f"Removed a face from {rec.relpath}; re-parsing…")

    def _editable(self) -> tuple[ImageRecord | None, list[Face] | None]:
        """The image on screen and its kept faces, when its faces may change now."""
        session, queue = self.session, self.queue
        if session is None or session.current is None or session.document is None:
            return None, None
        rec = session.current
        if queue is None or not queue.has_model:
            self.message.emit(
                "No model yet, so no face can be parsed: train a model first.", "info"
            )
            return None, None
        if session.project.read_only:
            self.message.emit(f"{session.project.root} is read-only: faces cannot be kept.", "error")
            return None, None
        try:
            kept = session.project.faces(rec)
        except (KeyError, ProjectError) as exc:
            self.message.emit(f"The faces of {rec.relpath} cannot be read: {exc}", "error")
            return None, None
        if kept is None and self._predicted == rec.id:
            kept = list(self.shown)  # parsed but not kept (the whole-image framing): start there
        if kept is None:
            self.status.emit(
                f"Still looking for the faces in {rec.relpath}; draw the box again once they show."
            )
        return rec, kept

    def _change(self, rec: ImageRecord, kept: list[Face], faces: list[Face], changed: Face, note: str) -> bool:
        session, queue = self.session, self.queue
        assert session is not None and queue is not None and session.document is not None
        try:
            session.project.set_faces(rec, faces)
        except ProjectError as exc:
            self.message.emit(f"The faces of {rec.relpath} were not changed: {exc}", "error")
            return False
        # An undo step of its own at once (Ctrl+Z before the pixels come takes the face back);
        # the pixels, when they come, fold into it (one step: the face and its pixels).
        change = FaceChange(tuple(kept), tuple(faces), (changed,))
        session.document.history.push(Delta.of_faces(change))
        # The annotator acted on this image: no pre-label replaces its label from now on.
        session.note_edit()
        self._edits.setdefault(rec.id, []).append(changed)
        self._reparse(rec, faces, note, change)
        return True

    def _reparse(self, rec: ImageRecord, faces: list[Face], note: str, change: FaceChange) -> None:
        """Show the faces kept now and ask for the image's prediction with them."""
        session, queue = self.session, self.queue
        assert session is not None and queue is not None
        queue.forget(rec.id)
        self._show(faces)
        self.no_face.emit("" if faces else no_face_text(rec.relpath))
        self.status.emit(note)
        self._reopen(rec, change)
        queue.request(rec.id, session.project.image_path(rec))

    def _reopen(self, rec: ImageRecord, change: FaceChange) -> None:
        """A finished photo whose faces change takes the model's pixels for them: it is no
        longer a person's finished label, so it goes back to in progress (the next-unfinished
        walk leads back to it; the export leaves it out until it is marked labeled again)."""
        session = self.session
        assert session is not None
        current = session.current
        if current is None or current.id != rec.id or current.status not in FINISHED:
            return
        was = current.status
        if session.set_status("in_progress"):
            self._reopened[rec.id] = (change, was)
            self._drawn_note = None  # this message says what happens instead
            self.message.emit(
                f"{rec.relpath} was {was}: the changed face's pixels are the model's pre-label, "
                "so it is back to in progress. Check them, then mark it labeled (Ctrl+Return).",
                "warning",
            )

    def _on_face_step(self, step: Delta, undone: bool) -> None:
        """Undo or redo of a step that added or removed a face: the kept faces follow it (in
        the store and on screen), and a face whose pixels have not come yet is parsed again
        only while it is drawn."""
        session, change = self.session, step.faces
        if session is None or session.current is None or self.queue is None or change is None:
            return
        rec = session.current
        faces = list(change.before if undone else change.after)
        self._parsed = None  # its faces changed: the next prediction tells what the model gives
        try:
            session.project.set_faces(rec, faces)
        except ProjectError as exc:
            self.message.emit(f"The faces of {rec.relpath} were not changed back: {exc}", "error")
            return
        if not step.has_pixels:
            pending = self._edits.get(rec.id, [])
            if undone:
                pending = [f for f in pending if not any(same_face(f, c) for c in change.changed)]
            elif not _parsed_later(session.document, change.changed):
                # Its pixels never came: parse it again. (When they came as a later step, that
                # step is redone with them: new pixels, a new step, would wipe the redo steps.)
                pending = [*pending, *change.changed]
            if pending:
                self._edits[rec.id] = pending
            else:
                self._edits.pop(rec.id, None)
        n = len(change.changed)
        what = f"{n} face box{'es' if n != 1 else ''}"
        verb = ("Undid" if undone else "Redid") + (" adding" if len(change.after) > len(change.before) else " removing")
        self._reparse(rec, faces, f"{verb} {what} in {rec.relpath}.", change)
        reopened = self._reopened.get(rec.id)
        if undone and reopened is not None and reopened[0] == change and rec.status == "in_progress":
            # The label is the finished one again (an undo is exact): so is its status.
            if session.set_status(reopened[1]):
                self.message.emit(f"{rec.relpath} is {reopened[1]} again: the face change was undone.", "info")

    def _apply_edit(
        self, image_id: int, pred: Prediction, changed: list[Face], earlier: np.ndarray | None = None
    ) -> None:
        """Replace the pixels the changed faces' crops cover by the new prediction, except
        where the label is not the model's: edited by hand (in the undo history), or unlike
        ``earlier``, the prediction before the change (edits of an earlier session, or dropped
        from the bounded history)."""
        session = self.session
        assert session is not None
        doc = session.document
        if doc is None:
            return
        if doc.in_stroke:  # never cut a stroke short: put the faces in once it ends
            QTimer.singleShot(STROKE_RETRY_MS, lambda: self._retry(image_id, pred, earlier))
            return
        del self._edits[image_id]
        region = union_coverage(changed, doc.shape)
        if region is None or pred.label.shape != doc.shape:
            return
        (x0, y0, x1, y1), mask = region
        values = pred.label[y0:y1, x0:x1]
        # The crop (zoomed out for the hair) reaches past the face: the annotator's strokes there
        # stay; the model's pixels go only where no edit by hand went.
        here = doc.label[y0:y1, x0:x1]
        edited = mask & doc.history.hand_edited(x0, y0, x1, y1)
        if earlier is not None and earlier.shape == doc.shape:
            edited |= mask & (here != earlier[y0:y1, x0:x1])
        kept = edited & (here != values)
        mask = mask & ~edited
        try:
            # One undo step; its edit was counted when the face was drawn or removed.
            if doc.replace_where(values, mask, x0, y0, by_hand=False) is not None:
                if doc.history.fold_faces() is None:  # a stroke in between: a step of its own
                    doc.history.mark_parsed(tuple(changed))
        except LabelMapError as exc:
            self.message.emit(f"The new pre-label of {session.current.relpath} did not fit: {exc}", "warning")
            return
        note = "; your own edits there were kept" if kept.any() else ""
        if self._drawn_note == image_id:  # the bar said it was parsing: it is done
            self._drawn_note = None
            self.message.emit(
                f"Parsing the face you drew in {session.current.relpath}: done{note}; draw a box "
                "around each other face.", "info",
            )  # fmt: skip
        self.status.emit(f"Faces of {session.current.relpath} updated{note} (Ctrl+Z undoes it).")

    def _retry(self, image_id: int, pred: Prediction, earlier: np.ndarray | None) -> None:
        """The face change's pixels again, once a stroke has ended (compared with the same
        prediction before the change)."""
        self._parsed = (image_id, earlier) if earlier is not None else None
        self.on_ready(image_id, pred)

    def _show(self, faces: list[Face]) -> None:
        self.shown = list(faces)
        self.faces_changed.emit(self.shown)


def _parsed_later(doc: LabelDocument | None, faces: Sequence[Face]) -> bool:
    """Whether a step still to redo holds the model's pixels of one of ``faces``."""
    steps = doc.history.redo_steps if doc is not None else ()
    return any(same_face(f, p) for step in steps for p in step.parsed for f in faces)

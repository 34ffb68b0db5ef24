"""Pre-labels off the GUI thread: :class:`PrelabelQueue` predicts in one background thread the
image asked for first, then a few "look-ahead" images, then refreshes of stale pre-labels after
a model swap, then background uncertainty scoring; results are cached per (image id, model
version). Results cross to the GUI thread as in :mod:`faceparse_app.workers`.

Each prediction parses the faces kept for its image (``faces_for``, asked on the worker thread)
or else the faces the model's finder finds, reported (``faces_found``) for the caller to keep.
When an image's faces change, :meth:`PrelabelQueue.forget` drops what was predicted with the
old ones, including a prediction still running.

A model given as a checkpoint path pre-labels in torch at once; meanwhile a
:class:`~faceparse_app.runtime_check.RuntimeCheck` finds out in the background whether ONNX
Runtime is faster and correct on this CPU; the queue switches between two images.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, Signal

from faceparse_app.prelabel_cache import PredictionCache
from faceparse_app.runtime_check import RuntimeSwitch, runtime_text
from faceparse_app.workers import (
    PRELABEL_NICE,
    JobThread,
    Relay,
    configure_torch_threads,
    error_message,
    lower_thread_priority,
)
from trainer.errors import ImageReadError, PredictionInterrupted

if TYPE_CHECKING:
    from trainer.faces import Face
    from trainer.predict import Prediction

log = logging.getLogger(__name__)

STOP_WAIT_MS = 10_000  # how long stop() waits for the prediction in progress
# Queues closed while their thread still predicts, kept alive until it ends.
_closing: set[PrelabelQueue] = set()


def _finds_faces(predictor: Any) -> bool:
    """Whether the predictor's finder looks at the photo. The whole-image finder only frames
    it (one aligned face): its 'face', kept, would stop a real finder from ever looking."""
    return getattr(getattr(predictor, "finder", None), "name", None) != "whole-image"


# Queue order: the image on screen, the look-ahead, pre-label refreshes, the scoring sweep.
_REQUESTED, _LOOKAHEAD, _REFRESH, _SWEEP = 0, 1, 2, 3


class PrelabelQueue(QObject):
    """Predicts faces in one background thread, the one on screen first, and caches the results.

    Args:
        lookahead: how many of the ``upcoming`` images given with a request to predict ahead.
        cache_size: predictions kept (LRU) per (image id, model version), at most
            :data:`~faceparse_app.prelabel_cache.CACHE_BYTES` of label maps.
        device: torch device for models given as a path.
        loader: reads an image file into (H, W, 3) uint8 RGB (runs on the worker thread).
        faces_for: image id -> the faces kept for it, or None when they were never looked for
            (then the model finds them); runs on the worker thread. None: always find them.
        runtime: "auto" (a model given as a path is checked for ONNX Runtime in the
            background) or "torch"; default ``$FACEPARSE_RUNTIME``, else "auto".

    Signals:
        ready(int, object): image id and its :class:`trainer.predict.Prediction` (label (H, W)
            uint8, confidence (H, W) float32 (1.0 outside every face) or None, the faces parsed,
            the uncertainty score over them, NaN when there is none); for requested and
            look-ahead images. Only a requested image (on screen) gets a map (800 MB at 200
            megapixels): a look-ahead one's comes as ``confidence_ready`` once it is requested.
        confidence_ready(int, object): image id and its (H, W) float32 confidence map.
        faces_found(int, object): image id and the list of faces the finder found in it, for
            every prediction of an image whose faces were not kept yet (not for the
            whole-image finder, which finds nothing: it frames the photo as one face).
        scored(int, float): image id and uncertainty score, for every prediction (including the
            background sweep of :meth:`score_all`).
        failed(int, str): image id (-1 for the model itself) and the error message.
        model_loaded(str): the model version now used for predictions.
        runtime_changed(str): the runtime it runs in, for the status bar ("torch", then e.g.
            "ONNX Runtime (chosen on this CPU)" once the background check has chosen it).
        refreshed(int, object, str): image id, label (H, W) uint8 and model version, for each
            image queued with :meth:`refresh` (not cached; its score is kept like any).
        refresh_failed(int, str): image id and error message, for a :meth:`refresh` image
            that could not be predicted (e.g. unreadable).

    Call :meth:`stop` before the application quits.
    """

    ready = Signal(int, object)
    confidence_ready = Signal(int, object)
    faces_found = Signal(int, object)
    scored = Signal(int, float)
    failed = Signal(int, str)
    model_loaded = Signal(str)
    runtime_changed = Signal(str)
    refreshed = Signal(int, object, str)
    refresh_failed = Signal(int, str)

    def __init__(
        self,
        lookahead: int = 3,
        cache_size: int = 24,
        device: str = "auto",
        loader: Callable[[Path], np.ndarray] | None = None,
        faces_for: Callable[[int], list[Face] | None] | None = None,
        runtime: str | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        from trainer.data.imageio import read_image

        self.lookahead = max(0, int(lookahead))
        self.device = device
        self.loader = loader or read_image
        self.faces_for = faces_for
        self.runtime_text = ""  # the runtime in use, as runtime_changed said it
        self.version: str | None = None
        self._model_source: Any = None
        self._generation = 0
        self._cache = PredictionCache(cache_size)
        self._scores: dict[tuple[int, str | None], float] = {}
        self._heap: list[tuple[int, int, int, Path, int]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        # How often each image's faces changed: a result predicted with older faces is dropped.
        self._face_rev: dict[int, int] = {}
        # (image id, rev) -> faces this thread found, until the caller keeps them: the next
        # prediction of the image (a sweep right behind the request) does not search again.
        self._found: dict[tuple[int, int], list[Face]] = {}
        # Of those, the ones no finished prediction has reported yet (its job was interrupted).
        self._unreported: set[tuple[int, int]] = set()
        self._inflight: tuple[int, int, int, int] | None = None  # (id, generation, rev, priority)
        # Images on screen whose label came from the look-ahead: their requested job brings
        # the confidence map alone (``confidence_ready``), not the label again.
        self._map_only: set[int] = set()
        self._unreadable_logged: set[Path] = set()  # photos the log named as unreadable once
        # Set when a request or look-ahead arrives while a refresh or sweep job runs: that job
        # stops at its next step and goes back in the queue (a photo of thirty faces must not
        # hold up the face the annotator just drew).
        self._preempt = threading.Event()
        self._halt = threading.Event()  # stop(): interrupt whatever is being predicted
        # The runtime check of the model in use; its answer waits for the next image boundary.
        self._switch = RuntimeSwitch(
            self._cond, runtime, thread_setup=lambda: lower_thread_priority(PRELABEL_NICE)
        )
        self._stopping = False
        self._relay = Relay(self._on_event, self)
        configure_torch_threads()
        self._thread = JobThread(self._loop)
        self._thread.start()
        app = QCoreApplication.instance()
        if app is not None:
            # A running QThread must not be destroyed at exit: end it first.
            app.aboutToQuit.connect(self.stop)

    # -- public (GUI thread) ------------------------------------------------------------------

    def set_model(self, model: Any, version: str | None) -> None:
        """Use another model; cached and pending predictions of the old one are dropped.

        Args:
            model: a checkpoint path (loaded on the worker thread), a ready ``Predictor``, or
                None for no model (requests are then ignored).
            version: the model's version id (part of the cache key).
        """
        with self._cond:
            self._generation += 1
            self._model_source = model
            self.version = version
            self._switch.cancel()
            self._heap = [item for item in self._heap if item[0] == _SWEEP]
            self._heap = [(p, s, i, path, self._generation) for p, s, i, path, _ in self._heap]
            heapq.heapify(self._heap)
            self._cond.notify()
        self._cache.clear()

    @property
    def has_model(self) -> bool:
        return self._model_source is not None

    @property
    def model_source(self) -> Any:
        """The model as given to :meth:`set_model` (a checkpoint path or a Predictor), or None."""
        return self._model_source

    def cached(self, image_id: int) -> Prediction | None:
        """The current model's prediction of an image, if made (with its current faces)."""
        return self._cache.get((image_id, self.version))

    def forget(self, image_id: int) -> None:
        """Drop an image's predictions (its faces changed); one still running is dropped too
        when it ends. Request it again for a prediction with its new faces."""
        with self._cond:
            self._face_rev[image_id] = self._face_rev.get(image_id, 0) + 1
            for key in [k for k in self._found if k[0] == image_id]:
                del self._found[key]
                self._unreported.discard(key)
        self._cache.forget(image_id)
        for key in [k for k in self._scores if k[0] == image_id]:
            del self._scores[key]

    def seed_scores(self, scores: dict[int, float]) -> None:
        """Take the current model's scores kept from an earlier open (not computed again)."""
        with self._cond:
            self._scores.update({(int(i), self.version): float(s) for i, s in scores.items()})

    def score(self, image_id: int) -> float | None:
        """The current model's uncertainty score of an image, if computed."""
        return self._scores.get((image_id, self.version))

    def scores(self) -> dict[int, float]:
        """All uncertainty scores of the current model (image id -> score)."""
        return {i: s for (i, v), s in self._scores.items() if v == self.version}

    def request(
        self,
        image_id: int,
        path: str | os.PathLike[str],
        upcoming: Sequence[tuple[int, str | os.PathLike[str]]] = (),
    ) -> None:
        """Predict an image now, then the first ``lookahead`` of ``upcoming``.

        A cached result is emitted as ``ready`` at once, inside this call. Earlier requests
        still waiting are dropped (the user moved on); refreshes and the background sweep are
        kept.
        """
        if self._model_source is None:
            return
        hit = self.cached(image_id)
        self._cache.touch((image_id, self.version))
        self._cache.show(int(image_id))
        ahead = [
            (int(i), Path(p))
            for i, p in list(upcoming)[: self.lookahead]
            if (int(i), self.version) not in self._cache
        ]
        with self._cond:
            self._heap = [item for item in self._heap if item[0] >= _REFRESH]
            heapq.heapify(self._heap)
            self._map_only.clear()  # went with the requests dropped (one running: in full)
            if hit is None:
                self._push(_REQUESTED, int(image_id), Path(path))
            elif hit.confidence is None:  # from the look-ahead: its map only
                self._map_only.add(int(image_id))
                self._push(_REQUESTED, int(image_id), Path(path))
            for i, p in ahead:
                self._push(_LOOKAHEAD, i, p)
            self._cond.notify()
        if hit is not None:
            self.ready.emit(int(image_id), hit)

    def score_all(self, items: Sequence[tuple[int, str | os.PathLike[str]]]) -> None:
        """Queue uncertainty scoring of many images behind any request (for "least sure next")."""
        with self._cond:
            for i, p in items:
                if (int(i), self.version) not in self._scores:
                    self._push(_SWEEP, int(i), Path(p))
            self._cond.notify()

    def refresh(self, items: Sequence[tuple[int, str | os.PathLike[str]]]) -> None:
        """Queue predictions of many images behind any request and look-ahead, for ``refreshed``.

        For re-doing stale pre-labels after a model swap. Each image is predicted once (its
        score then also serves the scoring sweep); the results are not cached. A later
        :meth:`set_model` or :meth:`cancel_refresh` drops those still waiting.
        """
        with self._cond:
            for i, p in items:
                self._push(_REFRESH, int(i), Path(p))
            self._cond.notify()

    def cancel_refresh(self) -> None:
        """Forget the queued refreshes (the one running still reports)."""
        with self._cond:
            self._heap = [item for item in self._heap if item[0] != _REFRESH]
            heapq.heapify(self._heap)

    def stop(self, timeout_ms: int | None = None) -> bool:
        """End the worker thread: waits for the prediction in progress, whose result is then
        dropped. True when the thread has ended."""
        with self._cond:
            self._stopping = True
            self._halt.set()
            self._generation += 1  # what the thread still reports is for nobody
            self._heap = []
            self._switch.cancel()  # its process is killed: quitting never waits for an export
            self._cond.notify()
        return bool(self._thread.wait(STOP_WAIT_MS if timeout_ms is None else timeout_ms))

    def close(self) -> None:
        """Stop and delete the queue; one whose thread is still predicting (a huge photo on a
        slow CPU) is deleted when that thread ends, never under it."""
        app = QCoreApplication.instance()
        if app is not None:
            try:  # asked to be stopped at quit; it is stopped now
                app.aboutToQuit.disconnect(self.stop)
            except (RuntimeError, TypeError):
                pass
        if self.stop():
            self.deleteLater()
            return
        log.warning("a prediction is still running; the pre-label thread ends after it")
        self.setParent(None)
        _closing.add(self)
        self._thread.finished.connect(self._dispose)

    def _dispose(self) -> None:
        _closing.discard(self)
        self.deleteLater()
    # -- worker thread ------------------------------------------------------------------------

    def _push(self, priority: int, image_id: int, path: Path) -> None:
        """Queue a job (caller holds the lock); skips a request already being predicted."""
        inflight = self._inflight
        if (
            priority <= _LOOKAHEAD
            and inflight is not None
            and inflight[:3] == (image_id, self._generation, self._face_rev.get(image_id, 0))
            # sweep and refresh results are not cached (nor sent as `ready`): predict again
            and inflight[3] <= _LOOKAHEAD
        ):
            return
        if priority <= _LOOKAHEAD and inflight is not None and inflight[3] >= _REFRESH:
            self._preempt.set()
        heapq.heappush(self._heap, (priority, next(self._seq), image_id, path, self._generation))

    def _loop(self) -> None:
        from faceparse_app.training import prelabel

        predictor: Any = None
        loaded_generation = -1
        # (image id, generation, faces' rev) predicted (so scored already; a request or the
        # look-ahead just before the sweep reached it), or its refresh's failure reported
        done: set[tuple[int, int, int]] = set()
        while True:
            with self._cond:
                while not self._stopping and not self._heap and not self._switch.ready:
                    self._cond.wait()
                if self._stopping:
                    return
                swap = self._switch.take()
            if swap is not None:  # between two images: the runtime the check chose
                predictor, text = self._switch.apply(swap, predictor, loaded_generation)
                if text is not None:
                    self._relay.post("runtime", (loaded_generation, text))
                continue
            with self._cond:
                if self._stopping or not self._heap:
                    continue
                priority, seq, image_id, path, generation = heapq.heappop(self._heap)
                if generation != self._generation:
                    continue
                source, version = self._model_source, self.version
                rev = self._face_rev.get(image_id, 0)
                if priority == _SWEEP and (image_id, generation, rev) in done:
                    continue  # its score (or its refresh's error) came already
                self._inflight = (image_id, generation, rev, priority)
                self._preempt.clear()
            try:
                if loaded_generation != generation:
                    predictor = None  # free the old model before loading the new one
                    predictor = self._load(source)
                    loaded_generation = generation
                    done.clear()
                    self._relay.post("model_loaded", (generation, version))
                    self._relay.post("runtime", (generation, runtime_text(predictor)))
                    self._switch.start(source, predictor, generation, lambda: self._generation)
                if predictor is None:
                    continue
                image = self.loader(path)
                given = self._kept_faces(image_id)
                found = False  # the faces come from this thread's search, not reported yet
                if given is None:
                    with self._cond:
                        given = self._found.get((image_id, rev))
                        found = given is not None and (image_id, rev) in self._unreported
                if given is None and getattr(predictor, "framing", None) == "detect" and _finds_faces(predictor):
                    # Searched here, not inside the prediction, so a prediction interrupted
                    # after the search does not search again.
                    given, found = predictor.find_faces(image), True
                    with self._cond:
                        self._found[(image_id, rev)] = list(given)
                        self._unreported.add((image_id, rev))
                # Any job stops at its next step when the queue stops; background ones also
                # when an urgent job arrives.
                if priority >= _REFRESH:
                    interrupt = self._stopping_or_preempted
                else:
                    interrupt = self._halt.is_set
                # Only the photo on screen needs a confidence map (the confidence view).
                pred = prelabel(predictor, image, given, interrupt, confidence=priority == _REQUESTED)
                if found:
                    with self._cond:
                        self._unreported.discard((image_id, rev))
            except PredictionInterrupted:
                with self._cond:  # back in its place in the line, behind the urgent job
                    heapq.heappush(self._heap, (priority, seq, image_id, path, generation))
                continue
            except Exception as exc:  # noqa: BLE001 - reported to the GUI, never fatal
                # A photo that cannot be read is flagged in the image list; the log names it
                # once, not at every try of the sweep or a rescan.
                if not isinstance(exc, ImageReadError) or path not in self._unreadable_logged:
                    log.warning("pre-label of %s failed: %s", path, exc)
                if isinstance(exc, ImageReadError):
                    self._unreadable_logged.add(path)
                model_failed = loaded_generation != generation
                if model_failed:
                    loaded_generation = generation  # do not retry a broken model per image
                    predictor = None
                if priority == _REFRESH and not model_failed:
                    done.add((image_id, generation, rev))
                    self._relay.post("refresh_failed", (generation, image_id, error_message(exc)))
                else:
                    self._relay.post("failed", (generation, -1 if model_failed else image_id, error_message(exc)))
                continue
            finally:
                with self._cond:
                    self._inflight = None
            done.add((image_id, generation, rev))
            self._relay.post("result", (generation, version, priority, image_id, rev, pred, found, path))

    def _stopping_or_preempted(self) -> bool:
        return self._halt.is_set() or self._preempt.is_set()

    def _kept_faces(self, image_id: int) -> list[Face] | None:
        """The faces kept for an image (worker thread); None: find them."""
        if self.faces_for is None:
            return None
        try:
            return self.faces_for(image_id)
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not cost the pre-label
            log.warning("the faces kept for image %s could not be read (%s); finding them", image_id, exc)
            return None

    def _load(self, source: Any) -> Any:
        if source is None:
            return None
        if isinstance(source, str | os.PathLike):
            from trainer.predict import Predictor

            return Predictor.from_checkpoint(source, device=self.device)
        return source

    # -- GUI thread ---------------------------------------------------------------------------

    def _on_event(self, kind: str, payload: Any) -> None:
        generation = payload[0]
        if generation != self._generation:
            return  # from a model that has since been replaced
        if kind == "model_loaded":
            self.model_loaded.emit(payload[1] or "")
        elif kind == "runtime":
            self.runtime_text = payload[1]
            self.runtime_changed.emit(payload[1])
        elif kind == "failed":
            self.failed.emit(payload[1], payload[2])
        elif kind == "refresh_failed":
            self.refresh_failed.emit(payload[1], payload[2])
        elif kind == "result":
            _, version, priority, image_id, rev, pred, found, path = payload
            if rev != self._face_rev.get(image_id, 0):
                # Predicted with faces that have changed since. A refresh still reports (the
                # image was edited, so it is left alone), lest the refresh wait for it forever.
                if priority == _REFRESH:
                    self.refreshed.emit(image_id, pred.label, version or "")
                return
            if priority == _REQUESTED and image_id in self._map_only:
                self._map_only.discard(image_id)
                self._cache.add_map((image_id, version), pred.confidence)
                self.confidence_ready.emit(image_id, pred.confidence)
                return
            if found:
                self.faces_found.emit(image_id, list(pred.faces))
            self._scores[(image_id, version)] = pred.score
            if priority == _REFRESH:
                self.scored.emit(image_id, pred.score)
                self.refreshed.emit(image_id, pred.label, version or "")
                return
            if priority != _SWEEP:
                self._cache.keep((image_id, version), pred)
            self.scored.emit(image_id, pred.score)
            if priority != _SWEEP:
                self.ready.emit(image_id, pred)
                if pred.confidence is None and image_id == self._cache.on_screen:
                    with self._cond:  # a look-ahead running when its image opened: map next
                        self._map_only.add(image_id)
                        self._push(_REQUESTED, image_id, path)
                        self._cond.notify()

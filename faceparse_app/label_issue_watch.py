"""The label checks in the window: every checked label of the project (worked on, labeled,
reviewed) is checked on a background thread when the project opens, and again after each save
of it; the image list's "label issues" filter shows the photos with findings, and opening one
says what was found in one message (never a dialog; saving and export go on as before). Only
opening a photo speaks (or its first check, when that comes after it opened): a check after a
save or a status change updates the list quietly, so the message that change brought (sent
back to in progress, say) stays on screen; nor does it replace a warning or an error shown.

The findings are kept across opens in the store folder (:mod:`faceparse_app.label_check_cache`,
written from the checks' thread every few seconds of work and when it runs out of work): a
label unchanged since (same size, mtime and faces) gives its findings without a check, so a
reopened project of 10,000 labels knows its issues in seconds, not the 13-27 minutes of a core
a full pass takes (``bench.label_issue_load``). Changed labels are still checked in the opening
pass, so a label just saved or imported, and the photo just opened, are checked before the rest.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from faceparse_app import label_review
from faceparse_app.label_check_cache import LabelCheckCache, job_key
from faceparse_app.label_checks import Finding, summary
from faceparse_app.label_review import LabelJob
from faceparse_app.project import ProjectError
from faceparse_app.session import AnnotationSession
from faceparse_app.widgets.image_list import ImageList
from faceparse_app.widgets.message_bar import MessageBar
from faceparse_app.workers import PRELABEL_NICE, Relay, lower_thread_priority

log = logging.getLogger(__name__)

STOP, NOW, PASS = 0, 1, 2  # the queue's priorities: stopping, a label saved or opened, the opening pass
_LIST_ALL = LabelJob(-1, "", Path(), None)  # the opening pass's first item: list every label
FLUSH_S = 3.0  # the cache file is rewritten at most this often while checks run (and when they end)
# Cached findings go to the GUI thread this many at a time, each batch once the last is shown:
# posted one by one as fast as they are read, 10,000 kept the GUI thread busy for 2.7 s at once
# (bench.label_issue_load --reopen).
CACHED_BATCH = 32


class LabelIssueWatch(QObject):
    """Keeps the image list's label issues up to date for one session (a child of it).

    Signals:
        message(text, level): what was found in the photo just opened (to the session's
            message signal, so the window shows it as its own).
    """

    message = Signal(str, str)

    def __init__(self, session: AnnotationSession, image_list: ImageList, bar: MessageBar) -> None:
        super().__init__(session)
        self.session = session
        self.image_list = image_list
        self.bar = bar
        self.findings: dict[int, list[Finding]] = {}
        self._checked: set[int] = set()  # images whose saved label has been checked
        self._waiting: int | None = None  # the photo on screen, opened before its first check
        self._stopped = threading.Event()
        # (priority, order, job): FIFO within a priority; job None stops the thread.
        self._jobs: queue.PriorityQueue[tuple[int, int, LabelJob | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._relay = Relay(self._on_event, self)
        project = session.project
        self._cache = LabelCheckCache(project.store_dir, writable=not project.read_only)
        self._cached: list[tuple[int, list[Finding]]] = []  # cached findings not yet posted
        self._shown = threading.Event()  # the GUI thread has shown the last batch posted
        self._shown.set()
        self.message.connect(session.message)
        session.saved.connect(self.recheck)
        session.status_changed.connect(lambda image_id, *_: self.recheck(image_id))
        session.labels_imported.connect(self.recheck_all)
        session.image_changed.connect(self._on_image)
        session.closing.connect(self.stop)
        # The opening pass lists its labels on the thread (a store query and a path per label:
        # 80-500 ms at 10,000 photos, bench.label_issue_load); the store's lock makes that safe.
        self._put(PASS, _LIST_ALL)
        self._thread = threading.Thread(target=self._work, name="label-checks", daemon=True)
        self._thread.start()

    def recheck(self, image_id: int) -> None:
        """Check an image's saved label again (after a save or a status change)."""
        self.recheck_all([image_id])

    def recheck_all(self, image_ids: list[int]) -> None:
        """Check these images' saved labels again (an import's labels: one query for all)."""
        if self._stopped.is_set():
            return
        records = []
        for image_id in image_ids:
            try:
                records.append(self.session.project.get(image_id))
            except KeyError:
                continue
        jobs = {job.image_id: job for job in label_review.jobs(self.session.project, records)}
        for rec in records:
            if rec.id in jobs:
                self._put(NOW, jobs[rec.id])
            else:  # no longer a label to check (sent back to new, say)
                self._set(rec.id, [])

    def idle(self) -> bool:
        """Whether every check asked for so far is done (for tests)."""
        return self._jobs.unfinished_tasks == 0

    def stop(self) -> None:
        """Stop checking (the session closes); waits for a check under way."""
        self._stopped.set()
        self._put(STOP, None)
        self._thread.join(timeout=30)

    # ---------------------------------------------------------------- internals
    def _put(self, priority: int, job: LabelJob | None) -> None:
        self._jobs.put((priority, next(self._order), job))

    def _work(self) -> None:
        lower_thread_priority(PRELABEL_NICE)
        self._cache.load()  # here, not on the GUI thread: a few MB of JSON at 10,000 labels
        flushed = time.monotonic()
        try:
            while True:
                priority, _, job = self._jobs.get()
                try:
                    if job is None or self._stopped.is_set():
                        return
                    if job is _LIST_ALL:
                        self._list_all()
                        continue
                    key = job_key(job)  # before the read: a label rewritten meanwhile is checked next time
                    cached = self._cache.lookup(job, key)
                    if cached is not None:
                        self._cached.append((job.image_id, cached))
                        if priority != PASS or len(self._cached) >= CACHED_BATCH or self._jobs.empty():
                            self._post_cached()
                        continue
                    self._post_cached()  # the hits before it are shown while it is checked
                    findings = self._check(job, key)
                    if findings is not None and not self._stopped.is_set():
                        self._relay.post("checked", [(job.image_id, findings)])
                finally:
                    # Written before the last task is marked done, so idle() means saved too.
                    if self._jobs.empty() or time.monotonic() - flushed > FLUSH_S:
                        self._cache.flush()
                        flushed = time.monotonic()
                    self._jobs.task_done()
        finally:
            self._cache.flush()

    def _post_cached(self) -> None:
        """Post the cached findings gathered, once the GUI thread has shown the last batch."""
        if not self._cached:
            return
        while not self._shown.wait(timeout=0.1):
            if self._stopped.is_set():
                return
        batch, self._cached = self._cached, []
        if batch and not self._stopped.is_set():
            self._shown.clear()
            self._relay.post("checked", batch)

    def _check(self, job: LabelJob, key: list | None) -> list[Finding] | None:
        """A job's findings, checked and kept in the cache (None: the check failed)."""
        try:
            findings = label_review.run(job)
        except Exception:  # a check must never take the window down
            log.exception("label check of %s failed", job.relpath)
            return None
        self._cache.store(job, key, findings)
        return findings

    def _list_all(self) -> None:
        try:
            jobs = label_review.jobs(self.session.project)
        except ProjectError:  # the store went bad meanwhile: its own check says so
            log.exception("cannot list the labels to check")
            return
        for job in jobs:
            self._put(PASS, job)

    def _on_event(self, _kind: str, payload: list[tuple[int, list[Finding]]]) -> None:
        for image_id, findings in payload:
            if self._stopped.is_set():
                break
            self._set(image_id, findings)
        self._shown.set()

    def _set(self, image_id: int, findings: list[Finding]) -> None:
        self._checked.add(image_id)
        waiting, current = self._waiting, self.session.current
        if waiting == image_id:
            self._waiting = None
        if findings:
            self.findings[image_id] = findings
        else:
            self.findings.pop(image_id, None)
        # This photo's row only: rebuilding every flagged row's summary took 46 ms a check with
        # 10,000 flagged (bench.label_issue_load), on the GUI thread.
        self.image_list.set_label_issue(image_id, summary(findings) if findings else None)
        if waiting == image_id and current is not None and current.id == image_id:
            self._say(current.id, current.relpath)

    def _on_image(self, rec) -> None:
        self._waiting = None
        if rec is None:
            return
        if rec.id in self._checked:
            self._say(rec.id, rec.relpath)
        else:  # not reached by the opening pass yet: its check comes next
            self._waiting = rec.id
            for job in label_review.jobs(self.session.project, [rec]):
                self._put(NOW, job)

    def _say(self, image_id: int, relpath: str) -> None:
        findings = self.findings.get(image_id)
        if not findings:
            return
        if not self.bar.isHidden() and self.bar.level in ("warning", "error"):
            return  # what that says matters more; the list still flags the photo
        self.message.emit(label_review.photo_message(relpath, findings), "info")

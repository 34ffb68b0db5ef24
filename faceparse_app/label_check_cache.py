"""The label checks' findings kept across opens (no Qt): ``label_checks.json`` in the project's
store folder, so a project reopened with its labels unchanged shows its label issues at once
instead of checking every label again (13-27 minutes of a core at 10,000 labels,
``bench.label_issue_load``).

Each image's entry is keyed by what decides its findings: the label file's size and mtime_ns,
the photo's (a label must fit its photo), the faces the check was given, and the checks' own
source (a change to them checks everything again). A missing, damaged or foreign file is ignored, and rewritten by the next flush; a
read-only project never writes it. The file is a cache: losing it costs one full pass, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from faceparse_app import label_checks, label_review
from faceparse_app.label_checks import Finding
from faceparse_app.label_review import LabelJob
from trainer.data.imageio import atomic_write_bytes, remove_temp_leftovers

log = logging.getLogger(__name__)

CACHE_FILE = "label_checks.json"
FORMAT = "faceparse-label-checks/1"


def checks_version() -> str:
    """A digest of the checks' source (the checks and how a label is run through them):
    findings cached by other checks are not reused."""
    digest = hashlib.sha1()
    try:
        for module in (label_checks, label_review):
            digest.update(Path(module.__file__).read_bytes())
    except OSError:
        return "unknown"
    return digest.hexdigest()[:16]


def job_key(job: LabelJob) -> list[Any] | None:
    """What decides a job's findings, as JSON gives it back; None when its label cannot be
    stat'ed (then it is checked, and not cached)."""
    try:
        st = os.stat(job.label_path)
    except OSError:
        return None
    boxes = None if job.boxes is None else [list(box) for box in job.boxes]
    key = [st.st_size, st.st_mtime_ns, boxes]
    if job.image_path is not None:  # a photo cropped or replaced under its label is checked again
        try:
            photo = os.stat(job.image_path)
        except OSError:
            return None
        key += [photo.st_size, photo.st_mtime_ns]
    return key


def _finding(raw: Any) -> Finding:
    kind, message, box, face = raw
    if not (isinstance(kind, str) and isinstance(message, str) and isinstance(face, int)):
        raise ValueError(raw)
    if len(box) != 4 or not all(isinstance(v, int) for v in box):
        raise ValueError(raw)
    return Finding(kind, message, tuple(box), face)


class LabelCheckCache:
    """Cached findings per label (by the image's relpath); safe to use from any thread.

    Args:
        store_dir: the project's store folder (``project.store_dir``).
        writable: False for a read-only project (nothing is written).
    """

    def __init__(self, store_dir: Path, writable: bool) -> None:
        self.path = Path(store_dir) / CACHE_FILE
        self.writable = writable
        self.version = checks_version()
        self._entries: dict[str, list[Any]] = {}  # relpath -> [key, [[kind, message, box, face], ...]]
        self._dirty = False
        self._lock = threading.Lock()

    def load(self) -> None:
        """Read the file (ignored, to be rewritten, when missing, damaged or not ours), and
        delete the temp files of writes killed midway (only where this instance writes: the
        project's lock keeps any other from writing it meanwhile)."""
        if self.writable:
            try:
                remove_temp_leftovers(self.path.parent, CACHE_FILE)
            except OSError:
                log.info("cannot clear the temp files of %s", self.path, exc_info=True)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or data.get("checks") != self.version:
                raise ValueError("another format or other checks")
            entries = data["labels"]
            if not isinstance(entries, dict):
                raise ValueError("labels is not an object")
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.info("label check cache %s ignored (%s): it is rewritten", self.path, exc)
            self._dirty = True
            return
        with self._lock:
            self._entries = entries

    def lookup(self, job: LabelJob, key: list[Any] | None) -> list[Finding] | None:
        """The cached findings of a job whose key is ``key``; None when it must be checked."""
        if key is None:
            return None
        with self._lock:
            entry = self._entries.get(job.relpath)
        try:
            if not entry or entry[0] != key:
                return None
            return [_finding(raw) for raw in entry[1]]
        except (ValueError, TypeError, IndexError):  # a damaged entry: checked again
            return None

    def store(self, job: LabelJob, key: list[Any] | None, findings: list[Finding]) -> None:
        """Keep a job's findings, checked with its label at ``key`` (taken before the read)."""
        if key is None:
            return
        raw = [[f.kind, f.message, list(f.box), f.face] for f in findings]
        with self._lock:
            self._entries[job.relpath] = [key, raw]
            self._dirty = True

    def flush(self) -> None:
        """Write the file when anything changed (atomically; a failure is logged, not raised)."""
        if not self.writable:
            return
        with self._lock:
            if not self._dirty:
                return
            if not self.path.parent.is_dir():
                # The store folder was deleted under the app (the store watch puts it back):
                # made again here it would hold only this file. Written once it is back.
                return
            data = json.dumps({"format": FORMAT, "checks": self.version, "labels": self._entries})
            self._dirty = False
        try:
            atomic_write_bytes(self.path, data.encode("utf-8"), make_folder=False)
        except OSError:
            log.warning("cannot write the label check cache %s", self.path, exc_info=True)
            with self._lock:
                self._dirty = True  # tried again at the next flush

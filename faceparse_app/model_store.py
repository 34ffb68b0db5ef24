"""Model versions of one project, kept in ``<project>/.faceparse/models/`` (Qt-free).

Layout::

    models/
      v0001/model.safetensors   # a copy of the published checkpoint
      v0001/version.json        # kind, metrics, data snapshot, parent, note, checksum
      v0002/...
      active.json               # {"parser": "v0002", "backbone": "v0001"}

A version is built in a hidden temp folder inside ``models/`` (files fsynced) and then renamed
into place in one ``os.replace``, so a reader never sees a half-written version, and a crash
mid-publish leaves only a hidden temp folder that listing ignores (MONAI Label copies in place;
we do not). ``active.json`` is replaced atomically too. A damaged version folder is skipped
with a note in ``ModelStore.problems``, never fatal.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.checkpoint import read_metadata
from trainer.data.imageio import atomic_write_bytes, make_temp_dir
from trainer.errors import FaceParseError
from trainer.starter import STARTER_BACKBONE, STARTER_PARSER

log = logging.getLogger(__name__)

KINDS = ("parser", "backbone")
MODEL_FILE = "model.safetensors"
VERSION_FILE = "version.json"
ACTIVE_FILE = "active.json"
STORE_FORMAT = 1
STARTER_ID = "starter"  # the version name pre-labels from the shipped starter parser carry

_VERSION_RE = re.compile(r"^v(\d{4,})$")


class ModelStoreError(FaceParseError):
    """A model version cannot be published, found or activated."""


@dataclass(frozen=True)
class ModelVersion:
    """One published model.

    Attributes:
        id: "v0001", "v0002", ... (monotonic within a store).
        kind: "parser" (fine-tuned, predicts label maps) or "backbone" (stage-1 pretrained).
        dir: the version's folder.
        created: ISO-8601 local time of publishing.
        metrics: e.g. {"val_mean_f1": 0.71, "val_miou": 0.62, "steps": 300}.
        data_snapshot: the images it was trained on, one ``"<relpath>@<content hash>"`` each.
        parent: the version it was derived from or replaced, or None.
        note: free text shown to the user.
        preset: model preset of the checkpoint ("paper", "lite", "tiny").
        stage: checkpoint stage ("finetune" or "pretrain").
        sha256: hex digest of model.safetensors.
        size: bytes of model.safetensors.
    """

    id: str
    kind: str
    dir: Path
    created: str
    metrics: dict[str, Any] = field(default_factory=dict)
    data_snapshot: tuple[str, ...] = ()
    parent: str | None = None
    note: str = ""
    preset: str = ""
    stage: str = ""
    sha256: str = ""
    size: int = 0

    @property
    def path(self) -> Path:
        """The checkpoint file (load it with ``Predictor.from_checkpoint``)."""
        return self.dir / MODEL_FILE

    @property
    def number(self) -> int:
        return int(self.id[1:])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what version.json holds, plus the folder)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "created": self.created,
            "metrics": dict(self.metrics),
            "data_snapshot": list(self.data_snapshot),
            "parent": self.parent,
            "note": self.note,
            "preset": self.preset,
            "stage": self.stage,
            "sha256": self.sha256,
            "size": self.size,
            "dir": str(self.dir),
        }


def snapshot_entry(relpath: str, content_hash: str) -> str:
    """One ``data_snapshot`` line: the image's project-relative path and its content hash."""
    return f"{relpath}@{content_hash}"


class ModelStore:
    """The versions of a project's models.

    Args:
        store_dir: the ``models`` folder (created on first publish), e.g.
            ``<project>/.faceparse/models``.
        starter_backbone: the backbone shipped with the app, used when the project has none.
        starter_parser: the parser shipped with the app: pre-labels until the project has one.

    Attributes:
        problems: notes about version folders that were skipped (damaged, unreadable).
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        starter_backbone: str | os.PathLike[str] | None = None,
        starter_parser: str | os.PathLike[str] | None = None,
    ) -> None:
        self.dir = Path(store_dir)
        self.starter_backbone = Path(starter_backbone) if starter_backbone else STARTER_BACKBONE
        self.starter_parser = Path(starter_parser) if starter_parser else STARTER_PARSER
        self.problems: list[str] = []
        # Publishing runs on a training thread while the GUI lists versions; listing needs no
        # lock (renames are atomic), but two publishers must not race for an id.
        self._lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------------

    def versions(self, kind: str | None = None) -> list[ModelVersion]:
        """Valid versions, oldest first; damaged folders are skipped and noted in ``problems``.

        Args:
            kind: "parser", "backbone", or None for both.
        """
        if kind is not None:
            _check_kind(kind)
        problems: list[str] = []
        out: list[ModelVersion] = []
        for folder in self._version_dirs():
            try:
                version = _read_version(folder)
            except ModelStoreError as exc:
                problems.append(str(exc))
                continue
            if kind is None or version.kind == kind:
                out.append(version)
        for note in problems:
            if note not in self.problems:
                log.warning("model store: %s", note)
        self.problems = problems
        return out

    def get(self, version_id: str) -> ModelVersion:
        """The version with this id.

        Raises:
            ModelStoreError: no such version, or its folder is damaged.
        """
        if not _VERSION_RE.match(version_id):
            raise ModelStoreError(f"{version_id!r} is not a model version id (v0001, v0002, ...)")
        folder = self.dir / version_id
        if not folder.is_dir():
            raise ModelStoreError(f"model version {version_id} not found in {self.dir}")
        return _read_version(folder)

    def active(self, kind: str) -> ModelVersion | None:
        """The active version of a kind.

        The pointer in active.json wins; if it names a missing or damaged version (noted in
        ``problems``), or no pointer was ever set, the newest valid version of the kind is used.
        None when the project has no version of that kind.
        """
        _check_kind(kind)
        versions = self.versions(kind)
        wanted = self._pointers().get(kind)
        if wanted == STARTER_ID:  # rolled back past the project's first version
            return None
        if wanted:
            for version in versions:
                if version.id == wanted:
                    return version
            note = f"the active {kind} {wanted} is missing or damaged; using the newest valid one"
            if note not in self.problems:
                log.warning("model store: %s", note)
                self.problems.append(note)
        return versions[-1] if versions else None

    def parser_for_prelabel(self) -> tuple[Path, str] | None:
        """(checkpoint, version name) that pre-labels: the project's active parser, else the
        starter parser shipped with the package (named ``STARTER_ID``), else None."""
        own = self.active("parser")
        if own is not None:
            return own.path, own.id
        if self.starter_parser.is_file():
            return self.starter_parser, STARTER_ID
        return None

    # -- writing ------------------------------------------------------------------------------

    def publish(
        self,
        checkpoint_path: str | os.PathLike[str],
        kind: str,
        metrics: dict[str, Any] | None = None,
        data_snapshot: Iterable[str] = (),
        parent: str | None = None,
        note: str = "",
        activate: bool = True,
    ) -> ModelVersion:
        """Copy a checkpoint into the store as a new version, atomically.

        Args:
            checkpoint_path: a faceparse ``.safetensors`` checkpoint (left where it is).
            kind: "parser" (must have a parsing head, i.e. not a stage-1 checkpoint) or
                "backbone".
            metrics: JSON-able numbers to keep with it (validation F1, mIoU, steps, ...).
            data_snapshot: the images used, e.g. ``snapshot_entry(relpath, hash)`` each.
            parent: the version it derives from / replaces (what ``rollback`` returns to).
            note: free text.
            activate: make it the active version of its kind.

        Returns:
            The new version.

        Raises:
            CheckpointError: the file is not a readable faceparse checkpoint.
            ModelStoreError: wrong kind, or the store cannot be written (disk full, read-only).
        """
        _check_kind(kind)
        src = Path(checkpoint_path)
        # Without a pointer the newest version is the active one: one kept aside must not
        # become it (the first parser that scored below the starter did, while the panel said
        # the starter stayed in use). What was in use stays so, by name.
        keep = None if activate or kind in self._pointers() else self.active(kind)
        meta = read_metadata(src)  # raises CheckpointError naming the file
        stage = str(meta.get("stage", ""))
        if kind == "parser" and stage == "pretrain":
            raise ModelStoreError(
                f"{src}: a stage-1 (pretrain) checkpoint has no parsing head; publish it as a "
                "backbone, or fine-tune it first"
            )
        record: dict[str, Any] = {
            "format": STORE_FORMAT,
            "kind": kind,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "metrics": dict(metrics or {}),
            "data_snapshot": list(data_snapshot),
            "parent": parent,
            "note": note,
            "preset": str((meta.get("model") or {}).get("preset", "")),
            "stage": stage,
        }
        with self._lock:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                tmp = make_temp_dir(self.dir, ".publish-")
            except OSError as exc:
                raise ModelStoreError(f"cannot write the model store {self.dir}: {exc}") from None
            try:
                record["sha256"], record["size"] = _copy_fsync(src, tmp / MODEL_FILE)
                _write_fsync(tmp / VERSION_FILE, json.dumps(record, indent=2).encode("utf-8"))
                _fsync_dir(tmp)
                version_id = self._move_into_place(tmp)
            except BaseException as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if isinstance(exc, OSError):
                    raise ModelStoreError(f"could not publish {src.name} into {self.dir}: {exc}") from exc
                raise
            if activate:
                self._set_pointer(kind, version_id)
            elif kind not in self._pointers():
                self._set_pointer(kind, keep.id if keep is not None else STARTER_ID)
        return self.get(version_id)

    def activate(self, version_id: str) -> ModelVersion:
        """Make a version the active one of its kind (atomic rewrite of active.json)."""
        version = self.get(version_id)
        with self._lock:
            self._set_pointer(version.kind, version.id)
        return version

    def use_starter(self, kind: str = "parser") -> None:
        """Pre-label with the shipped starter parser again, keeping the project's versions
        (what rolling back from the oldest version reaches)."""
        _check_kind(kind)
        with self._lock:
            self._set_pointer(kind, STARTER_ID)

    def rollback(self, kind: str) -> ModelVersion:
        """Activate the version before the active one: its parent, else the previous id.

        Raises:
            ModelStoreError: nothing to roll back to.
        """
        current = self.active(kind)
        if current is None:
            raise ModelStoreError(f"the project has no {kind} model to roll back")
        older = {v.id: v for v in self.versions(kind) if v.number < current.number}
        target = older.get(current.parent or "")
        if target is None and older:
            target = max(older.values(), key=lambda v: v.number)
        if target is None:
            raise ModelStoreError(f"{current.id} is the oldest {kind}; there is nothing to roll back to")
        return self.activate(target.id)

    # -- internals ----------------------------------------------------------------------------

    def _version_dirs(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        found = [p for p in self.dir.iterdir() if _VERSION_RE.match(p.name) and p.is_dir()]
        return sorted(found, key=lambda p: int(p.name[1:]))

    def _next_number(self) -> int:
        numbers = [int(p.name[1:]) for p in self._version_dirs()]
        return max(numbers, default=0) + 1

    def _move_into_place(self, tmp: Path) -> str:
        number = self._next_number()
        for _ in range(100):
            version_id = f"v{number:04d}"
            target = self.dir / version_id
            if not target.exists():
                try:
                    os.replace(tmp, target)
                except OSError as exc:
                    # Another process took this id between the check and the rename.
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not target.exists():
                        raise
                else:
                    _fsync_dir(self.dir)
                    return version_id
            number += 1
        raise ModelStoreError(f"no free version id in {self.dir}")

    def _pointers(self) -> dict[str, str]:
        path = self.dir / ACTIVE_FILE
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            note = f"{path} is unreadable ({exc}); using the newest versions"
            if note not in self.problems:
                self.problems.append(note)
            return {}
        return {k: v for k, v in data.items() if k in KINDS and isinstance(v, str)}

    def _set_pointer(self, kind: str, version_id: str) -> None:
        pointers = self._pointers()
        pointers[kind] = version_id
        try:
            atomic_write_bytes(self.dir / ACTIVE_FILE, json.dumps(pointers, indent=2).encode("utf-8"))
        except OSError as exc:
            raise ModelStoreError(f"cannot activate {version_id}: writing {self.dir / ACTIVE_FILE} failed ({exc})") from exc


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ModelStoreError(f"unknown model kind {kind!r}; use one of {KINDS}")


def _read_version(folder: Path) -> ModelVersion:
    """Parse and sanity-check one version folder; ModelStoreError names what is wrong."""
    info_path = folder / VERSION_FILE
    model_path = folder / MODEL_FILE
    try:
        data = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelStoreError(f"{folder.name} skipped: {VERSION_FILE} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelStoreError(f"{folder.name} skipped: {VERSION_FILE} is unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        raise ModelStoreError(f"{folder.name} skipped: {VERSION_FILE} names no valid kind")
    try:
        size = model_path.stat().st_size
    except OSError:
        raise ModelStoreError(f"{folder.name} skipped: {MODEL_FILE} is missing") from None
    recorded = data.get("size")
    if isinstance(recorded, int) and recorded != size:
        raise ModelStoreError(
            f"{folder.name} skipped: {MODEL_FILE} is {size} bytes but {recorded} were published "
            "(truncated or replaced)"
        )
    parent = data.get("parent")
    return ModelVersion(
        id=folder.name,
        kind=data["kind"],
        dir=folder,
        created=str(data.get("created", "")),
        metrics=dict(data.get("metrics") or {}),
        data_snapshot=tuple(str(s) for s in data.get("data_snapshot") or ()),
        parent=str(parent) if parent else None,
        note=str(data.get("note", "")),
        preset=str(data.get("preset", "")),
        stage=str(data.get("stage", "")),
        sha256=str(data.get("sha256", "")),
        size=size,
    )


def _copy_fsync(src: Path, dst: Path) -> tuple[str, int]:
    """Copy a file, fsync it, and return (sha256 hex, size)."""
    digest = hashlib.sha256()
    size = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest(), size


def _write_fsync(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Persist a rename (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

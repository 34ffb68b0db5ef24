"""The label checks' cache file without a window: findings come back exactly as checked, a
read-only project writes nothing, and a foreign file is ignored."""

from __future__ import annotations

from pathlib import Path

from faceparse_app.label_check_cache import CACHE_FILE, LabelCheckCache, job_key
from faceparse_app.label_checks import PINHOLE, SWAPPED, Finding
from faceparse_app.label_review import LabelJob

FINDINGS = [
    Finding(SWAPPED, "eyes: left/right swapped (the person's left is labeled as the viewer's)", (10, 20, 30, 40)),
    Finding(PINHOLE, "pinhole (3 px)", (1, 2, 3, 4), face=2),
]


def _job(tmp_path: Path) -> LabelJob:
    label = tmp_path / "a.png"
    label.write_bytes(b"not really a png")
    return LabelJob(1, "sub/a.jpg", label, ((1.5, 2.0, 100.25, 120.0),))


def _checked_and_flushed(tmp_path: Path, writable: bool) -> LabelJob:
    """A job whose FINDINGS a cache of ``tmp_path`` kept and flushed."""
    job = _job(tmp_path)
    cache = LabelCheckCache(tmp_path, writable=writable)
    cache.load()
    cache.store(job, job_key(job), FINDINGS)
    cache.flush()
    return job


def test_findings_round_trip_exactly_and_a_changed_label_misses(tmp_path: Path) -> None:
    job = _checked_and_flushed(tmp_path, writable=True)
    again = LabelCheckCache(tmp_path, writable=True)
    again.load()
    assert again.lookup(job, job_key(job)) == FINDINGS
    other_faces = LabelJob(1, "sub/a.jpg", job.label_path, None)
    assert again.lookup(other_faces, job_key(other_faces)) is None
    job.label_path.write_bytes(b"another label, longer")
    assert again.lookup(job, job_key(job)) is None


def test_a_read_only_project_writes_nothing(tmp_path: Path) -> None:
    _checked_and_flushed(tmp_path, writable=False)
    assert not (tmp_path / CACHE_FILE).exists()


def test_a_foreign_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    job = _job(tmp_path)
    (tmp_path / CACHE_FILE).write_text("[1, 2, 3]")
    cache = LabelCheckCache(tmp_path, writable=True)
    cache.load()
    assert cache.lookup(job, job_key(job)) is None
    cache.flush()
    assert '"labels": {}' in (tmp_path / CACHE_FILE).read_text()


def test_a_deleted_store_folder_is_not_made_again_by_the_cache(tmp_path: Path) -> None:
    """A cleanup script or a sync client deleted .faceparse/ while the checks ran: the cache must
    not bring the folder back holding only its own file (the store watch puts the whole store
    back); its findings are written once the folder is there again."""
    store = tmp_path / ".faceparse"
    store.mkdir()
    job = _job(tmp_path)
    cache = LabelCheckCache(store, writable=True)
    cache.load()
    store.rmdir()
    cache.store(job, job_key(job), FINDINGS)
    cache.flush()
    assert not store.exists()
    store.mkdir()  # put back
    cache.flush()
    again = LabelCheckCache(store, writable=True)
    again.load()
    assert again.lookup(job, job_key(job)) == FINDINGS

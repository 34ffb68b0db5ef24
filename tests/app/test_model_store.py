"""Model versions in a project: publish, list, activate, roll back, survive crashes and damage."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from faceparse_app.model_store import ModelStore, ModelStoreError, snapshot_entry
from trainer.checkpoint import read_metadata, save_checkpoint
from trainer.errors import CheckpointError
from trainer.models import build_model, get_preset


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny fine-tuned checkpoint and a tiny stage-1 one."""
    folder = tmp_path_factory.mktemp("ckpts")
    config = get_preset("tiny")
    parser = save_checkpoint(
        folder / "parser.safetensors", build_model(config, heads=("parsing",)), "finetune", {"step": 3}
    )
    backbone = save_checkpoint(
        folder / "backbone.safetensors", build_model(config, heads=("reconstruction",)), "pretrain"
    )
    return {"parser": parser, "backbone": backbone}


def test_publish_copies_checkpoint_and_records_everything(tmp_path, checkpoints):
    store = ModelStore(tmp_path / "models")
    snap = [snapshot_entry("a/face1.jpg", "abc"), snapshot_entry("face2.png", "def")]
    v = store.publish(checkpoints["parser"], "parser", {"val_miou": 0.5}, snap, parent=None, note="first")
    assert v.id == "v0001"
    assert v.path == tmp_path / "models" / "v0001" / "model.safetensors"
    assert v.path.read_bytes() == checkpoints["parser"].read_bytes()
    assert read_metadata(v.path)["step"] == 3
    assert v.metrics == {"val_miou": 0.5}
    assert v.data_snapshot == ("a/face1.jpg@abc", "face2.png@def")
    assert (v.kind, v.note, v.preset, v.stage) == ("parser", "first", "tiny", "finetune")
    data = v.path.read_bytes()
    assert (v.sha256, v.size) == (hashlib.sha256(data).hexdigest(), len(data))  # as recorded
    # A fresh store object over the same folder sees the same thing (all state is on disk).
    again = ModelStore(tmp_path / "models")
    assert [x.id for x in again.versions()] == ["v0001"]
    assert again.active("parser") == v


def test_ids_are_monotonic_and_filtered_by_kind(tmp_path, checkpoints):
    store = ModelStore(tmp_path / "models")
    b = store.publish(checkpoints["backbone"], "backbone", {}, [], None)
    p1 = store.publish(checkpoints["parser"], "parser", {}, [], None)
    p2 = store.publish(checkpoints["parser"], "parser", {}, [], p1.id)
    assert [v.id for v in store.versions()] == ["v0001", "v0002", "v0003"]
    assert [v.id for v in store.versions("parser")] == [p1.id, p2.id]
    assert [v.id for v in store.versions("backbone")] == [b.id]
    assert store.active("parser").id == p2.id
    assert store.active("backbone").id == b.id


def test_activate_and_rollback(tmp_path, checkpoints):
    store = ModelStore(tmp_path / "models")
    p1 = store.publish(checkpoints["parser"], "parser", {}, [], None)
    p2 = store.publish(checkpoints["parser"], "parser", {}, [], p1.id)
    p3 = store.publish(checkpoints["parser"], "parser", {}, [], p1.id)  # trained from p1's data again
    assert store.active("parser").id == p3.id
    assert store.rollback("parser").id == p1.id  # the parent, not merely the previous id
    assert store.active("parser").id == p1.id
    with pytest.raises(ModelStoreError, match="nothing to roll back"):
        store.rollback("parser")
    store.activate(p2.id)
    assert ModelStore(tmp_path / "models").active("parser").id == p2.id
    assert store.rollback("parser").id == p1.id


def test_parser_kind_rejects_stage1_checkpoint_and_garbage(tmp_path, checkpoints):
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelStoreError, match="no parsing head"):
        store.publish(checkpoints["backbone"], "parser", {}, [], None)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        store.publish(junk, "parser", {}, [], None)
    assert store.versions() == []


def test_crash_mid_publish_leaves_no_version_and_keeps_active(tmp_path, checkpoints, monkeypatch):
    store = ModelStore(tmp_path / "models")
    good = store.publish(checkpoints["parser"], "parser", {}, [], None)
    active_before = (tmp_path / "models" / "active.json").read_bytes()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(ModelStoreError, match="No space left"):
        store.publish(checkpoints["parser"], "parser", {}, [], good.id)
    monkeypatch.undo()

    assert [v.id for v in store.versions()] == [good.id]
    assert store.active("parser").id == good.id
    assert (tmp_path / "models" / "active.json").read_bytes() == active_before
    # The temp folder was cleaned up; nothing half-written remains.
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["active.json", "v0001"]
    # And the next publish still works and gets the next id.
    assert store.publish(checkpoints["parser"], "parser", {}, [], good.id).id == "v0002"


def test_leftover_temp_folder_from_a_killed_publish_is_ignored(tmp_path, checkpoints):
    store = ModelStore(tmp_path / "models")
    store.publish(checkpoints["parser"], "parser", {}, [], None)
    leftover = tmp_path / "models" / ".publish-x1y2"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half")
    assert [v.id for v in store.versions()] == ["v0001"]


def test_damaged_version_is_skipped_with_a_note(tmp_path, checkpoints):
    store = ModelStore(tmp_path / "models")
    p1 = store.publish(checkpoints["parser"], "parser", {}, [], None)
    p2 = store.publish(checkpoints["parser"], "parser", {}, [], p1.id)
    p3 = store.publish(checkpoints["parser"], "parser", {}, [], p2.id, activate=False)
    (p2.dir / "version.json").write_text("{not json", encoding="utf-8")
    with open(p3.path, "r+b") as f:  # truncated weights
        f.truncate(100)

    versions = store.versions()
    assert [v.id for v in versions] == [p1.id]
    assert any("v0002" in note and "version.json" in note for note in store.problems)
    assert any("v0003" in note and "truncated" in note for note in store.problems)
    # The active pointer names the damaged v0002: fall back to the newest valid parser.
    assert store.active("parser").id == p1.id
    assert any("v0002" in note and "active" in note for note in store.problems)
    # A new version never reuses a damaged folder's id.
    assert store.publish(checkpoints["parser"], "parser", {}, [], None).id == "v0004"


def test_corrupt_active_pointer_is_not_fatal(tmp_path, checkpoints):
    store = ModelStore(tmp_path / "models")
    p1 = store.publish(checkpoints["parser"], "parser", {}, [], None)
    (tmp_path / "models" / "active.json").write_text("garbage", encoding="utf-8")
    assert store.active("parser").id == p1.id
    assert store.activate(p1.id).id == p1.id
    assert json.loads((tmp_path / "models" / "active.json").read_text())["parser"] == p1.id


def test_prelabels_come_from_the_project_parser_else_the_starter_parser(tmp_path, checkpoints):
    starter = tmp_path / "starter_parser.safetensors"
    store = ModelStore(tmp_path / "models", starter_parser=starter)
    assert store.parser_for_prelabel() is None  # nothing at all: the app offers training
    starter.write_bytes(checkpoints["parser"].read_bytes())
    assert store.parser_for_prelabel() == (starter, "starter")
    own = store.publish(checkpoints["parser"], "parser", {}, [], None)
    assert store.parser_for_prelabel() == (own.path, own.id)


def test_unknown_kind_and_id(tmp_path, checkpoints):
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelStoreError, match="unknown model kind"):
        store.versions("detector")
    with pytest.raises(ModelStoreError, match="not found"):
        store.activate("v0009")
    with pytest.raises(ModelStoreError, match="no parser model"):
        store.rollback("parser")


def test_published_versions_follow_the_umask(tmp_path, checkpoints):
    """Issue 28: a team shares the project folder; a version folder of 0700 locks them out."""
    import stat

    old = os.umask(0o002)
    try:
        v = ModelStore(tmp_path / "models").publish(checkpoints["parser"], "parser", {}, [], None)
    finally:
        os.umask(old)
    assert stat.S_IMODE(v.path.parent.stat().st_mode) == 0o775
    assert stat.S_IMODE(v.path.stat().st_mode) == 0o664

"""Listing a folder of photos: images found, other files skipped with one line each, and the
notes and credits that sit beside photos (the demo project's SOURCES.md) skipped quietly."""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from trainer.data.folders import list_images


def test_notes_beside_the_photos_are_skipped_quietly_and_other_files_said(tmp_path, caplog):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "SOURCES.md").write_text("photo credits\n")
    (tmp_path / "notes.txt").write_text("to do\n")
    (tmp_path / "model.ckpt").write_bytes(b"\0\1")
    with caplog.at_level(logging.WARNING):
        found = list_images(tmp_path)
    assert [p.name for p in found] == ["a.png"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "model.ckpt" in said[0] and "not an image file" in said[0]

"""Fixtures shared by the app's tests of photos moved and renamed in the folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# Aligned portraits of one size (1024×1024): a label made for one fits every other.
PORTRAITS = ("stargan_036367.jpg", "stargan_037023.jpg", "stargan_038919.jpg", "stargan_039913.jpg")


@pytest.fixture
def numbered(tmp_path, shared_data) -> Path:
    """A folder of three real portraits named 1.jpg, 2.jpg, 3.jpg (copies of ../shared)."""
    folder = tmp_path / "project"
    folder.mkdir()
    for n, name in enumerate(PORTRAITS[:3], 1):
        shutil.copy(shared_data / "faces-unlabeled" / name, folder / f"{n}.jpg")
    return folder

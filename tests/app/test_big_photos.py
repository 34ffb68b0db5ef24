"""Enormous photos (100-200 megapixels) in the app: the folder scan reads headers only, and the
background pre-labels keep no full-size confidence map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from faceparse_app import project as project_mod


def test_folder_scan_reads_a_png_header_without_decoding_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)

    decoded: list[str] = []

    def no_decoding(self: PngImagePlugin.PngImageFile) -> None:
        # Recorded, not only raised: the scan's EXIF look-up swallowed any error (1.2 s and the
        # pixels' memory for each 50-megapixel PNG of a folder, then the right answer anyway).
        decoded.append(self.filename)
        raise OSError("the scan decoded the PNG's pixels")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    assert project_mod.image_size(path) == (30, 20)
    assert decoded == []

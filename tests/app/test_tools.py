"""Tool geometry: brush segments, flood regions, polygons, clipped to the map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceparse_app.tools import disc_segment_mask, flood_region, polygon_mask


def _full(shape: tuple[int, int], box: tuple[int, int, int, int], mask: np.ndarray) -> np.ndarray:
    out = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = mask
    return out


def test_dot_is_a_disc_of_the_radius() -> None:
    box, mask = disc_segment_mask((10, 10), (10, 10), 3, (32, 32))
    full = _full((32, 32), box, mask)
    ys, xs = np.nonzero(full)
    assert np.all((xs - 10) ** 2 + (ys - 10) ** 2 <= 9)
    assert full[10, 13] and full[13, 10] and not full[10, 14]
    assert full.sum() == 29  # pixel centres within radius 3 of a pixel centre


def test_segment_covers_the_swept_band_and_stays_in_its_box() -> None:
    box, mask = disc_segment_mask((5, 20), (50, 20), 2, (40, 64))
    assert box == (3, 18, 53, 23)
    full = _full((40, 64), box, mask)
    assert full[18:23, 5:51].all()  # the whole band between the end points
    assert not full[:17].any() and not full[24:].any()


def test_tiny_brush_still_paints_its_pixel() -> None:
    box, mask = disc_segment_mask((7.4, 3.6), (7.4, 3.6), 0.2, (10, 10))
    assert _full((10, 10), box, mask)[4, 7]


def test_brush_is_clipped_at_the_image_edges() -> None:
    box, mask = disc_segment_mask((-5, -5), (2, 2), 4, (16, 16))
    x0, y0, x1, y1 = box
    assert (x0, y0) == (0, 0) and x1 <= 16 and y1 <= 16
    assert mask.shape == (y1 - y0, x1 - x0) and mask[0, 0]
    box, mask = disc_segment_mask((100, 100), (120, 100), 3, (16, 16))
    assert mask.size == 0


def test_flood_region_is_4_connected() -> None:
    label = np.zeros((8, 8), np.uint8)
    label[1:3, 1:3] = 5
    label[3, 3] = 5  # touches the block only diagonally: a separate region
    box, mask = flood_region(label, 1, 1)
    full = _full(label.shape, box, mask)
    assert full[1:3, 1:3].all() and not full[3, 3] and full.sum() == 4
    box, mask = flood_region(label, 0, 0)  # the background around both
    full = _full(label.shape, box, mask)
    assert full.sum() == 64 - 5


def test_flood_outside_the_map_is_empty() -> None:
    _, mask = flood_region(np.zeros((4, 4), np.uint8), 9, 9)
    assert mask.size == 0


def test_polygon_fills_its_inside_and_clips() -> None:
    box, mask = polygon_mask([(2, 2), (12, 2), (12, 12), (2, 12)], (16, 16))
    full = _full((16, 16), box, mask)
    assert full[2:13, 2:13].all() and full.sum() == 121
    box, mask = polygon_mask([(-10, -10), (5, -10), (5, 5), (-10, 5)], (16, 16))
    full = _full((16, 16), box, mask)
    assert full[0:6, 0:6].all() and full.sum() == 36
    assert polygon_mask([(1, 1), (3, 3)], (16, 16))[1].size == 0


def test_the_app_core_imports_without_qt_or_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import faceparse_app.project, faceparse_app.document, faceparse_app.history\n"
        "import faceparse_app.tools, faceparse_app.export, faceparse_app.landmarks\n"
        "bad = [m for m in ('PySide6', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    repo_root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo_root)

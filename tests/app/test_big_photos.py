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


def _face_files(folder: Path, n: int) -> dict[int, Path]:
    from tests.conftest import synthetic_face
    from trainer.data.imageio import write_image

    files = {}
    for i in range(1, n + 1):
        files[i] = folder / f"face{i}.png"
        write_image(files[i], synthetic_face(64, seed=i)[0])
    return files


def _detect_predictor():
    from trainer.faces import Face
    from trainer.models import build_model, get_preset
    from trainer.predict import Predictor

    def one_face(image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        return [Face(box=(8.0, 8.0, w - 8.0, h - 8.0), score=0.9, box_framing=(0.5, 0.5, 1.0))]

    model = build_model(get_preset("tiny"), heads=("parsing",))
    return Predictor(model, device="cpu", framing="detect", finder=one_face)


def _counting_queue(lookahead: int):
    """A pre-label queue whose loader notes the number of each photo it reads (``face<N>``);
    returns (queue, the numbers read)."""
    from faceparse_app.prelabel_queue import PrelabelQueue
    from trainer.data.imageio import read_image

    loads: list[int] = []

    def loader(path: Path) -> np.ndarray:
        loads.append(int(path.stem[4:]))
        return read_image(path)

    return PrelabelQueue(lookahead=lookahead, loader=loader), loads


def test_only_the_photo_on_screen_gets_a_confidence_map(qtbot, tmp_path: Path) -> None:
    """A 200-megapixel photo's map is 800 MB of float32: the scoring sweep, the refreshes and
    the look-ahead use only the score, and a map kept for each of the 24 cached predictions
    was gigabytes. The photo on screen has its map (the confidence view, U), also when its
    label came from the look-ahead."""
    from faceparse_app.prelabel_queue import PrelabelQueue

    files = _face_files(tmp_path, 4)
    queue = PrelabelQueue(lookahead=1)
    try:
        queue.set_model(_detect_predictor(), "v0001")
        ready: list[tuple[int, object]] = []
        maps: list[tuple[int, object]] = []
        queue.ready.connect(lambda i, pred: ready.append((i, pred)))
        queue.confidence_ready.connect(lambda i, conf: maps.append((i, conf)))
        refreshed: list[int] = []
        queue.refreshed.connect(lambda i, label, version: refreshed.append(i))
        swept: list = []
        original = PrelabelQueue._on_event

        def spy(self, kind, payload):
            if kind == "result":
                swept.append((payload[2], payload[3], payload[5].confidence))
            original(self, kind, payload)

        queue._relay._handler = lambda kind, payload: spy(queue, kind, payload)
        queue.score_all([(3, files[3])])
        queue.refresh([(4, files[4])])
        queue.request(1, files[1], upcoming=[(2, files[2])])
        qtbot.waitUntil(lambda: len(swept) == 4, timeout=30000)
        kinds = {image_id: conf for _, image_id, conf in swept}
        # On screen: a map at the photo's size; look-ahead, refresh and sweep: none.
        assert kinds[1] is not None and kinds[1].shape == (64, 64)
        assert kinds[2] is None and kinds[3] is None and kinds[4] is None
        assert refreshed == [4] and not np.isnan(queue.score(3))
        # The look-ahead photo opens: its label at once, its map right after.
        queue.request(2, files[2])
        qtbot.waitUntil(lambda: bool(maps), timeout=30000)
        assert [i for i, _ in ready] == [1, 2, 2]  # the look-ahead's, then the cached one's
        assert ready[-1][1].confidence is None and ready[-1][1].label.shape == (64, 64)
        assert maps[0][0] == 2 and maps[0][1].shape == (64, 64)
        # Only the photo on screen keeps a map in the cache.
        assert queue.cached(1).confidence is None and queue.cached(2).confidence is not None
    finally:
        queue.stop()


def test_the_scoring_sweep_does_not_predict_the_photos_just_predicted_again(qtbot, tmp_path: Path) -> None:
    """Opening a folder requests the photo on screen and its look-ahead, then sweeps every
    photo for its score: the sweep predicted those two again (10 CPU-seconds and 2 GB for two
    200-megapixel photos), though their scores had just come."""
    files = _face_files(tmp_path, 3)
    queue, loads = _counting_queue(lookahead=1)
    try:
        queue.set_model(_detect_predictor(), "v0001")
        queue.request(1, files[1], upcoming=[(2, files[2])])
        queue.score_all([(i, files[i]) for i in (1, 2, 3)])
        qtbot.waitUntil(lambda: len(queue.scores()) == 3, timeout=30000)
        qtbot.wait(300)
        assert sorted(loads) == [1, 2, 3]
    finally:
        queue.stop()


def _premultiplied_bgra(confidence: np.ndarray, num_classes: int, alpha: float) -> np.ndarray:
    """What the confidence view shows, computed whole (small maps only)."""
    from faceparse_app.uncertainty import heat_rgba, uncertainty_from_confidence

    rgba = heat_rgba(uncertainty_from_confidence(confidence, num_classes), alpha).astype(np.uint16)
    a = rgba[..., 3]
    out = np.empty(rgba.shape, np.uint8)
    for dst, src in ((0, 2), (1, 1), (2, 0)):
        out[..., dst] = (rgba[..., src] * a + 127) // 255
    out[..., 3] = a
    return out


def test_the_confidence_view_of_a_huge_photo_needs_little_more_than_its_image(qtbot) -> None:
    """U on a 200-megapixel photo took the window past 20 GB (whole-photo float64 colour
    temporaries, ~100 bytes a pixel) and the machine out of memory; its image is 4 bytes a pixel."""
    import tracemalloc

    from faceparse_app.widgets.overlay import HeatOverlay

    rng = np.random.default_rng(0)
    small = rng.uniform(1 / 11, 1.0, (37, 53)).astype(np.float32)
    overlay = HeatOverlay(small, 11)
    exact = _premultiplied_bgra(small, 11, 0.75)
    assert np.abs(overlay.buffer.astype(int) - exact).max() <= 1

    h, w = 2000, 2000
    confidence = np.ones((h, w), np.float32)
    confidence[500:1500, 500:1500] = 0.5
    tracemalloc.start()
    try:
        overlay = HeatOverlay(confidence, 11)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert overlay.size == (w, h)
    assert peak < 4 * h * w + (48 << 20), f"{peak / (h * w):.0f} bytes a pixel"


def test_the_photo_on_screen_stays_cached_while_its_look_ahead_fills_the_cache(
    qtbot, tmp_path: Path
) -> None:
    """The cache holds label maps up to a byte bound (five 200-megapixel photos); the look-ahead
    results that came after the photo on screen pushed its own prediction out as the least
    recently used, so opening it again (or its map) was predicted again (10 CPU-seconds at
    200 megapixels) though it had never left the screen."""
    files = _face_files(tmp_path, 4)
    queue, loads = _counting_queue(lookahead=3)
    queue._cache.max_bytes = 3 * 64 * 64  # three of these label maps, as five huge ones
    try:
        queue.set_model(_detect_predictor(), "v0001")
        ready: list[int] = []
        queue.ready.connect(lambda i, pred: ready.append(i))
        queue.request(1, files[1], upcoming=[(i, files[i]) for i in (2, 3, 4)])
        qtbot.waitUntil(lambda: len(ready) == 4, timeout=30000)
        shown = queue.cached(1)
        assert shown is not None and shown.confidence is not None
        queue.request(1, files[1])  # asked again while on screen: from the cache, at once
        assert ready[-1] == 1 and len(ready) == 5
        qtbot.wait(300)
        assert sorted(loads) == [1, 2, 3, 4]
    finally:
        queue.stop()

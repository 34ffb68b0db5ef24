"""Enormous photos: a 108- or 200-megapixel phone photo is labeled at its full size, a
decompression bomb is refused by name, size and limit before it is decoded, and ordinary photos
get the labels they always got."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.trainer.test_imageio import write_huge_png
from trainer.data import imageio
from trainer.data.imageio import image_size, read_image
from trainer.errors import ImageReadError
from trainer.faces import Face
from trainer.predict import Predictor
from trainer.predict_folder import predict_folder

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces-unlabeled"


def big_jpeg(path: Path, size: tuple[int, int] = (12000, 9000)) -> Path:
    """A width×height JPEG of one grey with a darker square: 108 megapixels, a few hundred kB."""
    im = Image.new("L", size, 128)
    im.paste(60, (5000, 3000, 6600, 4600))
    im.save(path, quality=75)
    return path


class _OneFace:
    """A finder that sees one face in the middle of a 12000×9000 photo, at any scale."""

    name = "one-face"

    def __init__(self, box: tuple[int, int, int, int] = (5000, 3000, 6600, 4600)) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.box = box

    def detection_scales(self, shape: tuple[int, int]) -> list[float]:
        return [640 / max(shape)]

    def __call__(self, image: np.ndarray) -> list[Face]:
        self.shapes.append(image.shape[:2])
        k = image.shape[1] / 12000
        return [Face(box=tuple(v * k for v in self.box))]  # type: ignore[arg-type]


def test_a_108_megapixel_phone_photo_is_read_not_refused(tmp_path: Path) -> None:
    photo = big_jpeg(tmp_path / "phone.jpg")
    assert image_size(photo) == (9000, 12000)
    assert read_image(photo, reduce=8).shape == (1125, 1500, 3)


def test_the_limit_takes_a_200_megapixel_photo() -> None:
    # Samsung's 200-megapixel sensor: 16320×12240.
    assert imageio.MAX_PHOTO_PIXELS >= 16320 * 12240


def test_a_decompression_bomb_is_refused_by_name_size_and_limit(tmp_path: Path) -> None:
    bomb = write_huge_png(tmp_path / "bomb.png", side=30000)  # 900 megapixels, 100 kB on disk
    assert bomb.stat().st_size < 500_000
    for read in (read_image, image_size):
        with pytest.raises(ImageReadError) as caught:
            read(bomb)
        message = str(caught.value)
        assert "bomb.png" in message and "30000×30000" in message, message
        assert f"{imageio.MAX_PHOTO_PIXELS:,}" in message and "\n" not in message
        assert "FACEPARSE_MAX_PIXELS" in message  # what to do if the photo is genuine


def test_a_photo_just_over_the_limit_is_refused_by_its_size(tmp_path: Path, monkeypatch) -> None:
    # Between the limit and twice it Pillow only warns; the reader refuses it all the same.
    monkeypatch.setattr(imageio, "MAX_PHOTO_PIXELS", 100 * 100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    path = tmp_path / "photo.png"
    Image.new("RGB", (150, 100)).save(path)
    with pytest.raises(ImageReadError, match=r"photo\.png: 150×100 \(15,000 pixels\).*10,000"):
        read_image(path)


def test_faceparse_predict_labels_a_108_megapixel_photo_at_its_full_size(
    parser_ckpt: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    big_jpeg(photos / "phone.jpg")
    finder = _OneFace()
    model = Predictor.from_checkpoint(parser_ckpt, device="cpu").model
    predictor = Predictor(model, device="cpu", framing="detect", finder=finder)
    assert predict_folder(predictor, photos, tmp_path / "labels") == 1
    with Image.open(tmp_path / "labels" / "phone.png") as label:
        assert label.size == (12000, 9000) and label.mode == "L"
        pixels = np.asarray(label)
    assert pixels[:2000].max() == 0  # background far from the face
    assert finder.shapes == [(1125, 1500)]  # found on the photo read at 1/8
    record = json.loads((tmp_path / "labels" / "faces.json").read_text())
    box = record["images"]["phone.jpg"]["faces"][0]["box"]
    assert np.allclose(box, [5000, 3000, 6600, 4600], atol=1)  # in the photo's own pixels


@pytest.mark.parametrize(("side", "read_at"), [(1600, (1125, 1500)), (250, (2250, 3000))])
def test_a_face_in_a_big_photo_is_parsed_from_as_few_pixels_as_it_needs(
    parser_ckpt: Path, tmp_path: Path, side: int, read_at: tuple[int, int]
) -> None:
    # The tiny parser's 64-px crop of a 250-px face needs the photo at 1/4 (not 1/8, where the
    # face is 31 px): it is read at 1/4, not whole (324 MB for 108 megapixels).
    photo = big_jpeg(tmp_path / "phone.jpg")
    finder = _OneFace((5000, 3000, 5000 + side, 3000 + side))
    model = Predictor.from_checkpoint(parser_ckpt, device="cpu").model
    predictor = Predictor(model, device="cpu", framing="detect", finder=finder)
    pred, used = predictor.predict_file(photo, confidence=False)
    assert used.shape[:2] == read_at and pred.label.shape == (9000, 12000)
    assert pred.confidence is None
    assert np.allclose(pred.faces[0].box, finder.box, atol=1)


def _shared_photos(names: list[str]) -> list[Path]:
    paths = [SHARED / n for n in names]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"the in-the-wild photos are not in {SHARED}")
    return paths


@pytest.mark.parametrize(
    "name", ["deepface_couple.jpg", "deepface_img49.jpg", "deepface_selfie-many-people.jpg"]
)
def test_a_photo_file_gets_the_labels_of_the_whole_photo_parsed(name: str) -> None:
    # predict reads a photo at the size its faces need; its labels are those of the whole
    # photo decoded and parsed with the same faces (what the app does), pixel for pixel but
    # for rare pixels on a class edge.
    from trainer.starter import STARTER_PARSER

    (path,) = _shared_photos([name])
    predictor = Predictor.from_checkpoint(STARTER_PARSER, device="cpu", framing="detect")
    pred, _ = predictor.predict_file(path)
    assert pred.faces
    whole = predictor.predict_batch([read_image(path)], faces=[pred.faces])[0]
    assert pred.label.shape == whole.label.shape
    assert (pred.label == whole.label).mean() > 0.999


def test_an_overlay_made_a_band_at_a_time_is_the_whole_overlay(monkeypatch) -> None:
    # Overlays of a 200-megapixel photo are made a band of rows at a time (a whole-image
    # overlay held four more copies of the photo: 6.5 GB for predict --overlays).
    import cv2

    from trainer import predict_folder
    from trainer.labels import get_label_set

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (97, 61, 3), dtype=np.uint8)
    label = rng.integers(0, 11, (97, 61), dtype=np.uint8)
    label[:30] = 0
    whole = cv2.addWeighted(image, 0.5, get_label_set("lapa").colorize(label), 0.5, 0.0)
    whole[label == 0] = image[label == 0]
    monkeypatch.setattr(predict_folder, "_OVERLAY_BAND_PIXELS", 61 * 7, raising=False)
    np.testing.assert_array_equal(predict_folder.overlay(image, label), whole)


def test_a_folder_of_huge_photos_is_not_decoded_many_photos_ahead(parser_ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    # The reader threads decoded up to five photos ahead of the network: a folder of
    # 200-megapixel PNGs held five at 600 MB each (6.1 GB for four). Ahead of the photo being
    # parsed they now hold at most 250 megapixels' worth, and always one photo.
    import time

    from tests.conftest import synthetic_face
    from trainer import predict_folder as pf

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        Image.fromarray(synthetic_face(64, i)[0]).save(photos / f"p{i}.jpg")
    predictor = Predictor.from_checkpoint(parser_ckpt, device="cpu", framing="whole")
    started: list[str] = []
    real = predictor.decode_file
    monkeypatch.setattr(predictor, "decode_file", lambda path: started.append(path.name) or real(path))
    monkeypatch.setattr(pf, "MAX_AHEAD_PIXELS", 5000)  # less than two 64×64 photos
    jobs = [(p, p.relative_to(photos)) for p in sorted(photos.glob("*.jpg"))]
    decoded = pf._decoded(predictor, jobs, readers=2)
    first = next(decoded)
    time.sleep(0.3)  # the reader threads had time to start whatever was handed to them
    assert first[0].name == "p0.jpg" and len(started) <= 2, started
    assert [item[0].name for item in decoded] == [f"p{i}.jpg" for i in range(1, 6)]


@pytest.mark.parametrize(("value", "limit"), [("300_000_000", 300_000_000), ("lots", 250_000_000)])
def test_the_limit_is_set_by_faceparse_max_pixels(value: str, limit: int) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    probe = "from PIL import Image; from trainer.data import imageio as io; print(io.MAX_PHOTO_PIXELS, Image.MAX_IMAGE_PIXELS)"
    env = {**os.environ, "FACEPARSE_MAX_PIXELS": value, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(limit), str(limit)]  # Pillow's guard follows it
    assert ("not a number of pixels" in out.stderr) == (value == "lots")


def test_whole_framing_without_confidence_holds_no_photo_sized_float_map(parser_ckpt: Path) -> None:
    # A moderately large photo (2 megapixels) parsed whole, labels only: the outputs made are the
    # label (1 byte a pixel), not the float32 confidence map beside it (4 more), which at 200
    # megapixels is 800 MB nobody asked for.
    import tracemalloc

    predictor = Predictor.from_checkpoint(parser_ckpt, device="cpu", framing="whole")
    image = np.random.default_rng(0).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    peaks = {}
    for confidence in (True, False):
        tracemalloc.start()
        try:
            pred = predictor.predict_batch([image], confidence=confidence)[0]
            peaks[confidence] = tracemalloc.get_traced_memory()[1] / (1200 * 1600)
        finally:
            tracemalloc.stop()
        assert pred.label.shape == (1200, 1600)
        assert (pred.confidence is None) == (not confidence)
        del pred
    assert peaks[True] >= 5, peaks  # the measure sees the map when it is asked for
    assert peaks[False] < 2, f"{peaks[False]:.1f} bytes a pixel without confidence"

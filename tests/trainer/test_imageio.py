"""Reading images and label maps: orientation, modes, damaged files, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.data import imageio
from trainer.data.imageio import read_image, read_label, write_image, write_label
from trainer.errors import ImageReadError, LabelMapError


def _tall_image() -> np.ndarray:
    """40 rows × 20 columns, red top half, blue bottom half."""
    arr = np.zeros((40, 20, 3), np.uint8)
    arr[:20] = (255, 0, 0)
    arr[20:] = (0, 0, 255)
    return arr


def test_exif_rotated_jpeg_comes_back_upright(tmp_path: Path) -> None:
    upright = _tall_image()
    # Orientation 6 means "rotate 90° clockwise to view": store the pixels turned the other way.
    stored = np.rot90(upright, k=1)  # 20 rows × 40 columns, red now on the left
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=exif.tobytes(), quality=95)
    image = read_image(path)
    assert image.shape == (40, 20, 3)
    assert image[5, 10, 0] > 200 and image[5, 10, 2] < 50  # red at the top
    assert image[35, 10, 2] > 200 and image[35, 10, 0] < 50  # blue at the bottom


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P", "LA", "1"])
def test_any_image_mode_becomes_rgb_uint8(tmp_path: Path, mode: str) -> None:
    grey = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (12, 1))
    if mode == "I;16":
        # High byte = the ramp, low byte = its mirror: truncating to the low byte would show.
        im = Image.fromarray(grey.astype(np.uint16) * 256 + (255 - grey))
        assert im.mode == "I;16"
    elif mode == "RGBA":
        im = Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)]), "RGBA")
    else:
        im = Image.fromarray(grey, "L").convert(mode)
    path = tmp_path / f"img_{mode.replace(';', '')}.png"
    im.save(path)
    image = read_image(path)
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8
    if mode in ("L", "RGBA", "I;16", "LA"):
        # The grey ramp survives (16-bit is scaled to 8 bits, not truncated to its low byte).
        np.testing.assert_allclose(image[..., 1].astype(int), grey.astype(int), atol=2)


def test_transparent_pixels_read_as_white(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (10, 20, 30, 255)
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(path)
    image = read_image(path)
    assert image[0, 0].tolist() == [10, 20, 30]
    assert image[0, 7].tolist() == [255, 255, 255]


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_image_names_the_file(tmp_path: Path, ext: str) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / f"broken{ext}"
    write_image(path, rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=f"broken{ext}"):
        read_image(path)


def test_non_image_and_missing_files_name_the_file(tmp_path: Path) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("this is not a picture")
    with pytest.raises(ImageReadError, match="notes.png"):
        read_image(notes)
    with pytest.raises(ImageReadError, match="absent.jpg"):
        read_image(tmp_path / "absent.jpg")


def test_palette_label_reads_as_indices(tmp_path: Path) -> None:
    label = np.arange(11, dtype=np.uint8).repeat(3).reshape(3, 11)
    im = Image.fromarray(label, "P")
    # A palette whose colours are nothing like the indices: reading must not use the colours.
    im.putpalette([255 - (i * 7) % 256 for i in range(768)])
    path = tmp_path / "label.png"
    im.save(path)
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(read_label(path, num_classes=11), label)


def test_write_label_is_8bit_l_and_round_trips(tmp_path: Path, face) -> None:
    _, label = face
    path = tmp_path / "labels" / "face.png"
    write_label(path, label)
    with Image.open(path) as im:
        assert im.mode == "L"
    back = read_label(path, num_classes=11, expected_size=label.shape)
    np.testing.assert_array_equal(back, label)
    assert back.dtype == np.uint8


def test_wrong_size_label_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "0001.png"
    write_label(path, np.zeros((32, 48), np.uint8))
    with pytest.raises(LabelMapError, match=r"0001\.png.*48×32.*64×64"):
        read_label(path, num_classes=11, expected_size=(64, 64))


def test_class_value_out_of_range_names_the_file(tmp_path: Path) -> None:
    label = np.zeros((8, 8), np.uint8)
    label[3, 3] = 11
    path = tmp_path / "0002.png"
    write_label(path, label)
    with pytest.raises(LabelMapError, match=r"0002\.png.*11"):
        read_label(path, num_classes=11)
    label[3, 3] = 10
    write_label(path, label)
    assert read_label(path, num_classes=11).max() == 10


def test_colour_label_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "overlay.png"
    Image.fromarray(
        np.dstack([np.zeros((4, 4), np.uint8)] * 2 + [np.full((4, 4), 9, np.uint8)])
    ).save(path)
    with pytest.raises(LabelMapError, match="overlay.png"):
        read_label(path)


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "label.png"
    old = np.full((8, 8), 3, np.uint8)
    write_label(path, old)

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(imageio.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_label(path, np.full((8, 8), 5, np.uint8))
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["label.png"]
    np.testing.assert_array_equal(read_label(path), old)


def write_huge_png(path: Path, side: int = 20000) -> Path:
    """A valid side×side 1-bit PNG of a few tens of kB (all black): far over Pillow's pixel limit."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte, then the packed bits
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
    return path


def test_an_image_over_the_pixel_limit_is_a_bad_image_not_a_crash(tmp_path: Path) -> None:
    huge = write_huge_png(tmp_path / "huge.png")
    assert huge.stat().st_size < 2_000_000
    with pytest.raises(ImageReadError) as caught:
        read_image(huge)
    message = str(caught.value)
    assert "huge.png" in message and "400,000,000 pixels" in message
    assert f"{Image.MAX_IMAGE_PIXELS:,}" in message  # the limit it is over
    assert "\n" not in message
    with pytest.raises(LabelMapError, match=r"huge\.png.*400,000,000 pixels"):
        read_label(huge)


@pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX")
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_and_folders_follow_the_umask(tmp_path: Path, umask: int, face) -> None:
    # Annotation teams share folders (umask 002, a shared group): labels and checkpoints must
    # be as readable as any other file the user makes, not 0600.
    from trainer.checkpoint import save_checkpoint
    from trainer.models import build_model, get_preset

    previous = os.umask(umask)
    try:
        write_label(tmp_path / "labels" / "sub" / "0001.png", face[1])
        ckpt = save_checkpoint(tmp_path / "run" / "m.safetensors", build_model(get_preset("tiny")), "finetune")
        created = [tmp_path / "labels", tmp_path / "labels" / "sub", tmp_path / "run"]
        files = [tmp_path / "labels" / "sub" / "0001.png", ckpt]
    finally:
        os.umask(previous)
    for folder in created:
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask, folder
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


@pytest.mark.parametrize("reader", ["read_image", "image_size", "read_label"])
def test_an_empty_file_is_said_to_be_empty(tmp_path: Path, reader: str) -> None:
    """A 0-byte photo or label (a copy or download that did not finish) is named as empty, not
    as 'not an image', in every command that reads it (predict, evaluate, pretrain, the app)."""
    path = tmp_path / "half copied.png"
    path.write_bytes(b"")
    error = LabelMapError if reader == "read_label" else ImageReadError
    with pytest.raises(error, match=r"half copied\.png: the file is empty \(0 bytes\)"):
        getattr(imageio, reader)(path)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("reduce", [1, 2])
def test_every_exif_orientation_reads_as_pillow_turns_it(tmp_path: Path, orientation: int, reduce: int) -> None:
    from PIL import ImageOps

    rng = np.random.default_rng(orientation)
    stored = np.repeat(np.repeat(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8), 8, 0), 8, 1)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.png" if reduce == 1 else tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), **({} if reduce == 1 else {"quality": 95}))
    with Image.open(path) as im:
        if reduce > 1:
            im.draft("RGB", (im.width // reduce, im.height // reduce))
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_image(path, reduce=reduce)
    assert got.flags.writeable and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    assert imageio.image_size(path) == (expected.shape[0] * reduce, expected.shape[1] * reduce)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_an_exif_rotated_tiff_comes_back_upright_once(tmp_path: Path, orientation: int) -> None:
    # Pillow turns a TIFF upright itself as it loads it (and gives its upright size on open):
    # turned once more by the reader, a camera's TIFF came out upside down (3) or on its side
    # (6, 8), in the app and in every export, and its size from the header was the stored one.
    from PIL import ImageOps

    rng = np.random.default_rng(orientation)
    stored = np.repeat(np.repeat(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8), 8, 0), 8, 1)
    exif = Image.Exif()
    exif[0x0112] = orientation
    png, tiff = tmp_path / "camera.png", tmp_path / "camera.tif"
    Image.fromarray(stored).save(png, exif=exif.tobytes())
    Image.fromarray(stored).save(tiff, exif=exif.tobytes())
    with Image.open(png) as im:
        upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(read_image(tiff), upright)
    assert imageio.image_size(tiff) == upright.shape[:2]


@pytest.mark.parametrize("mode", ["L", "I;16", "RGBA", "P", "CMYK"])
@pytest.mark.parametrize("orientation", [6, 8])
def test_an_uncompressed_tiff_on_its_side_comes_back_upright_at_its_header_size(
    tmp_path: Path, mode: str, orientation: int
) -> None:
    # A scanner's uncompressed grey (or RGBA, palette, CMYK) TIFF with EXIF orientation 5-8:
    # Pillow 13's memory-mapped load read its stored rows at the upright size, so the photo
    # came back on its side and scrambled, at a size the header (the project's record of it)
    # disagreed with: every save of its label failed ("label is 80×48 but its image is 48×80").
    rng = np.random.default_rng(orientation)
    grey = np.repeat(np.repeat(rng.integers(0, 256, (6, 10), dtype=np.uint8), 8, 0), 8, 1)
    if mode == "I;16":
        stored = Image.fromarray(grey.astype(np.uint16) * 257)
    else:
        stored = Image.fromarray(np.stack([grey, 255 - grey, grey // 2], axis=-1)).convert(mode)
    assert stored.mode == mode
    upright_tiff, turned = tmp_path / "upright.tif", tmp_path / "turned.tif"
    stored.save(upright_tiff)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(turned, exif=exif.tobytes())
    expected = np.rot90(read_image(upright_tiff), -1 if orientation == 6 else 1)
    assert imageio.image_size(turned) == expected.shape[:2] == (80, 48)
    np.testing.assert_array_equal(read_image(turned), expected)


def test_a_large_photo_is_read_in_strips_to_the_same_pixels(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (301, 97, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    monkeypatch.setattr(imageio, "_STRIP_PIXELS", 1000)  # ten rows a strip
    np.testing.assert_array_equal(read_image(path), photo)


def test_a_16_bit_grey_photo_is_read_in_strips_too(tmp_path: Path, monkeypatch) -> None:
    # A 16-bit grey PNG (a scan) was scaled to 8 bits whole: float64 copies of the photo, 24
    # bytes a pixel besides Pillow's own (4.8 GB at 200 megapixels; an RGB photo takes 3.5).
    import tracemalloc

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (300, 400), dtype=np.uint16)
    grey[-1, -1] = 60000  # the file's range (16 bits) shows only in its last strip
    path = tmp_path / "scan.png"
    Image.fromarray(grey).save(path)
    scaled = np.clip(grey / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    monkeypatch.setattr(imageio, "_STRIP_PIXELS", 4000)  # ten rows a strip
    tracemalloc.start()
    try:
        got = read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, np.repeat(scaled[..., None], 3, axis=2))
    assert peak < 4 * grey.size + (1 << 20), f"{peak / grey.size:.1f} bytes a pixel"


def test_the_size_of_a_png_comes_from_its_header_without_decoding_it(tmp_path: Path, monkeypatch) -> None:
    # Pillow's PNG getexif() decodes the whole image to look for a trailing eXIf chunk: the size
    # of a 50-megapixel PNG took 1.2 s and its pixels' memory, and predict then decoded it again.
    from PIL import PngImagePlugin

    plain, turned = tmp_path / "plain.png", tmp_path / "turned.png"
    Image.new("RGB", (30, 20)).save(plain)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (30, 20)).save(turned, exif=exif.tobytes())  # eXIf before the pixels

    def no_decoding(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    assert imageio.image_size(plain) == (20, 30)
    assert imageio.image_size(turned) == (30, 20)

"""Reading images and label maps the way every reader in this package must.

Images: EXIF orientation applied; grayscale, RGBA, 16-bit and palette images become RGB uint8.
Labels: read as class indices whatever the PNG mode ('L' or 'P'); written as 8-bit 'L', atomically.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainer.errors import ImageReadError, LabelMapError

log = logging.getLogger(__name__)

PIXELS_VARIABLE = "FACEPARSE_MAX_PIXELS"
# The most pixels a photo (or label map) may have: Samsung's 200-megapixel phone photos
# (16320×12240) and stitched group photos of that order, with room to spare. A file over it (a
# decompression bomb: a 30000×30000 PNG is 900 megapixels in a few hundred kB) is refused from
# its header, before anything is decoded. Time and memory per size: bench/results/large_photos/.
DEFAULT_MAX_PIXELS = 250_000_000


def _max_pixels() -> int:
    """The pixel limit: ``FACEPARSE_MAX_PIXELS`` when set to a positive whole number, else
    :data:`DEFAULT_MAX_PIXELS`."""
    text = os.environ.get(PIXELS_VARIABLE, "").replace("_", "").replace(",", "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    if text.isdigit() and int(text) > 0:
        return int(text)
    log.warning("%s=%r is not a number of pixels; using %s", PIXELS_VARIABLE,
                os.environ[PIXELS_VARIABLE], f"{DEFAULT_MAX_PIXELS:,}")  # fmt: skip
    return DEFAULT_MAX_PIXELS


MAX_PHOTO_PIXELS = _max_pixels()
# Pillow's own guard (a warning above its limit, an error above twice it) follows this one in
# every reader of the process, the app's header scan included.
Image.MAX_IMAGE_PIXELS = MAX_PHOTO_PIXELS

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
)


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name has an image extension this package reads."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I")  # 16-bit (or 32-bit) grey


def _grey_to_8bit(grey: np.ndarray, top_value: float) -> np.ndarray:
    """16-bit (or 32-bit) grey scaled to 8 bits by the file's own range (``top_value``: its
    largest value), not by truncation."""
    top = 65535.0 if top_value > 255 else 255.0
    return np.clip(np.asarray(grey, np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in _WIDE_GREY:
        arr = np.asarray(im)
        return Image.fromarray(_grey_to_8bit(arr, arr.max()), "L").convert("RGB")
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


# Pixels copied out of Pillow's decoded image at a time: the photo is never held twice more in
# full (Pillow keeps 4 bytes a pixel; a whole-image np.array went through a 3-byte bytes copy and
# ImageOps.exif_transpose through another 4-byte image: 14 bytes a pixel at the peak, 7 now).
_STRIP_PIXELS = 1 << 22

# EXIF orientation -> the view of the stored (H, W, 3) pixels that stands them upright, as
# ImageOps.exif_transpose turns them (2: mirror, 3: 180°, 4: flip, 5: transpose, 6: 90° clockwise,
# 7: transverse, 8: 90° counter-clockwise).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation of an opened image, from its header. A PNG's eXIf chunk counts only
    before the pixels, where the PNG extension puts it: Pillow's getexif() would decode the whole
    image to look for one after them (1.2 s and its pixels' memory for 50 megapixels)."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    return im.getexif().get(0x0112, 1)


def _rgb_array(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a loaded image (as stored: orientation not applied), copied out a
    strip of rows at a time."""
    w, h = im.size
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, _STRIP_PIXELS // max(1, w))
    strips = [(0, y, w, min(h, y + rows)) for y in range(0, h, rows)]
    if im.mode in _WIDE_GREY:
        # Scaled as _to_rgb scales it, by the whole file's range: found first, strip by strip
        # (whole, its float64 copies took 24 bytes a pixel).
        top = max((np.asarray(im.crop(b)).max() for b in strips), default=0)
        for b in strips:
            out[b[1] : b[3]] = _grey_to_8bit(np.asarray(im.crop(b)), top)[..., None]
        return out
    for b in strips:
        out[b[1] : b[3]] = np.asarray(_to_rgb(im.crop(b)))
    return out


def _too_many_pixels(path: Path, size: tuple[int, int] | None, pixels: int | None = None) -> str:
    """One line for a file over the pixel limit: the file, its size, the limit, what to do.

    Args:
        size: (W, H) as stored in the file, when known.
        pixels: its pixel count when the size is not known.
    """
    if size is not None:
        w, h = size
        what = f"{w}×{h} ({w * h:,} pixels)"
        decoded = f"; decoding it would take {w * h * 3 / 1e9:.1f} GB"
    else:
        what, decoded = (f"{pixels:,} pixels" if pixels else "too many pixels"), ""
    return (
        f"{path}: {what}, over the limit of {MAX_PHOTO_PIXELS:,} pixels per image (a guard "
        f"against decompression bombs{decoded}); downscale it or leave it out, or if it is a "
        f"real photo and this machine has the memory, raise the limit with {PIXELS_VARIABLE}"
    )


def _refused_by_pillow(path: Path, exc: Exception) -> str:
    """:func:`_too_many_pixels` for Pillow's ``DecompressionBombError`` (over twice its limit).

    Its message has the pixel count only; the size it checked is in its check's frame.
    """
    size, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "_decompression_bomb_check":
            size = tb.tb_frame.f_locals.get("size")
        tb = tb.tb_next
    if isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return _too_many_pixels(path, size)
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return _too_many_pixels(path, None, int(found.group(1)) if found else None)


def _check_pixels(path: Path, size: tuple[int, int], error: type[Exception]) -> None:
    """Raise ``error`` when an opened file's (W, H) is over :data:`MAX_PHOTO_PIXELS` (from
    its header: nothing is decoded yet)."""
    if size[0] * size[1] > MAX_PHOTO_PIXELS:
        raise error(_too_many_pixels(path, size))


def refuse_special_file(path: Path, error: type[Exception] = ImageReadError) -> None:
    """Raise ``error`` unless ``path`` is a regular file (or a link to one) holding something:
    opening a named pipe waits for a writer forever, a device or a folder is no image, and an
    empty file is said to be empty rather than "not an image".

    Raises:
        ImageReadError (or ``error``): a pipe, socket, device or folder; a missing or empty file.
    """
    import stat

    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: not a regular file (a pipe, socket, device or folder); move it away")
    if info.st_size == 0:  # a copy or download that did not finish
        raise error(f"{path}: the file is empty (0 bytes)")


def read_image(path: str | os.PathLike[str], reduce: int = 1) -> np.ndarray:
    """Read an image file as RGB.

    Args:
        reduce: 2, 4 or 8 to read a JPEG at about 1/reduce of its width and height with the
            decoder's own scaling (a 12-megapixel JPEG at half size in a third of the time);
            other formats are read whole. Use :func:`image_size` for the full size.

    Returns:
        (H, W, 3) uint8 array, EXIF orientation applied.

    Raises:
        ImageReadError: the file is missing, truncated, corrupt, not an image, or over the
            pixel limit (:data:`MAX_PHOTO_PIXELS`).
    """
    path = Path(path)
    refuse_special_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            # From a file object, not the path: Pillow then decodes an uncompressed file rather
            # than memory-mapping it, and its memory-mapped load (13.0) read an uncompressed
            # L/I;16/RGBA/P/CMYK TIFF with orientation 5-8 at the upright size: on its side,
            # scrambled, and at another size than image_size's.
            with open(path, "rb") as fp, Image.open(fp) as im:
                _check_pixels(path, im.size, ImageReadError)
                if reduce > 1 and im.format == "JPEG":
                    im.draft("RGB", (max(1, im.width // reduce), max(1, im.height // reduce)))
                orientation = _orientation(im)
                im.load()
                if im.format == "TIFF":  # Pillow turns a TIFF upright as it loads it (and
                    orientation = im.getexif().get(0x0112, 1)  # drops the tag); older ones leave it to us
                rgb = _rgb_array(im)
        if orientation in _UPRIGHT:
            rgb = np.ascontiguousarray(_UPRIGHT[orientation](rgb))
        return rgb
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image or an unsupported format") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(_refused_by_pillow(path, exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: unreadable or truncated image ({exc})") from None


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(H, W) of an image file as :func:`read_image` returns it (EXIF orientation applied),
    from its header alone.

    Raises:
        ImageReadError: as :func:`read_image`.
    """
    path = Path(path)
    refuse_special_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            with Image.open(path) as im:
                _check_pixels(path, im.size, ImageReadError)
                w, h = im.size
                if im.format == "TIFF":  # the stored size: Pillow's own is already upright
                    w, h = im.tag_v2.get(256, w), im.tag_v2.get(257, h)
                orientation = _orientation(im)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image or an unsupported format") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(_refused_by_pillow(path, exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: unreadable or truncated image ({exc})") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def read_label(
    path: str | os.PathLike[str],
    num_classes: int | None = None,
    expected_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read a label PNG as class indices.

    Args:
        path: label file ('L' or 'P' mode; the pixel value is the class index).
        num_classes: when given, values >= num_classes raise LabelMapError.
        expected_size: (H, W) of the matching image; a different size raises LabelMapError.

    Returns:
        (H, W) uint8 array of class indices.
    """
    path = Path(path)
    if path.exists():  # a missing label keeps its own message below
        refuse_special_file(path, LabelMapError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            im = Image.open(path)
        with im:
            _check_pixels(path, im.size, LabelMapError)
            im.load()
            if im.mode in ("L", "P"):
                # np.asarray of a 'P' image gives the palette indices, which are the classes.
                arr = np.array(im, dtype=np.uint8)
            elif im.mode in ("I", "I;16", "I;16B", "I;16L"):
                arr32 = np.array(im, dtype=np.int64)
                if arr32.max(initial=0) > 255:
                    raise LabelMapError(f"{path}: class value {arr32.max()} does not fit 8 bits")
                arr = arr32.astype(np.uint8)
            elif im.mode in ("RGB", "RGBA"):
                rgb = np.array(im.convert("RGB"))
                if not (
                    np.array_equal(rgb[..., 0], rgb[..., 1])
                    and np.array_equal(rgb[..., 0], rgb[..., 2])
                ):
                    raise LabelMapError(
                        f"{path}: a colour image, not a label map; labels must be single-channel "
                        "class indices ('L' or 'P' PNG)"
                    )
                arr = rgb[..., 0].copy()
            else:
                raise LabelMapError(f"{path}: unsupported label mode {im.mode!r}")
    except FileNotFoundError:
        raise LabelMapError(f"{path}: label file not found") from None
    except UnidentifiedImageError:
        raise LabelMapError(f"{path}: not an image; cannot read it as a label map") from None
    except Image.DecompressionBombError as exc:
        raise LabelMapError(_refused_by_pillow(path, exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise LabelMapError(f"{path}: unreadable or truncated label map ({exc})") from None
    check_label(arr, path, num_classes=num_classes, expected_size=expected_size)
    return arr


def check_label(
    label: np.ndarray,
    where: str | os.PathLike[str],
    num_classes: int | None = None,
    expected_size: tuple[int, int] | None = None,
) -> None:
    """Raise LabelMapError if a (H, W) label map has the wrong size or out-of-range values."""
    if label.ndim != 2:
        raise LabelMapError(f"{where}: label map must be 2-D, got shape {label.shape}")
    if expected_size is not None and tuple(label.shape) != tuple(expected_size):
        h, w = label.shape
        eh, ew = expected_size
        raise LabelMapError(f"{where}: label is {w}×{h} but its image is {ew}×{eh}")
    if num_classes is not None and label.size:
        top = int(label.max())
        if top >= num_classes:
            raise LabelMapError(
                f"{where}: class value {top} out of range; expected 0..{num_classes - 1}"
            )


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new ``.{name}.<random>.tmp`` beside ``path``, opened for writing.

    Created with mode 0666 so the umask applies as to any other file (tempfile.mkstemp makes
    0600 files, which a team sharing a folder cannot read).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp_dir(parent: str | os.PathLike[str], prefix: str) -> Path:
    """A new hidden folder in ``parent`` for building something to publish with os.replace.

    Unlike tempfile.mkdtemp's 0700, it gets the permissions the umask gives any new folder, so
    a published export or model version is as shared as the folder it lands in.
    """
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    folder.chmod(0o777 & ~current_umask())
    return folder


@contextlib.contextmanager
def naming_the_file(path: str | os.PathLike[str]) -> Iterator[None]:
    """Name ``path`` in an OSError of the block that names no file: a full disk fails a write,
    a flush or an fsync without one, and the CLI's one-line message needs it."""
    try:
        yield
    except OSError as exc:
        if exc.errno is not None and exc.filename is None:
            exc.filename = str(path)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, make_folder: bool = True) -> None:
    """Write bytes to a temp file in the same folder, fsync, then os.replace onto path.

    The file (and any folder made for it) gets the permissions the umask gives a new one.
    ``make_folder`` False: a missing folder is an error (FileNotFoundError), not made.
    """
    path = Path(path)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        # The temp file's folder is what the user must make room in (cli_exits.os_error_line).
        with naming_the_file(tmp), os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_temp_leftovers(folder: str | os.PathLike[str], pattern: str = "*") -> list[Path]:
    """Delete the temp files a killed :func:`atomic_write_bytes` left in ``folder``.

    Args:
        pattern: glob of the target names whose temp files go (``"*.safetensors"``); the temp
            file of ``name`` is ``.{name}.<random>.tmp``. Call only where no other process is
            writing to those names at the moment.

    Returns:
        The files removed.
    """
    removed = []
    for path in Path(folder).glob(f".{pattern}.*.tmp"):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def encode_label_png(label: np.ndarray) -> bytes:
    """Encode a (H, W) uint8 label map as an 8-bit 'L' PNG."""
    import io

    if label.ndim != 2:
        raise LabelMapError(f"label map must be 2-D, got shape {label.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def write_label(path: str | os.PathLike[str], label: np.ndarray) -> None:
    """Write a (H, W) label map as an 8-bit 'L' PNG, atomically (temp file, then os.replace)."""
    atomic_write_bytes(path, encode_label_png(label))


def write_image(path: str | os.PathLike[str], image: np.ndarray, quality: int = 95) -> None:
    """Write a (H, W, 3) uint8 RGB image atomically; format from the extension."""
    import io

    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(path.suffix.lower(), "PNG")
    buf = io.BytesIO()
    kwargs = {"quality": quality} if fmt == "JPEG" else {}
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format=fmt, **kwargs)
    atomic_write_bytes(path, buf.getvalue())

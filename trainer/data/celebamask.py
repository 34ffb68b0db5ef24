"""CelebAMask-HQ readers: merged label maps and the official per-part layout.

Two layouts are recognised from the folder's contents:

``merged``
    ``images/<id>.jpg`` and ``masks/<id>.png``; each mask is one map whose pixel value is the
    CelebAMask-HQ class 0..18 (palette 'P' or 'L' mode; read as indices either way). Image and
    mask must have the same size.

``parts`` (the official release)
    ``CelebA-HQ-img/<id>.jpg`` (1024×1024) and ``CelebAMask-HQ-mask-anno/<k>/<id:05d>_<part>.png``
    (512×512 binary masks, ``k = id // 2000``). The parts are painted onto a background map in the
    class-table order skin, nose, eye_g, l_eye, r_eye, l_brow, r_brow, l_ear, r_ear, mouth, u_lip,
    l_lip, hair, hat, ear_r, neck_l, neck, cloth, each part writing its class index (1..18) and
    later parts overwriting earlier ones, exactly as the official ``g_mask.py`` does. The image
    is then resized down to the mask's size with ``cv2.INTER_AREA`` rather than upsampling the
    mask: the labels were drawn at 512 px, so that is the resolution where they are true, and a
    nearest-neighbour upsampled mask would only add blocky edges.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from trainer.data.folders import images_by_stem, refuse_labels_without_images
from trainer.data.imageio import read_image, read_label
from trainer.data.sample import NamedSamples, Sample
from trainer.errors import DatasetError, LabelMapError
from trainer.labels import CELEBAMASK, LabelSet, celebamask_to_lapa, get_label_set

__all__ = ["PART_ORDER", "CelebAMaskDataset", "merge_parts"]

log = logging.getLogger(__name__)

# Painting order of the official g_mask.py (= the class table without background); the class
# value of PART_ORDER[i] is i + 1.
PART_ORDER: tuple[str, ...] = CELEBAMASK.classes[1:]

MERGED_IMAGES, MERGED_MASKS = "images", "masks"
PARTS_IMAGES, PARTS_ANNO = "CelebA-HQ-img", "CelebAMask-HQ-mask-anno"

_PART_FILE = re.compile(r"^(\d+)_(.+)\.png$")
_LAYOUT_HINT = (
    f"expected either {MERGED_IMAGES}/<id>.jpg with {MERGED_MASKS}/<id>.png (merged label maps) or "
    f"{PARTS_IMAGES}/<id>.jpg with {PARTS_ANNO}/<k>/<id:05d>_<part>.png (the official release)"
)


def _read_part_mask(path: Path) -> np.ndarray:
    """A binary part mask as (H, W) bool; any non-zero colour channel counts as the part."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "1", "LA", "PA"):
                im = im.convert("L")
            arr = np.asarray(im)
    except FileNotFoundError:
        raise LabelMapError(f"{path}: part mask not found") from None
    except UnidentifiedImageError:
        raise LabelMapError(f"{path}: not an image; cannot read it as a part mask") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise LabelMapError(f"{path}: unreadable or truncated part mask ({exc})") from None
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1)  # ignore alpha: a transparent pixel is not a part
    return arr != 0


def merge_parts(parts: dict[str, Path]) -> np.ndarray:
    """Paint binary part masks into one CelebAMask-HQ label map.

    Args:
        parts: part name (one of PART_ORDER) -> its mask PNG. Missing parts are simply absent.

    Returns:
        (H, W) uint8 map of CelebAMask-HQ classes, parts painted in PART_ORDER (later wins).

    Raises:
        LabelMapError: a part file is unreadable, or the parts differ in size.
    """
    if not parts:
        raise LabelMapError("no part masks to merge")
    label: np.ndarray | None = None
    first: Path | None = None
    for value, part in enumerate(PART_ORDER, start=1):
        path = parts.get(part)
        if path is None:
            continue
        mask = _read_part_mask(path)
        if label is None:
            label, first = np.zeros(mask.shape, np.uint8), path
        elif mask.shape != label.shape:
            h, w = mask.shape
            fh, fw = label.shape
            raise LabelMapError(f"{path}: part mask is {w}×{h} but {first.name} is {fw}×{fh}")
        label[mask] = value
    if label is None:
        raise LabelMapError(f"none of {sorted(parts)} is a CelebAMask-HQ part name")
    return label


def _fit_image_to_label(
    image: np.ndarray, label_hw: tuple[int, int], image_path: Path
) -> np.ndarray:
    """Resize an image to its label's (H, W); area averaging when shrinking."""
    h, w = image.shape[:2]
    lh, lw = label_hw
    if (h, w) == (lh, lw):
        return image
    if h * lw != w * lh:
        raise LabelMapError(
            f"{image_path}: image is {w}×{h} but its part masks are {lw}×{lh}, a different shape"
        )
    interp = cv2.INTER_AREA if lh < h else cv2.INTER_LINEAR
    return cv2.resize(image, (lw, lh), interpolation=interp)


class CelebAMaskDataset(NamedSamples):
    """CelebAMask-HQ faces with labels in the LaPa or the CelebAMask-HQ class table.

    Args:
        root: a folder in the ``merged`` or the ``parts`` layout (see the module docstring).
        label_set: "lapa" maps the labels with ``celebamask_to_lapa`` (left/right swapped, ears
            become skin, the rest background); "celebamask" keeps the 19 official classes.
        require_labels: when True, an image without a mask (or any part mask), or a merged
            layout's mask without an image, raises LabelMapError at construction.

    ``dataset[i]`` is a :class:`Sample`; in the ``parts`` layout its ``label_path`` is the glob
    pattern of the image's part files and its image has been resized to the masks' size.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        label_set: str = "lapa",
        require_labels: bool = True,
    ) -> None:
        self.root = Path(root)
        self.label_set: LabelSet = get_label_set(label_set)
        self.require_labels = require_labels
        if (self.root / MERGED_IMAGES).is_dir() and (self.root / MERGED_MASKS).is_dir():
            self.layout = "merged"
            images = images_by_stem(self.root / MERGED_IMAGES)
            if require_labels:
                masks = self.root / MERGED_MASKS
                refuse_labels_without_images(masks, self.root / MERGED_IMAGES, images)
            labels = {stem: self.root / MERGED_MASKS / f"{stem}.png" for stem in images}
            self._parts: dict[str, dict[str, Path]] = {}
            present = {stem: p for stem, p in labels.items() if p.is_file()}
        elif (self.root / PARTS_ANNO).is_dir() and (self.root / PARTS_IMAGES).is_dir():
            self.layout = "parts"
            images = images_by_stem(self.root / PARTS_IMAGES)
            self._parts = self._scan_parts(self.root / PARTS_ANNO)
            labels = {stem: self._parts_pattern(stem) for stem in images}
            present = {stem: labels[stem] for stem in images if self._id_key(stem) in self._parts}
        else:
            raise DatasetError(f"{self.root}: not a CelebAMask-HQ folder; {_LAYOUT_HINT}")

        self.names: list[str] = []
        self.image_paths: list[Path] = []
        self.label_paths: list[Path | None] = []
        for stem, image_path in images.items():
            if stem not in present and require_labels:
                # finetune, evaluate and convert need a label for every image; Python callers
                # that want the unlabeled ones too pass require_labels=False.
                raise LabelMapError(
                    f"{image_path}: no label; expected {labels[stem]}; label it or move it "
                    f"out of {image_path.parent}"
                )
            self.names.append(stem)
            self.image_paths.append(image_path)
            self.label_paths.append(present.get(stem))

    @staticmethod
    def _id_key(stem: str) -> int | None:
        return int(stem) if stem.isdigit() else None

    def _parts_pattern(self, stem: str) -> Path:
        key = self._id_key(stem)
        if key is None:
            return self.root / PARTS_ANNO / f"<k>/{stem}_<part>.png"
        return self.root / PARTS_ANNO / str(key // 2000) / f"{key:05d}_*.png"

    @staticmethod
    def _scan_parts(anno: Path) -> dict[int, dict[str, Path]]:
        """id -> {part name -> mask file} over every sub-folder of the annotation folder."""
        parts: dict[int, dict[str, Path]] = {}
        known = set(PART_ORDER)
        for sub in sorted(p for p in anno.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for entry in sorted(os.scandir(sub), key=lambda e: e.name):
                if entry.name.startswith("."):
                    continue
                match = _PART_FILE.match(entry.name)
                if not match or match.group(2) not in known:
                    log.warning("skipping %s: not a <id:05d>_<part>.png mask", entry.path)
                    continue
                parts.setdefault(int(match.group(1)), {})[match.group(2)] = Path(entry.path)
        return parts

    def __len__(self) -> int:
        return len(self.image_paths)

    def read_celebamask_label(
        self, index: int, image_hw: tuple[int, int] | None = None
    ) -> np.ndarray | None:
        """The (H, W) uint8 label of sample ``index`` in CelebAMask-HQ classes, or None."""
        label_path = self.label_paths[index]
        if label_path is None:
            return None
        if self.layout == "merged":
            return read_label(
                label_path, num_classes=CELEBAMASK.num_classes, expected_size=image_hw
            )
        key = self._id_key(self.names[index])
        assert key is not None  # only digit stems can have parts
        return merge_parts(self._parts[key])

    def __getitem__(self, index: int) -> Sample:
        image_path = self.image_paths[index]
        image = read_image(image_path)
        label = self.read_celebamask_label(
            index, image_hw=image.shape[:2] if self.layout == "merged" else None
        )
        if label is not None:
            if self.layout == "parts":
                image = _fit_image_to_label(image, label.shape, image_path)
            if self.label_set.name == "lapa":
                label = celebamask_to_lapa(label)
        return Sample(
            image=image,
            label=label,
            name=self.names[index],
            image_path=image_path,
            label_path=self.label_paths[index],
            landmarks=None,
        )

    def __repr__(self) -> str:
        return (
            f"CelebAMaskDataset({str(self.root)!r}, layout={self.layout!r}, "
            f"label_set={self.label_set.name!r}, {len(self)} images)"
        )

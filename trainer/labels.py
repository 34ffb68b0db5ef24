"""Class tables, palettes, horizontal-flip swaps and the CelebAMask-HQ -> LaPa mapping.

LaPa's left/right are the viewer's (class 2 lies on the image's left side); CelebAMask-HQ's
``l_``/``r_`` are the person's. The mapping below therefore swaps left and right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelSet:
    """A named class table.

    Args:
        name: registry key ("lapa", "celebamask").
        classes: class names, index = class value in a label map.
        palette: one RGB colour per class.
        flip_pairs: pairs of classes that trade places under a horizontal flip.
    """

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def flip_lut(self) -> np.ndarray:
        """(256,) uint8 lookup table applied to a label map after a horizontal flip."""
        lut = np.arange(256, dtype=np.uint8)
        for a, b in self.flip_pairs:
            lut[a], lut[b] = b, a
        return lut

    def palette_array(self) -> np.ndarray:
        """(num_classes, 3) uint8 RGB palette."""
        return np.asarray(self.palette, dtype=np.uint8)

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """Colour a (H, W) label map into a (H, W, 3) uint8 RGB image."""
        pal = np.zeros((256, 3), dtype=np.uint8)
        pal[: self.num_classes] = self.palette_array()
        return pal[label]


LAPA = LabelSet(
    name="lapa",
    classes=(
        "background",
        "skin",
        "left_eyebrow",
        "right_eyebrow",
        "left_eye",
        "right_eye",
        "nose",
        "upper_lip",
        "inner_mouth",
        "lower_lip",
        "hair",
    ),
    palette=(
        (0, 0, 0),
        (255, 204, 153),
        (102, 51, 0),
        (153, 76, 0),
        (0, 102, 255),
        (0, 204, 255),
        (255, 153, 51),
        (255, 0, 102),
        (153, 0, 51),
        (255, 51, 153),
        (51, 51, 51),
    ),
    flip_pairs=((2, 3), (4, 5)),
)

CELEBAMASK = LabelSet(
    name="celebamask",
    classes=(
        "background",
        "skin",
        "nose",
        "eye_g",
        "l_eye",
        "r_eye",
        "l_brow",
        "r_brow",
        "l_ear",
        "r_ear",
        "mouth",
        "u_lip",
        "l_lip",
        "hair",
        "hat",
        "ear_r",
        "neck_l",
        "neck",
        "cloth",
    ),
    palette=(
        (0, 0, 0),
        (204, 0, 0),
        (76, 153, 0),
        (204, 204, 0),
        (51, 51, 255),
        (204, 0, 204),
        (0, 255, 255),
        (255, 204, 204),
        (102, 51, 0),
        (255, 0, 0),
        (102, 204, 0),
        (255, 255, 0),
        (0, 0, 153),
        (0, 0, 204),
        (255, 51, 153),
        (0, 204, 204),
        (0, 51, 0),
        (255, 153, 51),
        (0, 204, 0),
    ),
    flip_pairs=((4, 5), (6, 7), (8, 9)),
)

LABEL_SETS: dict[str, LabelSet] = {LAPA.name: LAPA, CELEBAMASK.name: CELEBAMASK}

# CelebAMask-HQ index -> LaPa index. Person's left eye (4) lies on the image's right, which is
# LaPa's right eye (5); ears become skin; glasses, hat, earring, necklace, neck, cloth -> background.
CELEBAMASK_TO_LAPA: dict[int, int] = {
    0: 0,
    1: 1,
    2: 6,
    3: 0,
    4: 5,
    5: 4,
    6: 3,
    7: 2,
    8: 1,
    9: 1,
    10: 8,
    11: 7,
    12: 9,
    13: 10,
    14: 0,
    15: 0,
    16: 0,
    17: 0,
    18: 0,
}


def celebamask_to_lapa_lut() -> np.ndarray:
    """(256,) uint8 lookup table mapping CelebAMask-HQ class values to LaPa's."""
    lut = np.zeros(256, dtype=np.uint8)
    for src, dst in CELEBAMASK_TO_LAPA.items():
        lut[src] = dst
    return lut


def celebamask_to_lapa(label: np.ndarray) -> np.ndarray:
    """Map a (H, W) CelebAMask-HQ label map to LaPa classes, (H, W) uint8."""
    return celebamask_to_lapa_lut()[label]


def get_label_set(name: str) -> LabelSet:
    """Look up a class table by name ("lapa" or "celebamask")."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise KeyError(f"unknown label set {name!r}; choose one of {sorted(LABEL_SETS)}") from None

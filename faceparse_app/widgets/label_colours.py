"""The colours the canvas paints each class in, chosen to be read over real faces.

The trainer's palette (``trainer.labels``) colours exported previews; over a photo it failed:
hair's dark grey vanished on dark hair and skin's beige hid the skin it covered. These colours
are saturated hues that no hair or skin tone has: cool azure for skin (it shows over pale and
dark skin alike), magenta for hair (over black, brown, blond and grey hair), and small parts in
hues far from both. LaPa's class order is kept; a label set without its own entry here is shown
in its trainer palette.
"""

from __future__ import annotations

import numpy as np

from trainer.labels import LabelSet

DEFAULT_OPACITY = 0.4  # the photo stays readable under the fill
# A launch restores the last session's opacity only from here up: below it the labels are as
# good as hidden, with "Show labels" on and nothing to say why (the default is used instead).
MIN_KEPT_OPACITY = 0.1

DISPLAY_PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "lapa": (
        (0, 0, 0),  # background (never drawn)
        (0, 150, 255),  # skin: azure
        (255, 235, 0),  # left eyebrow: yellow
        (255, 120, 0),  # right eyebrow: orange
        (0, 230, 0),  # left eye: green
        (0, 255, 230),  # right eye: turquoise
        (150, 60, 255),  # nose: violet
        (255, 0, 0),  # upper lip: red
        (255, 255, 255),  # inner mouth: white
        (255, 0, 150),  # lower lip: rose
        (255, 0, 255),  # hair: magenta
    ),
}


def display_palette(label_set: LabelSet) -> np.ndarray:
    """(num_classes, 3) uint8 RGB: the canvas colour of each class."""
    colours = DISPLAY_PALETTES.get(label_set.name)
    if colours is None or len(colours) != label_set.num_classes:
        return label_set.palette_array()
    return np.asarray(colours, dtype=np.uint8)

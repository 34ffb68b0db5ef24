"""The canvas colours stay readable over real hair and skin (issue 31: hair's dark grey vanished
on dark hair; at the default opacity skin's beige hid the skin)."""

from __future__ import annotations

import numpy as np

from faceparse_app.widgets.label_colours import DEFAULT_OPACITY, display_palette
from trainer.labels import LAPA

# Hair from black to white-blond and grey; skin tones across the Fitzpatrick range (sRGB).
HAIR = [(20, 18, 16), (60, 40, 30), (110, 70, 40), (165, 110, 60), (220, 190, 120), (160, 160, 160)]
SKIN = [(255, 224, 196), (234, 192, 134), (198, 134, 66), (141, 85, 36), (90, 56, 37), (60, 40, 30)]
MIN_SHIFT = 60  # RGB distance a tint must move a pixel to be seen at a glance


def shown(colour, under, alpha=DEFAULT_OPACITY) -> np.ndarray:
    return alpha * np.asarray(colour, float) + (1 - alpha) * np.asarray(under, float)


def test_hair_and_skin_tints_show_on_every_hair_colour_and_skin_tone():
    palette = display_palette(LAPA)
    hair, skin = palette[LAPA.classes.index("hair")], palette[LAPA.classes.index("skin")]
    for under in HAIR:
        assert np.linalg.norm(shown(hair, under) - under) >= MIN_SHIFT, under
    for under in SKIN:
        assert np.linalg.norm(shown(skin, under) - under) >= MIN_SHIFT, under
    # The old hair grey on black hair: the failure the issue saw.
    assert np.linalg.norm(shown(LAPA.palette[10], HAIR[0], 0.5) - HAIR[0]) < MIN_SHIFT


def test_the_photo_stays_readable_under_the_fill_and_classes_stay_apart():
    assert DEFAULT_OPACITY <= 0.5  # at least half of the photo's own contrast survives
    palette = display_palette(LAPA).astype(float)
    assert len(palette) == LAPA.num_classes  # LaPa's order, one colour per class
    for i in range(1, len(palette)):
        for j in range(i + 1, len(palette)):
            assert np.linalg.norm(palette[i] - palette[j]) >= 90, (LAPA.classes[i], LAPA.classes[j])

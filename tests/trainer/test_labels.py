"""Class tables, flip tables and the CelebAMask-HQ -> LaPa mapping."""

from __future__ import annotations

import re

import numpy as np
import pytest

from trainer.labels import (
    CELEBAMASK,
    CELEBAMASK_TO_LAPA,
    LAPA,
    celebamask_to_lapa,
    get_label_set,
)


@pytest.mark.parametrize("label_set", [LAPA, CELEBAMASK], ids=lambda s: s.name)
def test_flip_lut_is_an_involution(label_set) -> None:
    lut = label_set.flip_lut()
    assert lut.shape == (256,) and lut.dtype == np.uint8
    np.testing.assert_array_equal(lut[lut], np.arange(256))


def test_lapa_flip_swaps_brows_and_eyes_only() -> None:
    lut = LAPA.flip_lut()
    assert (lut[2], lut[3], lut[4], lut[5]) == (3, 2, 5, 4)
    unchanged = [c for c in range(LAPA.num_classes) if c not in (2, 3, 4, 5)]
    assert [int(lut[c]) for c in unchanged] == unchanged


def test_celebamask_flip_swaps_person_left_right_pairs() -> None:
    lut = CELEBAMASK.flip_lut()
    names = CELEBAMASK.classes
    for left in ("l_eye", "l_brow", "l_ear"):
        a, b = names.index(left), names.index("r_" + left[2:])
        assert (lut[a], lut[b]) == (b, a)
    assert lut[names.index("nose")] == names.index("nose")


def test_class_tables_match_the_data_readme(shared_data) -> None:
    text = (shared_data / "README.md").read_text(encoding="utf-8")
    celeba_line = text.split("## CelebAMask-HQ class order")[1].split("\n\n")[0]
    lapa_line = text.split("## LaPa class order")[1].split("\n\n")[0]
    celeba = dict(re.findall(r"(\d+) (\w+)", celeba_line))
    lapa = dict(re.findall(r"(\d+) (\w+ ?\w*?)[,.]", lapa_line.replace("\n", " ")))
    assert [celeba[str(i)] for i in range(19)] == list(CELEBAMASK.classes)
    assert [lapa[str(i)].replace(" ", "_") for i in range(11)] == list(LAPA.classes)


def test_celebamask_to_lapa_matches_the_readme_table(shared_data) -> None:
    text = (shared_data / "README.md").read_text(encoding="utf-8")
    section = text.split("## CelebAMask-HQ → LaPa")[1].split("##")[0]
    # "skin 1→1, l_ear 8→1, ..." ; everything not listed maps to background.
    expected = {int(a): int(b) for a, b in re.findall(r"(\d+)→(\d+)", section)}
    assert len(expected) == 12
    full = {c: expected.get(c, 0) for c in range(CELEBAMASK.num_classes)}
    assert full == CELEBAMASK_TO_LAPA
    mapped = celebamask_to_lapa(np.arange(19, dtype=np.uint8).reshape(1, 19))
    assert mapped.dtype == np.uint8
    assert mapped[0].tolist() == [full[c] for c in range(19)]


def test_mapping_swaps_sides_and_makes_ears_skin() -> None:
    names = CELEBAMASK.classes
    assert CELEBAMASK_TO_LAPA[names.index("l_eye")] == LAPA.classes.index("right_eye")
    assert CELEBAMASK_TO_LAPA[names.index("r_brow")] == LAPA.classes.index("left_eyebrow")
    assert CELEBAMASK_TO_LAPA[names.index("l_ear")] == LAPA.classes.index("skin")
    assert CELEBAMASK_TO_LAPA[names.index("r_ear")] == LAPA.classes.index("skin")


@pytest.mark.parametrize("label_set", [LAPA, CELEBAMASK], ids=lambda s: s.name)
def test_palettes_have_one_distinct_colour_per_class(label_set) -> None:
    pal = label_set.palette_array()
    assert pal.shape == (label_set.num_classes, 3) and pal.dtype == np.uint8
    assert len({tuple(c) for c in pal.tolist()}) == label_set.num_classes
    label = np.arange(label_set.num_classes, dtype=np.uint8).reshape(1, -1)
    np.testing.assert_array_equal(label_set.colorize(label)[0], pal)


def test_get_label_set_names_the_choices() -> None:
    assert get_label_set("lapa") is LAPA
    with pytest.raises(KeyError, match="celebamask"):
        get_label_set("helen")

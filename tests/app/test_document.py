"""Label document: brush, eraser, fills, protection, eyedropper, one undo step per edit."""

from __future__ import annotations

import numpy as np
import pytest

from faceparse_app.document import LabelDocument
from faceparse_app.history import History
from tests.conftest import synthetic_face
from trainer.errors import LabelMapError

SKIN, UPPER_LIP, INNER_MOUTH, HAIR = 1, 7, 8, 10


def test_brush_stroke_paints_and_undoes_in_one_step() -> None:
    label = np.zeros((64, 64), np.uint8)
    original = label.copy()
    doc = LabelDocument(label)
    changed: list[tuple[int, int, int, int]] = []
    doc.on_change.append(changed.append)
    doc.begin_stroke(3)
    assert doc.stroke_to(10, 10, 2) is not None  # first call: a dot
    for x in range(12, 50, 4):
        doc.stroke_to(x, 10 + x // 4, 2)
    delta = doc.end_stroke()
    assert delta is not None and doc.dirty
    assert doc.label is label  # edited in place: the canvas shares the array
    assert label[10, 10] == 3 and label[22, 48] == 3
    assert changed and all(w > 0 and h > 0 for _, _, w, h in changed)
    assert len(doc.history) == 1
    painted = label.copy()
    assert doc.undo() == delta.bbox
    np.testing.assert_array_equal(doc.label, original)
    doc.redo()
    np.testing.assert_array_equal(doc.label, painted)


def test_eraser_is_a_stroke_of_background() -> None:
    _, label = synthetic_face(64, 0)
    doc = LabelDocument(label.copy())
    doc.begin_stroke(0)
    doc.stroke_to(32, 34, 3)
    doc.end_stroke()
    assert doc.label[34, 32] == 0
    assert (doc.label != label).sum() > 0
    doc.undo()
    np.testing.assert_array_equal(doc.label, label)


def test_flood_fill_fills_only_the_contiguous_region() -> None:
    label = np.zeros((32, 32), np.uint8)
    label[4:10, 4:10] = 2
    label[20:26, 20:26] = 2  # same class, not connected
    doc = LabelDocument(label)
    delta = doc.flood_fill(5, 5, 6)
    assert delta is not None
    assert (doc.label[4:10, 4:10] == 6).all()
    assert (doc.label[20:26, 20:26] == 2).all()
    assert delta.bbox == (4, 4, 6, 6)
    doc.undo()
    assert (doc.label[4:10, 4:10] == 2).all()
    assert doc.flood_fill(5, 5, 2) is None  # already that class: no step
    assert len(doc.history) == 0


def test_polygon_fill_is_one_step() -> None:
    doc = LabelDocument(np.zeros((32, 32), np.uint8))
    delta = doc.fill_polygon([(4, 4), (20, 4), (20, 20), (4, 20)], 9)
    assert delta is not None and len(doc.history) == 1
    assert (doc.label[4:21, 4:21] == 9).all() and doc.label.sum() == 9 * 17 * 17
    doc.undo()
    assert not doc.label.any()


def test_protected_classes_are_never_painted_over() -> None:
    # Lips drawn over skin must not touch the teeth (inner mouth) or the hair.
    _, label = synthetic_face(64, 0)
    doc = LabelDocument(label.copy())
    doc.protected = {INNER_MOUTH, HAIR}
    doc.begin_stroke(UPPER_LIP)
    for x in range(18, 48, 2):
        doc.stroke_to(x, 45, 4)
    doc.stroke_to(32, 8, 6)  # drag up into the hair, too
    doc.end_stroke()
    for cls in (INNER_MOUTH, HAIR):
        np.testing.assert_array_equal(doc.label == cls, label == cls)
    assert ((label == SKIN) & (doc.label == UPPER_LIP)).sum() > 20
    # Fill and polygon respect protection too.
    doc.fill_polygon([(0, 0), (63, 0), (63, 63), (0, 63)], 3)
    np.testing.assert_array_equal(doc.label == HAIR, label == HAIR)
    hair_y, hair_x = np.argwhere(label == HAIR)[0]
    assert doc.flood_fill(hair_x, hair_y, 3) is None


def test_eyedropper_picks_the_class_under_the_cursor() -> None:
    _, label = synthetic_face(64, 0)
    doc = LabelDocument(label)
    y, x = np.argwhere(label == 6)[0]
    assert doc.pick(x, y) == 6
    assert doc.pick(-1, 5) == -1


def test_undo_mid_stroke_closes_the_stroke_first() -> None:
    doc = LabelDocument(np.zeros((16, 16), np.uint8))
    doc.begin_stroke(4)
    doc.stroke_to(5, 5, 1)
    doc.undo()
    assert not doc.label.any() and not doc.in_stroke


def test_history_survives_switching_images() -> None:
    label = np.zeros((16, 16), np.uint8)
    history = History()
    doc = LabelDocument(label.copy(), history=history)
    doc.fill_polygon([(2, 2), (10, 2), (10, 10)], 5)
    saved = doc.label.copy()  # what autosave wrote on the switch
    doc2 = LabelDocument(saved.copy(), history=history)  # back on this image later
    doc2.undo()
    np.testing.assert_array_equal(doc2.label, label)


def test_a_history_that_no_longer_matches_the_map_is_dropped_not_applied() -> None:
    history = History()
    doc = LabelDocument(np.zeros((16, 16), np.uint8), history=history)
    doc.fill_polygon([(2, 2), (10, 2), (10, 10)], 5)
    other = np.full((16, 16), 2, np.uint8)  # e.g. replaced on disk meanwhile
    doc2 = LabelDocument(other.copy(), history=history)
    assert doc2.undo() is None
    np.testing.assert_array_equal(doc2.label, other)
    assert not history.can_undo


def test_replace_is_undoable_and_checks_size() -> None:
    doc = LabelDocument(np.zeros((16, 16), np.uint8))
    new = np.ones((16, 16), np.uint8)
    doc.replace(new)
    np.testing.assert_array_equal(doc.label, new)
    doc.undo()
    assert not doc.label.any()
    with pytest.raises(LabelMapError):
        doc.replace(np.ones((8, 8), np.uint8))


def test_mark_saved_clears_dirty_and_bad_classes_are_refused() -> None:
    doc = LabelDocument(np.zeros((8, 8), np.uint8))
    doc.begin_stroke(1)
    doc.stroke_to(3, 3, 1)
    doc.end_stroke()
    assert doc.dirty
    doc.mark_saved()
    assert not doc.dirty
    with pytest.raises(ValueError):
        doc.begin_stroke(11)
    with pytest.raises(LabelMapError):
        LabelDocument(np.full((4, 4), 11, np.uint8))


def test_a_stroke_that_changes_nothing_adds_no_step() -> None:
    doc = LabelDocument(np.full((16, 16), 2, np.uint8))
    doc.begin_stroke(2)
    assert doc.stroke_to(8, 8, 3) is None
    assert doc.end_stroke() is None
    assert len(doc.history) == 0 and not doc.dirty


def test_long_stroke_on_a_big_map_undoes_exactly() -> None:
    # Tiles snapshotted lazily: the undo step must still hold every touched pixel's old value.
    rng = np.random.default_rng(1)
    label = rng.integers(0, 11, size=(700, 900), dtype=np.uint8)
    original = label.copy()
    doc = LabelDocument(label)
    doc.protected = {10}
    doc.begin_stroke(3)
    for t in np.linspace(0, 1, 60):
        doc.stroke_to(20 + 850 * t, 350 + 300 * np.sin(6 * t), 25)
    delta = doc.end_stroke()
    assert delta is not None
    assert np.array_equal(doc.label == 10, original == 10)
    assert delta.before.size < label.size  # a box, not the whole map
    doc.undo()
    np.testing.assert_array_equal(doc.label, original)


def test_replace_where_sets_only_the_masked_pixels_in_one_step_sparing_protected() -> None:
    _, label = synthetic_face(64, 0)
    doc = LabelDocument(label.copy())
    doc.protected = {HAIR}
    before = doc.label.copy()
    values = np.full((20, 30), UPPER_LIP, np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:15, 5:25] = True
    delta = doc.replace_where(values, mask, x0=10, y0=4)
    assert delta is not None and len(doc.history) == 1 and doc.dirty
    inside = np.zeros((64, 64), bool)
    inside[9:19, 15:35] = True
    assert (doc.label[~inside] == before[~inside]).all()  # nothing outside the mask changed
    hair = inside & (before == HAIR)
    assert hair.any() and (doc.label[hair] == HAIR).all()  # protected pixels kept
    assert (doc.label[inside & ~hair] == UPPER_LIP).all()
    doc.undo()
    np.testing.assert_array_equal(doc.label, before)
    with pytest.raises(LabelMapError, match="does not fit"):
        doc.replace_where(values, mask, x0=50, y0=50)

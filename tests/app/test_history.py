"""Undo history: exact restores, redo, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from faceparse_app.history import Delta, History


def _apply(label: np.ndarray, delta: Delta, values: np.ndarray) -> None:
    rows, cols = delta.slices()
    label[rows, cols] = values


def test_delta_between_shrinks_to_the_changed_box() -> None:
    before = np.zeros((20, 30), np.uint8)
    after = before.copy()
    after[5:8, 10:14] = 3
    delta = Delta.between(before, after, y0=100, x0=200)
    assert delta is not None
    assert delta.bbox == (210, 105, 4, 3)
    assert delta.nbytes == 2 * 12
    assert Delta.between(before, before.copy()) is None


def test_undo_redo_restore_exact_arrays() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 11, size=(32, 32), dtype=np.uint8)
    states = [label.copy()]
    history = History()
    for step in range(5):
        new = label.copy()
        y, x = rng.integers(0, 24, size=2)
        new[y : y + 8, x : x + 8] = step + 1
        delta = Delta.between(label, new)
        assert delta is not None
        history.push(delta)
        label[...] = new
        states.append(label.copy())
    for k in range(5, 0, -1):
        delta = history.undo()
        assert delta is not None
        _apply(label, delta, delta.before)
        np.testing.assert_array_equal(label, states[k - 1])
    assert history.undo() is None and not history.can_undo
    for k in range(1, 6):
        delta = history.redo()
        assert delta is not None
        _apply(label, delta, delta.after)
        np.testing.assert_array_equal(label, states[k])
    assert history.redo() is None


def test_push_after_undo_drops_redo() -> None:
    history = History()
    a = Delta(0, 0, np.zeros((1, 1), np.uint8), np.ones((1, 1), np.uint8))
    b = Delta(0, 0, np.ones((1, 1), np.uint8), np.full((1, 1), 2, np.uint8))
    history.push(a)
    history.undo()
    assert history.can_redo
    history.push(b)
    assert not history.can_redo
    assert history.undo() is b


def test_bounded_memory_drops_oldest_steps() -> None:
    history = History(max_bytes=10_000)
    deltas = [
        Delta(0, 0, np.zeros((50, 50), np.uint8), np.full((50, 50), i, np.uint8)) for i in range(6)
    ]
    for d in deltas:  # 5,000 bytes each: only two fit
        history.push(d)
    assert history.nbytes <= 10_000
    assert len(history) == 2
    assert history.undo() is deltas[5]
    assert history.undo() is deltas[4]
    assert history.undo() is None


def test_a_step_larger_than_the_budget_is_still_undoable() -> None:
    history = History(max_bytes=100)
    big = Delta(0, 0, np.zeros((20, 20), np.uint8), np.ones((20, 20), np.uint8))
    history.push(big)
    assert history.undo() is big


def test_delta_rejects_mismatched_arrays() -> None:
    with pytest.raises(ValueError):
        Delta(0, 0, np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))


def test_a_face_step_and_the_pixels_that_follow_it_fold_into_one_undo_step():
    from faceparse_app.history import FaceChange

    history = History()
    stroke = Delta.between(np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8))
    history.push(stroke)
    history.push(Delta.of_faces(FaceChange((), ("a",), ("a",))))  # type: ignore[arg-type]
    history.push(Delta.of_faces(FaceChange(("a",), ("a", "b"), ("b",))))  # type: ignore[arg-type]
    pixels = Delta.between(np.zeros((3, 3), np.uint8), np.full((3, 3), 2, np.uint8), by_hand=False)
    history.push(pixels)
    folded = history.fold_faces()
    assert len(history) == 2 and history.last is folded and folded.has_pixels
    assert folded.faces == FaceChange((), ("a", "b"), ("a", "b"))
    assert history.fold_faces() is None  # folded already
    assert history.undo() is folded and history.undo() is stroke

"""Training augmentation and evaluation resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import synthetic_face
from trainer.data.transforms import TrainAugment, resize_square, to_tensor
from trainer.labels import LAPA


def _mean_x(label: np.ndarray, cls: int) -> float:
    return float(np.nonzero(label == cls)[1].mean())


def test_flip_moves_left_brow_right_and_relabels_it() -> None:
    image, label = synthetic_face(64, seed=0)
    assert _mean_x(label, 2) < 32 < _mean_x(label, 3)
    flip_only = TrainAugment(
        64, LAPA, flip=1.0, scale=(1.0, 1.0), rotate_deg=0.0, shift=0.0, color_jitter=0.0
    )
    out_image, out_label = flip_only(image, label, np.random.default_rng(0))
    # Still viewer's-left class 2 on the image's left: the old right brow, mirrored.
    assert _mean_x(out_label, 2) < 32 < _mean_x(out_label, 3)
    assert _mean_x(out_label, 4) < 32 < _mean_x(out_label, 5)
    np.testing.assert_array_equal(out_label, LAPA.flip_lut()[label[:, ::-1]])
    np.testing.assert_array_equal(out_image, image[:, ::-1])


def test_no_flip_keeps_sides() -> None:
    image, label = synthetic_face(64, seed=0)
    keep = TrainAugment(64, LAPA, flip=0.0, scale=(1, 1), rotate_deg=0, shift=0, color_jitter=0)
    out_image, out_label = keep(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(out_label, label)
    np.testing.assert_array_equal(out_image, image)


def test_geometry_keeps_labels_in_the_class_set_and_shapes() -> None:
    image, label = synthetic_face(96, seed=3)
    aug = TrainAugment(64, LAPA, scale=(0.6, 1.4), rotate_deg=30.0, shift=0.1)
    rng = np.random.default_rng(7)
    changed = 0
    for _ in range(10):
        out_image, out_label = aug(image, label, rng)
        assert out_image.shape == (64, 64, 3) and out_image.dtype == np.uint8
        assert out_label.shape == (64, 64) and out_label.dtype == np.uint8
        assert set(np.unique(out_label)) <= set(range(LAPA.num_classes))
        base = resize_square(image, 64, label)[1]
        changed += int(not np.array_equal(out_label, base))
    assert changed >= 8  # the augmentation really moves things


def test_image_and_label_move_together() -> None:
    image, label = synthetic_face(64, seed=2)
    aug = TrainAugment(
        64, LAPA, flip=0.5, scale=(0.8, 1.2), rotate_deg=20, shift=0.1, color_jitter=0
    )
    out_image, out_label = aug(image, label, np.random.default_rng(11))
    # Hair pixels of the warped label should still carry the hair colour in the warped image.
    hair_colour = image[label == 10].mean(axis=0)
    interior = out_label == 10
    assert interior.sum() > 50
    assert np.abs(out_image[interior].mean(axis=0) - hair_colour).max() < 25


def test_same_seed_same_output_different_seed_differs() -> None:
    image, label = synthetic_face(64, seed=0)
    aug = TrainAugment(48, LAPA)
    a = aug(image, label, np.random.default_rng(5))
    b = aug(image, label, np.random.default_rng(5))
    c = aug(image, label, np.random.default_rng(6))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_colour_jitter_changes_only_the_image() -> None:
    image, label = synthetic_face(64, seed=0)
    aug = TrainAugment(64, LAPA, flip=0, scale=(1, 1), rotate_deg=0, shift=0, color_jitter=0.4)
    out_image, out_label = aug(image, label, np.random.default_rng(1))
    np.testing.assert_array_equal(out_label, label)
    assert not np.array_equal(out_image, image)


def test_augment_without_label() -> None:
    image, _ = synthetic_face(64)
    out_image, out_label = TrainAugment(32, LAPA)(image, None, np.random.default_rng(0))
    assert out_image.shape == (32, 32, 3) and out_label is None


def test_augment_without_a_label_set_refuses_a_label() -> None:
    image, label = synthetic_face(64)
    unlabeled = TrainAugment(32, None)  # stage 1: photos only
    assert unlabeled(image, None, np.random.default_rng(0))[0].shape == (32, 32, 3)
    with pytest.raises(ValueError, match="label_set"):
        unlabeled(image, label, np.random.default_rng(0))


def test_resize_square_ignores_aspect_and_keeps_classes() -> None:
    image, label = synthetic_face(64)
    wide_image = np.concatenate([image, image], axis=1)
    wide_label = np.concatenate([label, label], axis=1)
    out_image, out_label = resize_square(wide_image, 32, wide_label)
    assert out_image.shape == (32, 32, 3) and out_label.shape == (32, 32)
    assert set(np.unique(out_label)) <= set(np.unique(label))
    assert resize_square(image, 64)[1] is None


def test_to_tensor_is_chw_float_in_unit_range() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    image[..., 0] = 255
    t = to_tensor(image)
    assert t.shape == (3, 4, 6) and t.dtype == torch.float32
    assert t[0].eq(1).all() and t[1:].eq(0).all()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        TrainAugment(64, LAPA, flip=1.5)
    with pytest.raises(ValueError):
        TrainAugment(64, LAPA, scale=(1.2, 0.8))

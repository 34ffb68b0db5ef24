"""Faces in photos: framing each like the training crops, and warping the parse back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import synthetic_face
from trainer.faces import (
    TEMPLATE,
    Face,
    context_transform,
    crop_face,
    face_transform,
    faces_from_label,
    invert,
    similarity_from_points,
    warp_label_to_crop,
)
from trainer.paste import paste_logits


def _place(label: np.ndarray, image: np.ndarray, frame: tuple[int, int], angle: float,
           scale: float, centre: tuple[float, float]):
    """Paste a face into a bigger frame, rotated and scaled; returns frame image, label, matrix."""
    h, w = label.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += np.array(centre) - np.array([w / 2, h / 2])
    fh, fw = frame
    lab = cv2.warpAffine(label, m, (fw, fh), flags=cv2.INTER_NEAREST, borderValue=0)
    img = cv2.warpAffine(image, m, (fw, fh), flags=cv2.INTER_LINEAR, borderValue=(90, 120, 60))
    return img, lab, m


def test_similarity_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(5, 2))
    m = cv2.getRotationMatrix2D((10, 20), 33.0, 1.7)
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(similarity_from_points(src, dst), m, atol=1e-9)


@pytest.mark.parametrize("angle", [-40.0, 0.0, 25.0])
def test_a_rotated_small_face_is_cropped_upright_at_the_template(angle: float) -> None:
    image, label = synthetic_face(128, seed=3)
    frame_img, frame_lab, _ = _place(label, image, (480, 640), angle, 0.7, (420, 300))
    faces = faces_from_label(frame_lab)
    assert len(faces) == 1 and faces[0].landmarks is not None
    size = 64
    m = face_transform(faces[0], size)
    crop = warp_label_to_crop(frame_lab, m, size)
    ys4, xs4 = np.nonzero(crop == 4)
    ys5, xs5 = np.nonzero(crop == 5)
    assert abs(ys4.mean() - ys5.mean()) < 1.5  # eyes level: turned upright
    assert abs((xs4.mean() + 0.5) / size - TEMPLATE["left_eye"][0]) < 0.03
    assert abs((xs5.mean() + 0.5) / size - TEMPLATE["right_eye"][0]) < 0.03
    assert crop_face(frame_img, m, size).shape == (size, size, 3)


def test_logits_pasted_back_give_the_label_in_the_photo() -> None:
    image, label = synthetic_face(128, seed=1)
    _, frame_lab, _ = _place(label, image, (400, 500), 30.0, 1.3, (260, 190))
    face = faces_from_label(frame_lab)[0]
    size = 128
    m = face_transform(face, size)
    crop = warp_label_to_crop(frame_lab, m, size)
    logits = torch.nn.functional.one_hot(torch.from_numpy(crop).long(), 11).permute(2, 0, 1) * 8.0
    back, conf = paste_logits([logits], [m], frame_lab.shape)
    for cls in (1, 4, 6, 10):
        truth, got = frame_lab == cls, back == cls
        iou = (truth & got).sum() / max(1, (truth | got).sum())
        assert iou > 0.85, (cls, iou)
    far = np.zeros_like(frame_lab, bool)
    far[:5, :5] = True
    assert (back[far] == 0).all() and (conf[far] == 1.0).all()


@pytest.mark.parametrize("scale", [0.2, 0.04])  # 5 and 25 photo pixels per crop pixel
def test_the_paste_equals_interpolating_every_class_at_every_pixel(scale: float) -> None:
    # The paste interpolates all classes only near class edges; everywhere it must give what
    # the plain bilinear warp of every class, then argmax, gives (a rotated, enlarged crop). At
    # 25x, one band holds more edge pixels than OpenCV's remap takes on a side (32767).
    rng = np.random.default_rng(0)
    size = 48
    coarse = rng.normal(0, 3, (11, 6, 6)).astype(np.float32)
    logits = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None], size=(size, size),
                                             mode="bicubic", align_corners=False)[0]  # fmt: skip
    angle = np.deg2rad(17.0)
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    m = np.array([[c, -s, 4.0], [s, c, -20.0]])
    shape = (round(60 / scale), round(64 / scale))
    label, _ = paste_logits([logits], [m], shape)
    hwc = np.ascontiguousarray(logits.permute(1, 2, 0).numpy())
    shifted = np.hstack([m[:, :2], (m[:, :2] @ [0.5, 0.5] + m[:, 2] - 0.5)[:, None]])
    warped = cv2.warpAffine(hwc, shifted, shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    u, v = m[0, 0] * xs + m[0, 1] * ys + m[0, 2], m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    inside = (u >= 0) & (u <= size) & (v >= 0) & (v <= size)
    expected = np.where(inside, warped.argmax(axis=-1), 0)
    assert inside.sum() > 20000 and len(np.unique(expected[inside])) >= 4
    # OpenCV rounds sample points to 1/32 pixel; a point that close to a class edge may differ.
    assert (label != expected).sum() <= 0.001 * inside.sum()


def test_overlapping_faces_merge_by_confidence() -> None:
    size = 32
    sure = torch.zeros(11, size, size)
    sure[1] = 9.0  # skin, very sure
    unsure = torch.zeros(11, size, size)
    unsure[6] = 0.5  # nose, barely
    a = np.array([[1.0, 0, 0], [0, 1.0, 0]])  # crop = photo pixels 0..32
    b = np.array([[1.0, 0, -16], [0, 1.0, -16]])  # crop = photo pixels 16..48
    label, conf = paste_logits([unsure, sure], [a, b], (48, 48))
    assert (label[20:30, 20:30] == 1).all()  # the overlap goes to the surer face
    assert (label[2:12, 2:12] == 6).all() and (label[40:, 40:] == 1).all()
    assert (label[40:, :10] == 0).all() and (conf[40:, :10] == 1.0).all()


def test_the_zoomed_out_pass_labels_only_what_no_face_crop_covers() -> None:
    size = 32
    skin = torch.zeros(11, size, size)
    skin[1] = 1.0  # skin, not very sure
    hair = torch.zeros(11, size, size)
    hair[10] = 9.0  # hair, very sure
    face = np.array([[1.0, 0, -16], [0, 1.0, -16]])  # the face's crop: photo pixels 16..48
    wide = (context_transform(2.0, size) @ np.vstack([face, [0, 0, 1]]))[:2]  # 0..64
    label, conf = paste_logits([skin], [face], (64, 64), fill=([hair], [wide]))
    assert (label[16:48, 16:48] == 1).all()  # the face's own crop wins, however sure the fill
    assert (label[:16] == 10).all() and (label[48:] == 10).all()  # past it: the zoomed-out pass
    assert conf[:16].min() > 0.99


def test_a_face_much_larger_than_the_crop_is_not_aliased() -> None:
    checker = (np.indices((2000, 2000)).sum(0) % 2 * 255).astype(np.uint8)
    image = np.repeat(checker[..., None], 3, axis=2)
    face = Face(box=(0.0, 0.0, 2000.0, 2000.0), box_framing=(0.5, 0.5, 1.0))
    crop = crop_face(image, face_transform(face, 64), 64)
    assert abs(float(crop.mean()) - 127.5) < 3 and float(crop.std()) < 6


@pytest.mark.parametrize("side", [128, 100])  # a face exactly twice the crop, and 2.56 times
def test_a_face_shrunk_to_its_crop_is_area_averaged_as_the_training_crops(side) -> None:
    # At half size a bilinear warp samples every other pixel (a checkerboard stays black or
    # white); the parser was trained on area-averaged crops (resize_square).
    checker = (np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8)
    image = np.repeat(checker[..., None], 3, axis=2)
    face = Face(box=(0.0, 0.0, 256.0, 256.0), box_framing=(0.5, 0.5, 1.0))
    crop = crop_face(image, face_transform(face, side), side)
    expected = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    assert np.abs(crop.astype(int) - expected).mean() < 3


def test_a_box_only_face_is_framed_by_its_box_and_inverse_maps_back() -> None:
    face = Face(box=(100.0, 50.0, 200.0, 150.0), box_framing=(0.5, 0.5, 0.5))
    m = face_transform(face, 64)
    centre = m @ np.array([150.0, 100.0, 1.0])
    np.testing.assert_allclose(centre, [32, 32])
    np.testing.assert_allclose(invert(m) @ np.array([32.0, 32.0, 1.0]), [150, 100])


def test_face_json_round_trip() -> None:
    face = Face(box=(1, 2, 30, 40), score=0.9,
                landmarks=np.arange(10, dtype=np.float32).reshape(5, 2), source="user")
    back = Face.from_json(face.to_json())
    assert back.box == face.box and back.source == "user"
    np.testing.assert_allclose(back.landmarks, face.landmarks)


def test_the_paste_without_confidence_gives_the_same_labels() -> None:
    # faceparse predict writes the label map only: no (H, W) float map for it (800 MB at 200 MP).
    size = 32
    skin = torch.zeros(11, size, size)
    skin[1] = 1.0
    hair = torch.zeros(11, size, size)
    hair[10] = 9.0
    face = np.array([[1.0, 0, -16], [0, 1.0, -16]])
    wide = (context_transform(2.0, size) @ np.vstack([face, [0, 0, 1]]))[:2]
    label, conf = paste_logits([skin], [face], (64, 64), fill=([hair], [wide]))
    alone, none = paste_logits([skin], [face], (64, 64), fill=([hair], [wide]), confidence=False)
    assert none is None and conf is not None
    np.testing.assert_array_equal(alone, label)

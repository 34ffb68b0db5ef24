"""The product's face finder (YuNet) on real faces: every face found, turned upright from its
eyes, framed like the training crops; bad input gives no face, never a crash."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from trainer.data.imageio import read_image
from trainer.face_detect import DEFAULT_FINDER, FinderError, YuNetFinder, get_finder
from trainer.faces import face_transform

pytestmark = pytest.mark.uses_face_finder


@pytest.fixture(scope="module")
def finder() -> YuNetFinder:
    return YuNetFinder()


@pytest.fixture(scope="module")
def aligned_face(shared_data) -> np.ndarray:
    """One CelebAMask-HQ crop (an aligned face filling the frame)."""
    paths = sorted((shared_data / "celebamask-hq-dev" / "images").glob("*.jpg"))
    if not paths:
        pytest.skip("no CelebAMask-HQ images in the shared data")
    return cv2.resize(read_image(paths[3]), (512, 512), interpolation=cv2.INTER_AREA)


def _paste(face: np.ndarray, frame_hw: tuple[int, int], height: int, centre, angle_deg: float):
    """``face`` (a square crop) scaled to ``height`` px, turned by ``angle_deg`` about its centre
    (counter-clockwise on screen), pasted at ``centre`` into a grey frame."""
    h, w = frame_hw
    scale = height / face.shape[0]
    m = cv2.getRotationMatrix2D((face.shape[1] / 2, face.shape[0] / 2), angle_deg, scale)
    m[:, 2] += np.asarray(centre) - np.array([face.shape[1] / 2, face.shape[0] / 2])
    frame = np.full((h, w, 3), 127, np.uint8)
    return cv2.warpAffine(face, m, (w, h), dst=frame, borderMode=cv2.BORDER_TRANSPARENT)


def _roll_deg(face) -> float:
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def test_the_default_finder_is_the_real_one():
    assert DEFAULT_FINDER == "yunet"
    assert get_finder().name == "yunet"


def test_an_aligned_crop_is_framed_as_the_training_crops(finder, aligned_face):
    faces = finder(aligned_face)
    assert len(faces) == 1
    m = face_transform(faces[0], 256)
    corners = np.array([[0, 0, 1], [512, 0, 1], [0, 512, 1], [512, 512, 1]], float)
    # The crop the parser sees is the training crop itself, give or take a few per cent.
    assert np.abs(corners @ m.T - corners[:, :2] / 2).max() < 0.1 * 256


@pytest.mark.parametrize("angle", [-40.0, 25.0])
def test_a_turned_face_is_turned_upright(finder, aligned_face, angle):
    photo = _paste(aligned_face, (900, 1200), 400, (700, 450), angle)
    faces = finder(photo)
    assert len(faces) == 1
    # cv2's positive angle turns the face counter-clockwise on screen: its eye line then climbs
    # to the right, which in image axes (y down) is a negative roll.
    assert abs(_roll_deg(faces[0]) - (-angle)) < 6.0
    x0, y0, x1, y1 = faces[0].box
    assert x0 < 700 < x1 and y0 < 450 < y1


def test_every_face_of_a_group_is_found(finder, aligned_face):
    photo = np.full((1000, 1600, 3), 127, np.uint8)
    centres = [(250, 300), (800, 600), (1350, 350)]
    for c in centres:
        photo = _paste(aligned_face, photo.shape[:2], 300, c, 0.0) if c == centres[0] else np.where(
            _paste(aligned_face, photo.shape[:2], 300, c, 0.0) != 127,
            _paste(aligned_face, photo.shape[:2], 300, c, 0.0), photo)
    faces = finder(photo)
    assert len(faces) == 3
    for cx, cy in centres:
        assert any(f.box[0] < cx < f.box[2] and f.box[1] < cy < f.box[3] for f in faces)


def test_a_small_face_in_a_12_megapixel_photo_is_found(finder, aligned_face):
    # A face 64 px from brow to chin: the training crop around it is about 90 px.
    photo = _paste(aligned_face, (3000, 4000), 90, (3100, 700), 0.0)
    faces = finder(photo)
    assert any(f.box[0] < 3100 < f.box[2] and f.box[1] < 700 < f.box[3] for f in faces)


def test_a_face_cut_by_the_frame_edge_is_found(finder, aligned_face):
    photo = _paste(aligned_face, (600, 800), 500, (40, 300), 0.0)  # most of it left of the frame
    faces = finder(photo)
    assert len(faces) == 1 and faces[0].box[0] < 0


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 700, 3), (480, 640, 3), (300, 300)])
def test_no_face_gives_an_empty_list(finder, shape):
    rng = np.random.default_rng(0)
    assert finder(rng.integers(0, 255, shape, dtype=np.uint8) // 8 + 100) == []


def test_the_real_photos_with_two_faces(finder, shared_data):
    photo = read_image(shared_data / "faces-unlabeled" / "deepface_couple.jpg")
    faces = finder(photo)
    assert len(faces) == 2
    assert all(f.landmarks is not None and abs(_roll_deg(f)) < 20 for f in faces)


def test_an_unknown_finder_is_a_clear_error():
    with pytest.raises(FinderError, match="unknown face finder"):
        get_finder("haar")


@pytest.mark.parametrize("name", ["deepface_couple.jpg", "insightface_t1.jpg", "facer_weirdface.jpg"])
def test_the_torch_network_finds_what_the_wheels_library_finds(shared_data, name):
    # The finder runs YuNet through torch with the weights read from the yuface wheel's C++
    # library; on real photos it must find the faces that library finds, at the same places.
    from yuface.yuface import detect

    from trainer.face_detect import YuNetNet

    rgb = read_image(shared_data / "faces-unlabeled" / name)
    scale = 640 / max(rgb.shape[:2])
    rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    library = np.asarray(detect(np.ascontiguousarray(rgb[:, :, ::-1])), np.float64).reshape(-1, 16)
    library = library[library[:, 0] >= 50]  # scores in percent, boxes and points truncated to int
    ours = YuNetNet()(rgb, 0.45)
    assert len(library) >= 2
    for row in library:
        x, y, w, h = row[1:5]
        match = [f for f in ours if np.abs(f[1] - [x, y, x + w, y + h]).max() < 2.0]
        assert len(match) == 1, f"the library's face at {(x, y, w, h)} was not found"
        score, _, points = match[0]
        assert abs(100 * score - row[0]) < 1.5
        assert np.abs(points - row[5:15].reshape(5, 2)).max() < 2.0
    assert len([f for f in ours if f[0] >= 0.5]) == len(library)

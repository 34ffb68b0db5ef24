"""Predictor: image array in, label map and confidence out, at the image's own size; with
``detect`` framing, every face found, parsed upright and pasted back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import synthetic_face
from trainer.checkpoint import save_checkpoint
from trainer.errors import CheckpointError
from trainer.models import build_model, get_preset
from trainer.predict import Predictor
from trainer.predict_folder import predict_folder


@pytest.fixture(scope="module")
def parser_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), heads=("parsing",))
    path = tmp_path_factory.mktemp("ckpt") / "parser.safetensors"
    return save_checkpoint(path, model, stage="finetune", meta={"metrics": {"mean_f1": 0.5}})


@pytest.fixture(scope="module")
def predictor(parser_ckpt: Path) -> Predictor:
    return Predictor.from_checkpoint(parser_ckpt, device="cpu", framing="whole")


def _reference(predictor: Predictor, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label and confidence the plain way: logits bilinear to the image size, softmax."""
    logits = predictor.logits([image])
    probs = torch.nn.functional.interpolate(
        logits, size=image.shape[:2], mode="bilinear", align_corners=False
    ).softmax(dim=1)[0]
    confidence, label = probs.max(dim=0)
    return label.numpy().astype(np.uint8), confidence.numpy()


def test_label_matches_a_non_square_image(predictor: Predictor) -> None:
    image = np.random.default_rng(0).integers(0, 256, (50, 90, 3), dtype=np.uint8)
    pred = predictor(image)
    assert pred.label.shape == (50, 90) and pred.label.dtype == np.uint8
    assert pred.label.max() < 11
    assert pred.confidence.shape == (50, 90) and pred.confidence.dtype == np.float32
    assert 0.0 <= pred.confidence.min() and pred.confidence.max() <= 1.0
    label, confidence = _reference(predictor, image)
    assert (pred.label != label).mean() < 1e-3  # only exact ties may differ
    np.testing.assert_allclose(pred.confidence, confidence, atol=1e-5)
    assert pred.framing == "whole" and pred.faces == []


def test_batch_keeps_each_image_size_and_equals_single_calls(predictor: Predictor) -> None:
    a, _ = synthetic_face(64, 1)
    b, _ = synthetic_face(128, 2)
    batch = predictor.predict_batch([a, b])
    assert [p.label.shape for p in batch] == [(64, 64), (128, 128)]
    np.testing.assert_array_equal(batch[1].label, predictor(b).label)


def test_model_info_and_uncertainty_score(predictor: Predictor, face) -> None:
    info = predictor.model_info
    assert info["preset"] == "tiny" and info["stage"] == "finetune"
    assert info["classes"][10] == "hair" and info["version"]
    assert info["input_size"] == 64 and info["metrics"] == {"mean_f1": 0.5}
    assert info["framing"] == "whole"
    # An untrained head is unsure: high entropy, never above the uniform bound.
    assert 0.0 < predictor(face[0]).score <= 1.0


def test_rejects_a_non_rgb_array(predictor: Predictor) -> None:
    from trainer.errors import ImageReadError

    with pytest.raises(ImageReadError, match="uint8 RGB"):
        predictor(np.zeros((8, 8), np.uint8))


def test_corrupted_and_stage1_checkpoints_are_refused(parser_ckpt: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.safetensors"
    data = parser_ckpt.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        Predictor.from_checkpoint(broken, device="cpu")
    stage1 = save_checkpoint(
        tmp_path / "pre.safetensors",
        build_model(get_preset("tiny"), heads=("reconstruction",)),
        stage="pretrain",
    )
    with pytest.raises(CheckpointError, match="fine-tune"):
        Predictor.from_checkpoint(stage1, device="cpu")


def test_predict_folder_writes_L_pngs_and_overlays(predictor: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(synthetic_face(64, 0)[0]).save(src / "a.jpg")
    Image.fromarray(np.zeros((40, 70, 3), np.uint8)).save(src / "sub" / "b.png")
    (src / "notes.txt").write_text("not an image")
    n = predict_folder(predictor, src, tmp_path / "out", overlay_dir=tmp_path / "ov")
    assert n == 2
    for rel, size in (("a.png", (64, 64)), ("sub/b.png", (70, 40))):
        with Image.open(tmp_path / "out" / rel) as im:
            assert im.mode == "L" and im.size == size
            assert np.asarray(im).max() < 11
        with Image.open(tmp_path / "ov" / rel.replace(".png", ".jpg")) as im:
            assert im.mode == "RGB" and im.size == size


def test_overlay_tints_classes_and_leaves_background_as_photo(face) -> None:
    from trainer.labels import LAPA
    from trainer.predict_folder import overlay

    image, label = face
    mixed = overlay(image, label)
    np.testing.assert_array_equal(mixed[label == 0], image[label == 0])
    skin = label == 1
    expected = (image[skin].astype(int) + np.array(LAPA.palette[1])) / 2
    assert np.abs(mixed[skin].astype(int) - expected).max() <= 1


def test_banded_label_and_confidence_equal_the_full_probability_map(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trainer.label_maps._BAND_PIXELS", 700)  # many bands of a few rows
    image = np.random.default_rng(1).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    banded = predictor(image)
    label, confidence = _reference(predictor, image)
    assert (banded.label != label).mean() < 1e-3  # only exact ties may differ
    np.testing.assert_allclose(banded.confidence, confidence, atol=1e-5)


def _photo_with_faces(placements, frame=(360, 480)):
    """A frame with synthetic faces pasted (size, angle, centre); its label and the faces' true
    eye/mouth points (from the label, the way faces_from_label finds them)."""
    import cv2

    from trainer.faces import faces_from_label

    image = np.full((*frame, 3), (70, 110, 60), np.uint8)
    label = np.zeros(frame, np.uint8)
    for seed, (side, angle, (cx, cy)) in enumerate(placements):
        face_img, face_lab = synthetic_face(64, seed=seed)
        m = cv2.getRotationMatrix2D((32, 32), angle, side / 64)
        m[:, 2] += np.array([cx, cy]) - 32
        warped_lab = cv2.warpAffine(face_lab, m, frame[::-1], flags=cv2.INTER_NEAREST)
        warped_img = cv2.warpAffine(face_img, m, frame[::-1], flags=cv2.INTER_LINEAR)
        inside = cv2.warpAffine(np.ones((64, 64), np.uint8), m, frame[::-1]) > 0
        image[inside] = warped_img[inside]
        label[inside] = warped_lab[inside]
    return image, label, faces_from_label(label)


def test_detect_parses_each_face_and_leaves_the_rest_background(predictor: Predictor) -> None:
    image, label, faces = _photo_with_faces([(90, 0.0, (120, 150)), (70, 30.0, (360, 220))])
    assert len(faces) == 2
    seen: list[np.ndarray] = []
    detect = Predictor(predictor.model, predictor.meta, device="cpu", framing="detect",
                       finder=lambda img: seen.append(img) or faces)  # fmt: skip
    pred = detect(image)
    assert len(seen) == 1 and pred.framing == "detect" and pred.faces == faces
    assert pred.label.shape == image.shape[:2] and 0.0 < pred.score <= 1.0
    # Far from both faces everything is background, and surely so.
    assert (pred.label[:20, 200:280] == 0).all() and (pred.confidence[:20, 200:280] == 1.0).all()
    # Given faces are used as they are: no finder call.
    again = detect.predict_batch([image], faces=[faces[:1]])[0]
    assert len(seen) == 1 and again.faces == faces[:1]
    assert (again.label[150:300, 300:420] == 0).all()  # the second face was not parsed
    info = detect.model_info
    assert info["framing"] == "detect"


def test_detect_with_no_face_is_all_background_with_no_score(predictor: Predictor) -> None:
    detect = Predictor(predictor.model, device="cpu", framing="detect", finder=lambda img: [])
    pred = detect(np.zeros((30, 40, 3), np.uint8))
    assert (pred.label == 0).all() and pred.faces == [] and np.isnan(pred.score)


def test_detect_at_another_output_size_lines_up_with_the_photo(predictor: Predictor) -> None:
    image, _, faces = _photo_with_faces([(120, 15.0, (240, 180))])
    detect = Predictor(predictor.model, device="cpu", framing="detect", finder=lambda img: faces)
    full = detect(image).label
    half = detect.predict_batch([image], output_sizes=[(180, 240)])[0].label
    import cv2

    shrunk = cv2.resize(full, (240, 180), interpolation=cv2.INTER_NEAREST)
    assert (half == shrunk).mean() > 0.97


def test_an_unknown_framing_is_refused(parser_ckpt: Path) -> None:
    with pytest.raises(ValueError, match="framing"):
        Predictor.from_checkpoint(parser_ckpt, device="cpu", framing="squash")


def test_predict_folder_records_the_faces_and_the_framing(parser_ckpt: Path, tmp_path: Path) -> None:
    import json

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(synthetic_face(64, 0)[0]).save(src / "a.png")
    predict_folder(parser_ckpt, src, tmp_path / "out", device="cpu", framing="detect")
    record = json.loads((tmp_path / "out" / "faces.json").read_text())
    assert record["framing"] == "detect" and record["model"]["framing"] == "detect"
    assert len(record["images"]["a.png"]["faces"]) == 1  # the tests' whole-image finder


class _LabelFinder:
    """Finds the faces of a known label map in an image of any size (as a real finder would),
    with the 12-megapixel finder's passes: the largest at 0.4 of the photo."""

    name = "label"

    def __init__(self, label: np.ndarray) -> None:
        self.label, self.calls = label, []

    def detection_scales(self, shape):
        return [0.16, 0.4]

    def __call__(self, image):
        import cv2

        from trainer.faces import faces_from_label

        self.calls.append(image.shape[:2])
        h, w = image.shape[:2]
        return faces_from_label(cv2.resize(self.label, (w, h), interpolation=cv2.INTER_NEAREST))


@pytest.mark.parametrize("side", [700, 70])
def test_a_photo_file_is_parsed_at_its_full_size_from_as_few_pixels_as_its_faces_need(
    predictor: Predictor, tmp_path: Path, side: int
) -> None:
    from trainer.data.imageio import read_image
    from trainer.faces import faces_from_label

    image, label, _ = _photo_with_faces([(side, 10.0, (800, 600))], frame=(1200, 1600))
    path = tmp_path / "photo.jpg"
    Image.fromarray(image).save(path, quality=95)
    finder = _LabelFinder(label)
    detect = Predictor(predictor.model, device="cpu", framing="detect", finder=finder)
    pred, used = detect.predict_file(path)
    # Found on the JPEG read at half size (enough for the finder's 0.4 pass); a large face is
    # parsed from it too, a small one from the whole photo.
    assert finder.calls == [(600, 800)]
    assert used.shape[:2] == ((600, 800) if side == 700 else (1200, 1600))
    assert pred.label.shape == (1200, 1600) and pred.confidence.shape == (1200, 1600)
    truth = faces_from_label(label)[0]
    assert np.abs(np.subtract(pred.faces[0].box, truth.box)).max() < 6
    # The same labels as the whole photo read and parsed with the same faces.
    whole = detect.predict_batch([read_image(path)], faces=[pred.faces])[0]
    assert (whole.label == pred.label).mean() > 0.97


def test_an_aligned_crop_is_parsed_whole_and_a_face_in_a_photo_is_not(predictor: Predictor) -> None:
    # On aligned crops (CelebAMask-HQ, HELEN) the finder's framing is a few per cent off the
    # crop's own; detect framing then parses the crop exactly as whole framing does, so aligned
    # data scores the same either way (BENCHMARKS.md).
    from trainer.faces import Face

    image = synthetic_face(128, seed=3)[0]
    crops: list[int] = []

    def finder_of(box):
        return lambda img: [Face(box=box, box_framing=(0.5, 0.5, 1.0))]

    def parse(box):
        detect = Predictor(predictor.model, device="cpu", framing="detect", finder=finder_of(box))
        real = detect.logits
        detect.logits = lambda batch: crops.append(len(batch)) or real(batch)
        return detect(image)

    whole = predictor(image)
    near = parse((5.0, -4.0, 131.0, 124.0))  # the finder's box, 4% off the crop's edges
    assert crops == [1]  # the face's crop only: nothing of the photo lies past it
    np.testing.assert_array_equal(near.label, whole.label)
    np.testing.assert_array_equal(near.confidence, whole.confidence)
    assert near.framing == "detect" and len(near.faces) == 1
    crops.clear()
    far = parse((30.0, 30.0, 100.0, 100.0))  # a face in the middle of a larger photo
    assert crops == [1, 1]  # its crop and the zoomed-out one
    assert (far.label[:10] == 0).all()  # the photo's top lies past both crops: background


def test_a_small_jpeg_that_the_finder_enlarges_is_parsed(predictor: Predictor, tmp_path: Path) -> None:
    # A photo under the finder's smallest input (320 px) is enlarged for detection (a pass
    # scale above 1): it cannot be read reduced, and predict read it whole instead of failing
    # with "max() arg is an empty sequence" and stopping a folder run.
    image, label = synthetic_face(200, 3)
    path = tmp_path / "small.jpg"
    Image.fromarray(image).save(path, quality=95)
    finder = _LabelFinder(label)
    finder.detection_scales = lambda shape: [320 / max(shape)]  # as YuNetFinder's for < 320 px
    detect = Predictor(predictor.model, device="cpu", framing="detect", finder=finder)
    pred, used = detect.predict_file(path)
    assert used.shape[:2] == (200, 200) and pred.label.shape == (200, 200)


def test_whole_framing_makes_no_confidence_map_when_none_is_asked(predictor: Predictor) -> None:
    # confidence=False (faceparse predict, the app's pre-labels) was honoured by detect framing
    # only: whole framing, and a photo that is one aligned face crop under detect framing,
    # still made the photo-sized float32 map (800 MB at 200 megapixels) and returned it.
    from trainer.faces import Face

    image = synthetic_face(128, seed=3)[0]
    asked = predictor.predict_batch([image])[0]
    unasked = predictor.predict_batch([image], confidence=False)[0]
    assert asked.confidence is not None and unasked.confidence is None
    np.testing.assert_array_equal(unasked.label, asked.label)
    aligned = [Face(box=(5.0, -4.0, 131.0, 124.0), box_framing=(0.5, 0.5, 1.0))]
    detect = Predictor(predictor.model, device="cpu", framing="detect", finder=lambda img: aligned)
    crop = detect.predict_batch([image], confidence=False)[0]
    assert crop.confidence is None and crop.framing == "detect"
    np.testing.assert_array_equal(crop.label, asked.label)

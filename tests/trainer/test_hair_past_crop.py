"""Long or voluminous hair is labeled past the zoomed-out crop, not cut in a straight line at its
edge (seen on in-the-wild photos: a shoulder-length mane stopped at the crop's bottom edge)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.face_parses import hair_mask
from trainer.faces import (
    CONTEXT,
    HAIR_CONTEXT,
    Face,
    context_transform,
    hair_at_edge,
    parse_transforms,
)
from trainer.models import build_model, get_preset
from trainer.paste import paste_logits
from trainer.predict import Predictor

HAIR = 10


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(get_preset("tiny"), heads=("parsing",))


def _sure(cls: np.ndarray) -> torch.Tensor:
    """(11, S, S) logits whose top class is ``cls`` (S, S) everywhere, very sure."""
    out = torch.zeros(11, *cls.shape)
    out.scatter_(0, torch.from_numpy(cls.astype(np.int64))[None], 9.0)
    return out


def _parse_by_pass(model, image, box, classes):
    """Parse ``image`` with one face at ``box`` and a parser that labels every crop of its n-th
    forward pass ``classes(n)`` ((S, S) classes; pass 0 is the own crop, 1 the zoomed-out one);
    returns the prediction and the crops per pass."""
    passes: list[int] = []

    def logits(batch):
        cls = classes(len(passes))
        passes.append(len(batch))
        return torch.stack([_sure(cls) for _ in batch])

    finder = lambda img: [Face(box=box, box_framing=(0.5, 0.5, 1.0))]  # noqa: E731
    detect = Predictor(model, device="cpu", framing="detect", finder=finder)
    detect.logits = logits
    return detect(image), passes


def _parse(model, image, box, top_share: float):
    """Parse ``image`` with one face at ``box`` and a parser that sees hair in the top
    ``top_share`` of every crop (background below)."""
    side = int(model.config.input_size)
    cls = np.zeros((side, side), np.int64)
    cls[: int(top_share * side)] = HAIR
    return _parse_by_pass(model, image, box, lambda n: cls)


def test_hair_at_the_zoomed_out_crops_edge_goes_on_past_it(model) -> None:
    image = np.full((400, 400, 3), 128, np.uint8)
    box = (170.0, 170.0, 230.0, 230.0)  # crops: own 170..230, 1.5x 155..245, 2.5x 125..275
    pred, passes = _parse(model, image, box, top_share=0.5)
    assert passes == [1, 1, 1]  # the face, zoomed out, and zoomed out further for the hair
    # Before: rows above 155 were background, the hair cut in a straight line at the crop.
    assert (pred.label[130:150, 140:260] == HAIR).all()
    assert (pred.label[:120] == 0).all()  # past every crop: background
    assert (pred.label[210:] == 0).all()  # the parse's background stays background


def test_hair_that_stops_inside_the_crop_costs_no_third_pass(model) -> None:
    image = np.full((400, 400, 3), 128, np.uint8)
    pred, passes = _parse(model, image, (170.0, 170.0, 230.0, 230.0), top_share=0.0)
    assert passes == [1, 1]
    assert (pred.label == 0).all()


def test_only_the_edge_inside_the_photo_counts() -> None:
    size = 64
    face = Face(box=(0.0, 0.0, 40.0, 40.0), box_framing=(0.5, 0.5, 1.0))  # at the photo's corner
    wide = parse_transforms(face, size)[1]
    cls = np.zeros((size, size), np.int64)
    cls[:2] = HAIR  # hair along the crop's top edge, which lies above the photo
    assert hair_at_edge(_sure(cls), wide, (200, 200), HAIR) == 0.0
    cls[-2:] = HAIR  # and along its bottom edge, inside the photo
    assert hair_at_edge(_sure(cls), wide, (200, 200), HAIR) > 0.2


def test_the_hair_pass_adds_only_hair_that_joins_hair_already_labeled() -> None:
    size = 32
    face = np.array([[1.0, 0, -48], [0, 1.0, -48]])  # the face's crop: photo pixels 48..80
    wide = (context_transform(CONTEXT, size) @ np.vstack([face, [0, 0, 1]]))[:2]  # 40..88
    far = (context_transform(HAIR_CONTEXT, size) @ np.vstack([face, [0, 0, 1]]))[:2]  # 24..104
    skin = np.ones((size, size), np.int64)
    ring = np.zeros((size, size), np.int64)
    ring[:8] = HAIR  # the zoomed-out crop: hair along its top (photo rows 40..52)
    far_cls = np.zeros((size, size), np.int64)
    far_cls[:, :] = 1  # beyond: skin everywhere (an arm, a neighbour), never added
    far_cls[:12] = HAIR  # hair in the top rows (photo 24..54): joins the ring's hair
    far_cls[28:, :4] = HAIR  # a dark blob in a far corner (photo rows 94..104): joins nothing
    far_logits = _sure(far_cls)
    mask = hair_mask(far_logits, _sure(ring), HAIR)
    label, conf = paste_logits(
        [_sure(skin)], [face], (128, 128), fill=([_sure(ring)], [wide]),
        hair=([far_logits], [far], [mask]),
    )  # fmt: skip
    assert (label[48:80, 48:80] == 1).all()  # the face's own crop is untouched
    assert (label[28:40, 30:98] == HAIR).all()  # hair past the ring, joined to its hair
    assert (label[96:104, 24:30] == 0).all()  # the lone blob is not hair
    assert (label[60:70, 26:38] == 0).all()  # the far pass's other classes are not added
    assert conf[28:40, 30:98].min() > 0.99


def test_hair_the_widest_parse_is_unsure_of_is_not_added() -> None:
    # Dark walls, trees and railings beside the hair come out as hair at 2.5x, unsure (their
    # regions scored 0.56-0.69 on the shared photos, hair falling past the crop 0.78-0.93).
    size = 32
    face = np.array([[1.0, 0, -48], [0, 1.0, -48]])
    wide = (context_transform(CONTEXT, size) @ np.vstack([face, [0, 0, 1]]))[:2]
    far = (context_transform(HAIR_CONTEXT, size) @ np.vstack([face, [0, 0, 1]]))[:2]
    ring = np.zeros((size, size), np.int64)
    ring[:8] = HAIR
    added = {}
    for name, score in (("sure", 9.0), ("unsure", 2.0)):  # softmax of hair: 0.999 and 0.42
        far_logits = torch.zeros(11, size, size)
        far_logits[HAIR, :12] = score
        far_logits[0, 12:] = 9.0
        label, _ = paste_logits(
            [_sure(np.ones((size, size), np.int64))], [face], (128, 128),
            fill=([_sure(ring)], [wide]),
            hair=([far_logits], [far], [hair_mask(far_logits, _sure(ring), HAIR)]),
        )  # fmt: skip
        added[name] = int((label[24:37] == HAIR).sum())  # a far-crop pixel off the 1.5x crop
    assert added["sure"] > 800 and added["unsure"] == 0


def _parse_by_crop(model, image, box, own_cls, fill_cls):
    """Parse ``image`` with one face at ``box`` and a parser that labels the face's own crop
    ``own_cls`` and every wider crop ``fill_cls`` (each (S, S))."""
    return _parse_by_pass(model, image, box, lambda n: own_cls if n == 0 else fill_cls)


def test_a_hair_blob_of_the_zoomed_out_parse_that_joins_no_hair_is_not_labeled(model) -> None:
    # Seen on real photos: the zoomed-out parse put lone hair blobs on the demo astronaut's
    # helmet ring, on sweaters, car seats and walls, apart from any hair of the face.
    image = np.full((400, 400, 3), 128, np.uint8)
    box = (170.0, 170.0, 230.0, 230.0)  # crops: own 170..230, 1.5x 155..245 (64 px each)
    own = np.zeros((64, 64), np.int64)
    own[:13] = HAIR  # the face's hair: own rows 0..13, photo rows 170..182
    fill = np.zeros((64, 64), np.int64)
    fill[5:19, 3:61] = HAIR  # that hair going on above the own crop: photo rows 162..182
    fill[54:61, 2:8] = HAIR  # a lone blob below the own crop: photo rows 231..241, cols 158..166
    pred, passes = _parse_by_crop(model, image, box, own, fill)
    assert passes == [1, 1]  # no hair at the crop's edge: no third pass
    assert (pred.label[164:169, 160:240] == HAIR).all()  # the hair past the own crop stays
    assert (pred.label[232:240, 159:165] == 0).all()  # the lone blob is background
    assert not (pred.label[190:] == HAIR).any()  # nor any other hair below the face's


def test_skin_of_the_zoomed_out_parse_that_joins_no_skin_of_the_face_is_not_labeled(model) -> None:
    # Seen on real photos: below the chin the zoomed-out parse labeled a block of the neck skin
    # (LaPa's neck is background), cut straight at the own crop's edge, apart from the face.
    image = np.full((400, 400, 3), 128, np.uint8)
    box = (170.0, 170.0, 230.0, 230.0)  # crops: own 170..230, 1.5x 155..245 (64 px each)
    own = np.zeros((64, 64), np.int64)
    own[4:52, 8:56] = 1  # the face's skin ends at its chin, own row 52 (photo row ~219)
    own[20:30, 0:8] = 1  # an ear reaching the own crop's side (photo rows 189..198)
    fill = np.zeros((64, 64), np.int64)
    fill[13:46, 13:51] = 1  # the face (centre square: fill rows 11..53)
    fill[25:29, 3:16] = 1  # the ear, going on past the own crop: joined
    fill[53:63, 20:44] = 1  # a block of neck below the own crop: joins no skin of the face
    pred, _ = _parse_by_crop(model, image, box, own, fill)
    assert (pred.label[200:210, 180:220] == 1).all()  # the face
    assert (pred.label[192:195, 160:169] == 1).all()  # the ear past the own crop stays skin
    assert (pred.label[232:242, 186:214] == 0).all()  # the neck block is background


def test_a_lone_blob_left_out_leaves_no_outline_of_its_class(model) -> None:
    # A lone hair blob of the zoomed-out parse, sure of itself beside a background it was less
    # sure of, was left out, but the photo pixels around it still took hair: their class is the
    # crop's logits interpolated, and the blob's pulled them over. A hollow outline of hair, a
    # few photo pixels wide, was drawn where the blob had been.
    image = np.full((1200, 1200, 3), 128, np.uint8)
    box = (400.0, 400.0, 800.0, 800.0)  # own crop 400..800, 1.5x 300..900: 14 photo px a pixel
    own = torch.zeros(11, 64, 64)
    own[1] = 9.0  # the face's own crop: skin, no hair
    fill = torch.zeros(11, 64, 64)
    fill[0] = 2.0  # background, the parse less sure of it
    fill[1, 11:53, 11:53] = 9.0  # the face (the centre square)
    fill[0, 2:8, 2:8], fill[HAIR, 2:8, 2:8] = 0.0, 8.0  # a lone hair blob: photo 328..412

    passes: list[int] = []

    def logits(batch):
        passes.append(len(batch))
        return torch.stack([own if len(passes) == 1 else fill for _ in batch])

    finder = lambda img: [Face(box=box, box_framing=(0.5, 0.5, 1.0))]  # noqa: E731
    detect = Predictor(model, device="cpu", framing="detect", finder=finder)
    detect.logits = logits
    pred = detect(image)
    assert passes == [1, 1]
    assert int((pred.label == HAIR).sum()) == 0  # not the blob, nor an outline of it (before: 645 px)
    assert (pred.label[330:390, 330:390] == 0).all()


def test_a_neighbours_neck_block_is_not_labeled_through_a_face_it_touches(model) -> None:
    # Two faces cheek to cheek (a couple's selfie): the left face's zoomed-out crop reaches
    # under its neighbour's chin. The neck block the neighbour's own zoomed-out parse left out
    # (joined to no skin of its face) came back from the left face's: its region ran on
    # through the neighbour's face, which touches the left face's skin. A strip of neck skin,
    # cut straight at the left face's zoomed-out crop, was labeled below the neighbour's chin.
    image = np.zeros((400, 400, 3), np.uint8)
    # What the parser sees, per pixel: channel 0 at a face's own framing, 1 zoomed out.
    image[110:190, 110:290, :2] = 255  # both faces' skin, cheek to cheek at x 200
    image[190:240, 215:285, 1] = 255  # the right face's neck, skin only zoomed out
    faces = [Face(box=b, box_framing=(0.5, 0.5, 1.0)) for b in ((100.0, 100.0, 200.0, 200.0), (200.0, 100.0, 300.0, 200.0))]
    passes: list[int] = []  # own crops 100..200 and 200..300; zoomed out 75..225 and 175..325

    def logits(batch):
        channel = 0 if not passes else 1
        passes.append(len(batch))
        return torch.stack([_sure((crop[..., channel] > 127).astype(np.int64)) for crop in batch])

    detect = Predictor(model, device="cpu", framing="detect", finder=lambda img: faces)
    detect.logits = logits
    pred = detect(image)
    assert passes == [2, 2]
    assert (pred.label[120:180, 120:280] == 1).all()  # both faces
    assert (pred.label[205:222, 230:280] == 0).all()  # the neck block, past the left face's reach
    assert (pred.label[203:222, 216:224] == 0).all()  # and within it


def test_the_hair_pass_labels_its_hair_out_to_its_edge() -> None:
    # The hair the widest parse adds ends where its parse says so: its pixels beside the hair
    # it does not add keep their own logits. Made background for the photo pixels interpolated
    # there (as a lone region left out of the zoomed-out parse is), they pulled the edge of real
    # hair in by up to half a crop pixel, jagged (about 54,000 px of the 188 in-the-wild photos).
    size = 32
    far = np.array([[0.4, 0, -9.6], [0, 0.4, -9.6]])  # photo 24..104, 2.5 photo px a pixel
    far_logits = torch.zeros(11, size, size)
    far_logits[0, :, :16], far_logits[HAIR, :, :16] = 1.0, 0.9  # background, barely
    far_logits[0, :, 16:], far_logits[HAIR, :, 16:] = 0.9, 1.0  # hair from crop column 16 on
    mask = np.zeros((size, size), bool)
    mask[:, 16:] = True  # the hair it adds (its edge: photo column 64)
    label, _ = paste_logits([], [], (128, 128), hair=([far_logits], [far], [mask]))
    assert (label[30:100, 64:104] == HAIR).all()
    assert (label[30:100, :64] == 0).all()

"""CelebAMask-HQ -> LaPa conversion, including the real-data left/right and ears check."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.convert import convert_celebamask_to_lapa, split_names
from trainer.data.imageio import read_label, write_image, write_label
from trainer.data.lapa import LapaDataset
from trainer.errors import DatasetError
from trainer.labels import CELEBAMASK

# About 7% of the dev masks (50 of 700) carry eyes and brows in the viewer's convention already
# (mirrored faces whose classes were not swapped), so sides are checked over several faces.
N_FACES = 12


def _real_subset(shared_data: Path, dst: Path, n: int = N_FACES) -> list[str]:
    """Symlink n real CelebAMask-HQ pairs (faces with both ears and both eyes) into dst."""
    src = shared_data / "celebamask-hq-dev"
    chosen: list[str] = []
    for mask in sorted((src / "masks").glob("*.png")):
        values = set(np.unique(read_label(mask)).tolist())
        if {4, 5, 6, 7} <= values and (8 in values or 9 in values):
            chosen.append(mask.stem)
        if len(chosen) == n:
            break
    for sub, ext in (("images", ".jpg"), ("masks", ".png")):
        (dst / sub).mkdir(parents=True)
        for stem in chosen:
            (dst / sub / f"{stem}{ext}").symlink_to(src / sub / f"{stem}{ext}")
    return chosen


def _mean_x(label: np.ndarray, cls: int) -> float:
    return float(np.nonzero(label == cls)[1].mean())


def test_real_masks_convert_with_viewer_left_right_and_ears_as_skin(
    shared_data: Path, tmp_path: Path
) -> None:
    stems = _real_subset(shared_data, tmp_path / "src")
    assert len(stems) == N_FACES
    counts = convert_celebamask_to_lapa(tmp_path / "src", tmp_path / "lapa")
    assert counts == {"train": N_FACES}
    converted = LapaDataset(tmp_path / "lapa", "train")
    assert converted.names == stems
    ear_pixels = 0
    agree = 0
    pooled = {c: [] for c in (2, 3, 4, 5)}
    for i, stem in enumerate(stems):
        with Image.open(converted.label_paths[i]) as im:
            assert im.mode == "L"
        sample = converted[i]
        original = read_label(shared_data / "celebamask-hq-dev" / "masks" / f"{stem}.png")
        # LaPa's left/right are the viewer's: class 2 (left brow) and 4 (left eye) on the left.
        x = {c: _mean_x(sample.label, c) for c in (2, 3, 4, 5)}
        agree += int(x[2] < x[3] and x[4] < x[5])
        for c in pooled:
            pooled[c].append(x[c])
        ears = np.isin(original, (8, 9))
        ear_pixels += int(ears.sum())
        assert (sample.label[ears] == 1).all(), stem
        # Neck and cloth became background, hair stayed hair.
        assert (sample.label[np.isin(original, (17, 18))] == 0).all()
        np.testing.assert_array_equal(sample.label == 10, original == 13)
        # The JPEG original is copied byte for byte.
        src_image = shared_data / "celebamask-hq-dev" / "images" / f"{stem}.jpg"
        assert sample.image_path.read_bytes() == src_image.read_bytes()
    assert ear_pixels > 1000
    assert agree >= 0.75 * N_FACES, f"only {agree} of {N_FACES} faces have class 2 left of 3"
    mean = {c: float(np.mean(v)) for c, v in pooled.items()}
    assert mean[2] < 256 - 40 < 256 + 40 < mean[3], mean
    assert mean[4] < 256 - 40 < 256 + 40 < mean[5], mean


def test_held_out_splits_are_seeded_and_disjoint(shared_data: Path, tmp_path: Path) -> None:
    _real_subset(shared_data, tmp_path / "src", n=6)
    counts = convert_celebamask_to_lapa(
        tmp_path / "src", tmp_path / "out", val_fraction=0.2, test_fraction=0.2, seed=1
    )
    assert counts == {"train": 4, "val": 1, "test": 1}
    names = {s: set(LapaDataset(tmp_path / "out", s).names) for s in counts}
    assert sum(len(v) for v in names.values()) == 6
    assert not (names["train"] & names["val"]) and not (names["val"] & names["test"])
    again = split_names(sorted(set().union(*names.values())), "train", 0.2, 0.2, seed=1)
    assert {s: set(v) for s, v in again.items()} == names
    other = split_names(list("abcdefghij"), "train", 0.3, 0.0, seed=2)
    assert other != split_names(list("abcdefghij"), "train", 0.3, 0.0, seed=3)


def test_split_fractions_are_checked() -> None:
    with pytest.raises(ValueError):
        split_names(["a", "b"], "train", 0.6, 0.5, seed=0)
    with pytest.raises(ValueError):
        split_names(["a", "b"], "val", 0.5, 0.0, seed=0)


def test_png_images_and_part_layout_are_reencoded_as_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    label = np.zeros((16, 16), np.uint8)
    label[4:12, 2:6] = CELEBAMASK.classes.index("l_eye")
    image = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    write_image(src / "images" / "p1.png", image)
    write_label(src / "masks" / "p1.png", label)
    convert_celebamask_to_lapa(src, tmp_path / "out", split="train")
    out = LapaDataset(tmp_path / "out", "train")[0]
    assert out.image_path.name == "p1.jpg"
    assert out.image_path.read_bytes()[:3] == b"\xff\xd8\xff"
    assert out.image.shape == (16, 16, 3)
    assert (out.label[4:12, 2:6] == 5).all()  # person's left eye -> LaPa right eye

    # Official layout: the 32-px image is resized to its 16-px parts, so it is re-encoded.
    parts = tmp_path / "parts"
    (parts / "CelebAMask-HQ-mask-anno" / "0").mkdir(parents=True)
    Image.fromarray(((label > 0) * 255).astype(np.uint8)).save(
        parts / "CelebAMask-HQ-mask-anno" / "0" / "00003_l_eye.png"
    )
    write_image(parts / "CelebA-HQ-img" / "3.jpg", np.kron(image, np.ones((2, 2, 1), np.uint8)))
    convert_celebamask_to_lapa(parts, tmp_path / "out2")
    out2 = LapaDataset(tmp_path / "out2", "train")[0]
    assert out2.image.shape == (16, 16, 3) and (out2.label[4:12, 2:6] == 5).all()


def test_bad_pairs_are_skipped_listed_and_fail_the_run(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("a", "b", "c"):
        write_image(src / "images" / f"{name}.jpg", np.zeros((8, 8, 3), np.uint8))
        write_label(src / "masks" / f"{name}.png", np.zeros((8, 8), np.uint8))
    write_label(src / "masks" / "a.png", np.full((8, 8), 19, np.uint8))  # 19 is not a class
    (src / "images" / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    out = tmp_path / "out"
    with pytest.raises(DatasetError) as caught:
        convert_celebamask_to_lapa(src, out)
    message = str(caught.value)
    assert "2 of 3 pairs skipped" in message and "\n" not in message
    assert re.search(r"a\.png.*19", message) and "c.jpg" in message
    # The good pair is written; the dataset says in its own folder that it is incomplete.
    assert sorted(p.name for p in out.glob("*/*/*")) == ["b.jpg", "b.png"]
    listed = (out / "convert_skipped.txt").read_text()
    assert "a.png" in listed and "c.jpg" in listed and "b." not in listed
    assert caught.value.counts == {"train": 1}
    # Fixed, converted again: complete, and the list is gone.
    write_label(src / "masks" / "a.png", np.zeros((8, 8), np.uint8))
    write_image(src / "images" / "c.jpg", np.zeros((8, 8, 3), np.uint8))
    assert convert_celebamask_to_lapa(src, out) == {"train": 3}
    assert not (out / "convert_skipped.txt").exists()


def test_an_interrupted_conversion_never_reads_as_a_complete_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    for name in ("a", "b", "c", "d"):
        write_image(src / "images" / f"{name}.jpg", np.zeros((8, 8, 3), np.uint8))
        write_label(src / "masks" / f"{name}.png", np.ones((8, 8), np.uint8))
    out = tmp_path / "out"
    import trainer.convert as convert_module

    written: list[object] = []

    def killed_after_two(path: object, label: np.ndarray) -> None:
        if len(written) == 2:
            raise KeyboardInterrupt  # Ctrl-C; a kill -9 leaves the folder the same way
        write_label(path, label)
        written.append(path)

    monkeypatch.setattr(convert_module, "write_label", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        convert_celebamask_to_lapa(src, out)
    assert len(list((out / "train" / "labels").glob("*.png"))) == 2  # half written
    # Every reader refuses it and says what to do, instead of training on half the faces.
    with pytest.raises(DatasetError, match=r"interrupted.*convert.*again"):
        LapaDataset(out, "train")
    monkeypatch.undo()
    assert convert_celebamask_to_lapa(src, out) == {"train": 4}
    assert len(LapaDataset(out, "train")) == 4

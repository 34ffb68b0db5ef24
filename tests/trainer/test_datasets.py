"""Dataset readers: LaPa layout, CelebAMask-HQ merged and per-part layouts."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import synthetic_face
from trainer.data.celebamask import PART_ORDER, CelebAMaskDataset
from trainer.data.imageio import read_label, write_image, write_label
from trainer.data.lapa import LapaDataset, Sample, read_landmarks
from trainer.errors import DatasetError, ImageReadError, LabelMapError
from trainer.labels import celebamask_to_lapa

# A handful of real CelebAMask-HQ pairs, read in place from ../shared/data.
N_REAL = 4


def test_lapa_reads_the_real_helen_split(shared_data: Path) -> None:
    root = shared_data / "lapa-format-helen"
    ds = LapaDataset(root, split="test")
    assert len(ds) == 6 and len(ds.names) == 6 and len(ds.image_paths) == 6
    for i in range(len(ds)):
        with Image.open(ds.label_paths[i]) as im:
            assert im.mode == "L"
        s = ds[i]
        assert isinstance(s, Sample)
        assert s.image.dtype == np.uint8 and s.image.ndim == 3 and s.image.shape[2] == 3
        assert s.label is not None and s.label.shape == s.image.shape[:2]
        assert s.label.max() <= 10 and s.name == s.image_path.stem
        assert s.landmarks is None


def _lapa_tree(root: Path) -> None:
    images, labels, marks = (root / "train" / d for d in ("images", "labels", "landmarks"))
    image, label = synthetic_face(64, seed=1)
    write_image(images / "a.jpg", image)
    write_image(images / "b.png", image)
    write_label(labels / "a.png", label)
    write_label(labels / "b.png", np.fliplr(label).copy())
    marks.mkdir(parents=True)
    (marks / "a.txt").write_text("3\n1.5 2.0\n10 20\n30.25 40\n")
    (images / "README.txt").write_text("downloaded from somewhere")


def test_lapa_tree_with_mixed_extensions_landmarks_and_stray_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _lapa_tree(tmp_path)
    with caplog.at_level(logging.WARNING):
        ds = LapaDataset(tmp_path, "train")
    assert ds.names == ["a", "b"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "README.txt" in warnings[0]
    a, b = ds[0], ds[1]
    assert a.image_path.suffix == ".jpg" and b.image_path.suffix == ".png"
    np.testing.assert_array_equal(a.landmarks, [[1.5, 2.0], [10, 20], [30.25, 40]])
    assert a.landmarks.dtype == np.float32
    assert b.landmarks is None
    assert a.label.shape == (64, 64) and b.label.shape == (64, 64)
    np.testing.assert_array_equal(b.label, np.fliplr(a.label))


def test_lapa_missing_label_is_reported_at_scan_time(tmp_path: Path) -> None:
    _lapa_tree(tmp_path)
    os.remove(tmp_path / "train" / "labels" / "b.png")
    with pytest.raises(LabelMapError, match=r"b\.png.*labels[/\\]b\.png"):
        LapaDataset(tmp_path, "train")
    ds = LapaDataset(tmp_path, "train", require_labels=False)
    assert ds[1].label is None and ds[1].label_path is None
    assert ds[0].label is not None


def test_lapa_bad_label_is_named_when_read(tmp_path: Path) -> None:
    _lapa_tree(tmp_path)
    write_label(tmp_path / "train" / "labels" / "b.png", np.zeros((32, 32), np.uint8))
    ds = LapaDataset(tmp_path, "train")
    with pytest.raises(LabelMapError, match=r"b\.png.*32×32.*64×64"):
        ds[1]
    (tmp_path / "train" / "images" / "a.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageReadError, match=r"a\.jpg"):
        ds[0]


def test_lapa_missing_split_says_what_layout_is_expected(tmp_path: Path) -> None:
    _lapa_tree(tmp_path)
    with pytest.raises(DatasetError, match=r"val.*images/.*labels/"):
        LapaDataset(tmp_path, "val")


def test_lapa_same_stem_twice_is_refused(tmp_path: Path) -> None:
    _lapa_tree(tmp_path)
    write_image(tmp_path / "train" / "images" / "a.png", synthetic_face(64)[0])
    with pytest.raises(DatasetError, match=r"a\.jpg.*a\.png"):
        LapaDataset(tmp_path, "train")


@pytest.mark.parametrize(
    "text",
    ["3\n1 2\n3 4\n5 6\n", "3 1 2 3 4 5 6", "1 2\n3 4\n5 6\n", "3\n1,2\n3,4\n5,6\n"],
    ids=["lapa", "one-line", "no-count", "commas"],
)
def test_landmark_formats(tmp_path: Path, text: str) -> None:
    path = tmp_path / "x.txt"
    path.write_text(text)
    np.testing.assert_array_equal(read_landmarks(path), [[1, 2], [3, 4], [5, 6]])


def test_landmark_count_mismatch_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "odd.txt"
    path.write_text("106\n1 2\n3 4\n")
    with pytest.raises(DatasetError, match=r"odd\.txt"):
        read_landmarks(path)


def _real_ids(shared_data: Path, n: int = N_REAL) -> list[str]:
    return sorted(p.stem for p in (shared_data / "celebamask-hq-dev" / "masks").glob("*.png"))[:n]


def _linked_merged_tree(shared_data: Path, dst: Path, ids: list[str]) -> Path:
    """A merged-layout folder of symlinks to a few real pairs (nothing copied)."""
    src = shared_data / "celebamask-hq-dev"
    for sub, ext in (("images", ".jpg"), ("masks", ".png")):
        (dst / sub).mkdir(parents=True, exist_ok=True)
        for i in ids:
            (dst / sub / f"{i}{ext}").symlink_to(src / sub / f"{i}{ext}")
    return dst


def test_celebamask_merged_layout_on_real_files(shared_data: Path, tmp_path: Path) -> None:
    ids = _real_ids(shared_data)
    root = _linked_merged_tree(shared_data, tmp_path / "cm", ids)
    raw = CelebAMaskDataset(root, label_set="celebamask")
    lapa = CelebAMaskDataset(root, label_set="lapa")
    assert raw.layout == "merged" and raw.names == ids and len(lapa) == N_REAL
    for i in range(N_REAL):
        r, m = raw[i], lapa[i]
        assert r.image.shape == (512, 512, 3) and r.label.shape == (512, 512)
        truth = read_label(shared_data / "celebamask-hq-dev" / "masks" / f"{ids[i]}.png")
        np.testing.assert_array_equal(r.label, truth)
        assert r.label.max() <= 18 and m.label.max() <= 10
        np.testing.assert_array_equal(m.label, celebamask_to_lapa(truth))


def test_celebamask_reads_the_whole_dev_folder_in_place(shared_data: Path) -> None:
    ds = CelebAMaskDataset(shared_data / "celebamask-hq-dev")
    assert len(ds) == 700 and ds.layout == "merged"
    s = ds[len(ds) - 1]
    assert s.label.shape == s.image.shape[:2]


def _split_into_parts(label: np.ndarray, anno: Path, image_id: int) -> None:
    folder = anno / str(image_id // 2000)
    folder.mkdir(parents=True, exist_ok=True)
    for value, part in enumerate(PART_ORDER, start=1):
        mask = label == value
        if mask.any():
            # Official masks are 3-channel 0/255 images.
            rgb = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)
            Image.fromarray(rgb).save(folder / f"{image_id:05d}_{part}.png")


def test_celebamask_official_part_layout_merges_back(shared_data: Path, tmp_path: Path) -> None:
    real = shared_data / "celebamask-hq-dev"
    stem = _real_ids(shared_data, 1)[0]
    truth = read_label(real / "masks" / f"{stem}.png")
    image = np.asarray(Image.open(real / "images" / f"{stem}.jpg").convert("RGB"))
    root = tmp_path / "CelebAMask-HQ"
    # Id 2001 lives in anno/1/: the sub-folder is id // 2000.
    _split_into_parts(truth, root / "CelebAMask-HQ-mask-anno", 2001)
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)  # 1024 px, like CelebA-HQ-img
    write_image(root / "CelebA-HQ-img" / "2001.jpg", big)
    write_image(root / "CelebA-HQ-img" / "7.jpg", image)  # no parts at all

    with pytest.raises(LabelMapError, match=r"7\.jpg.*00007_"):
        CelebAMaskDataset(root, label_set="celebamask")
    ds = CelebAMaskDataset(root, label_set="celebamask", require_labels=False)
    assert ds.layout == "parts" and ds.names == ["2001", "7"]
    s = ds[0]
    np.testing.assert_array_equal(s.label, truth)
    assert s.image.shape == (512, 512, 3)  # the 1024-px image is brought to the masks' size
    assert np.abs(s.image.astype(int) - image.astype(int)).mean() < 6
    assert ds[1].label is None
    lapa = CelebAMaskDataset(root, label_set="lapa", require_labels=False)
    np.testing.assert_array_equal(lapa[0].label, celebamask_to_lapa(truth))


def test_celebamask_parts_paint_in_class_order(tmp_path: Path) -> None:
    anno = tmp_path / "CelebAMask-HQ-mask-anno" / "0"
    anno.mkdir(parents=True)
    full = np.full((8, 8), 255, np.uint8)
    for part in ("hair", "skin", "nose"):  # hair (13) is painted after skin (1) and nose (2)
        Image.fromarray(full, "L").save(anno / f"00000_{part}.png")
    write_image(tmp_path / "CelebA-HQ-img" / "0.jpg", np.zeros((16, 16, 3), np.uint8))
    s = CelebAMaskDataset(tmp_path, label_set="celebamask")[0]
    assert (s.label == 13).all()


def test_celebamask_part_of_wrong_size_names_the_file(tmp_path: Path) -> None:
    anno = tmp_path / "CelebAMask-HQ-mask-anno" / "0"
    anno.mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(anno / "00000_skin.png")
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(anno / "00000_nose.png")
    write_image(tmp_path / "CelebA-HQ-img" / "0.jpg", np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(LabelMapError, match=r"00000_nose\.png"):
        CelebAMaskDataset(tmp_path)[0]


def test_celebamask_unknown_layout_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"masks/.*CelebAMask-HQ-mask-anno"):
        CelebAMaskDataset(tmp_path)


# --- torch datasets -------------------------------------------------------------------------


def test_parsing_dataset_tensors_and_repeatable_augmentation(tmp_path: Path) -> None:
    import torch
    from torch.utils.data import DataLoader

    from trainer.data.torch_datasets import ParsingDataset
    from trainer.data.transforms import TrainAugment
    from trainer.labels import LAPA

    _lapa_tree(tmp_path)
    source = LapaDataset(tmp_path, "train")
    ds = ParsingDataset(source, 32, TrainAugment(32, LAPA), seed=3)
    image, label = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert label.shape == (32, 32) and label.dtype == torch.int64 and int(label.max()) <= 10

    again = ParsingDataset(source, 32, TrainAugment(32, LAPA), seed=3)
    assert torch.equal(again[0][0], image) and torch.equal(again[0][1], label)
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], image)
    ds.set_epoch(0)
    # Workers build the same items as the main process, in any order.
    ((batch_images, batch_labels),) = DataLoader(ds, batch_size=2, num_workers=2)
    assert torch.equal(batch_images[0], image) and torch.equal(batch_labels[0], label)

    subset = ParsingDataset(source, 32, TrainAugment(32, LAPA), seed=3, indices=[1])
    assert len(subset) == 1 and torch.equal(subset[0][0], ds[1][0])
    plain = ParsingDataset(source, 64, augment=None)
    np.testing.assert_array_equal(plain[0][1].numpy(), source[0].label)


def test_persistent_workers_give_every_epoch_its_own_augmentation(tmp_path: Path) -> None:
    import torch
    from torch.utils.data import DataLoader, SequentialSampler

    from trainer.data.torch_datasets import EpochSampler, ParsingDataset, worker_context
    from trainer.data.transforms import TrainAugment
    from trainer.labels import LAPA

    _lapa_tree(tmp_path)
    ds = ParsingDataset(LapaDataset(tmp_path, "train"), 32, TrainAugment(32, LAPA), seed=3)
    expected = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        expected.append(torch.stack([ds[i][0] for i in range(len(ds))]))
    ds.set_epoch(0)
    assert not torch.equal(expected[0], expected[1])

    def epochs(sampler) -> list[torch.Tensor]:
        loader = DataLoader(
            ds,
            batch_size=len(ds),
            sampler=sampler,
            num_workers=1,
            persistent_workers=True,
            multiprocessing_context=worker_context(1),
        )
        seen = []
        for epoch in (0, 1):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            ds.set_epoch(epoch)  # what a worker started in epoch 0 never sees
            seen.append(next(iter(loader))[0])
        return seen

    tagged = EpochSampler(SequentialSampler(ds))
    assert len(tagged) == len(ds)
    got = epochs(tagged)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    # The trap it avoids: a persistent worker with plain indices repeats epoch 0's items.
    plain = epochs(SequentialSampler(ds))
    assert torch.equal(plain[1], expected[0])


def test_parsing_dataset_needs_labels(tmp_path: Path) -> None:
    from trainer.data.torch_datasets import ParsingDataset

    _lapa_tree(tmp_path)
    os.remove(tmp_path / "train" / "labels" / "b.png")
    ds = ParsingDataset(LapaDataset(tmp_path, "train", require_labels=False), 32)
    with pytest.raises(LabelMapError, match=r"b\.png"):
        ds[1]


def _one_photo_copies(folder: Path, n: int) -> list[Path]:
    """n files of the same 64-px face: any difference between their items is augmentation."""
    image, _ = synthetic_face(64, seed=4)
    paths = [folder / f"{i}.png" for i in range(n)]
    for path in paths:
        write_image(path, image)
    return paths


def test_unlabeled_dataset_resizes_and_flips_repeatably(tmp_path: Path) -> None:
    import torch

    from trainer.data.torch_datasets import UnlabeledDataset

    paths = _one_photo_copies(tmp_path, 8)
    ds = UnlabeledDataset(paths, 32, augment_flip=True, seed=0)
    items = [ds[i] for i in range(8)]
    assert all(t.shape == (3, 32, 32) and t.dtype == torch.float32 for t in items)
    flipped = [not torch.equal(t, items[0]) for t in items]
    assert any(flipped) and not all(flipped[1:])  # some flipped, some not
    assert all(torch.equal(UnlabeledDataset(paths, 32, seed=0)[i], items[i]) for i in range(8))
    plain = UnlabeledDataset(paths, 32, augment_flip=False)
    assert all(torch.equal(plain[i], plain[0]) for i in range(8))


def test_unlabeled_dataset_can_take_the_finetune_augmentation(tmp_path: Path) -> None:
    import torch

    from trainer.data.torch_datasets import UnlabeledDataset
    from trainer.data.transforms import TrainAugment

    paths = _one_photo_copies(tmp_path, 4)
    ds = UnlabeledDataset(paths, 32, seed=1, augment=TrainAugment(32, None))
    items = [ds[i] for i in range(4)]
    assert all(t.shape == (3, 32, 32) and t.dtype == torch.float32 for t in items)
    # One photo, four different views (zoom, rotation, shift, colour), each repeatable.
    assert all(not torch.equal(items[0], t) for t in items[1:])
    again = UnlabeledDataset(paths, 32, seed=1, augment=TrainAugment(32, None))
    assert all(torch.equal(again[i], items[i]) for i in range(4))
    ds.set_epoch(1)
    assert not torch.equal(ds[0], items[0])  # a fresh view next epoch
    with pytest.raises(ValueError, match="64 px"):
        UnlabeledDataset(paths, 32, augment=TrainAugment(64, None))


def test_an_unreadable_photo_is_replaced_and_reported_not_raised(tmp_path: Path) -> None:
    import torch

    from trainer.data.torch_datasets import UnlabeledDataset

    paths = _one_photo_copies(tmp_path, 3)
    paths[1].write_bytes(b"not a picture")
    ds = UnlabeledDataset(paths, 32, augment_flip=False)
    image, unreadable = ds.read(1)
    assert unreadable == 1 and torch.equal(image, ds[2])  # the next readable photo stands in
    assert ds.read(0)[1] == -1 and ds.read(2)[1] == -1
    for path in paths:
        path.write_bytes(b"")
    with pytest.raises(DatasetError, match="none of the 3 photos"):
        ds.check_readable()

"""Named samples: every reader lists its faces by name, and views choose faces by name lazily."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import synthetic_face, write_synthetic_lapa
from trainer.data import lapa
from trainer.data.sample import NamedSamples, SampleList, as_named


def test_a_reader_selects_faces_by_name_in_order_and_reads_only_those(tmp_path, monkeypatch):
    reader = lapa.LapaDataset(write_synthetic_lapa(tmp_path, {"train": 5}), "train")
    assert isinstance(reader, NamedSamples)
    reads: list[Path] = []
    real_read = lapa.read_image
    monkeypatch.setattr(lapa, "read_image", lambda p: reads.append(Path(p)) or real_read(p))
    chosen = reader.select(["train_003", "train_001"])
    view = chosen.subset([1])
    assert reads == []  # nothing is read to choose or to list names
    assert chosen.names == ["train_003", "train_001"] and view.names == ["train_001"]
    assert [s.name for s in chosen] == chosen.names
    assert view[0].name == "train_001" and len(view) == 1
    assert [p.stem for p in reads] == ["train_003", "train_001", "train_001"]
    with pytest.raises(KeyError, match="no sample named 'train_009'"):
        reader.select(["train_009"])


def test_a_list_of_samples_is_named_by_its_items_and_anything_else_is_refused():
    from trainer.data.sample import Sample

    image, label = synthetic_face(64, 0)
    faces = [Sample(image, label, n, Path(f"{n}.png"), None) for n in ("b", "a")]
    named = as_named(faces)
    assert isinstance(named, SampleList) and named.names == ["b", "a"]
    assert as_named(named) is named
    assert named.select(["a"])[0] is faces[1]
    with pytest.raises(TypeError, match="item 1 is a tuple"):
        as_named([faces[0], (image, label)])

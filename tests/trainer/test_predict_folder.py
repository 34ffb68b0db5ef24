"""faceparse predict on a folder: the pipelined reader/network/writer, and torchrun ranks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, synthetic_face
from trainer.predict import Predictor
from trainer.predict_folder import predict_folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eleven photos of several sizes in two folders, and one unreadable 'photo'."""
    src = tmp_path_factory.mktemp("photos")
    (src / "sub").mkdir()
    for i in range(11):
        image = synthetic_face(64 + 8 * (i % 3), i)[0]
        Image.fromarray(image).save(src / ("sub" if i % 2 else ".") / f"p{i:02d}.jpg", quality=95)
    (src / "p99.jpg").write_bytes(b"not a jpeg")
    return src


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("framing", ["whole", "detect"])
def test_the_pipeline_writes_what_one_photo_at_a_time_writes(
    parser_ckpt: Path, photos: Path, tmp_path: Path, framing: str
) -> None:
    predictor = Predictor.from_checkpoint(parser_ckpt, device="cpu", framing=framing)
    seen: list[int] = []
    n = predict_folder(predictor, photos, tmp_path / "a", overlay_dir=tmp_path / "ov",
                       on_progress=lambda done, total, path: seen.append(done))
    assert n == 11 and seen == list(range(1, 12))  # the unreadable one skipped
    predict_folder(predictor, photos, tmp_path / "b", readers=0)
    a, b = _outputs(tmp_path / "a"), _outputs(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 13  # 11 labels + faces.json + .predict.lock
    for name in a:
        if name.endswith(".png"):  # batched forward passes: rare near-tie pixels may differ
            la = np.asarray(Image.open(tmp_path / "a" / name))
            lb = np.asarray(Image.open(tmp_path / "b" / name))
            assert la.shape == lb.shape and (la == lb).mean() > 0.999
    images_a = json.loads(a["faces.json"])["images"]
    images_b = json.loads(b["faces.json"])["images"]
    assert list(images_a) == list(images_b)  # the same order: the sorted photos
    assert [r["label"] for r in images_a.values()] == [r["label"] for r in images_b.values()]
    assert len(list((tmp_path / "ov").rglob("*.jpg"))) == 11


def test_a_failed_write_stops_the_run_with_its_error(parser_ckpt: Path, photos: Path, tmp_path: Path) -> None:
    predictor = Predictor.from_checkpoint(parser_ckpt, device="cpu", framing="whole")
    blocked = tmp_path / "out"
    blocked.mkdir()
    (blocked / "sub").write_text("a file where a folder of labels must go")
    with pytest.raises(OSError):
        predict_folder(predictor, photos, blocked)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_processes_write_what_one_process_writes(
    parser_ckpt: Path, photos: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    common = [str(parser_ckpt), str(photos)]
    flags = ["--device", "cpu", "--framing", "whole"]
    one = subprocess.run(
        [sys.executable, "-m", "trainer", "predict", *common, str(tmp_path / "one"), *flags],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(_free_port()),
         "-m", "trainer", "predict", *common, str(tmp_path / "two"), *flags],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert two.returncode == 0, two.stderr
    assert _outputs(tmp_path / "one") == _outputs(tmp_path / "two")  # byte for byte
    assert "wrote 11 label maps" in two.stdout and "2 processes" in two.stdout
    assert two.stdout.count("wrote") == 1  # rank 0 speaks for both


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_an_output_folder_reached_through_a_link_neither_refuses_its_own_overlays_nor_takes_a_users_file(
    parser_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The overlays' paths were recorded relative to the output folder as text but checked
    through links: a rerun refused predict's own overlays, and a user's file at the path the
    link resolved to was taken for predict's own and overwritten (the r39 review)."""
    from trainer.errors import FaceParseError

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(synthetic_face(64, 0)[0]).save(photos / "anna.jpg")
    (tmp_path / "disk" / "deep").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "disk" / "deep", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    predictor = Predictor.from_checkpoint(parser_ckpt, device="cpu", framing="whole")
    predict_folder(predictor, "photos", "link/out", overlay_dir="ov")
    predict_folder(predictor, "photos", "link/out", overlay_dir="ov")  # the same command again
    (tmp_path / "disk" / "ov").mkdir()
    (tmp_path / "disk" / "ov" / "anna.jpg").write_bytes(b"USER PHOTO")
    with pytest.raises(FaceParseError, match="not written by faceparse predict"):
        predict_folder(predictor, "photos", "link/out", overlay_dir=tmp_path / "disk" / "ov")
    assert (tmp_path / "disk" / "ov" / "anna.jpg").read_bytes() == b"USER PHOTO"


def test_photos_already_in_the_output_folder_are_named_when_left_out(
    parser_ckpt: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`predict M photos photos/2019`, with 2019 already holding photos, left ben.jpg out of the
    parse without a word and said it wrote 1 label map (the r39 review). Its own label maps, on
    the next run, are left out without a warning."""
    photos = tmp_path / "photos"
    (photos / "2019").mkdir(parents=True)
    Image.fromarray(synthetic_face(64, 0)[0]).save(photos / "anna.jpg")
    Image.fromarray(synthetic_face(64, 1)[0]).save(photos / "2019" / "ben.jpg")
    predictor = Predictor.from_checkpoint(parser_ckpt, device="cpu", framing="whole")
    with caplog.at_level("WARNING", logger="trainer.predict_folder"):
        assert predict_folder(predictor, photos, photos / "2019") == 1
    warned = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(warned) == 1 and "1 image" in warned[0] and "ben.jpg" in warned[0]
    caplog.clear()
    (photos / "2019" / "ben.jpg").unlink()
    with caplog.at_level("WARNING", logger="trainer.predict_folder"):
        assert predict_folder(predictor, photos, photos / "2019") == 1  # anna.png is its own
    assert not [r for r in caplog.records if "left out" in r.getMessage()]

"""Shared test set-up: offscreen Qt, the shared real-face data, and synthetic tiny faces."""

from __future__ import annotations

import gc
import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
# Training runs in float32 in tests, whatever this CPU's bf16 check would choose: the numbers
# tests compare must not depend on the host (set here, not in a fixture, so that module-scoped
# fixtures train in float32 too). Tests marked uses_precision_check see the host's choice.
os.environ["FACEPARSE_PRECISION"] = "fp32"

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_starter_models(request, monkeypatch):
    """The app never reaches for the shipped starter models in tests (tiny models instead),
    unless a test is marked ``uses_starter_models``."""
    if request.node.get_closest_marker("uses_starter_models"):
        return
    for name in ("STARTER_BACKBONE", "STARTER_PARSER"):
        monkeypatch.setattr(f"faceparse_app.model_store.{name}", Path(f"/nonexistent/{name}.safetensors"))


@pytest.fixture(autouse=True)
def _whole_image_faces(request, monkeypatch):
    """The synthetic test faces are aligned crops that no real face finder is meant to find:
    every image is one whole face in tests, unless a test is marked ``uses_face_finder``."""
    if request.node.get_closest_marker("uses_face_finder"):
        return
    from trainer import face_detect

    monkeypatch.setattr(face_detect, "get_finder", lambda name=None: face_detect.WholeImageFinder())


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path_factory, monkeypatch):
    """Runtime choices and exported graphs go to a temporary folder, never the user's cache."""
    monkeypatch.setenv("FACEPARSE_CACHE_DIR", str(tmp_path_factory.mktemp("user_cache")))


@pytest.fixture(autouse=True)
def _torch_prelabels(request, monkeypatch):
    """The app's pre-labels stay in torch, with no background runtime check (a process of its
    own that could switch runtimes mid-test), unless a test is marked ``uses_runtime_check``."""
    if request.node.get_closest_marker("uses_runtime_check"):
        monkeypatch.delenv("FACEPARSE_RUNTIME", raising=False)
        return
    monkeypatch.setenv("FACEPARSE_RUNTIME", "torch")


@pytest.fixture(autouse=True)
def _precision_check(request, monkeypatch):
    """A test marked ``uses_precision_check`` trains in the precision this host's check picks."""
    if request.node.get_closest_marker("uses_precision_check"):
        monkeypatch.delenv("FACEPARSE_PRECISION", raising=False)


@pytest.fixture(autouse=True)
def _automatic_gc_outside_the_app(request):
    """A window turns Python's automatic garbage collection off for the process and collects on
    the GUI thread (faceparse_app.gui_gc); a test that is not the app's runs with it back on, as
    any other process would."""
    if "app" not in Path(str(request.node.fspath)).parent.name and not gc.isenabled():
        gc.enable()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the project root (real faces; never copied into the repo)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data at {SHARED_DATA} (beside the project root); not found")
    return SHARED_DATA


def synthetic_face(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A cartoon face and its LaPa label map.

    Returns:
        image (size, size, 3) uint8 RGB and label (size, size) uint8 with LaPa classes: skin,
        both brows, both eyes (2 and 4 on the image's left), nose, lips, inner mouth, hair.
    """
    import cv2

    rng = np.random.default_rng(seed)
    s = size / 64.0
    jitter = lambda v: int(round((v + rng.uniform(-1.5, 1.5)) * s))  # noqa: E731
    label = np.zeros((size, size), np.uint8)
    cv2.ellipse(label, (jitter(32), jitter(24)), (int(22 * s), int(16 * s)), 0, 0, 360, 10, -1)
    cv2.ellipse(label, (jitter(32), jitter(34)), (int(17 * s), int(22 * s)), 0, 0, 360, 1, -1)
    cv2.rectangle(label, (jitter(20), jitter(24)), (jitter(28), jitter(26)), 2, -1)
    cv2.rectangle(label, (jitter(36), jitter(24)), (jitter(44), jitter(26)), 3, -1)
    cv2.ellipse(label, (jitter(24), jitter(29)), (int(3 * s), int(2 * s)), 0, 0, 360, 4, -1)
    cv2.ellipse(label, (jitter(40), jitter(29)), (int(3 * s), int(2 * s)), 0, 0, 360, 5, -1)
    cv2.ellipse(label, (jitter(32), jitter(36)), (int(3 * s), int(5 * s)), 0, 0, 360, 6, -1)
    cv2.ellipse(label, (jitter(32), jitter(44)), (int(7 * s), int(2 * s)), 0, 180, 360, 7, -1)
    cv2.ellipse(label, (32 * size // 64, 45 * size // 64), (int(6 * s), max(1, int(1 * s))), 0, 0, 360, 8, -1)
    cv2.ellipse(label, (jitter(32), jitter(47)), (int(7 * s), int(2 * s)), 0, 0, 180, 9, -1)
    palette = rng.integers(0, 255, size=(11, 3)).astype(np.float32)
    palette[1] = (220, 180, 150)
    image = palette[label] + rng.normal(0, 8, size=(size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


@pytest.fixture
def face() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_face(64, 0)


def write_face_photos(folder: Path, n: int = 4, size: int = 64) -> Path:
    """``n`` unlabeled synthetic face photos ``0.png``, ``1.png``, ... in ``folder`` (a folder of
    photos for stage 1); returns the folder."""
    from trainer.data.imageio import write_image

    for i in range(n):
        write_image(folder / f"{i}.png", synthetic_face(size, seed=i)[0])
    return folder


def write_synthetic_lapa(
    root: Path, splits: dict[str, int] | None = None, size: int = 64, seed: int = 0
) -> Path:
    """Write synthetic faces as a LaPa tree ``root/{split}/{images,labels}`` and return root.

    Args:
        splits: images per split, default {"train": 8, "val": 2}; names are ``<split>_<i:03d>``.
        size: image and label side in pixels.
        seed: first face's seed (each face gets its own).
    """
    from PIL import Image

    splits = splits if splits is not None else {"train": 8, "val": 2}
    k = seed
    for split, count in splits.items():
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, label = synthetic_face(size, seed=k)
            k += 1
            Image.fromarray(image).save(root / split / "images" / f"{split}_{i:03d}.png")
            Image.fromarray(label, "L").save(root / split / "labels" / f"{split}_{i:03d}.png")
    return root

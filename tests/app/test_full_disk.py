"""A real full disk (a small tmpfs, where the test may mount one): nothing saved is lost, the
error says what happened, and saving works again once there is room."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from faceparse_app.export import export_project
from faceparse_app.project import Project, ProjectError
from tests.conftest import synthetic_face
from trainer.data.imageio import write_image


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs, or a skip saying why there is none."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the monkeypatched disk-full tests run)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _fill(folder: Path) -> Path:
    filler = folder / "filler.bin"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_keeps_the_saved_label_and_the_store(small_disk: Path) -> None:
    folder = small_disk / "project"
    folder.mkdir()
    for i in range(3):
        image, _ = synthetic_face(128, seed=i)
        write_image(folder / f"face{i}.png", image)
    _, hand = synthetic_face(128, seed=7)
    with Project.open(folder) as project:
        first = project.images()[0]
        project.save_label(first, hand, status="labeled")
        saved = project.label_path(first).read_bytes()
        filler = _fill(small_disk)
        noise = np.random.default_rng(0).integers(0, 11, (128, 128), dtype=np.uint8)
        with pytest.raises(ProjectError, match="disk full"):
            project.save_label(first, noise)  # incompressible: cannot fit
        assert project.label_path(first).read_bytes() == saved
        assert project.get(first.id).status == "labeled"
        leftovers = [p for p in project.labels_dir.rglob("*.tmp")]
        assert leftovers == []
        with pytest.raises(ProjectError, match="disk full"):
            export_project(project, small_disk / "export", val_fraction=0, test_fraction=0)
        assert not (small_disk / "export").exists()
        filler.unlink()
        project.save_label(first, noise)  # room again: the save goes through
    with Project.open(folder) as project:
        rec = project.find("face0.png")
        np.testing.assert_array_equal(project.load_label(rec), noise)

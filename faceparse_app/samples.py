"""The demo project: the public-domain sample faces shipped inside the package
(``faceparse_app/assets/samples/``, package data, so a wheel has them), copied to a user folder."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

from trainer.data.imageio import is_image_path

# Installed packages are plain folders (wheels are unpacked), so the resource is a real path.
SAMPLES_DIR = Path(str(files("faceparse_app") / "assets" / "samples"))


def sample_paths(samples_dir: Path = SAMPLES_DIR) -> list[Path]:
    """The shipped sample photos, sorted by name."""
    if not samples_dir.is_dir():
        return []
    return sorted(p for p in samples_dir.iterdir() if p.is_file() and is_image_path(p))


def create_demo_project(dest: Path, samples_dir: Path = SAMPLES_DIR) -> Path:
    """Copy the sample faces into `dest` (created if needed) and return it.

    Photos already there are left alone, so reopening the demo keeps earlier labels; the
    licence notes travel with the photos.

    Raises:
        FileNotFoundError: no sample photos were found (a broken install).
    """
    samples = sample_paths(samples_dir)
    if not samples:
        raise FileNotFoundError(
            f"no sample photos in {samples_dir}; the installation is incomplete"
        )
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for src in [*samples, samples_dir / "SOURCES.md"]:
        target = dest / src.name
        if src.is_file() and not target.exists():
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(target)  # atomic: a half-copied photo never looks like a sample
    return dest

"""The built wheel: it ships the starter models and the demo photos, and an installed copy (not
the source checkout) finds and loads them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

SOURCES = ("pyproject.toml", "README.md", "trainer", "faceparse_app")

_USE_THE_INSTALLED_COPY = """
import trainer
from pathlib import Path
from trainer import starter
from trainer.checkpoint import load_model
from trainer.finetune_model import resolve_start

installed = Path({site!r}).resolve()
assert Path(trainer.__file__).resolve().is_relative_to(installed), trainer.__file__
assert starter.STARTER_PARSER.resolve().is_relative_to(installed), starter.STARTER_PARSER
assert resolve_start("ssl") == ("ssl", str(starter.STARTER_BACKBONE))
for path in (starter.STARTER_BACKBONE, starter.STARTER_PARSER):
    model, ckpt = load_model(path)
    assert ckpt.config.preset == "lite"
print("starters found in", starter.STARTER_DIR)

from faceparse_app import samples

demo = samples.sample_paths()
assert len(demo) >= 2, samples.SAMPLES_DIR
assert all(p.resolve().is_relative_to(installed) for p in demo), demo
print("demo photos found in", samples.SAMPLES_DIR)
"""


@pytest.mark.slow
@pytest.mark.uses_starter_models
def test_a_built_wheel_ships_the_starter_models_and_an_install_finds_them(tmp_path: Path) -> None:
    # Built from a copy of the sources, so the checkout is left as it was (no build/, no egg-info).
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    offline = ["--no-deps", "--no-index", "--no-build-isolation"]
    built = subprocess.run(
        [*pip, "wheel", *offline, str(src), "-w", str(tmp_path / "wheel")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "wheel").glob("faceparse_studio-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        assert "License-Expression: MIT" in z.read(metadata).decode()  # the SPDX form
    for name in ("starter_backbone.safetensors", "starter_parser.safetensors", "MODEL_CARD.md"):
        assert f"trainer/assets/models/{name}" in names, sorted(names)[:20]
    for name in ("astronaut.jpg", "cameraman.jpg", "SOURCES.md"):
        assert f"faceparse_app/assets/samples/{name}" in names, sorted(names)[:20]

    site = tmp_path / "site"
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # Only the installed copy on the path: not the checkout (nor an editable install of it).
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_USE_THE_INSTALLED_COPY.format(site=str(site)))],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert str(site) in result.stdout

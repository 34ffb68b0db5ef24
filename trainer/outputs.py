"""Single-file outputs of the CLI (a metrics JSON, a reconstruction grid, an ONNX model): a file
that exists is replaced only when the same command wrote it, never a user's own file.

Each kind is recognised by what the command puts inside it: the metrics' own keys, a PNG text
chunk, the ONNX model's faceparse metadata.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from trainer.errors import FaceParseError

# The PNG text chunk (key, value prefix) that marks a reconstruction grid as ours.
GRID_TEXT_KEY = "Software"
GRID_TEXT = "faceparse recon-grid"


class ForeignFileError(FaceParseError):
    """An output path holds a file that this command did not write."""


def is_metrics_json(path: Path) -> bool:
    """A metrics file written by ``faceparse evaluate --json``."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"mean_f1", "miou", "confusion_matrix"} <= data.keys()


def is_reconstruction_grid(path: Path) -> bool:
    """A PNG written by ``faceparse recon-grid`` (it carries :data:`GRID_TEXT`)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return str(image.info.get(GRID_TEXT_KEY, "")).startswith(GRID_TEXT)
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def is_faceparse_onnx(path: Path) -> bool:
    """An ONNX model written by ``faceparse export-onnx`` (faceparse metadata inside)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any file onnx cannot parse is not ours
        return False
    return any(entry.key == "faceparse" for entry in model.metadata_props)


def refuse_foreign_file(
    path: str | os.PathLike[str], command: str, ours: Callable[[Path], bool]
) -> None:
    """Raise before any work when ``path`` exists and ``command`` did not write it.

    Raises:
        ForeignFileError: ``path`` is a folder, or a file ``ours`` does not recognise.
    """
    path = Path(path)
    if path.is_dir():
        raise ForeignFileError(f"{path}: is a folder; give the path of a file to write")
    if (path.exists() or path.is_symlink()) and not ours(path):
        raise ForeignFileError(
            f"{path}: exists and was not written by faceparse {command}; choose another path "
            "or move that file away"
        )

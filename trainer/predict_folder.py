"""``faceparse predict`` on a folder: every image under it into a LaPa label PNG (+ overlay)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.folders import list_images
from trainer.data.imageio import read_image, write_image, write_label
from trainer.errors import FaceParseError
from trainer.labels import get_label_set
from trainer.predict import DEFAULT_FRAMING, Predictor

log = logging.getLogger(__name__)


def overlay(
    image: np.ndarray, label: np.ndarray, label_set_name: str = "lapa", alpha: float = 0.5
) -> np.ndarray:
    """(H, W, 3) uint8 image with its (H, W) label map blended on top in the class palette."""
    import cv2

    colours = get_label_set(label_set_name).colorize(label)
    mixed = cv2.addWeighted(image, 1.0 - alpha, colours, alpha, 0.0)
    # Background stays the photo itself so the face remains easy to see.
    background = label == 0
    mixed[background] = image[background]
    return mixed


FACES_NAME = "faces.json"


def predict_folder(
    checkpoint: str | os.PathLike[str] | Predictor,
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    overlay_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    on_progress: Callable[[int, int, Path], None] | None = None,
    framing: str = DEFAULT_FRAMING,
) -> int:
    """Parse every image under a folder (recursive) into LaPa label PNGs.

    Writes ``out_dir/<sub>/<stem>.png`` (8-bit 'L', class indices, image size) for each image
    ``in_dir/<sub>/<stem>.<ext>``, a colour overlay ``overlay_dir/<sub>/<stem>.jpg`` if asked
    (JPEG: overlays of large photos as PNG are slow to write and tens of MB each), and
    ``out_dir/faces.json``: the model and framing used, and per image the faces parsed and the
    model's uncertainty score. An unreadable image is skipped with one warning line.

    Args:
        checkpoint: a fine-tuned checkpoint path or a ready Predictor (its own framing is used).
        on_progress: called as (done, total, image_path) after each image.
        framing: "detect" or "whole" when a checkpoint path is given.

    Returns:
        Number of label maps written.
    """
    predictor = (
        checkpoint
        if isinstance(checkpoint, Predictor)
        else Predictor.from_checkpoint(checkpoint, device, framing=framing)
    )
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    paths = list_images(in_dir)
    written = 0
    seen: set[Path] = set()
    records: dict[str, Any] = {}
    for i, path in enumerate(paths):
        rel = path.relative_to(in_dir).with_suffix(".png")
        if rel in seen:
            # face.jpg and face.png in one folder would both become face.png.
            log.warning("skipping %s: another image already wrote %s", path, out_dir / rel)
            continue
        seen.add(rel)
        try:
            pred, image = predictor.predict_file(path)
        except FaceParseError as exc:
            log.warning("skipping %s", exc)
            continue
        write_label(out_dir / rel, pred.label)
        if predictor.framing == "detect" and not pred.faces:
            log.warning("%s: no face found; its label map is all background", path)
        records[path.relative_to(in_dir).as_posix()] = {
            "label": rel.as_posix(),
            "faces": [f.to_json() for f in pred.faces],
            "score": None if math.isnan(pred.score) else round(pred.score, 5),
        }
        if overlay_dir is not None:
            if image.shape[:2] != pred.label.shape:
                image = read_image(path)  # parsed from a reduced copy
            write_image(
                Path(overlay_dir) / rel.with_suffix(".jpg"),
                overlay(image, pred.label, predictor.label_set.name),
                quality=90,
            )
        written += 1
        if on_progress is not None:
            on_progress(i + 1, len(paths), path)
    if records:
        import json

        from trainer.data.imageio import atomic_write_bytes

        info = {k: v for k, v in predictor.model_info.items() if k != "metrics"}
        payload = {"model": info, "framing": predictor.framing, "images": records}
        atomic_write_bytes(out_dir / FACES_NAME, json.dumps(payload, indent=1).encode())
    return written

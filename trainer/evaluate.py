"""Evaluation: one confusion matrix summed over a set, at each label's own resolution.

The network sees each image at its input size; its class logits are resized back to the label's
size before the argmax, so a 512-px label is scored at 512 px even when the model works at 256.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from trainer.errors import FaceParseError, ImageReadError
from trainer.labels import get_label_set
from trainer.metrics import ConfusionMatrix
from trainer.predict import Predictor

log = logging.getLogger(__name__)


def _pair(item: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """A dataset item (a Sample, or an (image, label[, name]) tuple) -> (image, label, name)."""
    if hasattr(item, "image") and hasattr(item, "label"):
        return item.image, item.label, str(getattr(item, "name", ""))
    image, label = item[0], item[1]
    name = str(item[2]) if len(item) > 2 else ""
    return image, label, name


def _label_faces(image: np.ndarray, label: np.ndarray) -> list:
    """The faces a label map holds, in the image's pixels."""
    from trainer.faces import faces_from_label, scale_faces

    sy, sx = image.shape[0] / label.shape[0], image.shape[1] / label.shape[1]
    return scale_faces(faces_from_label(label), sx, sy)


def evaluate(
    checkpoint_or_predictor: str | os.PathLike[str] | Predictor,
    dataset: Sequence[Any],
    batch_size: int = 4,
    device: str = "auto",
    on_progress: Callable[[int, int], None] | None = None,
    faces_from_labels: bool = False,
) -> dict[str, Any]:
    """Score a parsing model on a labeled set.

    Args:
        checkpoint_or_predictor: a fine-tuned checkpoint path or a Predictor.
        dataset: indexable items with ``.image`` (H, W, 3) uint8 and ``.label`` (h, w) uint8 (a
            LapaDataset, a list of Samples) or (image, label) tuples. Label pixels of 255 are
            ignored. An image that cannot be read (``ImageReadError``: damaged, not an image, over
            the pixel limit) is skipped with one warning line; a bad label still fails.
        batch_size: images per forward pass.
        device: used when a checkpoint path is given.
        on_progress: called as (done, total) after each batch.
        faces_from_labels: with ``detect`` framing, parse the faces the labels hold instead of
            those the finder finds (scores the parser alone, e.g. to pick a fine-tune's epoch).

    Returns:
        A JSON-able dict: "mean_f1" (foreground classes), "miou" (all classes), "pixel_accuracy",
        "per_class" {name: {"f1", "iou"}} (None where a class is absent from predictions and
        labels alike), "confusion_matrix" (rows = label), "pixels", "num_images", "classes",
        "model" (the predictor's model_info), "skipped_images" (names of the unreadable images
        left out).

    Raises:
        FaceParseError: not one image of the set could be read.
    """
    predictor = (
        checkpoint_or_predictor
        if isinstance(checkpoint_or_predictor, Predictor)
        else Predictor.from_checkpoint(checkpoint_or_predictor, device=device)
    )
    label_set = get_label_set(predictor.label_set.name)
    cm = ConfusionMatrix(predictor.num_classes)
    total = len(dataset)
    names = getattr(dataset, "names", None)
    skipped: list[str] = []
    for start in range(0, total, max(1, batch_size)):
        items = []
        for i in range(start, min(start + batch_size, total)):
            try:
                items.append(_pair(dataset[i]))
            except ImageReadError as exc:
                log.warning("skipping %s", exc)
                skipped.append(str(names[i]) if names is not None else str(i))
        if not items:
            continue
        faces = None
        if faces_from_labels:
            faces = [_label_faces(image, label) for image, label, _ in items]
        preds = predictor.predict_batch(
            [image for image, _, _ in items],
            output_sizes=[label.shape[:2] for _, label, _ in items],
            faces=faces,
        )
        for (_, label, _), pred in zip(items, preds, strict=True):
            cm.update(pred.label, label)
        if on_progress is not None:
            on_progress(min(start + batch_size, total), total)
    if total and len(skipped) == total:
        raise FaceParseError(f"none of the {total} images could be read; nothing to score")
    results = cm.to_dict(label_set.classes)
    results["num_images"] = total - len(skipped)
    results["skipped_images"] = skipped
    results["classes"] = list(label_set.classes)
    results["model"] = predictor.model_info
    return results


def seen_in_training(checkpoint: str | os.PathLike[str], dataset: Any) -> int:
    """How many faces of ``dataset`` (by name) the checkpoint was fine-tuned on (its recorded
    label subset), with one warning line when any: such scores are not held out (e.g. a
    CelebAMask-HQ folder, which has no splits, scored after training on it).

    Returns:
        The count; 0 when the checkpoint records no subset or the set has no names.
    """
    from trainer.checkpoint import read_metadata

    trained = set(read_metadata(checkpoint).get("label_subset") or ())
    names = list(getattr(dataset, "names", None) or ())
    seen = sum(name in trained for name in names)
    if seen:
        log.warning(
            "%d of the %d faces scored are among the %d this model was fine-tuned on (by name): "
            "these scores are not held out", seen, len(names), len(trained),
        )  # fmt: skip
    return seen


def format_table(results: dict[str, Any]) -> str:
    """A plain-text table of per-class F1 and IoU (percent) with the two summary means."""
    rows = [f"{'class':<16}{'F1 %':>8}{'IoU %':>8}"]
    rows.append("-" * len(rows[0]))

    def pct(value: float | None) -> str:
        return "     n/a" if value is None else f"{100.0 * value:8.2f}"

    for name, scores in results["per_class"].items():
        rows.append(f"{name:<16}{pct(scores['f1'])}{pct(scores['iou'])}")
    rows.append("-" * len(rows[0]))
    rows.append(f"{'mean F1 (fg)':<16}{pct(results['mean_f1'])}")
    rows.append(f"{'mIoU (all)':<16}{'':>8}{pct(results['miou'])}")
    scores = list(results["per_class"].values())
    f1_in = sum(s["f1"] is not None for s in scores[1:])  # class 0 is the background
    iou_in = sum(s["iou"] is not None for s in scores)
    if f1_in < len(scores) - 1 or iou_in < len(scores):
        # A researcher cites these as the 10- and 11-class means; say when they are not.
        rows.append(
            f"n/a: absent from labels and predictions alike, left out of the means (mean F1 "
            f"over {f1_in} of the {len(scores) - 1} foreground classes, mIoU over {iou_in} of "
            f"the {len(scores)} classes)"
        )
    if "num_images" in results:
        rows.append(f"{results['num_images']} images, {results.get('pixels', 0):,} pixels")
    skipped = len(results.get("skipped_images") or ())
    if skipped:
        rows.append(f"{skipped} image{'s' if skipped > 1 else ''} skipped: unreadable (see the warnings)")
    return "\n".join(rows)

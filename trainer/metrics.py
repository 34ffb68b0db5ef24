"""Face-parsing metrics from one confusion matrix summed over a whole set.

Conventions of the field (METHOD.md): per-class F1; mean F1 over the foreground classes (LaPa: the
10 classes but background); mIoU over all classes, background included.

NaN rule: a class absent from both the predictions and the targets of the whole set has no F1 or
IoU (0/0); it is reported as NaN and left out of every mean. A class present in only one of them
scores 0 and counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class ConfusionMatrix:
    """An accumulating (num_classes, num_classes) confusion matrix; rows = target, cols = pred.

    Args:
        num_classes: number of classes (11 for LaPa).
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def update(self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
        """Add one prediction/target pair.

        Args:
            pred: (H, W) or (B, H, W) integer class map, at the target's resolution.
            target: same shape; pixels with a value >= num_classes (255 included) are ignored.

        Raises:
            ValueError: the shapes differ, or a prediction is out of the class range.
        """
        pred_np, target_np = _as_numpy(pred), _as_numpy(target)
        if pred_np.shape != target_np.shape:
            raise ValueError(
                f"prediction shape {pred_np.shape} differs from the label's {target_np.shape}; "
                "predict at the label's own resolution"
            )
        p = pred_np.astype(np.int64, copy=False).ravel()
        t = target_np.astype(np.int64, copy=False).ravel()
        keep = (t >= 0) & (t < self.num_classes)
        p, t = p[keep], t[keep]
        if p.size and (p.min() < 0 or p.max() >= self.num_classes):
            raise ValueError(
                f"prediction holds class {int(p.max())} but there are only {self.num_classes} classes"
            )
        idx = t * self.num_classes + p
        self.matrix += np.bincount(idx, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    @property
    def total(self) -> int:
        """Number of pixels counted (ignored pixels excluded)."""
        return int(self.matrix.sum())

    def _tp_fp_fn(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tp = np.diag(self.matrix).astype(np.float64)
        fp = self.matrix.sum(axis=0) - tp
        fn = self.matrix.sum(axis=1) - tp
        return tp, fp.astype(np.float64), fn.astype(np.float64)

    def f1(self) -> np.ndarray:
        """(num_classes,) F1 = 2TP / (2TP + FP + FN); NaN for a class absent from pred and target."""
        tp, fp, fn = self._tp_fp_fn()
        denom = 2 * tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)

    def iou(self) -> np.ndarray:
        """(num_classes,) IoU = TP / (TP + FP + FN); NaN for a class absent from pred and target."""
        tp, fp, fn = self._tp_fp_fn()
        denom = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def pixel_accuracy(self) -> float:
        """Share of counted pixels predicted right (NaN when nothing was counted)."""
        total = self.total
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def mean_f1(self, classes: Sequence[int] | None = None) -> float:
        """Mean F1 over ``classes`` (default: the foreground, every class but 0), NaNs left out."""
        if classes is None:
            classes = range(1, self.num_classes)
        return _nanmean(self.f1()[list(classes)])

    def miou(self, classes: Sequence[int] | None = None) -> float:
        """Mean IoU over ``classes`` (default: all classes, background included), NaNs left out."""
        if classes is None:
            classes = range(self.num_classes)
        return _nanmean(self.iou()[list(classes)])

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-able summary: per-class F1/IoU (None for NaN), mean F1, mIoU, pixel accuracy.

        Args:
            class_names: one name per class; default "0", "1", ...
        """
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for {self.num_classes} classes")
        f1, iou = self.f1(), self.iou()
        return {
            "mean_f1": _none_if_nan(self.mean_f1()),
            "miou": _none_if_nan(self.miou()),
            "pixel_accuracy": _none_if_nan(self.pixel_accuracy()),
            "per_class": {
                name: {"f1": _none_if_nan(f1[i]), "iou": _none_if_nan(iou[i])}
                for i, name in enumerate(names)
            },
            "pixels": self.total,
            "confusion_matrix": self.matrix.tolist(),
        }


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _none_if_nan(value: float) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value

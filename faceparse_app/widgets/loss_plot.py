"""A small live plot of training: loss per step, validation mean F1 and mIoU per epoch.

Drawn with QPainter (PySide6-Essentials has no QtCharts). Loss uses the left axis (0 to its
maximum so far); the validation scores use the right axis (0 to 1, shown in percent). The x axis
is the training step, so validation points sit at the step they were measured.

Why not pyqtgraph, the kept plotting widget for Qt: this plot draws two polylines on two fixed
axes and needs no zoom, pan or export; the 0-100% score axis would be a second ViewBox kept in
step with the first on every resize; and it would add a package that follows PySide6's releases
to an app that already pins PySide6 below 6.12 for a crash. The drawing is small and tested
(``tests/app/test_train_panel.py::test_loss_plot_scales_and_draws``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

LOSS_COLOUR = QColor("#1f77b4")
F1_COLOUR = QColor("#d62728")
MIOU_COLOUR = QColor("#2ca02c")
AXIS_COLOUR = QColor("#555555")
GRID_COLOUR = QColor("#e4e4e4")


class LossPlot(QWidget):
    """Training loss and validation scores against the step.

    Attributes:
        loss_points: [(step, loss)] in arrival order.
        val_points: [(step, mean_f1, miou)]; scores in [0, 1] or None.
        total_steps: the run's length, fixing the x range (0 = grow with the data).
        empty_text: what an empty plot says (a run preparing has no steps yet, yet it trains).
    """

    # The top margin holds the axis names and, below them, the legend: never over a curve.
    MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 48, 44, 38, 30

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss_points: list[tuple[int, float]] = []
        self.val_points: list[tuple[int, float | None, float | None]] = []
        self.empty_text = "no training yet"
        self.total_steps = 0
        self.setMinimumSize(220, 140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAccessibleName("Training loss and validation scores")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(320, 180)

    # -- data ---------------------------------------------------------------------------------

    def clear(self) -> None:
        self.loss_points.clear()
        self.val_points.clear()
        self.total_steps = 0
        self.update()

    def set_total_steps(self, total: int) -> None:
        self.total_steps = max(0, int(total))
        self.update()

    def add_loss(self, step: int, loss: float) -> None:
        if loss is None or not math.isfinite(loss):
            return
        self.loss_points.append((int(step), float(loss)))
        self.update()  # repaints coalesce, so a burst of steps costs one paint

    def add_val(self, step: int, mean_f1: float | None, miou: float | None) -> None:
        self.val_points.append((int(step), _finite(mean_f1), _finite(miou)))
        self.update()

    def add_progress(self, report: dict) -> None:
        """Take a trainer progress dict: a step's loss, or a validation (``phase="val"``)."""
        if report.get("phase") == "val":
            self.add_val(report.get("step", 0), report.get("mean_f1"), report.get("miou"))
            return
        if "total_steps" in report and report["total_steps"] != self.total_steps:
            self.total_steps = int(report["total_steps"])
        if "loss" in report and "step" in report:
            self.add_loss(report["step"], report["loss"])

    # -- drawing ------------------------------------------------------------------------------

    def _plot_rect(self) -> QRectF:
        return QRectF(
            self.MARGIN_LEFT,
            self.MARGIN_TOP,
            max(1, self.width() - self.MARGIN_LEFT - self.MARGIN_RIGHT),
            max(1, self.height() - self.MARGIN_TOP - self.MARGIN_BOTTOM),
        )

    def _x_max(self) -> int:
        last = max([p[0] for p in self.loss_points] + [p[0] for p in self.val_points] + [1])
        return max(self.total_steps, last)

    def _loss_max(self) -> float:
        top = max((loss for _, loss in self.loss_points), default=1.0)
        return _nice_ceiling(top)

    def paintEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        rect = self._plot_rect()
        x_max, loss_max = self._x_max(), self._loss_max()
        font = QFont(painter.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        self._draw_axes(painter, rect, x_max, loss_max)

        def to_xy(step: float, value: float, top: float) -> QPointF:
            return QPointF(
                rect.left() + rect.width() * step / x_max,
                rect.bottom() - rect.height() * min(max(value / top, 0.0), 1.0),
            )

        # At most ~2 points per pixel column: long runs stay cheap to repaint.
        stride = max(1, len(self.loss_points) // max(1, int(rect.width() * 2)))
        points = self.loss_points[::stride]
        if points and points[-1] is not self.loss_points[-1]:
            points.append(self.loss_points[-1])
        _polyline(painter, [to_xy(s, v, loss_max) for s, v in points], LOSS_COLOUR)
        for index, colour in ((1, F1_COLOUR), (2, MIOU_COLOUR)):
            pts = [to_xy(p[0], p[index], 1.0) for p in self.val_points if p[index] is not None]
            _polyline(painter, pts, colour, markers=True)
        self._draw_legend(painter, rect)
        if not self.loss_points and not self.val_points:
            painter.setPen(AXIS_COLOUR)
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, self.empty_text)
        painter.end()

    def _draw_axes(self, painter: QPainter, rect: QRectF, x_max: int, loss_max: float) -> None:
        painter.setPen(QPen(GRID_COLOUR, 1))
        for i in range(1, 4):
            y = rect.bottom() - rect.height() * i / 4
            painter.drawLine(QPointF(rect.left(), y), QPointF(rect.right(), y))
        painter.setPen(QPen(AXIS_COLOUR, 1))
        painter.drawRect(rect)
        metrics = painter.fontMetrics()
        h = metrics.height()
        for i in range(5):
            frac = i / 4
            y = rect.bottom() - rect.height() * frac
            painter.drawText(
                QRectF(0, y - h / 2, rect.left() - 4, h),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                _short(loss_max * frac),
            )
            painter.drawText(
                QRectF(rect.right() + 4, y - h / 2, self.MARGIN_RIGHT - 4, h),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                f"{round(100 * frac)}%",
            )
        for frac in (0.0, 0.5, 1.0):
            x = rect.left() + rect.width() * frac
            painter.drawText(
                QRectF(x - 40, rect.bottom() + 2, 80, h),
                Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
                str(round(x_max * frac)),
            )
        painter.drawText(
            QRectF(rect.left(), rect.bottom() + 2 + h, rect.width(), h),
            Qt.AlignmentFlag.AlignHCenter,
            "step",
        )
        painter.drawText(QRectF(0, 2, rect.left() + 30, h), Qt.AlignmentFlag.AlignLeft, "loss")
        painter.drawText(
            QRectF(rect.right() - 80, 2, 80 + self.MARGIN_RIGHT - 2, h),
            Qt.AlignmentFlag.AlignRight,
            "val F1 / mIoU",
        )

    def _draw_legend(self, painter: QPainter, rect: QRectF) -> None:
        """In the margin above the plot (inside, it covered the loss's first, highest steps)."""
        metrics = painter.fontMetrics()
        x = rect.left() + 6
        y = rect.top() - metrics.height() - 2
        for name, colour in (("loss", LOSS_COLOUR), ("mean F1", F1_COLOUR), ("mIoU", MIOU_COLOUR)):
            painter.setPen(QPen(colour, 2))
            painter.drawLine(QPointF(x, y + metrics.height() / 2), QPointF(x + 12, y + metrics.height() / 2))
            painter.setPen(AXIS_COLOUR)
            width = metrics.horizontalAdvance(name)
            painter.drawText(QRectF(x + 15, y, width + 2, metrics.height()), Qt.AlignmentFlag.AlignLeft, name)
            x += 15 + width + 10


def _polyline(painter: QPainter, points: Sequence[QPointF], colour: QColor, markers: bool = False) -> None:
    if not points:
        return
    painter.setPen(QPen(colour, 1.5))
    if len(points) > 1:
        path = QPainterPath(points[0])
        for p in points[1:]:
            path.lineTo(p)
        painter.drawPath(path)
    if markers or len(points) == 1:
        painter.setBrush(colour)
        for p in points:
            painter.drawEllipse(p, 2.5, 2.5)
        painter.setBrush(Qt.BrushStyle.NoBrush)


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above ``value`` (a readable axis top)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    base = 10 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * base * (1 + 1e-9):
            return step * base
    return 10 * base


def _short(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"

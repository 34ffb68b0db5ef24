"""Status bar fields: pixel position, class under the cursor, zoom, the model pre-labeling,
and the confidence view's scale while it is shown."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QStatusBar, QWidget

from trainer.labels import LabelSet

LEGEND_SIZE = (120, 12)  # width, height in pixels
LEGEND_BACKDROP = (128, 128, 128)  # the heat is see-through where sure: shown over mid grey


def heat_scale_pixmap(width: int = LEGEND_SIZE[0], height: int = LEGEND_SIZE[1]) -> QPixmap:
    """The confidence view's colours from sure (left) to unsure (right), as the canvas draws
    them over a mid-grey image."""
    from faceparse_app.uncertainty import heat_rgba

    ramp = np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))
    rgba = heat_rgba(ramp, alpha=0.75).astype(np.float32)
    a = rgba[..., 3:] / 255.0
    rgb = rgba[..., :3] * a + np.array(LEGEND_BACKDROP, np.float32) * (1.0 - a)
    rgb = np.ascontiguousarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))
    image = QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class HeatLegend(QWidget):
    """'sure [gradient] unsure': the scale of the confidence view."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("heat_legend")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        scale = QLabel()
        scale.setPixmap(heat_scale_pixmap())
        row.addWidget(QLabel("sure"))
        row.addWidget(scale)
        row.addWidget(QLabel("unsure"))
        self.setToolTip(
            "Confidence view (U): clear where the model is sure of its label, yellow to red "
            "where it is not; check those places first"
        )


class CanvasStatus:
    """Adds permanent position / class / zoom fields to a QStatusBar and fills them."""

    def __init__(self, bar: QStatusBar, label_set: LabelSet) -> None:
        self.label_set = label_set
        self.position = QLabel()
        self.cls = QLabel()
        self.zoom = QLabel()
        self.model = QLabel()
        self.model.setToolTip("The model version that pre-labels images")
        self.runtime = QLabel()  # what the model runs in: torch or ONNX Runtime
        self.heat_legend = HeatLegend()
        self.heat_legend.hide()
        bar.addPermanentWidget(self.heat_legend)
        for widget, width in ((self.position, 110), (self.cls, 130), (self.zoom, 70), (self.model, 90), (self.runtime, 0)):
            widget.setMinimumWidth(width)
            bar.addPermanentWidget(widget)
        self.show_hover(-1, -1, -1)
        self.show_zoom(1.0)
        self.show_model(None)

    def show_hover(self, x: int, y: int, cls: int) -> None:
        if x < 0:
            self.position.setText("")
            self.cls.setText("")
            return
        self.position.setText(f"x {x}, y {y}")
        name = self.label_set.classes[cls] if 0 <= cls < self.label_set.num_classes else str(cls)
        self.cls.setText(f"{cls} {name.replace('_', ' ')}")

    def show_heat_legend(self, on: bool) -> None:
        """Show the confidence view's scale while the view is on."""
        self.heat_legend.setVisible(bool(on))

    def show_zoom(self, scale: float) -> None:
        self.zoom.setText(f"{scale * 100:.0f} %")

    def show_model(self, version: str | None) -> None:
        self.model.setText(f"model {version}" if version else "no model")
        self.show_runtime("")  # the new model says its runtime once it is loaded

    def show_runtime(self, text: str) -> None:
        """The pre-label runtime, e.g. "ONNX Runtime (chosen on this CPU)": its name shown, the
        whole text in the tooltip ("" hides it)."""
        self.runtime.setText(text.split(" (")[0])
        self.runtime.setToolTip(f"Pre-labels run in {text}" if text else "")

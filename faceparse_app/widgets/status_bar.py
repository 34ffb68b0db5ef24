"""Status bar fields: pixel position, class under the cursor, zoom, the model pre-labeling."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar

from trainer.labels import LabelSet


class CanvasStatus:
    """Adds permanent position / class / zoom fields to a QStatusBar and fills them."""

    def __init__(self, bar: QStatusBar, label_set: LabelSet) -> None:
        self.label_set = label_set
        self.position = QLabel()
        self.cls = QLabel()
        self.zoom = QLabel()
        self.model = QLabel()
        self.model.setToolTip("The model version that pre-labels images")
        for widget, width in ((self.position, 110), (self.cls, 130), (self.zoom, 70), (self.model, 90)):
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

    def show_zoom(self, scale: float) -> None:
        self.zoom.setText(f"{scale * 100:.0f} %")

    def show_model(self, version: str | None) -> None:
        self.model.setText(f"model {version}" if version else "no model")

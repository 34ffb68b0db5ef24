"""Application set-up: the QApplication, and settings kept between runs (QSettings)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSettings, QStandardPaths
from PySide6.QtWidgets import QApplication

ORGANIZATION = "FaceParse"
APPLICATION = "FaceParse Studio"
MAX_RECENT = 10
DEFAULT_AUTOSAVE_MS = 3000  # the most work a crash can lose


class Settings:
    """Typed access to the persistent settings.

    Args:
        path: an INI file to use (tests, portable installs); None uses the platform's user
            settings store.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            self._qs = QSettings(ORGANIZATION, APPLICATION)
        else:
            self._qs = QSettings(str(path), QSettings.Format.IniFormat)

    @property
    def recent_projects(self) -> list[str]:
        value = self._qs.value("recent_projects", [])
        if isinstance(value, str):  # QSettings returns a lone entry as a plain string
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent_project(self, folder: str | Path) -> None:
        """Move `folder` to the top of the recent list (at most MAX_RECENT kept)."""
        folder = str(Path(folder).resolve())
        recent = [f for f in self.recent_projects if f != folder]
        self._qs.setValue("recent_projects", [folder, *recent][:MAX_RECENT])
        self._qs.sync()

    @property
    def autosave_ms(self) -> int:
        """Autosave interval while there are unsaved edits, in milliseconds."""
        try:
            value = int(self._qs.value("autosave_ms", DEFAULT_AUTOSAVE_MS))
        except (TypeError, ValueError):
            value = DEFAULT_AUTOSAVE_MS
        return max(200, value)

    def set_autosave_ms(self, ms: int) -> None:
        self._qs.setValue("autosave_ms", int(ms))
        self._qs.sync()

    @property
    def demo_dir(self) -> Path:
        """Where the demo project is created (a user-writable folder)."""
        value = self._qs.value("demo_dir", "")
        if value:
            return Path(str(value))
        base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
        return Path(base) / "demo"

    def set_demo_dir(self, folder: str | Path) -> None:
        self._qs.setValue("demo_dir", str(folder))
        self._qs.sync()

    @property
    def show_faces(self) -> bool:
        """Whether the canvas draws the faces the model parses (View → Show faces)."""
        value = self._qs.value("show_faces", True)
        return value if isinstance(value, bool) else str(value).lower() in ("true", "1")

    def set_show_faces(self, on: bool) -> None:
        self._qs.setValue("show_faces", bool(on))
        self._qs.sync()

    def last_export(self, project_root: str | Path) -> dict | None:
        """The project's last export form ({"out_dir", "val_fraction", "test_fraction"}), or None."""
        value = self._json(_project_key("last_export", project_root))
        return value if isinstance(value, dict) else None

    def set_last_export(self, project_root: str | Path, form: dict) -> None:
        self._set_json(_project_key("last_export", project_root), form)

    def last_image(self, project_root: str | Path) -> str | None:
        """The photo (path in the project) last shown of the project, or None."""
        value = self._qs.value(_project_key("last_image", project_root))
        return str(value) if value else None

    def set_last_image(self, project_root: str | Path, relpath: str) -> None:
        self._qs.setValue(_project_key("last_image", project_root), relpath)

    @property
    def brush_radius(self) -> int | None:
        """The brush size the last session left (image pixels), or None."""
        return _number(self._qs.value("brush_radius"), int)

    def set_brush_radius(self, radius: int) -> None:
        self._qs.setValue("brush_radius", int(radius))

    @property
    def paint_class(self) -> int | None:
        """The class the last session painted with (an index of the label set), or None."""
        return _number(self._qs.value("paint_class"), int)

    def set_paint_class(self, cls: int) -> None:
        self._qs.setValue("paint_class", int(cls))

    @property
    def image_sort(self) -> str | None:
        """The image list's sort order the last session left (``image_table.SORT_*``), or None."""
        value = self._qs.value("image_sort")
        return str(value) if value else None

    def set_image_sort(self, order: str) -> None:
        self._qs.setValue("image_sort", str(order))

    @property
    def overlay_opacity(self) -> float | None:
        """The label overlay's opacity the last session left (0..1), or None."""
        return _number(self._qs.value("overlay_opacity"), float)

    def set_overlay_opacity(self, opacity: float) -> None:
        self._qs.setValue("overlay_opacity", round(float(opacity), 3))

    def training_form(self) -> object:
        """The training form as the last session left it (JSON data; None if never kept)."""
        return self._json("training_form")

    def set_training_form(self, form: dict) -> None:
        self._set_json("training_form", form)

    def _json(self, key: str) -> object:
        """A value kept as JSON text (None when missing or unreadable)."""
        try:
            return json.loads(str(self._qs.value(key, "null")))
        except ValueError:
            return None

    def _set_json(self, key: str, value: object) -> None:
        self._qs.setValue(key, json.dumps(value))
        self._qs.sync()

    def value(self, key: str, default: object = None) -> object:
        return self._qs.value(key, default)

    def set_value(self, key: str, value: object) -> None:
        self._qs.setValue(key, value)


def _number(value: object, kind: type) -> int | float | None:
    """A number kept in the settings file (text in an INI file), or None when missing or not one."""
    try:
        return kind(float(value)) if value is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None


def _project_key(group: str, project_root: str | Path) -> str:
    # One key per project folder, named by a digest: a path holds characters QSettings keys do not.
    digest = hashlib.sha256(str(Path(project_root).resolve()).encode("utf-8")).hexdigest()[:16]
    return f"{group}/{digest}"


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (reused if one exists, as under pytest-qt), named for QSettings paths."""
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv if argv is not None else sys.argv[:1]))
    return app  # type: ignore[return-value]

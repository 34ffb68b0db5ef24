"""Help → Keyboard shortcuts (a sheet of every key, read from the window's own actions) and
Help → About (the versions of everything the app runs on)."""

from __future__ import annotations

import html
import platform
import sys
from importlib import metadata

from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QMainWindow, QMessageBox, QTextBrowser, QVBoxLayout, QWidget

# Keys the canvas handles itself (not actions): (keys, what they do).
CANVAS_KEYS: tuple[tuple[str, str], ...] = (
    ("Space + drag, middle drag", "Pan"),
    ("Wheel", "Zoom at the cursor"),
    ("Ctrl + wheel", "Brush size"),
    ("Enter, double-click", "Polygon: close and fill"),
    ("Backspace", "Polygon: remove the last point"),
    ("Esc", "Polygon or face box: cancel"),
    ("Delete", "Face box tool: remove the selected face"),
)
VERSIONED = ("faceparse-studio", "PySide6-Essentials", "torch", "numpy", "opencv-python-headless",
             "segmentation-models-pytorch", "yuface")  # fmt: skip


def _keys(action: QAction) -> str:
    return ", ".join(
        k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts() if not k.isEmpty()
    )


def _menu_rows(window: QMainWindow) -> list[tuple[str, list[tuple[str, str]]]]:
    """(menu title, [(keys, action text)]) for every action with a shortcut, menu by menu."""
    sections = []
    seen: set[int] = set()
    for menu_action in window.menuBar().actions():
        menu = menu_action.menu()
        if menu is None:
            continue
        rows = []
        for action in menu.actions():
            if action.shortcuts() and not action.isSeparator():
                rows.append((_keys(action), action.text().replace("&", "")))
                seen.add(id(action))
        if rows:
            sections.append((menu.title().replace("&", ""), rows))
    extra = [(_keys(a), a.text().replace("&", "")) for a in window.actions() if a.shortcuts() and id(a) not in seen]
    if extra:
        sections.append(("Classes and more", extra))
    sections.append(("On the canvas", list(CANVAS_KEYS)))
    return sections


def shortcuts_html(window: QMainWindow) -> str:
    """The shortcut sheet as an HTML table (every key of every menu, the class keys, the canvas)."""
    parts = ["<style>td { padding: 1px 10px 1px 0; } th { text-align: left; padding-top: 8px; }</style>",
             "<table>"]  # fmt: skip
    for title, rows in _menu_rows(window):
        parts.append(f"<tr><th colspan=2>{html.escape(title)}</th></tr>")
        for keys, text in rows:
            parts.append(f"<tr><td><b>{html.escape(keys)}</b></td><td>{html.escape(text)}</td></tr>")
    parts.append("</table>")
    return "".join(parts)


def show_shortcuts(window: QMainWindow) -> QDialog:
    """A non-modal sheet of every key; stays open beside the canvas while one works."""
    dialog = window.findChild(QDialog, "shortcuts_sheet")
    if dialog is None:
        dialog = QDialog(window)
        dialog.setObjectName("shortcuts_sheet")
        dialog.setWindowTitle("Keyboard shortcuts")
        text = QTextBrowser()
        text.setObjectName("shortcuts_text")
        layout = QVBoxLayout(dialog)
        layout.addWidget(text)
        dialog.resize(460, 640)
    dialog.findChild(QTextBrowser, "shortcuts_text").setHtml(shortcuts_html(window))
    dialog.show()
    dialog.raise_()
    return dialog


def versions_text() -> str:
    """One line per component: the app, Python, Qt and the libraries it runs on."""
    lines = []
    for name in VERSIONED:
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name} (not installed)")
    lines.insert(1, f"Python {platform.python_version()} ({sys.platform})")
    lines.insert(2, f"Qt {qVersion()}")
    try:
        import torch

        lines.append(f"torch CPU instructions: {torch.backends.cpu.get_cpu_capability()}")
    except ImportError:
        pass
    return "\n".join(lines)


def show_about(parent: QWidget) -> QMessageBox:
    box = QMessageBox(parent)
    box.setObjectName("about_box")
    box.setWindowTitle("About FaceParse Studio")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(
        "<h3>FaceParse Studio</h3><p>Label faces pixel by pixel in LaPa's 11 classes, with a "
        "model that learns from your labels.</p>"
    )
    box.setInformativeText("<pre>" + html.escape(versions_text()) + "</pre>")
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setModal(False)
    box.show()
    return box

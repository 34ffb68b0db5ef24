"""Before the window: can Qt open a display here? One line saying what to do instead of Qt's
raw plugin message and a core dump (Qt aborts when no platform plugin starts)."""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# The shared libraries Qt 6's xcb plugin loads -> the Debian/Ubuntu package that has each.
XCB_LIBRARIES: dict[str, str] = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}
HEADLESS_HINT = "try it headless: xvfb-run -a faceparse-studio [FOLDER]"


def _loads(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def display_problem(
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    loads: Callable[[str], bool] = _loads,
) -> str | None:
    """Why the window cannot open here, in one line; None when it should.

    Only Linux's X11 path is checked (Qt's own message is clear elsewhere); a platform chosen
    with QT_QPA_PLATFORM (offscreen, wayland, ...) is left to Qt.
    """
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux") or env.get("QT_QPA_PLATFORM"):
        return None
    if env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY"):
        return None  # Qt picks its wayland plugin
    display = env.get("DISPLAY", "")
    if not display:
        return f"no display: DISPLAY is not set. Run faceparse-studio on a desktop, or {HEADLESS_HINT}"
    local = re.fullmatch(r":(\d+)(\.\d+)?", display)
    if local and not Path(f"/tmp/.X11-unix/X{local.group(1)}").exists():
        return (
            f"no X server answers on DISPLAY={display} (/tmp/.X11-unix/X{local.group(1)} is "
            f"missing): start one, set DISPLAY to yours, or {HEADLESS_HINT}"
        )
    missing = sorted({pkg for lib, pkg in XCB_LIBRARIES.items() if not loads(lib)})
    if missing:
        return (
            "Qt's X11 plugin needs system libraries that are missing: install them with "
            f"sudo apt-get install {' '.join(missing)} (or run scripts/setup.sh --gui)"
        )
    return None

"""Stepping from face to face in a group photo (Tab, Shift+Tab): the canvas selects the next or
previous face, left to right, and zooms to it; the status bar says which one it is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faceparse_app.faces import face_order

if TYPE_CHECKING:
    from faceparse_app.main_window import MainWindow
    from faceparse_app.widgets.canvas import LabelCanvas

NEXT_FACE_KEYS = ("Tab",)
PREVIOUS_FACE_KEYS = ("Shift+Tab",)
# Around the box (hairline to chin, ear to ear) the view shows this much of its size each side:
# the hair and the neck are labeled too.
MARGIN = 0.35


def step_face(canvas: LabelCanvas, offset: int) -> tuple[int, int] | None:
    """Select the next (`offset` 1) or previous (-1) face of the shown photo, wrapping round,
    and zoom to it. Returns (its place counted from 1, the number of faces), or None when
    the photo has no face known."""
    order = face_order(canvas.faces)
    if not order:
        return None
    if canvas.selected_face in order:
        place = (order.index(canvas.selected_face) + offset) % len(order)
    else:
        place = 0 if offset > 0 else len(order) - 1
    index = order[place]
    x0, y0, x1, y1 = canvas.faces[index].box
    mx, my = (x1 - x0) * MARGIN, (y1 - y0) * MARGIN
    canvas.show_region(x0 - mx, y0 - my, x1 + mx, y1 + my)
    canvas.select_face(index)
    return place + 1, len(order)


def step_face_in_window(window: MainWindow, offset: int) -> None:
    """The Next face / Previous face actions: step, and say where the step went."""
    session = window.session
    if session is None or session.current is None:
        return
    name = session.current.relpath
    where = step_face(window.canvas, offset)
    if where is None:
        text = f"No face known in {name} yet: draw a box around each face with the face tool (W)."
    else:
        text = (
            f"Face {where[0]} of {where[1]} in {name} ({NEXT_FACE_KEYS[0]} next, "
            f"{PREVIOUS_FACE_KEYS[0]} previous; Ctrl+0 shows the whole photo)"
        )
    window.statusBar().showMessage(text, 8000)

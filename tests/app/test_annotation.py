"""The annotation rules without Qt: strokes win over a late pre-label, saves, statuses, events.

The window tests (test_gui_session, test_gui_model_loop) drive the same rules through
``AnnotationSession``; here the plain class is used as a script or a test would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceparse_app.annotation import Annotation
from faceparse_app.project import Project
from tests.conftest import synthetic_face
from trainer.data.imageio import read_label, write_image


def open_annotation(tmp_path: Path, n: int = 2) -> tuple[Annotation, list[tuple[str, tuple]]]:
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(n):
        write_image(folder / f"f{i}.png", synthetic_face(64, seed=i)[0])
    annotation = Annotation(Project.open(folder))
    events: list[tuple[str, tuple]] = []
    for name in ("image_changed", "saved", "status_changed", "prelabeled", "message"):
        getattr(annotation, name).connect(lambda *args, name=name: events.append((name, args)))
    return annotation, events


def test_a_stroke_wins_over_a_late_prelabel_and_is_saved_on_switch(tmp_path):
    annotation, events = open_annotation(tmp_path)
    first, second = (r.id for r in annotation.records())
    assert annotation.open_image(first) and events[-1][0] == "image_changed"
    doc = annotation.document
    doc.begin_stroke(3)
    doc.stroke_to(10, 10, 4)
    doc.end_stroke()
    annotation.note_edit()
    prediction = np.full(doc.shape, 5, np.uint8)
    assert not annotation.apply_prelabel(first, prediction, "v0001")  # the stroke wins
    assert annotation.document.label[10, 10] == 3
    assert annotation.open_image(second)  # saves the edit first
    rec = annotation.project.get(first)
    assert rec.status == "in_progress" and read_label(annotation.project.label_path(rec))[10, 10] == 3
    assert ("saved", (first,)) in events
    # An image nobody edited takes the pre-label, saved and shown as its starting state:
    # undo stops there (it never empties the photo) and says why.
    assert annotation.apply_prelabel(second, prediction, "v0001")
    assert annotation.project.get(second).status == "pre-labeled"
    assert ("prelabeled", (second, "v0001")) in events
    assert not annotation.undo() and (annotation.document.label == 5).all()
    assert "pre-label" in events[-1][1][0]


def test_accept_marks_the_image_labeled_and_says_so(tmp_path):
    annotation, events = open_annotation(tmp_path)
    first = annotation.records()[0].id
    annotation.open_image(first)
    assert annotation.accept()
    assert annotation.project.get(first).status == "labeled"
    assert ("status_changed", (first, "new", "labeled")) in events
    assert annotation.close()


def test_active_time_leaves_out_pauses_and_edits_are_counted(tmp_path):
    annotation, _ = open_annotation(tmp_path)
    first, second = (r.id for r in annotation.records())
    annotation.open_image(first)
    t0 = 1000.0
    annotation._last_activity = t0  # the image opened at t0 (monotonic seconds)
    doc = annotation.document
    for i, t in enumerate((4.0, 10.0, 12.5)):  # three strokes, 12.5 s of work
        doc.begin_stroke(2)
        doc.stroke_to(5 + 10 * i, 5, 2)
        doc.end_stroke()
        annotation.note_edit(now=t0 + t)
    annotation.note_activity(t0 + 12.5 + 600.0)  # back from a ten-minute break: not counted
    annotation.note_activity(t0 + 12.5 + 602.0)  # two more seconds of work
    assert annotation.undo()  # an undo is an action too
    annotation.save()
    rec = annotation.project.get(first)
    assert rec.actions == 4
    assert 14.5 <= rec.active_seconds < 30.0  # 12.5 + 2 + the undo's own moment, not the break
    assert annotation.open_image(second)
    assert annotation.project.get(first).actions == 4  # nothing counted twice on the switch

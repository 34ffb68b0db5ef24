"""Autosaves are written off the GUI thread (issue 31: 60-170 ms per save of a 4000² label, every
few seconds while editing); nothing is lost or written out of order."""

from __future__ import annotations

import threading

import numpy as np

from faceparse_app.project import Project
from tests.app.test_gui_canvas import drag, make_window
from trainer.data.imageio import read_label


def saved_label(window, image_id):
    project = window.session.project
    return read_label(project.label_path(project.get(image_id)))


def test_an_autosave_returns_at_once_and_edits_made_meanwhile_are_kept(qtbot, tmp_path, monkeypatch):
    window = make_window(qtbot, tmp_path)
    session = window.session
    first = session.current.id
    gate, threads = threading.Event(), []
    real_save = Project.save_label

    def slow_save(self, *args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        assert gate.wait(30)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Project, "save_label", slow_save)
    window.state.set_class(4)
    drag(window.canvas, [(10, 10), (30, 10)])
    session.autosave()  # hands the write to the writer and returns (it waits on the gate)
    assert not session.document.dirty
    qtbot.waitUntil(lambda: bool(threads), timeout=30_000)
    assert threads == [False]  # written on the writer's thread
    drag(window.canvas, [(10, 40), (30, 40)])  # painting goes on during the write
    assert session.document.dirty
    gate.set()
    with qtbot.waitSignal(window.session.saved, timeout=30_000):
        pass
    # Switching saves the rest synchronously, after the background write.
    window._step(1)
    label = saved_label(window, first)
    assert (label[10, 12:28] == 4).all() and (label[40, 12:28] == 4).all()


def test_a_failed_background_write_keeps_the_edits_and_says_so(qtbot, tmp_path, monkeypatch):
    window = make_window(qtbot, tmp_path)
    session = window.session
    monkeypatch.setattr(Project, "save_label", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    drag(window.canvas, [(10, 10), (30, 10)])
    painted = session.document.label.copy()
    session.autosave()
    qtbot.waitUntil(lambda: "Not saved" in window.message_bar.message, timeout=30_000)
    assert session.document.dirty and np.array_equal(session.document.label, painted)
    monkeypatch.undo()
    assert session.save_all()
    assert np.array_equal(saved_label(window, session.current.id), painted)

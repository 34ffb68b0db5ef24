"""Defects a tester found in the eleventh trial of the real window (t55): the chosen class
forgotten at a restart, and a restored project store whose message did not say it was missing."""

from __future__ import annotations

from tests.app.test_gui_canvas import drag, make_window

HAIR = 10  # LaPa's hair: far from skin (1), the class a fresh start picks


def test_the_chosen_class_is_kept_after_a_restart(qtbot, tmp_path):
    # The brush size came back after a restart but the class went back to skin: the first
    # stroke of the new session painted skin over the hair the annotator was working on.
    window = make_window(qtbot, tmp_path)
    window.palette.class_buttons[HAIR].click()
    assert window.state.cls == HAIR
    window.close()

    again = make_window(qtbot, tmp_path)  # the same settings file
    assert again.palette.class_buttons[HAIR].isChecked()
    again.state.set_radius(4)
    drag(again.canvas, [(20, 30), (40, 30)])
    assert again.session.document.label[30, 30] == HAIR


def test_a_kept_class_the_classes_do_not_have_is_ignored(qtbot, tmp_path):
    # A settings file edited by hand (or from another label set): the window still opens,
    # on the default class.
    from faceparse_app.app import Settings

    Settings(tmp_path / "settings.ini").set_value("paint_class", 99)
    window = make_window(qtbot, tmp_path)
    assert window.state.cls == 1

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


def _store_files(tmp_path):
    store = tmp_path / "project" / ".faceparse"
    return [store / f"project.sqlite{side}" for side in ("", "-wal", "-shm")]


def _paint_and_save(window, y: int) -> None:
    window.state.set_radius(4)
    drag(window.canvas, [(20, y), (40, y)])
    assert window.session.save()


def test_a_store_deleted_while_the_app_was_closed_is_said_to_have_been_missing(qtbot, tmp_path):
    # The tester deleted .faceparse/project.sqlite between two sessions. The next open put the
    # backup taken at close back and said "restored from its backup": nothing said the store
    # had gone, so nobody looked for what deleted it, nor knew whether work was lost.
    window = make_window(qtbot, tmp_path)
    _paint_and_save(window, 30)
    window.close()  # the close takes a backup
    for f in _store_files(tmp_path):
        f.unlink(missing_ok=True)

    again = make_window(qtbot, tmp_path)
    message = again.message_bar.message
    assert "missing" in message and "deleted or moved" in message
    assert "restored from its backup of" in message
    assert "no labelling work is lost" in message
    assert again.session.project.images()[0].status != "new"  # and the work is there


def test_a_store_deleted_while_the_app_ran_is_said_to_have_been_deleted(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    _paint_and_save(window, 30)
    for f in _store_files(tmp_path):
        f.unlink(missing_ok=True)  # while the window has it open
    _paint_and_save(window, 40)
    window.session.autosave()  # the next tick notices and writes the open store back (t56)
    message = window.message_bar.message
    assert "project.sqlite" in message and "deleted" in message and "written back" in message
    window.close()

    again = make_window(qtbot, tmp_path)
    assert "missing" not in again.message_bar.message  # nothing left to restore
    assert again.session.document.label[40, 30] == 1


def test_a_restore_from_an_older_backup_says_what_may_be_lost(qtbot, tmp_path):
    # Only a backup from before the last labels is left: their label files are kept, but
    # what lives in the store alone (statuses, review marks) after that backup is gone.
    window = make_window(qtbot, tmp_path)
    backups = tmp_path / "project" / ".faceparse" / "backups"
    _paint_and_save(window, 30)
    window.close()
    older = set(backups.glob("*.sqlite"))
    again = make_window(qtbot, tmp_path)
    _paint_and_save(again, 40)
    again.close()
    for b in set(backups.glob("*.sqlite")) - older:
        b.unlink()
    for f in _store_files(tmp_path):
        f.unlink(missing_ok=True)

    third = make_window(qtbot, tmp_path)
    message = third.message_bar.message
    assert "missing" in message and "restored from its backup of" in message
    assert "saved after it" in message and "lost" in message
    assert "no labelling work is lost" not in message

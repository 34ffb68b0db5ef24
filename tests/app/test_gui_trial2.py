"""Defects found in the second user trial of the real window (the t35 trial: the labeling
loop, exporting twice, two windows and kill -9, keyboard-only use, in-the-wild photos), each
driven the way the user met it."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.app.test_gui_canvas import make_project


def _splits(export: Path) -> dict[str, str]:
    """names.csv of an export: original relpath -> split."""
    with open(export / "names.csv", encoding="utf-8", newline="") as f:
        return {row["original"]: row["split"] for row in csv.DictReader(f)}


def test_exporting_again_keeps_every_earlier_image_in_its_split(tmp_path):
    # The trial: six faces exported (val 01a16a.., test 01a64e..), one more labeled, exported
    # again into the same folder: 01a16a.. moved to test, 01a64e.. to train and 01caf8.. to
    # val, so a model trained on the first export's train set was tested on its own images.
    from faceparse_app.export import export_project
    from faceparse_app.project import Project
    from tests.conftest import synthetic_face

    folder = make_project(tmp_path / "project", n=12)
    out = tmp_path / "lapa"
    with Project.open(folder) as project:
        recs = project.images()
        for i, rec in enumerate(recs[:9]):
            project.save_label(rec, synthetic_face(64, seed=i)[1], status="labeled")
        first = export_project(project, out, val_fraction=0.2, test_fraction=0.2)
        before = _splits(out)
        assert first["val"] == 2 and first["test"] == 2
        (out / "train" / "images" / "notes.txt").write_text("mine")  # a foreign file
        for rec in recs[9:]:
            project.save_label(rec, synthetic_face(64, seed=0)[1], status="labeled")
        export_project(project, out, val_fraction=0.2, test_fraction=0.2)
    after = _splits(out)
    assert len(after) == 12
    assert {k: after[k] for k in before} == before  # nothing moved between splits
    assert sorted(after.values()).count("test") >= 2
    assert (out / "train" / "images" / "notes.txt").read_text() == "mine"
    # A new seed is a new split: the user asked for one.
    with Project.open(folder) as project:
        export_project(project, out, val_fraction=0.2, test_fraction=0.2, seed=5)
    assert _splits(out) != after


def test_the_time_spent_checking_a_prelabel_before_accepting_it_is_counted(qtbot, tmp_path):
    # The trial: three pre-labels looked over for a few seconds each and accepted with A
    # showed no time in the list and "0.0" active seconds in effort.csv (the export's README
    # then gave a median of 4 s per face over the six); only edited images counted their time.
    import time

    from PySide6.QtCore import Qt

    from faceparse_app.widgets.image_table import Column
    from tests.app.test_gui_canvas import key
    from tests.app.test_gui_model_loop import window_on_a_prelabel

    window, accepted, _ = window_on_a_prelabel(qtbot, tmp_path, n=2)
    session = window.session
    session.note_activity(time.monotonic() - 6.0)  # the annotator looked it over for 6 s ...
    key(window, Qt.Key.Key_A)  # ... then accepted it
    rec = session.project.get(accepted)
    assert rec.status == "labeled" and rec.label_source == "model" and rec.actions == 0
    assert 5.0 < rec.active_seconds < 30.0
    assert window.image_list.row_text(accepted, Column.TIME).endswith(" s")
    # Marking it reviewed later counts the reviewer's look too.
    session.note_activity(time.monotonic() - 4.0)
    key(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert session.project.get(accepted).status == "reviewed"
    assert session.project.get(accepted).active_seconds > rec.active_seconds + 3.0


def test_reopening_after_a_kill_says_the_last_seconds_may_be_missing_and_where(qtbot, tmp_path):
    # The trial: kill -9 right after a stroke, then reopen: the stroke was gone (it fell
    # after the last autosave) and the app said nothing, so the annotator could not tell that
    # anything was lost, nor where to look.
    import signal
    import subprocess
    import sys
    import textwrap

    from tests.app.test_gui_canvas import make_window

    folder = make_project(tmp_path / "project", n=3)
    killed = textwrap.dedent(
        """
        import os, signal, sys
        sys.path.insert(0, sys.argv[1])
        import numpy as np
        from faceparse_app.project import Project
        project = Project.open(sys.argv[2])
        rec = [r for r in project.images() if r.relpath == "f1.png"][0]
        project.save_label(rec, np.ones((64, 64), np.uint8))  # the last autosave
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", killed, str(root), str(folder)], timeout=120)
    assert done.returncode == -signal.SIGKILL
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(folder)
    text = window.message_bar.message
    assert "did not close normally" in text and "f1.png" in text, text
    assert window.message_bar.level == "warning"
    # A normal close leaves nothing to report.
    window.close_project()
    assert window.open_project(folder)
    assert "did not close normally" not in (window.message_bar.message or "")


def test_every_tool_bar_button_with_a_key_names_it_in_its_tooltip(qtbot, tmp_path):
    # The trial: every tool bar tooltip named its key ("Eraser (E)", "Outline only (O): ...")
    # except the eye button's, which said only "Show labels" (its key is H).
    from PySide6.QtGui import QKeySequence

    from tests.app.test_gui_canvas import make_window

    window = make_window(qtbot, tmp_path)
    checked = 0
    for action in window.tool_bar.actions():
        for shortcut in action.shortcuts():
            name = shortcut.toString(QKeySequence.SequenceFormat.NativeText)
            assert f"({name})" in action.toolTip(), (action.text(), action.toolTip())
            checked += 1
    assert checked >= 12


def test_a_finished_or_cancelled_fine_tuning_leaves_no_checkpoints_in_the_project(qtbot, tmp_path):
    # The trial: three runs (one published, one cancelled, one killed) left 132 MB of
    # checkpoints in .faceparse/runs (55 MB a run with the lite model: its best and last
    # weights), beside the 27 MB published copy in .faceparse/models; with "retrain every 10
    # new labels" the project folder grows by that much each time, and nothing ever reads them.
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from tests.app.test_gui_model_loop import (
        cancel_a_long_finetune,
        open_window,
        project_with,
        wait_job,
    )

    folder = project_with(tmp_path / "project", n=3, labeled=3)
    window = open_window(qtbot, tmp_path, folder)
    panel, loop = window.train_panel, window.model_loop
    runs = folder / ".faceparse" / "runs"
    QTest.mouseClick(panel.form.finetune_button, Qt.MouseButton.LeftButton)
    wait_job(qtbot, window)
    (version,) = loop.store.versions()
    assert version.path.is_file()  # the published copy is the model
    assert list(runs.rglob("*.safetensors")) == []
    assert list(runs.rglob("finetune_log.jsonl"))  # the run's log stays
    # A cancelled run keeps no weights either.
    cancel_a_long_finetune(qtbot, window, phase="val")
    assert "cancelled" in panel.progress.status_label.text()
    assert len(list(runs.iterdir())) == 2 and list(runs.rglob("*.safetensors")) == []


def test_the_export_readme_says_1_edit_not_1_edits():
    # The trial's README.txt: "median 4 s and 1 edits per image".
    from faceparse_app.export_files import effort_summary
    from faceparse_app.store_rows import ImageRecord

    def rec(seconds: float, actions: int) -> ImageRecord:
        return ImageRecord(
            id=1, relpath="a.jpg", content_hash="", width=1, height=1, status="labeled",
            active_seconds=seconds, created_at=0.0, updated_at=0.0, model_version=None,
            missing=False, actions=actions,
        )  # fmt: skip

    one = effort_summary([("train", "a", rec(4.0, 1)), ("train", "b", rec(3.0, 1))])[0]
    assert "median 4 s and 1 edit per image" in one
    many = effort_summary([("train", "a", rec(4.0, 1)), ("train", "b", rec(3.0, 2))])[0]
    assert "1.5 edits per image" in many


def test_the_export_form_offers_the_last_export_of_this_project_again(qtbot, tmp_path, monkeypatch):
    # The trial: exporting a second time into the same folder meant typing its path again
    # (the form offered <project>-lapa each time, and its 0.1 shares); taking the default by
    # habit wrote a second, different export, and other shares drew a new split.
    from PySide6.QtWidgets import QDialog

    from faceparse_app.widgets.export_dialog import ExportDialog
    from tests.app.test_gui_canvas import make_window

    shown: list[ExportDialog] = []
    answers = iter([QDialog.DialogCode.Accepted, QDialog.DialogCode.Rejected])

    def fill_in(dialog: ExportDialog) -> QDialog.DialogCode:
        shown.append(dialog)
        if len(shown) == 1:  # the user's first export: their own folder and shares
            dialog.folder_edit.setText(str(tmp_path / "my-export"))
            dialog.val_spin.setValue(0.2)
            dialog.test_spin.setValue(0.15)
        return next(answers)

    monkeypatch.setattr(ExportDialog, "exec", fill_in)
    window = make_window(qtbot, tmp_path)
    window.export_lapa()
    qtbot.waitUntil(lambda: (tmp_path / "my-export" / "export-manifest.json").is_file(), timeout=60_000)
    window.export_lapa()  # File -> Export LaPa again
    again = shown[1]
    assert again.folder_edit.text() == str(tmp_path / "my-export")
    assert (again.val_spin.value(), again.test_spin.value()) == (0.2, 0.15)


def test_switching_images_takes_down_the_faces_line_of_the_image_left(qtbot, tmp_path):
    # The trial: paging quickly through in-the-wild photos, the status bar said "1 face in
    # deepface_img2.jpg" over three other photos (one of them with three faces) while their
    # own faces were still being found.
    import threading

    from tests.app.test_gui_model_loop import WAIT_MS, open_window, project_with, publish_parser
    from trainer.data.imageio import read_image

    gate = threading.Event()
    gate.set()

    def loader(path):
        gate.wait(60)
        return read_image(path)

    folder = project_with(tmp_path / "project", n=2)
    publish_parser(folder, seed=1)
    window = open_window(qtbot, tmp_path, folder, loader=loader)
    bar = window.statusBar()
    qtbot.waitUntil(lambda: bar.currentMessage() == "1 face in f0.png", timeout=WAIT_MS)
    gate.clear()  # the next photo's faces take a while
    window._step(1)
    assert window.session.current.relpath == "f1.png"
    assert "f0.png" not in bar.currentMessage()
    gate.set()
    qtbot.waitUntil(lambda: bar.currentMessage() == "1 face in f1.png", timeout=WAIT_MS)


def test_opening_a_project_drops_the_weights_of_a_run_that_was_killed(qtbot, tmp_path):
    # The trial: the app killed (kill -9) mid-run left that run's 27 MB of weights behind.
    from tests.app.test_gui_model_loop import open_window, project_with

    folder = project_with(tmp_path / "project", n=2)
    run = folder / ".faceparse" / "runs" / "finetune-20261206-221540"
    run.mkdir(parents=True)
    (run / "finetune_best.safetensors").write_bytes(b"weights")
    (run / "finetune_log.jsonl").write_text("{}\n")
    open_window(qtbot, tmp_path, folder)
    assert not (run / "finetune_best.safetensors").exists()
    assert (run / "finetune_log.jsonl").is_file()


def test_enter_in_a_training_field_gives_the_image_keys_back(qtbot, tmp_path):
    # The trial (keyboard only): epochs typed into the Training panel and confirmed with Enter,
    # then N did nothing: the spin box kept the keys until the canvas was clicked (the tool
    # bar's brush size box already gives them back on Enter).
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from tests.app.test_gui_canvas import make_window

    window = make_window(qtbot, tmp_path)
    window.train_panel.show()
    spin = window.train_panel.form.finetune.epochs_spin
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    spin.selectAll()
    QTest.keyClicks(spin, "12")
    QTest.keyClick(spin, Qt.Key.Key_Return)
    assert spin.value() == 12
    first = window.session.current.id
    QTest.keyClick(window.focusWidget(), Qt.Key.Key_N)  # next unfinished, wherever the keys went
    assert window.session.current.id != first
    # Tab still walks the form: leaving a field that way keeps the focus in the form.
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    QTest.keyClick(spin, Qt.Key.Key_Tab)
    assert window.focusWidget() is not window.canvas


def test_accepting_before_the_prelabel_arrives_does_not_label_the_image_empty(qtbot, tmp_path):
    # Keyboard-fast in the t35 trial: N then A at once, before the pre-label had come, marked
    # the still-empty label (all background) labeled; the pre-label that came next was no
    # longer allowed to replace it, and the export held an all-background face.
    import numpy as np
    from PySide6.QtCore import Qt

    from tests.app.test_gui_canvas import key
    from tests.app.test_gui_model_loop import (
        WAIT_MS,
        prediction,
        status,
        window_with_a_held_prelabel,
    )

    window, gate, image_id, version = window_with_a_held_prelabel(qtbot, tmp_path)
    session = window.session
    key(window, Qt.Key.Key_A)  # the pre-label is still being predicted
    assert session.project.get(image_id).status not in ("labeled", "reviewed")
    assert "pre-label" in window.message_bar.message
    gate.set()
    qtbot.waitUntil(lambda: status(window, image_id) == ("pre-labeled", version), timeout=WAIT_MS)
    assert "is here; A accepts it" in window.message_bar.message  # "still predicted" is gone
    key(window, Qt.Key.Key_A)  # now there is something to accept
    assert session.project.get(image_id).status == "labeled"
    np.testing.assert_array_equal(
        session.project.load_label(session.project.get(image_id)),
        prediction(window, version, image_id),
    )


def test_a_quit_question_asked_during_training_answers_itself_when_the_run_ends(qtbot, tmp_path, monkeypatch):
    # The trial: Quit during a fine-tune asked "A training run is going ... Quit anyway?"; the
    # run finished and published v0002 while the question stayed up, and the app stayed open
    # (623 s) until someone answered a question about a run that no longer existed.
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from tests.app.test_gui_first_hour import make_window

    window = make_window(qtbot, tmp_path)

    def run_ends() -> None:
        assert QApplication.activeModalWidget() is not None  # the question is up
        window.loop_state.running_changed.emit(None)

    def give_up() -> None:  # only if the question failed to go: the test fails, not hangs
        box = QApplication.activeModalWidget()
        if box is not None:
            box.reject()

    QTimer.singleShot(200, run_ends)
    QTimer.singleShot(10_000, give_up)
    assert window.confirm_stop_training() is True


def test_sigterm_during_training_quits_without_a_question(qtbot, tmp_path, monkeypatch):
    # kill (SIGTERM, as at logout or shutdown) or Ctrl+C in the terminal while a run was going
    # put up "Quit anyway?" and waited for an answer nobody was there to give.
    import signal

    from faceparse_app.__main__ import _close_on_signals
    from tests.app.test_gui_first_hour import make_window

    window = make_window(qtbot, tmp_path)
    monkeypatch.setattr(type(window.model_loop.training), "running", property(lambda self: True))
    asked = []
    window.confirm_stop_training = lambda: asked.append(1) or False
    previous = _close_on_signals(window)
    try:
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert not asked
    assert window.session is None and not window.isVisible()  # labels saved, project closed


_KILL_AT = '''
import os, signal, sys
from pathlib import Path
import faceparse_app.export as export

real = os.replace
def replace(src, dst):
    real(src, dst)
    if Path(dst).name == sys.argv[3]:  # the step of the publish to die after
        os.kill(os.getpid(), signal.SIGKILL)
export.os.replace = replace
export.export_project(sys.argv[1], sys.argv[2], val_fraction=0.0, test_fraction=0.0)
'''


def _labeled_project(tmp_path: Path, n: int = 3) -> Path:
    from faceparse_app.project import Project
    from tests.conftest import synthetic_face

    folder = make_project(tmp_path / "project", n=n + 1)
    with Project.open(folder) as project:
        for i, rec in enumerate(project.images()[:n]):
            project.save_label(rec, synthetic_face(64, seed=i)[1], status="labeled")
    return folder


def _kill_export_at(folder: Path, out: Path, step: str) -> None:
    """Run an export in a child process and SIGKILL it right after the rename onto ``step``."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", _KILL_AT, str(folder), str(out), step],
                           cwd=Path(__file__).parents[2], capture_output=True, text=True)  # fmt: skip
    assert child.returncode == -9, child.stderr


def _tree(out: Path) -> dict[str, str]:
    """Every file in an export folder, with the text of the user's notes."""
    return {p.relative_to(out).as_posix(): p.read_text() if p.name in ("notes.txt", "note.txt") else ""
            for p in out.rglob("*") if p.is_file()}  # fmt: skip


def test_an_export_killed_while_publishing_loses_no_file_of_the_folder(tmp_path):
    # The t35 trial (left then): a kill between the publish's two renames leaves the previous
    # export, the user's own files in it included, hidden in .NAME.old-*, and the files the
    # export had carried over in .NAME.partial-*: to the user, the folder and their notes are
    # gone. The review: a note in a folder the new export writes nothing into (val/images of an
    # export with no val) and a folder name glob() reads as a pattern were lost or mixed up.
    from faceparse_app.export import export_message, export_project

    folder = _labeled_project(tmp_path)
    for out in (tmp_path / "lapa", tmp_path / "faces[v2]"):
        export_project(folder, out, val_fraction=0.0, test_fraction=0.0)
        (out / "notes.txt").write_text("my notes")  # the user's own files, beside the export
        (out / "val" / "images" / "note.txt").write_text("in an empty split")
        before = _tree(out)
        for step in ("notes.txt", "export", out.name):  # killed while carrying, between, after
            _kill_export_at(folder, out, step)
            # The next export puts everything back, then exports as asked, and says so.
            counts = export_project(folder, out, val_fraction=0.0, test_fraction=0.0)
            said = export_message(out, counts, {})
            assert ("of the folder's own files" in said) == (step != out.name), (step, said)
            assert _tree(out) == before, step
            assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name] == []


def _killed_after_moving_the_notes_aside(tmp_path: Path, notes: str) -> tuple[Path, Path]:
    """An export with the user's notes.txt beside it, exported again and killed right after
    that export moved the notes into its unfinished folder: (project, export folder)."""
    from faceparse_app.export import export_project

    folder = _labeled_project(tmp_path)
    out = tmp_path / "lapa"
    export_project(folder, out, val_fraction=0.0, test_fraction=0.0)
    (out / "notes.txt").write_text(notes)
    _kill_export_at(folder, out, "notes.txt")
    return folder, out


def test_a_file_the_user_wrote_again_meanwhile_is_kept_beside_the_one_put_back(tmp_path):
    # The review: killed after the export moved notes.txt aside, the user writes a new
    # notes.txt; the next export deleted the original with the hidden folder.
    from faceparse_app.export import export_project

    folder, out = _killed_after_moving_the_notes_aside(tmp_path, "v1")
    (out / "notes.txt").write_text("v2")
    export_project(folder, out, val_fraction=0.0, test_fraction=0.0)
    assert (out / "notes.txt").read_text() == "v2"
    assert (out / "notes.txt.recovered").read_text() == "v1"


def test_an_unfinished_export_whose_manifest_is_unreadable_is_kept_not_deleted(tmp_path):
    # The review: after a power cut the unfinished export's manifest may be empty; the next
    # export deleted that folder, and the user's files moved into it with it.
    from faceparse_app.export import export_project

    folder, out = _killed_after_moving_the_notes_aside(tmp_path, "mine")
    (partial,) = [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    (partial / "export-manifest.json").write_text("")  # as a power cut may leave it
    export_project(folder, out, val_fraction=0.0, test_fraction=0.0)
    assert (partial / "notes.txt").read_text() == "mine"  # still there, not deleted

def test_a_second_export_into_the_same_folder_is_refused_while_one_runs(tmp_path):
    # The CLI export works while a window exports the same project: two exports into one folder
    # would each take the other's unfinished folder for a killed one's leftovers.
    import pytest

    from faceparse_app.export import export_project
    from faceparse_app.export_recovery import one_export_at_a_time
    from faceparse_app.project import Project, ProjectError
    from tests.conftest import synthetic_face

    folder = make_project(tmp_path / "project", n=2)
    with Project.open(folder) as project:
        project.save_label(project.images()[0], synthetic_face(64, seed=0)[1], status="labeled")
    out = tmp_path / "lapa"
    out.mkdir()
    with one_export_at_a_time(out):
        with pytest.raises(ProjectError, match="another export into .*lapa is running"):
            export_project(folder, out)
    counts = export_project(folder, out)  # once the first is done, the second goes ahead
    assert counts["train"] + counts["val"] + counts["test"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lapa", "project"]


def test_a_training_form_kept_out_of_the_forms_ranges_neither_crashes_nor_runs_unseen(qtbot, tmp_path):
    # The review: a kept batch of 8000 showed as 256 in the form but a run used 8000, and a kept
    # 2**31 raised OverflowError in the window's constructor: the app would not start.
    from faceparse_app.app import Settings
    from tests.app.test_gui_canvas import make_window

    Settings(tmp_path / "settings.ini").set_training_form(
        {"finetune": {"epochs": 2**31, "batch_size": 8000, "max_steps": None}, "pretrain": {"epochs": 3, "batch_size": 4}}
    )
    window = make_window(qtbot, tmp_path, open_project=False)
    form, request = window.train_panel.form, window.loop_state.finetune_request()
    assert request.length.batch_size == form.finetune.batch_spin.value() == 4  # the default
    assert request.length.epochs == form.finetune.epochs_spin.value() == 30
    assert window.loop_state.pretrain_request().length.epochs == form.pretrain.epochs_spin.value() == 3


def test_the_training_form_is_restored_as_it_was_left(qtbot, tmp_path):
    # The t35 trial: fine-tuning set to 20 steps (a quick check) came back as 30 epochs and no
    # limit in the next session, and the next run trained for minutes instead of seconds.
    from tests.app.test_gui_canvas import make_window

    window = make_window(qtbot, tmp_path, open_project=False)
    form = window.train_panel.form
    form.finetune.steps_spin.setValue(20)
    form.pretrain.epochs_spin.setValue(3)
    form.preset_combo.setCurrentText("tiny")
    window.close()
    again = make_window(qtbot, tmp_path, open_project=False)  # the same settings file
    form = again.train_panel.form
    assert form.finetune.steps_spin.value() == 20 and form.pretrain.epochs_spin.value() == 3
    assert form.preset_combo.currentText() == "tiny"
    request = again.loop_state.finetune_request()
    assert request.length.max_steps == 20 and request.preset == "tiny"


def test_a_stored_training_form_that_no_longer_fits_falls_back_to_the_defaults():
    from faceparse_app.training_settings import (
        TrainingSettings,
        settings_from_stored,
        stored_settings,
    )

    stored = stored_settings(TrainingSettings(device="cuda", preset="tiny"))
    assert settings_from_stored(stored, devices=("cpu", "cuda")) == TrainingSettings(device="cuda", preset="tiny")
    # A GPU that is gone, a preset renamed, a length edited into nonsense: the defaults, field by field.
    assert settings_from_stored(stored, devices=("cpu",)).device == "auto"
    bad = {**stored, "preset": "huge", "finetune": {"epochs": -3, "batch_size": "x"}, "pretrain": [1]}
    assert settings_from_stored(bad, devices=("cpu", "cuda")) == TrainingSettings(device="cuda")
    assert settings_from_stored("not a form", devices=("cpu",)) == TrainingSettings()


def test_the_published_score_says_it_is_the_best_epochs(qtbot):
    # The t35 trial: the panel's last line read "On the held-out hand-labeled faces (epoch 10):
    # mean F1 97.4%", then "Published v0002: mean F1 98.0%": two scores, no word on which is which.
    from faceparse_app.widgets.train_progress import finetune_outcome_text

    metrics = {"mean_f1": 0.98, "num_val": 1, "epoch": 4}
    text = finetune_outcome_text("v0002", metrics)
    assert "mean F1 98.0%" in text and "best epoch, 4" in text


def test_a_project_open_elsewhere_is_named_once_in_the_message(qtbot, tmp_path):
    # The trial: "Cannot open /tmp/p: /tmp/p is open in another FaceParse Studio (...)".
    from faceparse_app.project import Project
    from tests.app.test_gui_canvas import make_window

    folder = make_project(tmp_path / "project", n=1)
    with Project.open(folder):  # the other window (here in this process)
        window = make_window(qtbot, tmp_path, open_project=False)
        assert not window.open_project(folder)
    said = window.message_bar.message
    assert "open in this FaceParse Studio" in said and said.count(str(folder)) == 1, said


def test_sigterm_with_labels_that_cannot_be_saved_keeps_the_window_without_a_question(qtbot, tmp_path, monkeypatch):
    # The review: on SIGTERM, a failed save still asked "Close anyway and lose them?", a
    # question nobody may be there to answer (the hang just fixed for training).
    from tests.app.test_gui_first_hour import make_window

    window = make_window(qtbot, tmp_path)
    monkeypatch.setattr(type(window.session), "save_all", property(lambda self: lambda: False))  # disk full
    asked = []
    window.confirm_discard = lambda: asked.append(1) or True
    window.close_for_signal()
    assert not asked
    assert window.isVisible() and window.session is not None  # nothing given up unasked
    assert "not closed" in window.message_bar.message

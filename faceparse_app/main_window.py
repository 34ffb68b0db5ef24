"""The main window: builds the widgets and wires their signals. It holds no logic of its own:
editing lives in LabelDocument, project state in AnnotationSession / Project.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import qtawesome as qta
from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QWidget,
)

from faceparse_app import gui_gc
from faceparse_app.app import Settings
from faceparse_app.assist import AssistContext
from faceparse_app.export_files import export_message
from faceparse_app.label_issue_watch import LabelIssueWatch
from faceparse_app.loop_state import LoopState
from faceparse_app.model_loop import ModelLoop
from faceparse_app.project import DamagedStoreError, Project, ProjectError, ProjectLockedError
from faceparse_app.project_scan import open_error_text
from faceparse_app.samples import create_demo_project
from faceparse_app.session import AnnotationSession
from faceparse_app.training_settings import available_devices, settings_from_stored, stored_settings
from faceparse_app.widgets import read_only_view as look_only
from faceparse_app.widgets.busy import run_busy
from faceparse_app.widgets.canvas import LabelCanvas
from faceparse_app.widgets.class_palette import ClassPalette
from faceparse_app.widgets.export_dialog import ExportDialog, start_export
from faceparse_app.widgets.image_list import ImageList
from faceparse_app.widgets.label_import import import_labels_in_window, offer_dataset_labels
from faceparse_app.widgets.message_bar import MessageBar
from faceparse_app.widgets.questions import ask_discard, ask_stop_training
from faceparse_app.widgets.start_page import StartPage
from faceparse_app.widgets.status_bar import CanvasStatus
from faceparse_app.widgets.tool_bar import ToolBar
from faceparse_app.widgets.tool_state import Tool, ToolState
from faceparse_app.widgets.train_panel import TrainPanel
from faceparse_app.widgets.window_layout import (
    TrainingColumn,
    make_dock,
    restore_layout,
    save_layout,
)
from faceparse_app.widgets.window_menus import build_menus
from trainer.labels import LAPA


class MainWindow(QMainWindow):
    """FaceParse Studio's window: start page, or image list | canvas | class palette.

    Args:
        settings: persistent settings (recent projects, autosave interval, demo folder).
        device: torch device for pre-labels ("auto": the GPU when present).
    """

    def __init__(self, settings: Settings, device: str = "auto") -> None:
        super().__init__()
        gui_gc.install()  # garbage (Qt objects among it) is collected on this thread only
        self.settings = settings
        self.session: AnnotationSession | None = None
        self._closing_for_signal = False  # SIGTERM or Ctrl+C: close without asking about training
        self.setWindowTitle("FaceParse Studio")
        self.resize(1280, 800)  # until show_remembered: maximised, or as last left

        self.state = ToolState(LAPA, self)
        self.message_bar = MessageBar()
        self.start_page = StartPage()
        self.canvas = LabelCanvas(self.state)
        self.image_list = ImageList()
        self.palette = ClassPalette(self.state)
        self.tool_bar = ToolBar(self.state, self)
        self.addToolBar(self.tool_bar)
        self.tool_bar.editing_done.connect(self.canvas.setFocus)
        self.canvas_status = CanvasStatus(self.statusBar(), LAPA)
        self.read_only_view = look_only.ReadOnlyView(self)

        # The canvas is the central widget; the list, classes and training are docks beside it
        # (hidden, moved and resized at will, and remembered). The message bar floats over the
        # canvas's top edge: when it appears nothing moves under the cursor.
        self.stack = QStackedWidget()
        self.stack.addWidget(self.start_page)
        self.stack.addWidget(self.canvas)
        self.setCentralWidget(self.stack)
        self.message_bar.float_over(self.stack)
        self.canvas.covered_top = self.message_bar.covered_height  # a fit keeps below it

        build_menus(self)
        self.loop_state = LoopState(available_devices())
        self.train_panel = TrainPanel(self.loop_state)
        self._restore_training_form()
        self.train_panel.form.editing_done.connect(self.canvas.setFocus)
        left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        self.images_dock = self.add_panel(self.image_list, "Images", left)
        self.classes_dock = self.add_panel(self.palette, "Classes", right)
        self.train_dock = self.add_panel(self.train_panel, "Training", right, scroll=True)
        self.resizeDocks([self.images_dock, self.classes_dock], [280, 230], Qt.Orientation.Horizontal)
        # Until the annotator opens it (the tool bar's Training button, the Panels menu, the
        # "Train a model…" offer), the canvas has the room; after, the layout is remembered.
        self.train_dock.hide()
        self.training_column = TrainingColumn(self, self.classes_dock, self.train_dock)
        training = self.train_dock.toggleViewAction()
        training.setIcon(qta.icon("fa5s.graduation-cap"))
        training.setToolTip("Show or hide the Training panel (fine-tune the model on your labels)")
        self.tool_bar.addSeparator()
        self.tool_bar.addAction(training)
        self.tool_bar.widgetForAction(training).setToolButtonStyle(
            Qt.ToolButtonStyle.ToolButtonTextBesideIcon
        )
        self.model_loop = ModelLoop(self.loop_state, device=device, parent=self)
        self.model_loop.message.connect(self.show_message)
        self.model_loop.no_model.connect(self._offer_training)
        self.model_loop.model_changed.connect(self._show_model)
        self.model_loop.runtime_changed.connect(self.canvas_status.show_runtime)
        self.model_loop.heat_changed.connect(self.canvas.set_heat)
        self.model_loop.scores_changed.connect(self.image_list.set_scores)
        self.model_loop.scores_kept.connect(self.image_list.set_kept_scores)
        faces = self.model_loop.faces
        faces.faces_changed.connect(self.canvas.set_faces)
        faces.no_face.connect(self._offer_face_tool)
        self._faces_status: str | None = None  # the faces line on the status bar, if any
        faces.status.connect(self._show_faces_status)
        self.canvas.face_drawn.connect(faces.add_face)
        self.canvas.face_removal_requested.connect(faces.remove_face)
        self.canvas.assist = AssistContext(
            image=lambda: self.session.image if self.session is not None else None,
            model=lambda: self.model_loop.model,
            faces=lambda: self.canvas.faces or None,
        )
        self.canvas.assist_message.connect(self.show_message)
        self.train_offer = QPushButton("Train a model…")
        self.train_offer.setObjectName("train_offer")
        self.train_offer.clicked.connect(self.show_training_panel)
        self.face_offer = QPushButton("Use the face tool (W)")
        self.face_offer.setObjectName("face_offer")
        self.face_offer.clicked.connect(self.use_face_tool)
        self.import_offer = QPushButton("Import labels…")  # a dataset's label folder, left out
        self.import_offer.clicked.connect(lambda: import_labels_in_window(self))
        # The offers sit in the message bar, beside the text that explains them.
        for offer in (self.train_offer, self.face_offer, self.import_offer):
            offer.hide()
            self.message_bar.layout().insertWidget(2, offer)
        self.start_page.open_requested.connect(self.open_project)
        self.start_page.demo_requested.connect(self.open_demo)
        self.image_list.image_selected.connect(self._open_image)
        self.image_list.next_unfinished_requested.connect(self.next_unfinished)
        self.canvas.hover_changed.connect(self.canvas_status.show_hover)
        self.canvas.zoom_changed.connect(self.canvas_status.show_zoom)
        self.show_start_page()

    # ------------------------------------------------------------------ panels
    def add_panel(
        self,
        widget: QWidget,
        title: str,
        area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea,
        scroll: bool = False,
    ) -> QDockWidget:
        """Dock a panel; the Panels menu shows and hides it."""
        dock = make_dock(self, widget, title, area, scroll)
        self.panels_menu.addAction(dock.toggleViewAction())
        self.panels_menu.menuAction().setVisible(True)
        return dock

    def show_remembered(self) -> None:
        """Show the window as the user left it, or maximised the first time."""
        if restore_layout(self, self.settings):
            self.show()
            return
        screen = self.screen()
        if screen is not None:  # without a window manager "maximised" is only a wish
            self.setGeometry(screen.availableGeometry())
        self.showMaximized()

    # ----------------------------------------------------------------- projects
    def show_start_page(self) -> None:
        self.start_page.set_recent(self.settings.recent_projects)
        self.stack.setCurrentWidget(self.start_page)
        self.tool_bar.setEnabled(False)
        for panel in (self.image_list, self.palette, self.train_panel):
            panel.setEnabled(False)  # nothing to list, paint or train before a project is open
        for action in self._project_actions:
            action.setEnabled(False)

    def open_project(self, folder: str | Path) -> bool:
        """Open a folder as the project (closing any open one); False with a message if not."""
        open_root = self.session.project.root if self.session is not None else None
        if open_root is not None and open_root.resolve() == Path(folder).resolve():
            return True  # already open here: nothing to close, nothing to reopen
        if not self._may_leave_project("open"):
            return False
        try:
            project = self._open_store(folder)
        except ProjectLockedError as exc:  # it names the folder and says where it is open
            self.show_message(str(exc), "error")
            return False
        except ProjectError as exc:
            self.show_message(open_error_text(folder, exc), "error")
            return False
        if project is None:
            return False
        self.close_project()
        self.settings.add_recent_project(project.root)
        session = AnnotationSession(project, self.settings.autosave_ms, LAPA, self)
        self.session = session
        session.message.connect(self.show_message)
        session.image_changed.connect(self._show_image)
        # A change names its image (saved, status, pre-label): the list reads just those rows
        # again, not all 10,000.
        self._touched: set[int] = set()
        self._scans = project.scans
        for signal in (session.saved, session.status_changed, session.prelabeled):
            signal.connect(lambda image_id, *_: self._touched.add(image_id))
        session.records_changed.connect(self._refresh_touched)
        # A save changes the row's time and edits even when the status stays the same.
        session.saved.connect(self._refresh_touched)
        session.set_protected(self.state.protected)
        self.state.protected_changed.connect(session.set_protected)
        self.canvas.edited.connect(session.note_edit)
        self.stack.setCurrentWidget(self.canvas)
        self.tool_bar.setEnabled(True)
        for panel in (self.image_list, self.palette, self.train_panel):
            panel.setEnabled(True)
        for action in self._project_actions:
            action.setEnabled(True)
        self.setWindowTitle(look_only.window_title(project))
        self.canvas.setFocus()  # the class and tool keys work from the first press
        self._refresh_records()
        LabelIssueWatch(session, self.image_list, self.message_bar)  # the session's child: ends with it
        # After the window's own connections: the model loop's handlers see the new image shown.
        self.model_loop.attach(session)
        session.resume(self.settings.last_image(project.root))  # where the annotator left off
        offer_dataset_labels(self, project)  # a LaPa tree's labels/: not photos, to import
        if project.recovery:  # last, so no other message hides it
            self.show_message(project.recovery, "warning")
        self.read_only_view.show(project)  # editing off, and why, when it is read-only
        return True

    def _open_store(self, folder: str | Path) -> Project | None:
        """Project.open, offering a recovery when the store is damaged; None if declined."""
        # The folder scan (hashing new images) runs off the GUI thread: the window repaints.
        scanning = f"Opening {Path(folder).name}: looking for new and changed images…"
        try:
            return run_busy(self, scanning, Project.open, folder)
        except look_only.ReadOnlyFolderError as exc:  # a read-only share: open it to look only
            return run_busy(self, scanning, look_only.open_read_only, folder, exc)
        except DamagedStoreError as exc:
            if not self.confirm_recover(str(exc)):
                self.show_message(f"Not opened: {exc}", "error")
                return None
        return run_busy(self, scanning, Project.open, folder, recover=True)

    def confirm_recover(self, text: str) -> bool:
        """Ask whether to rebuild a damaged project store (tests replace this)."""
        answer = QMessageBox.question(self, "Damaged project store", f"{text}\n\nRecover the store now?")
        return answer == QMessageBox.StandardButton.Yes

    def open_demo(self) -> bool:
        """Copy the sample faces into the demo folder and open it."""
        try:
            folder = create_demo_project(self.settings.demo_dir)
        except OSError as exc:
            self.show_message(f"Cannot create the demo project: {exc}", "error")
            return False
        return self.open_project(folder)

    def close_project(self) -> bool:
        """Save and close the open project, back to the start page."""
        self.message_bar.hide()  # its messages are about the project left (a save's come after)
        session, self.session = self.session, None
        if session is None:
            return True
        self.state.protected_changed.disconnect(session.set_protected)
        self.canvas.edited.disconnect(session.note_edit)
        self.model_loop.detach()
        ok = session.close()
        session.deleteLater()
        self.canvas.set_content(None, None)
        self.image_list.clear()
        self.canvas_status.show_model(None)
        self.read_only_view.show(None)
        self.setWindowTitle("FaceParse Studio")
        self.show_start_page()
        return ok

    def export_lapa(
        self, out_dir: str | Path | None = None, reviewed_only: bool = False
    ) -> dict[str, int] | None:
        """Export the labeled faces as a LaPa folder.

        With `out_dir`, at once, returning the counts (scripts, tests). Without, File → Export
        LaPa: the export dialog asks where and how to split, and the export runs in a worker
        with a progress bar (returns None; the message bar says how it went).
        """
        if self.session is None:
            return None
        if out_dir is not None:
            return self.session.export_lapa(out_dir, reviewed_only=reviewed_only)
        root = self.session.project.root
        last, counts = self.settings.last_export(root), self.session.counts()
        dialog = ExportDialog(root, reviewed_only, self, last=last, counts=counts)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        request = dialog.request()
        self.settings.set_last_export(root, request.form())
        self.session.save_all()  # the export reads the labels from disk
        self.export_worker = start_export(self, root, request)
        self.export_worker.finished.connect(
            lambda counts: self.show_message(
                export_message(request.out_dir, counts, self.session.counts() if self.session else {}, request.reviewed_only)
            )
        )
        self.export_worker.errored.connect(lambda text: self.show_message(f"Export failed: {text}", "error"))
        return None

    # ------------------------------------------------------------ session glue
    def show_message(self, text: str, level: str = "info") -> None:
        for offer in (self.train_offer, self.face_offer, self.import_offer):
            offer.hide()
        current = self.session.current if self.session is not None else None
        self.message_bar.show_message(text, level, current.id if current is not None else None)

    def _offer_training(self, text: str) -> None:
        self.show_message(text, "info")
        self.train_offer.show()

    def _offer_face_tool(self, text: str) -> None:
        """No face was found in the photo on screen ('' : faces are there now)."""
        if text:
            self.show_message(text, "info")
            self.face_offer.show()
        elif not self.face_offer.isHidden():
            self.face_offer.hide()
            self.message_bar.hide()

    def use_face_tool(self) -> None:
        """Switch to the face-box tool (the no-face offer)."""
        self.state.set_tool(Tool.FACE)
        self.canvas.setFocus()

    def show_training_panel(self) -> None:
        """Show and raise the training panel (the "Train a model…" offer)."""
        self.train_dock.show()
        self.train_dock.raise_()
        self.train_panel.form.finetune_button.setFocus()

    def _show_model(self, version: str | None) -> None:
        if version is not None and self.train_offer.isVisible():
            self.train_offer.hide()
            self.message_bar.hide()
        self.canvas_status.show_model(version)

    def _toggle_heat(self, on: bool) -> None:
        self.canvas.set_heat_visible(on)
        self.canvas_status.show_heat_legend(on)
        if on and self.session is not None and not self.canvas.has_heat:
            if self.model_loop.version is None:
                self.show_message("No model yet, so no confidence view: train a model first.")
            else:
                self.statusBar().showMessage(
                    "The confidence view appears once the model has predicted this face.", 5000
                )

    def _show_faces_status(self, text: str) -> None:
        self._faces_status = text
        self.statusBar().showMessage(text, 6000)

    def _show_image(self, rec) -> None:
        session = self.session
        if session is None:
            return
        # "1 face in a.jpg" is about the image left: it must not stay up over the next one.
        if self.statusBar().currentMessage() == self._faces_status:
            self.statusBar().clearMessage()
        self.message_bar.moved_on(rec.id if rec is not None else None)  # a report of the last goes
        self.canvas.set_content(session.image, session.document, keep_view=False)
        self.image_list.set_current(rec.id if rec is not None else None)
        if rec is not None:
            self.setWindowTitle(look_only.window_title(session.project, rec))
            self.settings.set_last_image(session.project.root, rec.relpath)

    def _refresh_records(self) -> None:
        if self.session is not None:
            self._scans = self.session.project.scans
            self.image_list.set_records(self.session.records(), self.session.problems)

    def _refresh_touched(self) -> None:
        session = self.session
        if session is None:
            return
        if session.project.scans != self._scans:  # rescanned on opening a photo: any row may be renamed
            return self._refresh_records()
        touched, self._touched = self._touched, set()
        if session.current is not None:
            touched.add(session.current.id)
        touched |= set(session.problems)
        self.image_list.update_records(session.project.records_of(touched), session.problems)

    def _open_image(self, image_id: int) -> None:
        if self.session is not None:
            self.session.open_image(image_id)

    def next_unfinished(self) -> None:
        if self.session is not None:
            self.session.next_unfinished()

    def next_least_sure(self) -> None:
        """Open the unfinished image the model is least sure of (else the next unfinished)."""
        if self.session is None:
            return
        image_id = self.model_loop.least_sure_unfinished()
        if image_id is None:
            self.statusBar().showMessage(
                "No uncertainty scores yet (they need a model); opening the next unfinished.", 5000
            )
            self.session.next_unfinished()
        else:
            self.session.open_image(image_id)

    def _accept(self) -> None:
        self.model_loop.accept()

    def _step(self, offset: int) -> None:
        if self.session is not None:
            self.session.step(offset, self.image_list.visible_ids() or None)

    def _set_status(self, status: str) -> None:
        if self.session is not None:
            self.session.set_status(status)

    def _save(self) -> None:
        if self.session is not None and self.session.save(force=True):
            self.statusBar().showMessage("Saved", 3000)

    def _undo(self) -> None:
        if self.session is not None:
            self.session.undo()

    def _redo(self) -> None:
        if self.session is not None:
            self.session.redo()

    def confirm_discard(self) -> bool:
        """Ask whether to give up labels that could not be saved (tests replace this)."""
        return ask_discard(self, *self.session.unsaved() if self.session else ([], ""))

    def _may_leave_project(self, leaving: str = "close") -> bool:
        """Whether the project may go ("quit", "close", "open"): a run or unsaved labels ask."""
        if self.model_loop.training.running and not self._closing_for_signal and not (
            self.confirm_stop_training() if leaving == "quit" else self.confirm_stop_training(leaving)
        ):
            return False
        if self.session is None or self.session.save_all():
            return True
        if self._closing_for_signal:  # no one may be there to answer: keep the labels, stay open
            self.show_message("Labels could not be saved, so the window was not closed.", "error")
            return False
        return self.confirm_discard()

    def _restore_training_form(self) -> None:
        """The training form as the last session left it; every change is kept for the next."""
        state = self.loop_state
        kept = settings_from_stored(self.settings.training_form(), state.devices)
        state.update_settings(**{f.name: getattr(kept, f.name) for f in fields(kept)})
        state.settings_changed.connect(lambda: self.settings.set_training_form(stored_settings(state.settings)))

    def confirm_stop_training(self, leaving: str = "quit") -> bool:
        """Ask whether to quit, close or open another project ("quit", "close", "open") while a
        training run is going (tests replace this); yes by itself if the run ends meanwhile."""
        return ask_stop_training(self, self.loop_state.running_changed, leaving)

    def close_for_signal(self) -> None:
        """Close on SIGTERM or Ctrl+C in the terminal: labels are saved as on any close, a
        training run is stopped without asking (no one may be there to answer)."""
        self._closing_for_signal = True
        try:
            self.close()
        finally:
            self._closing_for_signal = False

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt API)
        if not self._may_leave_project("quit"):
            event.ignore()
            return
        save_layout(self, self.settings)
        self.close_project()
        self.model_loop.training.stop_job()
        event.accept()

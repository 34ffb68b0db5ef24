"""The main window's menus and keyboard shortcuts: every action, its keys and what it calls.

Built once by :func:`build_menus` on the window, which keeps the actions it enables and
disables (``window.export_action``, ``window.undo_action``, ...). Help → Keyboard shortcuts
lists these same actions, so the sheet never disagrees with the keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence

from faceparse_app.widgets.class_palette import CLASS_HOTKEYS
from faceparse_app.widgets.face_steps import NEXT_FACE_KEYS, PREVIOUS_FACE_KEYS, step_face_in_window
from faceparse_app.widgets.folder_rescan import RESCAN_KEY, rescan_folder
from faceparse_app.widgets.help_dialogs import show_about, show_shortcuts
from faceparse_app.widgets.label_colours import MIN_KEPT_OPACITY
from faceparse_app.widgets.label_import import import_labels_in_window

if TYPE_CHECKING:
    from faceparse_app.main_window import MainWindow


def _action(window: MainWindow, menu, text: str, slot, keys=(), checkable: bool = False) -> QAction:
    action = QAction(text, window)
    if keys:
        action.setShortcuts([QKeySequence(k) for k in keys])
    action.setCheckable(checkable)
    action.triggered.connect(slot)
    if menu is not None:
        menu.addAction(action)
    else:
        window.addAction(action)  # shortcut only
    return action


def build_menus(window: MainWindow) -> None:
    """File, Edit, View, Tools, Image, Panels and Help, with their shortcuts."""
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    _action(
        window,
        file_menu,
        "&Open folder…",
        window.start_page.choose_folder,
        [QKeySequence.StandardKey.Open],
    )
    _action(window, file_menu, "Open &demo project", window.open_demo)
    window.rescan_action = _action(
        window, file_menu, "Re&scan folder", lambda: rescan_folder(window), [RESCAN_KEY]
    )
    window.rescan_action.setToolTip(
        f"Rescan folder ({RESCAN_KEY}): take in photos copied into the folder, renamed or "
        "deleted there, without closing the project"
    )
    file_menu.setToolTipsVisible(True)
    file_menu.addSeparator()
    window.export_action = _action(window, file_menu, "&Export LaPa…", lambda: window.export_lapa())
    window.export_reviewed_action = _action(
        window,
        file_menu,
        "Export LaPa (reviewed only)…",
        lambda: window.export_lapa(reviewed_only=True),
    )
    window.import_action = _action(
        window, file_menu, "&Import labels…", lambda: import_labels_in_window(window)
    )
    window.import_action.setToolTip(
        "Import labels: a LaPa labels folder or tree, a FaceParse Studio export or CelebAMask-HQ "
        "masks become the photos' labels (needs review); a photo you labeled keeps yours"
    )
    file_menu.addSeparator()
    window.save_action = _action(
        window, file_menu, "&Save", window._save, [QKeySequence.StandardKey.Save]
    )
    window.close_action = _action(
        window,
        file_menu,
        "&Close project",
        lambda: window._may_leave_project() and window.close_project(),
    )
    # Quit sits apart from Close project (one slip of the mouse away before); closing the
    # window asks first while a training run is going or labels could not be saved.
    file_menu.addSeparator()
    _action(window, file_menu, "&Quit", window.close, [QKeySequence.StandardKey.Quit])

    edit_menu = bar.addMenu("&Edit")
    window.undo_action = _action(
        window, edit_menu, "&Undo", window._undo, [QKeySequence.StandardKey.Undo]
    )
    window.redo_action = _action(
        window, edit_menu, "&Redo", window._redo, ["Ctrl+Shift+Z", "Ctrl+Y"]
    )

    view_menu = bar.addMenu("&View")
    _action(window, view_menu, "&Fit", window.canvas.zoom_fit, ["Ctrl+0"])
    _action(window, view_menu, "&Actual size (1:1)", window.canvas.zoom_actual, ["Ctrl+1"])
    _action(
        window, view_menu, "Zoom &in", lambda: window.canvas.zoom_by(1.25), ["Ctrl++", "Ctrl+="]
    )
    _action(window, view_menu, "Zoom &out", lambda: window.canvas.zoom_by(0.8), ["Ctrl+-"])
    view_menu.addSeparator()
    view_menu.addAction(window.tool_bar.overlay_action)
    view_menu.addAction(window.tool_bar.outline_action)
    view_menu.addAction(window.tool_bar.heat_action)
    window.tool_bar.heat_action.toggled.connect(window._toggle_heat)
    view_menu.addAction(window.tool_bar.faces_action)
    window.tool_bar.faces_action.toggled.connect(window.canvas.set_faces_visible)
    window.tool_bar.faces_action.toggled.connect(window.settings.set_show_faces)
    window.tool_bar.faces_action.setChecked(window.settings.show_faces)
    window.canvas.set_faces_visible(window.settings.show_faces)
    # The brush size, the class painted and the overlay's opacity are the annotator's own:
    # kept between sessions (a kept class the label set does not have is ignored).
    if window.settings.brush_radius is not None:
        window.state.set_radius(window.settings.brush_radius)
    kept_class = window.settings.paint_class
    if kept_class is not None and 0 <= kept_class < window.state.label_set.num_classes:
        window.state.set_class(kept_class)
    kept_opacity = window.settings.overlay_opacity
    if kept_opacity is not None and kept_opacity >= MIN_KEPT_OPACITY:
        window.state.set_opacity(kept_opacity)
    window.state.radius_changed.connect(window.settings.set_brush_radius)
    window.state.class_changed.connect(window.settings.set_paint_class)
    window.state.opacity_changed.connect(window.settings.set_overlay_opacity)
    # So is the image list's sort order (the filter is not: each project opens showing all).
    if window.settings.image_sort is not None:
        window.image_list.set_sort_order(window.settings.image_sort)
    window.image_list.sort_changed.connect(window.settings.set_image_sort)

    tools_menu = bar.addMenu("&Tools")
    for action in window.tool_bar.tool_actions.values():
        tools_menu.addAction(action)
    tools_menu.addSeparator()
    _action(window, tools_menu, "Smaller brush", lambda: window.state.grow_radius(-1), ["["])
    _action(window, tools_menu, "Larger brush", lambda: window.state.grow_radius(1), ["]"])
    window.class_actions = [
        _action(
            window, None, f"Class {cls}", lambda _c=False, c=cls: window.state.set_class(c), [key]
        )
        for cls, key in enumerate(CLASS_HOTKEYS)
    ]

    image_menu = bar.addMenu("&Image")
    window.next_unfinished_action = _action(
        window, image_menu, "&Next unfinished", window.next_unfinished, ["N"]
    )
    _action(
        window,
        image_menu,
        "Ne&xt image",
        lambda: window._step(1),
        [QKeySequence.StandardKey.MoveToNextPage],
    )
    _action(
        window,
        image_menu,
        "&Previous image",
        lambda: window._step(-1),
        [QKeySequence.StandardKey.MoveToPreviousPage],
    )
    image_menu.setToolTipsVisible(True)
    for text, keys, offset in (("Next &face", NEXT_FACE_KEYS, 1), ("Pre&vious face", PREVIOUS_FACE_KEYS, -1)):
        action = _action(window, image_menu, text, lambda _c=False, o=offset: step_face_in_window(window, o), keys)
        # On the canvas only: elsewhere (the training form, the image list) Tab moves the focus.
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        window.canvas.addAction(action)
        action.setToolTip(f"{text.replace('&', '')} ({keys[0]}): select the {'next' if offset > 0 else 'previous'} "
                          "face of a group photo, left to right, and zoom to it")  # fmt: skip
        setattr(window, "next_face_action" if offset > 0 else "previous_face_action", action)
    window.next_least_sure_action = _action(
        window, image_menu, "Next &least sure", window.next_least_sure, ["Shift+N"]
    )
    image_menu.addSeparator()
    window.accept_action = _action(window, image_menu, "&Accept pre-label", window._accept, ["A"])
    _action(
        window, image_menu, "Mark &labeled", lambda: window._set_status("labeled"), ["Ctrl+Return"]
    )
    _action(
        window,
        image_menu,
        "Mark &reviewed",
        lambda: window._set_status("reviewed"),
        ["Ctrl+Shift+Return"],
    )
    _action(window, image_menu, "Mark in &progress", lambda: window._set_status("in_progress"))
    window.panels_menu = bar.addMenu("&Panels")
    window.panels_menu.menuAction().setVisible(False)
    window._project_actions = [
        window.rescan_action,
        window.export_action,
        window.export_reviewed_action,
        window.import_action,
        window.save_action,
        window.close_action,
        window.undo_action,
        window.redo_action,
        window.next_unfinished_action,
        window.next_least_sure_action,
        window.accept_action,
    ]

    help_menu = bar.addMenu("&Help")
    _action(window, help_menu, "&Keyboard shortcuts", lambda: show_shortcuts(window), ["F1", "?"])
    _action(window, help_menu, "&About FaceParse Studio", lambda: show_about(window))

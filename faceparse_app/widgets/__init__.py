"""Qt widgets of the desktop tool; each mirrors a Qt-free model and holds no project logic."""


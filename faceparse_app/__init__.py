"""FaceParse Studio: the desktop tool for labeling faces in LaPa's 11 classes.

The Qt-free core (project store, label document, undo history, tool maths, LaPa export) lives in
``project``, ``document``, ``history``, ``tools``, ``export`` and ``landmarks``; the widgets build
on it and never the reverse.
"""

__version__ = "0.1.0"

"""FaceParse trainer: masked self-supervised pretraining and few-label fine-tuning for face parsing.

Qt-free by contract: nothing in this package imports a GUI toolkit (see tests/trainer/test_qt_free.py).
"""

__version__ = "0.1.0"

"""Specific errors that name the file at fault and say what to do."""

from __future__ import annotations


class FaceParseError(Exception):
    """Base class of every error this package raises on purpose."""


class ImageReadError(FaceParseError):
    """An image file is unreadable, truncated or of an unsupported format."""


class LabelMapError(FaceParseError):
    """A label map has the wrong size, wrong class values, or is missing."""


class DatasetError(FaceParseError):
    """A dataset folder does not have the expected layout."""


class CheckpointError(FaceParseError):
    """A checkpoint is missing, corrupted, or of the wrong kind."""


class ModelConfigError(FaceParseError):
    """A model preset or encoder-weights request cannot be satisfied."""


class PredictionInterrupted(FaceParseError):
    """A prediction was stopped by its caller (``interrupt`` said so) to make way for more
    urgent work; nothing is wrong with the image or the model."""

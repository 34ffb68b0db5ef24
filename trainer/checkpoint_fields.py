"""The run fields of a checkpoint's metadata that commands read (beyond the model config):
their types, checked when the metadata is parsed, so that an edited or damaged file is one
clear error rather than a traceback in whichever command reads the field first."""

from __future__ import annotations

from typing import Any


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# field -> (check, what it should be). A field that is absent (or null) is not checked.
RUN_FIELDS: dict[str, tuple[Any, str]] = {
    "stage": (lambda v: isinstance(v, str), "a stage name"),
    "step": (_count, "a step count"),
    "epoch": (_count, "an epoch count"),
    "total_steps": (_count, "a step count"),
    "label_subset": (_names, "a list of face names"),
    "training": (lambda v: isinstance(v, dict), "a training config (a JSON object)"),
    "metrics": (lambda v: isinstance(v, dict), "a JSON object of scores"),
}


def run_field_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with the first run field of the wrong type, or None when all are right."""
    for name, (check, expected) in RUN_FIELDS.items():
        value = meta.get(name)
        if value is not None and not check(value):
            shown = repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            return f"{name} {shown} is not {expected}"
    return None

"""Command-line flags generated from the run configs, so the CLI and the Python API cannot drift.

Every setting of a run config (``trainer.configs``) is one ``--flag`` under its flat name, with
its help taken from the ``Args:`` section of the dataclass that declares it. A recipe's settings
default to the recipe that ``--recipe`` names; a flag changes one of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from trainer.configs import RunConfig
from trainer.errors import FaceParseError
from trainer.recipes import Entry


class UsageError(FaceParseError):
    """A flag value the configs reject (e.g. a fraction above 1)."""


def field_help(cls: type) -> dict[str, str]:
    """Per-field help from the Google-style ``Args:`` sections of a class and its bases
    ("name: text", "a, b: text"), ``%`` escaped for argparse."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        helps.update(_args_section(klass.__dict__.get("__doc__") or ""))
    return {k: v.replace("%", "%%").replace("``", "") for k, v in helps.items()}


def _args_section(doc: str) -> dict[str, str]:
    if "Args:" not in doc:
        return {}
    helps: dict[str, str] = {}
    current: list[str] = []
    for line in doc.split("Args:", 1)[-1].splitlines():
        match = re.match(r"^\s{4,8}([a-z_][a-z0-9_, ]*):\s*(.*)$", line)
        if match and not line.startswith(" " * 12):
            current = [n.strip() for n in match.group(1).split(",")]
            for name in current:
                helps[name] = match.group(2).strip()
        elif line.strip() and current:
            for name in current:
                helps[name] += " " + line.strip()
        elif not line.strip():
            current = []
    return helps


def _unwrap_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else str
    return tp


def _flag_kwargs(tp: Any) -> dict[str, Any]:
    """argparse settings for a field type: bools become ``--x/--no-x``, Literals choices,
    fixed-length tuples that many values, other sequences one or more values."""
    tp = _unwrap_optional(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is typing.Literal:
        return {"choices": list(args)}
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return {"nargs": len(args), "type": args[0]}
        return {"nargs": "+", "type": args[0] if args else str}
    return {"type": tp if tp in (int, float, str) else str}


def _recipe_help(table: dict[str, Entry], default: str) -> str:
    names = ", ".join(table)
    return (
        f"named settings of how the network learns: {names} (default: {default}; "
        "`faceparse recipes` lists each one's settings); the flags below change single settings"
    )


_GROUPS = {
    None: "where the network starts",
    "data": "data",
    "recipe": "recipe: how the network learns",
    "runtime": "runtime: where and how the run executes",
}


def add_run_config_flags(
    parser: argparse.ArgumentParser,
    cls: type[RunConfig],
    recipes: dict[str, Entry],
    overrides: dict[str, dict[str, Any]] | None = None,
) -> None:
    """``--recipe`` and one ``--flag`` per setting of a run config, grouped by part.

    Settings without a default become required flags; a recipe setting's default is the
    recipe's (its help shows the default recipe's value).
    """
    overrides = overrides or {}
    groups = {part: parser.add_argument_group(title) for part, title in _GROUPS.items()}
    groups["recipe"].add_argument(
        "--recipe", choices=list(recipes), default=cls.DEFAULT_RECIPE,
        help=_recipe_help(recipes, cls.DEFAULT_RECIPE),
    )  # fmt: skip
    default_recipe = cls.named_recipe(cls.DEFAULT_RECIPE)
    layout = cls.layout()
    for name, (part, attr) in sorted(layout.items(), key=lambda kv: list(_GROUPS).index(kv[1][0])):
        owner = cls.PARTS[part] if part else cls
        f = next(f for f in dataclasses.fields(owner) if f.name == attr)  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {"dest": name, "help": field_help(owner).get(attr, "")}
        kwargs.update(_flag_kwargs(typing.get_type_hints(owner)[attr]))
        if part == "recipe":
            value = getattr(default_recipe, attr)
            kwargs["default"] = None  # not given: the recipe's
            shown = f"; {cls.DEFAULT_RECIPE}: {value}" if value is not None else ""
            kwargs["help"] += f" (default: the recipe's{shown})"
        elif f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            kwargs["default"] = default
            if kwargs.get("action") is argparse.BooleanOptionalAction:
                kwargs["help"] += f" (default: {'on' if default else 'off'})"
            elif default is not None:
                kwargs["help"] += f" (default: {default})"
        else:
            kwargs["required"] = True
        kwargs.update(overrides.get(name, {}))
        groups[part].add_argument("--" + name.replace("_", "-"), **kwargs)


def run_config_from_args(cls: type[RunConfig], args: argparse.Namespace) -> Any:
    """The run config the parsed flags describe; a rejected value becomes a UsageError."""
    values: dict[str, Any] = {}
    for name, (part, _) in cls.layout().items():
        value = getattr(args, name, None)
        if part == "recipe" and value is None:
            continue  # the recipe's own value
        values[name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls.from_flat(values, recipe=args.recipe)
    except (ValueError, TypeError) as exc:
        raise UsageError(_as_flags(str(exc), cls.layout())) from None


def _as_flags(message: str, names: Iterable[str]) -> str:
    """``message`` with each setting's name written as the flag that sets it (``batch_size``
    -> ``--batch-size``): the user typed flags, not the config's field names."""
    said, got, value = message.partition(" got ")  # the value as the user gave it stays
    for name in sorted(names, key=len, reverse=True):
        flag = "--" + name.replace("_", "-")
        said = re.sub(rf"(?<![\w-]){re.escape(name)}(?!\w)", flag, said)
    return said + got + value


def recipe_table(recipes: dict[str, Entry]) -> str:
    """Each recipe: its name, when to use it, and its settings as flags."""
    lines = []
    for name, entry in recipes.items():
        settings = " ".join(
            f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else
            f"--{'' if v else 'no-'}{k.replace('_', '-')}"
            for k, v in dataclasses.asdict(entry.recipe).items()
            if v is not None
        )  # fmt: skip
        lines += [f"  {name}: {entry.use}", f"      {settings}"]
    return "\n".join(lines)

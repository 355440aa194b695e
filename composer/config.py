"""Settings read from files and options: each field's range is declared beside the field, once.

A dataclass field says what it may hold with ``metadata=within(low, high)`` (or ``choices``);
``dataclass_problem`` checks a dict read from a file (run.json) against the dataclass before
anything is built from it, so a tampered or damaged file is one line naming the field, never a
traceback, a loop of 10⁹ layers or a grid of 40 GB. ``check_option`` does the same for a
command-line value, with a ceiling a user can lift (``--no-ceiling``) where a big value is
legitimate but slow.
"""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, fields

from composer import ComposerError

LONGEST_TEXT = 4096  # characters in any string field of run.json (names, paths, hashes)
LONGEST_LIST = 100_000  # items in any list field (kept epochs, schedule stretches)


def within(low: float, high: float) -> dict:
    return {"within": (low, high)}


def choices(*names: str) -> dict:
    return {"choices": names}


def metre_problem(text: str) -> str | None:
    """Why ``text`` is not a metre such as 3/4 or 6/8: a positive numerator over a power-of-two
    denominator (None when it is)."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 3 for p in parts) or int(parts[0]) < 1 or int(parts[1]) not in (1, 2, 4, 8, 16, 32):
        return f"{describe(text)} is not a metre such as 4/4, 3/4 or 6/8"
    return None


def describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def value_problem(value, hint, metadata) -> str | None:
    """Why ``value`` is not of type ``hint`` within the field's declared range (None if it is)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return f"{describe(value)} is not a list"
        if len(value) > LONGEST_LIST:
            return f"holds {len(value):,} items (at most {LONGEST_LIST:,})"
        if len(args) == 2 and args[1] is Ellipsis:
            items = [(item, args[0]) for item in value]
        elif len(value) != len(args):
            return f"{describe(value)} is not a list of {len(args)}"
        else:
            items = list(zip(value, args))
        for item, item_hint in items:
            problem = value_problem(item, item_hint, metadata)
            if problem:
                return f"item {problem}"
        return None
    if hint is bool:
        return None if isinstance(value, bool) else f"{describe(value)} is not true or false"
    if hint is str:
        if not isinstance(value, str):
            return f"{describe(value)} is not text"
        if len(value) > LONGEST_TEXT:
            return f"text of {len(value):,} characters (at most {LONGEST_TEXT:,})"
        allowed, check = metadata.get("choices"), metadata.get("check")
        if allowed and value not in allowed:
            return f"{describe(value)} is not one of {', '.join(map(repr, allowed))}"
        return check(value) if check else None
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{describe(value)} is not a whole number"
    if hint is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        return f"{describe(value)} is not a finite number"
    if hint in (int, float) and "within" in metadata:
        low, high = metadata["within"]
        if not low <= value <= high:
            return f"{describe(value)} is not from {low:g} to {high:g}"
    return None


def dataclass_problem(cls, values, where: str) -> str | None:
    """The first field of ``values`` (a dict read from a file) that ``cls`` cannot hold, as
    "where.field: why"; unknown and missing required fields included. None when all is well."""
    if not isinstance(values, dict):
        return f"{where}: {describe(values)} is not an object"
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = [key for key in values if key not in known]
    if unknown:
        return f"{where}.{str(unknown[0])[:40]}: unknown field"
    for name, f in known.items():
        if name not in values:
            if f.default is MISSING and f.default_factory is MISSING:
                return f"{where}.{name}: missing"
            continue
        problem = value_problem(values[name], hints[name], f.metadata)
        if problem:
            return f"{where}.{name}: {problem}"
    return None


def check_option(option: str, value: float | None, low: float, high: float, ceiling: float | None = None,
                 lifted: bool = False, unit: str = "") -> None:
    """A command-line number: finite and from ``low`` to ``high``; above ``ceiling`` only when
    the user lifts it (a long run asked for on purpose, not by a typo of three zeros)."""
    if value is None:
        return
    if not math.isfinite(value) or not low <= value <= high:
        raise ComposerError(f"{option} {value:g}: give a number from {low:g} to {high:g}{unit}")
    if ceiling is not None and value > ceiling and not lifted:
        raise ComposerError(f"{option} {value:g}: above the ceiling of {ceiling:g}{unit}; add --no-ceiling to go ahead")

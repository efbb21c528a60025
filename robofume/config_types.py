"""Type checks of config values read from JSON against their dataclass field's annotation: one rule
for the learner's and the session's config files, so a wrong type is a one-line error up front
instead of a traceback deep in training."""

from __future__ import annotations

import dataclasses
from typing import Any

SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "None": (type(None),),
}
"""Annotation names that are checked, and the JSON value types each accepts (a float field takes an
int; a bool never counts as a number)."""


def annotation_text(f: dataclasses.Field[Any]) -> str:
    """The field's annotation as written (``"int"``, ``"float | None"``), with or without postponed
    evaluation of annotations."""
    return f.type.__name__ if isinstance(f.type, type) else str(f.type)


def scalar_type_error(f: dataclasses.Field[Any], value: Any, where: str = "") -> str | None:
    """A one-line message when ``value`` does not fit a scalar field (``int``, ``float``, ``str``,
    ``bool``, or one of these ``| None``); None when it fits or the field is not scalar."""
    text = annotation_text(f)
    parts = [p.strip() for p in text.split("|")]
    if not all(p in SCALAR_TYPES for p in parts):
        return None
    allowed = tuple(t for p in parts for t in SCALAR_TYPES[p])
    if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
        return None
    return f"{where}{f.name} must be {text}, got {value!r}"

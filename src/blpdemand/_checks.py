"""Type checks of configuration fields at construction; each error names the field and value.

Layer 0: imports numpy and ``blpdemand.errors`` only, so every config class can use it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from blpdemand.errors import SpecificationError

_WANTED = {"int": "an integer", "float": "a number (int or float)", "bool": "True or False"}


def check_field_types(config: object) -> None:
    """Check every ``int``, ``float`` and ``bool`` field of a config dataclass.

    The kind comes from the field's annotation (``int``, ``float``, ``bool``, each optionally
    ``| None``). Integers must be integers (numpy integers too, not bool), floats int or float
    (not bool, not text), booleans bool. Accepted values are stored as plain int, float or bool,
    so that later range checks compare numbers and results serialize. Raises SpecificationError
    ``"Owner: field=value must be ..."``.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Options:
    ...     steps: int = 3
    ...     def __post_init__(self) -> None:
    ...         check_field_types(self)
    >>> Options(steps=2.5)
    Traceback (most recent call last):
    ...
    blpdemand.errors.SpecificationError: Options: steps=2.5 must be an integer, got float
    """
    if not dataclasses.is_dataclass(config):
        raise TypeError("check_field_types needs a dataclass instance, "
                        f"got {type(config).__name__}")
    for field in dataclasses.fields(config):
        kind, optional = _kind(field.type)
        if kind is None:
            continue
        value = getattr(config, field.name)
        if value is None and optional:
            continue
        checked = _as_kind(value, kind)
        if checked is None:
            wanted = _WANTED[kind] + (" or None" if optional else "")
            raise SpecificationError(f"{type(config).__name__}: {field.name}={value!r} must be "
                                     f"{wanted}, got {type(value).__name__}")
        object.__setattr__(config, field.name, checked)


def _kind(annotation: object) -> tuple[str | None, bool]:
    """('int' | 'float' | 'bool' | None, whether None is allowed) from a field annotation."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = [part.strip() for part in str(text).split("|")]
    optional = "None" in parts
    rest = [part for part in parts if part != "None"]
    if len(rest) == 1 and rest[0] in _WANTED:
        return rest[0], optional
    return None, optional


def _as_kind(value: object, kind: str) -> int | float | bool | None:
    """The value as a plain int, float or bool, or None where it is not of that kind."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value) if kind == "bool" else None
    if kind == "int" and isinstance(value, (int, np.integer)):
        return int(value)
    if kind == "float" and isinstance(value, (int, float, np.integer, np.floating)):
        try:
            return float(value)
        except OverflowError:  # an int beyond float range: infinite, for the range checks
            return math.copysign(math.inf, float(np.sign(value)))
    return None

"""Declaring a config field once: its type, range, choices, flag and whether the
tuner may vary it (`setting`), and checking values against it (`Field`).

`keras_unet_sr.config` declares every field with `setting(...)`; the JSON
loader, the command-line flags, the model's argument checks and the tuner all
read these declarations.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from collections.abc import Iterator
from typing import Any

_KIND_WORDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true/false",
}


@dataclasses.dataclass(frozen=True)
class Setting:
    """What one config field accepts (its kind comes from the type annotation).

    Attributes:
        help: One line for `--help` and error messages.
        choices: The allowed values, or `None`.
        minimum: Smallest allowed value (inclusive), or `None`.
        above: Exclusive lower bound, or `None`.
        maximum: Largest allowed value (inclusive), or `None`.
        below: Exclusive upper bound, or `None`.
        odd: Only odd integers.
        length: Exact list length, or `None`.
        increasing: List values strictly increasing.
        flag: Command-line flag name without dashes; `""` = the field name
            in kebab case; `None` = no flag of its own.
        tunable: The tuner may vary it per trial (model/optimizer settings only:
            the data is prepared once per search).
    """

    help: str
    choices: tuple | None = None
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    below: float | None = None
    odd: bool = False
    length: int | None = None
    increasing: bool = False
    flag: str | None = ""
    tunable: bool = False

    @property
    def rule(self) -> str:
        """The allowed values, in words."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        parts = []
        if self.minimum is not None and self.maximum is not None:
            parts.append(f"{self.minimum:g}..{self.maximum:g}")
        elif self.minimum is not None and self.below is not None:
            parts.append(f"in [{self.minimum:g}, {self.below:g})")
        elif self.minimum is not None:
            parts.append(f">= {self.minimum:g}")
        elif self.above is not None:
            parts.append(f"> {self.above:g}")
        elif self.maximum is not None:
            parts.append(f"<= {self.maximum:g}")
        if self.odd:
            parts.append("odd")
        if self.length is not None:
            parts.append(f"{self.length} values")
        if self.increasing:
            parts.append("increasing")
        return ", ".join(parts) or "any"

    def problem(self, value: Any) -> str | None:
        """Why a value of the right kind is not allowed (`None`: it is)."""
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list):
            if self.length is not None and len(value) != self.length:
                return f"{value} needs {self.length} values ({self.rule})"
            if self.increasing and any(a >= b for a, b in itertools.pairwise(value)):
                return f"{value} must be increasing ({self.rule})"
        for item in values:
            if self.choices is not None and item not in self.choices:
                return f"{item!r} is not {self.rule}"
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                low_ok = (self.minimum is None or item >= self.minimum) and (
                    self.above is None or item > self.above
                )
                high_ok = (self.maximum is None or item <= self.maximum) and (
                    self.below is None or item < self.below
                )
                if not (low_ok and high_ok) or (self.odd and item % 2 == 0):
                    return f"{item!r} is out of range ({self.rule})"
        return None


def setting(default: Any = dataclasses.MISSING, help: str = "", **rules) -> Any:
    """A dataclass field with its `Setting` (see there for `rules`)."""
    spec = Setting(help=help, **rules)
    if isinstance(default, list):
        copy = list(default)
        return dataclasses.field(
            default_factory=lambda: list(copy), metadata={"spec": spec}
        )
    return dataclasses.field(default=default, metadata={"spec": spec})


@dataclasses.dataclass(frozen=True)
class Field:
    """A config field: where it lives, its type and its `Setting`."""

    section: str
    name: str
    kind: type  # int, float, str or bool (the list item's kind for lists)
    is_list: bool
    optional: bool
    spec: Setting

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def flag(self) -> str | None:
        if self.spec.flag is None:
            return None
        return "--" + (self.spec.flag or self.name.replace("_", "-"))

    def describe(self) -> str:
        kind = _KIND_WORDS[self.kind]
        return f"a list of {kind.split(' ', 1)[1]}s" if self.is_list else kind

    def convert(self, raw: Any) -> Any:
        """A JSON value or a flag's text as this field's type; raises ValueError."""
        if raw is None:
            if self.optional:
                return None
            raise ValueError("may not be null")
        if self.is_list:
            if isinstance(raw, str):
                raw = [part for part in raw.split(",") if part.strip()]
            if not isinstance(raw, list):
                raise ValueError(f"is not {self.describe()}")
            return [_as_kind(item, self.kind, self.describe()) for item in raw]
        return _as_kind(raw, self.kind, self.describe())

    def check(self, raw: Any) -> Any:
        """`convert` then the `Setting`'s rules; raises ValueError with the reason."""
        try:
            value = self.convert(raw)
        except ValueError as error:
            rule = self.spec.rule
            message = f"{error} ({rule})" if rule != "any" else str(error)
            raise ValueError(message) from None
        problem = None if value is None else self.spec.problem(value)
        if problem:
            raise ValueError(problem)
        return value


def _as_kind(raw: Any, kind: type, described: str) -> Any:
    text = raw.strip() if isinstance(raw, str) else None
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if text is not None and text.lower() in (
            "true",
            "false",
            "1",
            "0",
            "yes",
            "no",
        ):
            return text.lower() in ("true", "1", "yes")
    elif kind is str:
        if text is not None:
            return text
    elif not isinstance(raw, bool):  # JSON true is not the number 1
        if text is not None:
            try:
                value = kind(text)
            except ValueError:
                value = None
        elif isinstance(raw, int) or (kind is float and isinstance(raw, float)):
            value = kind(raw)
        elif kind is int and isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        else:
            value = None
        if value is not None and (kind is int or math.isfinite(value)):
            return value
    raise ValueError(f"{raw!r} is not {described}")


def _unpack(hint: Any) -> tuple[type, bool, bool]:
    optional = False
    args = typing.get_args(hint)
    if type(None) in args:
        optional = True
        (hint,) = [a for a in args if a is not type(None)]
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True, optional
    return hint, False, optional


def class_fields(section: str, cls: type) -> Iterator[Field]:
    """The `Field`s of a config dataclass declared with `setting(...)`."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind, is_list, optional = _unpack(hints[f.name])
        yield Field(section, f.name, kind, is_list, optional, f.metadata["spec"])

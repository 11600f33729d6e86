"""A batch's rows proven valid column by column, from the row schema's own pydantic core schema.

Validating 1,000 rows with pydantic was a third of a serving worker's time under 1,000-row batches (a py-spy
profile, docs/serving.md): one Python-visible value per cell, two Python validators per row for the time field.
`ColumnarRows` does the same checks a column at a time (types by `set(map(type, column))`, bounds with NumPy, the
time field's validators mapped over the column) on the rows orjson parsed, and hands the validated columns to
scoring, so features are built without going back through the row dicts.

It only ever *proves* a row valid, never refuses one: a row it cannot prove valid with exactly the value pydantic
would give (a string for a number, a bool, an int beyond 2**53, an unknown key, a time outside the ISO form
Python's and pydantic's parsers read alike, any error) is left to pydantic (`services.bodies`), which accepts or
refuses it as before. So refusals and their messages are pydantic's, and an accepted row's values are pydantic's:
`tests/code/test_columnar.py` feeds generated rows through both and compares.

The checks are read from the core schema of the row type (`services.schemas.flight_model`), not written here a
second time: `nullable`, `str` (length bounds), `float`/`int` (bounds), `bool`, a `union` of those with one choice
per JSON type, and `datetime` behind plain (`no-info`) before/after validators, which are called as they are. Any
other schema (a new constraint, a pattern, a validator with info) makes the checker decline every batch
(`ColumnarRows.build` returns None), and pydantic checks them all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
from pydantic import TypeAdapter
from pydantic_core import TzInfo

_NUMBER_TYPES = frozenset((int, float))
# Ints beyond this lose precision as floats; pydantic's conversion of them is not worth proving equal to Python's.
_EXACT_INT = 2**53
# The ISO 8601 form that both `datetime.fromisoformat` (Python 3.11) and pydantic's parser (speedate) read, to the
# same instant and offset: full seconds, at most microseconds, an upper-case T and Z, a colon in the offset. Any
# other form a validator lets through (lower-case t, `+0530`, nanoseconds, a leap second, non-ASCII digits) is left
# to pydantic.
_AGREED_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})", re.ASCII)
_STR_KEYS = frozenset(("type", "strict", "max_length", "min_length", "metadata", "ref"))
_NUMBER_KEYS = frozenset(("type", "strict", "allow_inf_nan", "ge", "gt", "le", "lt", "metadata", "ref"))
_DATETIME_KEYS = frozenset(("type", "strict", "tz_constraint", "microseconds_precision", "metadata", "ref"))


class Unsupported(ValueError):
    """A schema the columnar checks do not cover: the checker is not built and pydantic checks every row."""


@dataclass(frozen=True)
class Checked:
    """The outcome for a batch: which rows are proven valid, and every field's validated column (meaningful at the
    proven rows only). Numeric columns are float arrays with NaN for null, the others lists."""

    proven: np.ndarray
    columns: dict[str, Any] = field(default_factory=dict)


# (values, proven: updated in place) -> (the validated column, the values the rows must hold instead of the parsed
# ones, or None when they hold them already)
Column = Callable[[Sequence[Any], np.ndarray], tuple[Any, Sequence[Any] | None]]


def _mask(values: Sequence[Any], test: Callable[[Any], bool], proven: np.ndarray) -> None:
    proven &= np.fromiter(map(test, values), dtype=bool, count=len(values))


def _bounded(array: np.ndarray, schema: dict[str, Any]) -> np.ndarray:
    """Where the numbers (NaN: null) are within the schema's ge/gt/le/lt."""
    inside = np.ones(len(array), dtype=bool)
    with np.errstate(invalid="ignore"):
        for key, compare in (("ge", np.greater_equal), ("gt", np.greater), ("le", np.less_equal),
                             ("lt", np.less)):
            if key in schema:
                inside &= compare(array, schema[key])
    return inside


def _number_column(schema: dict[str, Any], nullable: bool) -> Column:
    """`float`: JSON numbers (not bools, not strings) within the bounds, as floats; ints become floats as pydantic
    makes them (exactly, below 2**53)."""
    if not set(schema) <= _NUMBER_KEYS:
        raise Unsupported(f"float schema with {sorted(set(schema) - _NUMBER_KEYS)}")
    allowed = _NUMBER_TYPES | ({type(None)} if nullable else set())

    def check(values: Sequence[Any], proven: np.ndarray) -> tuple[np.ndarray, list[Any] | None]:
        types = set(map(type, values))
        if not types <= allowed:
            _mask(values, lambda v: type(v) in allowed, proven)
            values = [v if type(v) in allowed else None for v in values]
            types &= allowed
        if type(None) in types:
            array = np.array(values, dtype=float)
            missing = np.isnan(array)  # orjson reads no NaN: a NaN here is a null
            proven &= (missing if nullable else False) | (np.isfinite(array) & _bounded(array, schema))
        else:
            array = np.fromiter(values, dtype=float, count=len(values))
            proven &= np.isfinite(array) & _bounded(array, schema)
        if int not in types:
            return array, None
        _mask(values, lambda v: type(v) is not int or -_EXACT_INT < v < _EXACT_INT, proven)
        return array, [float(v) if type(v) is int else v for v in values]

    return check


def _int_choice(schema: dict[str, Any]) -> Callable[[Any], bool]:
    if not set(schema) <= _NUMBER_KEYS or not schema.get("strict"):
        raise Unsupported("int schema that is not strict or has other constraints")
    low = max(schema.get("ge", -math.inf), schema.get("gt", -math.inf) + 1)
    high = min(schema.get("le", math.inf), schema.get("lt", math.inf) - 1)
    return lambda v: -_EXACT_INT < v < _EXACT_INT and low <= v <= high


def _float_choice(schema: dict[str, Any]) -> Callable[[Any], bool]:
    if not set(schema) <= _NUMBER_KEYS or not schema.get("strict"):
        raise Unsupported("float choice that is not strict or has other constraints")
    low, high = schema.get("ge", schema.get("gt", -math.inf)), schema.get("le", schema.get("lt", math.inf))
    return lambda v: math.isfinite(v) and (low < v if "gt" in schema else low <= v) and (
        v < high if "lt" in schema else v <= high)


class _Length:
    """A `str` choice's test: from JSON, pydantic's `str` takes only strings, strict or lax; only the length (in
    code points, as Python counts it) is checked."""

    def __init__(self, schema: dict[str, Any]) -> None:
        if not set(schema) <= _STR_KEYS:
            raise Unsupported(f"str schema with {sorted(set(schema) - _STR_KEYS)}")
        self.low, self.high = schema.get("min_length", 0), schema.get("max_length", math.inf)

    def __call__(self, value: str) -> bool:
        return self.low <= len(value) <= self.high

    def all(self, values: list[str]) -> bool:
        lengths = list(map(len, values))
        return not lengths or (self.low <= min(lengths) and max(lengths) <= self.high)


def _choices(schemas: list[dict[str, Any]]) -> dict[type, Callable[[Any], bool]]:
    """Per JSON value type, the one choice that takes it unchanged (a union's smart mode picks the exact type)."""
    makers = {"str": (str, _Length), "int": (int, _int_choice), "float": (float, _float_choice),
              "bool": (bool, lambda s: lambda v: True)}
    choices: dict[type, Callable[[Any], bool]] = {}
    for schema in schemas:
        kind = schema.get("type")
        if kind not in makers or (kind == "bool" and set(schema) - {"type", "strict", "metadata"}):
            raise Unsupported(f"union choice {kind!r}")
        python_type, make = makers[kind]
        if python_type in choices:
            raise Unsupported(f"union with two {kind} choices")
        choices[python_type] = make(schema)
    return choices


def _typed_column(choices: dict[type, Callable[[Any], bool]], nullable: bool) -> Column:
    """Values kept as parsed: each must be of a type some choice takes exactly, and pass that choice's test."""
    if nullable:
        choices = {**choices, type(None): lambda v: True}

    def check(values: Sequence[Any], proven: np.ndarray) -> tuple[Sequence[Any], None]:
        types = set(map(type, values))
        if types <= {str, type(None)} & set(choices):  # the common case, text or nulls: the lengths' range
            test = choices.get(str)
            if str not in types or (isinstance(test, _Length) and test.all([v for v in values if v is not None])):
                return values, None
        _mask(values, lambda v: type(v) in choices and choices[type(v)](v), proven)
        return values, None

    return check


def _time_column(before: list[Callable[[Any], Any]], schema: dict[str, Any],
                 after: list[Callable[[Any], Any]]) -> Column:
    """A `datetime` field behind plain validators: the before validators mapped over the column, the results parsed
    by `datetime.fromisoformat` where they are in the agreed ISO form (with pydantic's own `TzInfo`), then the after
    validators; any exception leaves its row to pydantic."""
    if not set(schema) <= _DATETIME_KEYS or schema.get("tz_constraint") not in ("aware", None):
        raise Unsupported(f"datetime schema {schema}")
    zones: dict[Any, TzInfo] = {}

    def parse(value: Any) -> datetime:
        if type(value) is not str or not _AGREED_ISO.fullmatch(value):
            raise ValueError("not in the agreed ISO form")
        stamp = datetime.fromisoformat(value)
        offset = stamp.utcoffset()
        zone = zones.get(offset)
        if zone is None:
            zone = zones[offset] = TzInfo(int(offset.total_seconds()))  # type: ignore[union-attr]
        return stamp.replace(tzinfo=zone)

    steps = [*before, parse, *after]

    def check(values: Sequence[Any], proven: np.ndarray) -> tuple[list[Any], list[Any]]:
        # Each distinct value once (a batch's times repeat: flights of one hour): the validators are plain
        # functions of the value, so a value validated once is validated for every row that holds it.
        try:
            distinct = dict.fromkeys(values)
        except TypeError:  # an unhashable value (a list, an object): value by value
            distinct = None
        keys = list(distinct) if distinct is not None else list(values)
        out = keys
        ok = np.ones(len(keys), dtype=bool)
        for step in steps:
            try:
                out = list(map(step, out))
            except Exception:  # noqa: BLE001 - some value fails: step value by value, that row to pydantic
                out = [_or_none(step, value, ok, i) if ok[i] else None for i, value in enumerate(out)]
        if distinct is None:
            proven &= ok
            return out, out
        if not ok.all():
            bad = {key for key, fine in zip(keys, ok, strict=True) if not fine}
            _mask(values, lambda v: v not in bad, proven)
        column = list(map(dict(zip(keys, out, strict=True)).__getitem__, values))
        return column, column

    return check


def _or_none(step: Callable[[Any], Any], value: Any, proven: np.ndarray, index: int) -> Any:
    try:
        return step(value)
    except Exception:  # noqa: BLE001 - whatever the validator raises, pydantic says what it means
        proven[index] = False
        return None


def _column(schema: dict[str, Any]) -> Column:
    """The check for one field's core schema."""
    nullable = schema.get("type") == "nullable"
    inner = schema["schema"] if nullable else schema
    kind = inner.get("type")
    if kind == "float" and inner.get("strict"):
        return _number_column(inner, nullable)
    if kind == "union" and not inner.get("custom_error_type") and inner.get("mode", "smart") == "smart":
        return _typed_column(_choices([c[0] if isinstance(c, tuple) else c for c in inner["choices"]]), nullable)
    if kind in ("str", "int", "bool"):
        return _typed_column(_choices([inner]), nullable)
    before: list[Callable[[Any], Any]] = []
    after: list[Callable[[Any], Any]] = []
    node = inner
    while node.get("type") in ("function-before", "function-after") and not nullable:
        function = node["function"]
        if function.get("type") != "no-info":
            raise Unsupported("a validator that takes validation info")
        (before.insert(0, function["function"]) if node["type"] == "function-before"
         else after.insert(0, function["function"]))
        node = node["schema"]
    if node.get("type") == "datetime" and not nullable:
        return _time_column(before, node, after)
    raise Unsupported(f"field schema {kind!r}")


class ColumnarRows:
    """The columnar checks of one row type (a pydantic TypedDict with `extra="forbid"`)."""

    def __init__(self, row_type: Any) -> None:
        schema = TypeAdapter(row_type).core_schema
        if schema.get("type") == "definitions":
            schema = schema["schema"]
        if schema.get("type") != "typed-dict" or schema.get("extra_behavior") != "forbid":
            raise Unsupported("not a typed dict that forbids unknown keys")
        fields = schema["fields"]
        self.known = frozenset(fields)
        self.required = [name for name, spec in fields.items() if spec.get("required", True)]
        self.optional = [name for name in fields if name not in self.required]
        if not self.required:
            raise Unsupported("no required field")
        self.checks = {name: _column(spec["schema"]) for name, spec in fields.items()}
        self._pick = itemgetter(*self.required)
        self._empty = (None,) * len(self.required)
        self._required = frozenset(self.required)

    @classmethod
    def build(cls, row_type: Any) -> ColumnarRows | None:
        """The checker, or None when the schema has something it does not cover (pydantic then checks alone)."""
        try:
            return cls(row_type)
        except Unsupported:
            return None

    def check(self, rows: Sequence[dict[str, Any]]) -> Checked:
        """Which of `rows` (parsed JSON objects) are proven valid, and the validated columns (an absent optional
        field reads as null, as pydantic leaves it out of the row)."""
        count = len(rows)
        # Every required key and no unknown one: as many keys as the required and the optional ones present, and
        # the required ones all there (the itemgetter finds them).
        keys = np.fromiter(map(len, rows), dtype=np.int64, count=count)
        for name in self.optional:
            keys -= np.fromiter(map(dict.__contains__, rows, repeat(name)), dtype=bool, count=count)
        proven = keys == len(self.required)
        pick, empty, required = self._pick, self._empty, self._required
        if len(self.required) == 1:
            proven &= np.fromiter(map(dict.__contains__, rows, repeat(self.required[0])), dtype=bool, count=count)
            picked: Any = [[row[self.required[0]] if ok else None for row, ok in zip(rows, proven, strict=True)]]
        else:
            try:
                tuples = list(map(pick, rows)) if proven.all() else None
            except KeyError:
                tuples = None
            if tuples is None:
                proven &= np.fromiter((row.keys() >= required for row in rows), dtype=bool, count=count)
                tuples = [pick(row) if ok else empty for row, ok in zip(rows, proven, strict=True)]
            picked = zip(*tuples, strict=True)
        values = dict(zip(self.required, picked, strict=True))
        values |= {name: list(map(dict.get, rows, repeat(name))) for name in self.optional}
        columns, rewrites = {}, {}
        for name, column in values.items():
            columns[name], rewrites[name] = self.checks[name](column, proven)
        # The proven rows hold pydantic's values too (5 -> 5.0, the time as a UTC datetime); a row that a later
        # column failed is left as parsed, for pydantic to read.
        every = proven.all()
        for name, rewrite in rewrites.items():
            if rewrite is None:
                continue
            if every:
                for row, value in zip(rows, rewrite, strict=True):
                    row[name] = value
            else:
                for row, ok, value in zip(rows, proven.tolist(), rewrite, strict=True):
                    if ok:
                        row[name] = value
        return Checked(proven, columns)

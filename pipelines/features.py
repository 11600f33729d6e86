"""The feature code shared by training and serving: one implementation, so the two cannot drift apart.

A `FeatureSchema` is fitted on the training split only (category vocabularies) and saved beside the model.
`encode` turns raw columns into the model's numeric matrix. It is written over plain columns (a pandas Series
or a list of request values alike) with NumPy and dict lookups, so one flight costs microseconds at serving time
and 300k flights cost well under a second in training — the same code path for both.

Categoricals become integer codes into the training vocabulary; an unseen or rare category becomes NaN, which
LightGBM routes like a missing value instead of failing. A category is keyed by its text (`category_text`), so an
integer-coded column (a store id, a precinct number) means the same whether pandas read it as int, as float
(an int column with a gap) or a caller sent it as a JSON number or string. Calendar parts come from the time
column in UTC.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import LABEL as LABEL  # the splits' label column: the feature code's users import it from here
from pipelines.config import FeaturesParams, SourceParams

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class FeatureError(ValueError):
    """Raw input that the feature code cannot turn into model input; the message names the column."""


@dataclass(frozen=True)
class FeatureSchema:
    """What the model was trained on: feature order, vocabularies, and the raw columns a caller must send."""

    time_column: str
    categorical: dict[str, list[str]]
    numeric: list[str]
    time_parts: list[str]
    version: int = SCHEMA_VERSION
    _lookups: dict[str, dict[str, float]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        lookups = {name: {value: float(code) for code, value in enumerate(vocab)}
                   for name, vocab in self.categorical.items()}
        object.__setattr__(self, "_lookups", lookups)

    @property
    def feature_names(self) -> list[str]:
        return [*self.categorical, *self.numeric, *self.time_parts]

    @property
    def categorical_features(self) -> list[str]:
        return list(self.categorical)

    @property
    def lightgbm_naming(self) -> dict[str, list[str]]:
        """`feature_name` and `categorical_feature` as LightGBM takes them (`lightgbm_names`), in feature order."""
        names = lightgbm_names(self.feature_names)
        return {"feature_name": names, "categorical_feature": names[:len(self.categorical)]}

    @property
    def raw_columns(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_lookups")
        return data

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        if data.get("version") != SCHEMA_VERSION:
            raise FeatureError(f"feature schema version {data.get('version')!r} is not {SCHEMA_VERSION}")
        return cls(time_column=data["time_column"], categorical={k: list(v) for k, v in data["categorical"].items()},
                   numeric=list(data["numeric"]), time_parts=list(data["time_parts"]))

    @classmethod
    def load(cls, path: Path) -> FeatureSchema:
        if not path.exists():
            raise FileNotFoundError(f"feature schema not found: {path} (run the train stage first)")
        return cls.from_dict(json.loads(path.read_text()))


def fit_feature_schema(train: pd.DataFrame, features: FeaturesParams, time_column: str) -> FeatureSchema:
    """Learn category vocabularies from the training split only (the later splits must not leak into them)."""
    check_columns(train, [*features.raw_columns, time_column])
    vocabularies = {}
    for name in features.categorical:
        counts = category_texts(train[name]).dropna().value_counts()
        vocabularies[name] = sorted(counts[counts >= features.min_category_count].index)
    return FeatureSchema(time_column=time_column, categorical=vocabularies, numeric=list(features.numeric),
                         time_parts=list(features.time_parts))


def check_columns(frame: pd.DataFrame, required: Iterable[str]) -> None:
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise FeatureError(f"missing column(s) {missing}; the table has {sorted(frame.columns)}")


def _as_utc_datetime64(values: Any) -> np.ndarray:
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    try:
        return np.asarray(values, dtype="datetime64[s]")
    except (ValueError, TypeError) as error:
        raise FeatureError(f"time column holds values that are not timestamps: {error}") from error


def date_only(stamps: pd.Series) -> bool:
    """Whether every time is a midnight (UTC): a table of dates, with no time of day to learn from or to send."""
    present = stamps.dropna()
    return bool(len(present)) and bool((present == present.dt.normalize()).all())


def time_parts(times: Any, parts: Sequence[str]) -> dict[str, np.ndarray]:
    """The calendar parts of a time column (UTC), as the model sees them."""
    stamps = _as_utc_datetime64(times)
    return {part: _time_part(stamps, part) for part in parts}


def _time_part(stamps: np.ndarray, part: str) -> np.ndarray:
    seconds = stamps.astype("int64")
    days = stamps.astype("datetime64[D]")
    if part == "day_of_week":  # Monday = 0; 1970-01-01 was a Thursday
        return ((days.astype("int64") + 3) % 7).astype(float)
    if part == "day_of_year":
        return (days - days.astype("datetime64[Y]")).astype("int64").astype(float) + 1
    if part == "month":
        return (stamps.astype("datetime64[M]").astype("int64") % 12 + 1).astype(float)
    if part == "hour_of_day":
        return ((seconds // 3600) % 24).astype(float)
    raise FeatureError(f"unknown time part {part!r}")


def _numeric_column(name: str, values: Any) -> np.ndarray:
    try:
        column = np.asarray(values, dtype=float)
    except (ValueError, TypeError):
        bad = [v for v in values if not _is_number_or_missing(v)][:5]
        raise FeatureError(f"numeric feature {name!r} has non-numeric values, e.g. {bad}") from None
    return column


def _is_number_or_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        float(value)
    except (ValueError, TypeError):
        return False
    return True


_LIGHTGBM_UNSAFE = re.compile(r'[",:\[\]{}\s]')


def lightgbm_names(names: Sequence[str]) -> list[str]:
    """The names LightGBM can hold for `names`, in order. Its model file is part JSON: it refuses a feature name
    with any of `" , : [ ] { }` ("Do not support special JSON characters in feature name"), turns a space into `_`
    and cuts a name at a line break. A table's own column ("weight [kg]", "city, state") must still train: each such
    character becomes `_`, and a name that then repeats an earlier one gets `_2`, `_3`, ... The schema, the service
    and every report keep the table's names; only the model file holds these (`feature_importance` maps back)."""
    taken: set[str] = set()
    safe = []
    for name in names:
        base = _LIGHTGBM_UNSAFE.sub("_", name)
        candidate, count = base, 1
        while candidate in taken:
            count += 1
            candidate = f"{base}_{count}"
        taken.add(candidate)
        safe.append(candidate)
    return safe


def encode(columns: Mapping[str, Any], times: Any, schema: FeatureSchema) -> np.ndarray:
    """Raw columns (name -> sequence, e.g. a DataFrame) and their timestamps -> float64 matrix in feature order.

    Numeric NaN and +-inf pass through (LightGBM treats NaN as missing); the service rejects inf before this.
    """
    stamps = _as_utc_datetime64(times)
    n_rows = len(stamps)
    matrix = np.empty((n_rows, len(schema.feature_names)), dtype=float)
    position = 0
    for name in schema.categorical:
        lookup = schema._lookups[name]
        values = columns[name]
        if n_rows > 1 and set(map(type, values)) <= _TEXT_OR_NONE:  # text is its own key, None no key: lookups in C
            codes = map(lookup.get, values, repeat(math.nan))
        else:
            codes = (lookup.get(_category_key(v), math.nan) for v in values)
        matrix[:, position] = np.fromiter(codes, dtype=float, count=n_rows)
        position += 1
    for name in schema.numeric:
        matrix[:, position] = _numeric_column(name, columns[name])
        position += 1
    for part in schema.time_parts:
        matrix[:, position] = _time_part(stamps, part)
        position += 1
    return matrix


_TEXT_OR_NONE = frozenset((str, type(None)))


def _category_key(value: Any) -> Any:
    return value if isinstance(value, str) else category_text(value)


def category_text(value: Any) -> str | None:
    """The one text form of a category value, used for vocabularies, requests, labels and monitoring alike.

    Whole numbers lose their float form (`7.0` -> `"7"`: pandas reads an integer column with a gap as float, a
    caller sends `7` or `"7"`), booleans are `true`/`false` (as JSON and most CSVs write them), missing is None.
    """
    if isinstance(value, str):
        return value
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(float(value))
    return str(value)


def category_texts(values: pd.Series) -> pd.Series:
    """`category_text` over a column (object dtype, None where missing); string columns pass through cheaply."""
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):  # C speed for text columns
        return values.astype(object).where(values.notna(), None)
    return values.map(category_text, na_action="ignore").astype(object).where(values.notna(), None)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def encode_frame(frame: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    check_columns(frame, [*schema.raw_columns, schema.time_column])
    return encode(frame, frame[schema.time_column], schema)


def make_label(frame: pd.DataFrame, source: SourceParams, *, check: bool = True) -> pd.Series:
    """The 0/1 label per row (float), NaN where the target is missing; the caller drops or refuses those rows.

    Three target shapes: a numeric target with `source.positive_above` (label = target > threshold); a target
    with `source.positive_class` (label = the value's text equals it, case-sensitive: `YES`, `churned`, `true`);
    or, with neither, a target that already is 0/1 or boolean. A target of more than two classes with
    `positive_class` is one-vs-rest (the class is 1, every other value 0). Missing targets stay NaN whatever the
    shape, so no cast ever meets them. `check` (training) refuses a positive class the target never takes and a
    text target of several classes without one; replaying a later window passes `check=False`, where a week
    without positives is real.
    """
    target = frame[source.target]
    present = target.notna()
    values = target[present]
    label = pd.Series(np.nan, index=frame.index, dtype="float64")
    if check and values.empty:
        raise FeatureError(f"target {source.target!r} (source.target) has no values in {len(frame):,} rows")
    if source.positive_above is not None:
        if target.dtype == object:  # numbers held as objects (a parquet written from JSON) are still numbers
            numbers = pd.to_numeric(values, errors="coerce")
            if numbers.notna().all():
                target, values = numbers, numbers
        if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
            raise FeatureError(
                f"target {source.target!r} has dtype {target.dtype}, values e.g. {_target_classes(values)[:5]}: "
                "source.positive_above needs a numeric target; for a text or boolean target set "
                "source.positive_above to null and source.positive_class to the positive value")
        label[present] = (values > source.positive_above).astype("float64")
        return label
    texts = category_texts(values)
    classes = sorted(set(texts))
    if source.positive_class is not None:
        # One-vs-rest: the named class is 1, every other value 0, however many classes the target has.
        if check and source.positive_class not in classes:
            raise FeatureError(f"source.positive_class {source.positive_class!r} is not a value of target "
                               f"{source.target!r} (compared as text, case-sensitive); values seen: {_listed(classes)}")
        label[present] = (texts == source.positive_class).astype("float64")
        return label
    if set(classes) <= {"true", "false"} or set(classes) <= {"0", "1"}:  # booleans, or 0/1 of any dtype
        label[present] = texts.isin(["true", "1"]).astype("float64")
        return label
    if not check:
        return label
    hint = ("set source.positive_above to a threshold (label = target > threshold), or source.positive_class to "
            "the value that is positive" if _is_numeric(target) else
            "set source.positive_class to the value that is positive (every other value is the negative class: "
            "one-vs-rest)")
    raise FeatureError(f"target {source.target!r} (source.target) is not 0/1 or boolean, {len(classes)} values "
                       f"seen: {_listed(classes)}; {hint}")


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _target_classes(values: pd.Series) -> list[str]:
    return sorted(set(category_texts(values.head(10_000)).dropna()))


def _listed(classes: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(value) for value in classes[:limit])
    return f"[{shown}{f', ... ({len(classes) - limit} more)' if len(classes) > limit else ''}]"


def records_to_columns(records: Sequence[Mapping[str, Any]], names: Iterable[str]) -> dict[str, list[Any]]:
    """Row dicts (a serving request) -> column lists that `encode` takes."""
    return {name: [record.get(name) for record in records] for name in names}


def time_order(stamps: pd.Series) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The timed rows' UTC nanoseconds in time order, their positions in the frame (None when the frame is already
    in that order with every row timed: then slices are views), and the mask of rows without a time."""
    stamps = stamps.dt.as_unit("ns")
    if stamps.dt.tz is None:
        stamps = stamps.dt.tz_localize("UTC")
    missing = stamps.isna().to_numpy()
    if not missing.any() and stamps.is_monotonic_increasing:
        return stamps.array.asi8, None, missing
    positions = np.flatnonzero(~missing)
    ticks = stamps.array.asi8[positions]
    order = np.argsort(ticks, kind="stable")
    return ticks[order], positions[order], missing

"""Request and response models of the service, built from the feature config rather than written per dataset.

`flight_model` turns `params.yaml`'s `features` and `source.time_column` into a pydantic-validated TypedDict, so
the OpenAPI page lists every raw field with its type and a description, and a request naming an unknown field,
missing one, sending the wrong type or a NaN/inf is refused with the field's name before any feature code runs.
Rows are TypedDicts, not BaseModels, because they are validated straight into the dicts that scoring reads: for
1,000 flights 3.2 instead of 4.4 ms (the same checks, no model instances); the batch answer's rows likewise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, NotRequired

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool
from typing_extensions import TypedDict

from pipelines.config import REQUEST_ID, REQUEST_ID_MAX, FeaturesParams
from pipelines.data.suite import ColumnBounds

CategoryText = Annotated[str, Field(strict=True, max_length=200)]
CategoryInt = Annotated[int, Field(strict=True, ge=-(2**53), le=2**53)]
CategoryNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]
# An ISO 8601 date and time with a UTC offset (or Z). Pydantic alone also reads numbers and digit strings as Unix
# times (0 -> 1970, 12 digits -> milliseconds) and offset-less times as naive: both are guesses, refused here.
_ISO_WITH_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})")


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_string(value: Any) -> Any:
    if not isinstance(value, str) or not _ISO_WITH_OFFSET.fullmatch(value):
        raise ValueError("must be an ISO 8601 date-time string with a UTC offset, e.g. 2013-09-02T14:00:00Z")
    return value


def _iso_date_or_string(value: Any) -> Any:
    """A table of dates (no time of day) takes a date as it held them: 2016-07-02 is midnight UTC."""
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        return f"{value}T00:00:00Z"
    try:
        return _iso_string(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date (2016-07-02) or date-time string with a UTC offset") from None


def _in_utc(value: datetime) -> datetime:
    """The instant in UTC, or a field error: an offset can push a valid local time out of the datetime range
    (0001-01-01T00:00:01+01:00), which must be the caller's 400 here, before the row can join any batch."""
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("is outside the representable date range once converted to UTC") from None


def _range_constraints(bounds: ColumnBounds | None) -> dict[str, float]:
    if bounds is None:
        return {}
    constraints = {}
    if bounds.min_value is not None:
        constraints["gt" if bounds.strict_min else "ge"] = bounds.min_value
    if bounds.max_value is not None:
        constraints["lt" if bounds.strict_max else "le"] = bounds.max_value
    return constraints


def _range_text(bounds: ColumnBounds | None) -> str:
    if bounds is None:
        return ""
    low = "-inf" if bounds.min_value is None else f"{bounds.min_value:g}"
    high = "inf" if bounds.max_value is None else f"{bounds.max_value:g}"
    left, right = "(" if bounds.strict_min else "[", ")" if bounds.strict_max else "]"
    return f" Range {left}{low}, {high}{right}, from the validation suite; outside it is refused."


def flight_model(features: FeaturesParams, time_column: str,
                 bounds: Mapping[str, ColumnBounds] | None = None, entity: str = "row",
                 coded_categories: Iterable[str] = (), boolean_columns: Iterable[str] = (),
                 date_only: bool = False) -> Any:
    """One row (params' project.entity) as the caller knows it when asking: the raw feature fields plus the time
    column.

    `bounds` (from the validation suite, `pipelines.data.validate.column_bounds`) limit numeric fields: a value the
    training data could not have held is refused with its field's name rather than scored. `coded_categories` are
    the categorical features the suite types as numbers (a store id, a precinct number): they take a JSON number
    or a string; every other categorical takes a string only. `boolean_columns` are the features the suite types
    as booleans: a numeric one takes JSON true/false (1/0 to the model) and a categorical one true/false as well
    as its text. `date_only` (the suite's time column holds dates, `suite_date_only`): the time field takes a
    date (2016-07-02, midnight UTC) as well as a date-time.
    """
    bounds = bounds or {}
    coded = set(coded_categories)
    booleans = set(boolean_columns)
    fields: dict[str, Any] = {}
    for name in features.categorical:
        if name in booleans:
            fields[name] = Annotated[StrictBool | CategoryText | None, Field(
                description=f"Boolean categorical feature `{name}`: true/false (or the text \"true\"/\"false\"). "
                            "Null is scored as LightGBM's missing value and listed in `unknown_categories`.")]
            continue
        if name in coded:
            # 7, 7.0 and "7" are one category to the model (pipelines.features.category_text), as pandas' int or
            # float column was in training.
            fields[name] = Annotated[CategoryText | CategoryInt | CategoryNumber | None, Field(
                description=f"Integer-coded categorical feature `{name}`: a number or its text (7, 7.0 and \"7\" "
                            "are the same category). A value not seen in training (or null) is scored as "
                            "LightGBM's missing value and listed in the answer's `unknown_categories`.")]
            continue
        fields[name] = Annotated[CategoryText | None, Field(
            description=f"Categorical feature `{name}`. A value not seen in training (or null) is scored as "
                        "LightGBM's missing value and listed in the answer's `unknown_categories`.")]
    for name in features.numeric:
        if name in booleans:
            fields[name] = Annotated[StrictBool | None, Field(
                description=f"Boolean feature `{name}`: true or false (1 or 0 to the model); null means missing.")]
            continue
        fields[name] = Annotated[float | None, Field(
            description=f"Numeric feature `{name}`; null means missing. NaN and infinity are refused."
                        + _range_text(bounds.get(name)),
            strict=True, allow_inf_nan=False, **_range_constraints(bounds.get(name)))]
    when = ("the row's date as an ISO 8601 date (`2016-07-02`: the table has no time of day), or a date-time "
            "string with a UTC offset" if date_only else
            "the row's time as an ISO 8601 date-time string with a UTC offset (`Z` or `+hh:mm`)")
    fields[time_column] = Annotated[AwareDatetime, BeforeValidator(_iso_date_or_string if date_only else _iso_string),
                                    AfterValidator(_in_utc), Field(
        description=f"`{time_column}`: {when}. Calendar features ({', '.join(features.time_parts or ['none'])}) "
                    "come from it.")]
    fields[REQUEST_ID] = NotRequired[Annotated[str | None, Field(
        description="Optional caller id, echoed in the answer and the prediction log (generated if absent).",
        max_length=REQUEST_ID_MAX)]]
    flight = TypedDict(entity.title().replace("_", ""), fields)  # type: ignore[operator]
    flight.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return flight


def request_fields(flight: Any) -> list[str]:
    """The fields a caller sends for one row (request_id aside): what a served model may read."""
    return [name for name in flight.__annotations__ if name != REQUEST_ID]


class Prediction(BaseModel):
    request_id: str = Field(description="The caller's request_id, or a generated one.")
    probability: float = Field(description="Probability of the positive label (params' project.positive_meaning).")
    label: int = Field(description="1 if probability >= threshold, else 0.")
    threshold: float = Field(description="Decision threshold that travels with the model.")
    model_tag: str = Field(description="BentoML tag of the model that answered.")
    unknown_categories: list[str] = Field(
        description="Categorical fields whose value the model did not see in training (scored as missing).")


class RowPrediction(TypedDict):
    request_id: str
    probability: float
    label: int
    unknown_categories: list[str]


class BatchPrediction(BaseModel):
    model_tag: str = Field(description="BentoML tag of the model that answered every row.")
    threshold: float
    predictions: list[RowPrediction]


def batch_annotation(flight: type[BaseModel], max_batch_size: int) -> Any:
    """`list[Row]` with the configured size limits, for the batch endpoint's signature."""
    return Annotated[list[flight], Field(  # type: ignore[valid-type]
        min_length=1, max_length=max_batch_size,
        description=f"1 to {max_batch_size} rows (serve.max_batch_size).")]

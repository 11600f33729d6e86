"""Request and response models of the service, built from the feature config rather than written per dataset.

`flight_model` turns `params.yaml`'s `features` and `source.time_column` into a pydantic-validated TypedDict, so
the OpenAPI page lists every raw field with its type and a description, and a request naming an unknown field,
missing one, sending the wrong type or a NaN/inf is refused with the field's name before any feature code runs.
Rows are TypedDicts, not BaseModels, because they are validated straight into the dicts that scoring reads: for
1,000 flights 3.2 instead of 4.4 ms (the same checks, no model instances); the batch answer's rows likewise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, NotRequired

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from pipelines.config import FeaturesParams

REQUEST_ID = "request_id"
REQUEST_ID_MAX = 200
CategoryText = Annotated[str, Field(strict=True, max_length=200)]
CategoryInt = Annotated[int, Field(strict=True, ge=-(2**53), le=2**53)]
CategoryNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def flight_model(features: FeaturesParams, time_column: str, entity: str = "row") -> Any:
    """One row (params' project.entity) as the caller knows it when asking: the raw feature fields plus the time
    column."""
    fields: dict[str, Any] = {}
    for name in features.categorical:
        # A text or a number: an integer-coded category (a store id) may come as 7, 7.0 or "7", one category to
        # the model (pipelines.features.category_text), as pandas' int or float column was in training.
        fields[name] = Annotated[CategoryText | CategoryInt | CategoryNumber | None, Field(
            description=f"Categorical feature `{name}`: text, or a number for an integer-coded category (7, 7.0 and "
                        '"7" are the same category). A value not seen in training (or null) is scored as '
                        "LightGBM's missing value and listed in the answer's `unknown_categories`.")]
    for name in features.numeric:
        fields[name] = Annotated[float | None, Field(
            description=f"Numeric feature `{name}`; null means missing. NaN and infinity are refused.",
            strict=True, allow_inf_nan=False)]
    fields[time_column] = Annotated[datetime, Field(
        description=f"`{time_column}`: the row's time as an ISO 8601 datetime; without a UTC offset it "
                    f"is read as UTC. Calendar features ({', '.join(features.time_parts or ['none'])}) come "
                    "from it.")]
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

"""The service's request rules without a server: suite bounds, the request schema, media types, the OpenAPI fix."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from pipelines.data.suite import ColumnBounds, column_bounds, read_suite
from services.limits import _media_type_problem, describe_errors
from services.schemas import flight_model
from support.params import PARAMS_FILE, REPO_ROOT


def _between(column: str, **kwargs: object) -> dict:
    return {"type": "expect_column_values_to_be_between", "kwargs": {"column": column, **kwargs}}


def test_bounds_are_read_by_type_and_column_never_by_position() -> None:
    expectations = [
        _between("hour", min_value=0, max_value=23),
        _between("arr_delay", min_value=15, strict_min=True, mostly=0.08),  # a share, not a bound
        _between("temp", min_value=-30, max_value=120),
        _between("temp", min_value=-40, max_value=110),  # two hard ranges intersect
        _between("temp", max_value=50, row_condition='month == 1'),  # a subset, not every row
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "hour"}},
        _between("distance", min_value=0, max_value=5000, strict_min=True, strict_max=True),
    ]
    for _ in range(3):
        random.shuffle(expectations)
        bounds = column_bounds({"expectations": expectations}, ["hour", "temp", "distance", "arr_delay", "wind"])
        assert bounds == {"hour": ColumnBounds("hour", 0, 23), "temp": ColumnBounds("temp", -30, 110),
                          "distance": ColumnBounds("distance", 0, 5000, strict_min=True, strict_max=True)}


def test_the_projects_suite_bounds_every_numeric_feature_it_checks() -> None:
    from pipelines.config import load_params

    params = load_params(PARAMS_FILE)
    bounds = column_bounds(read_suite(REPO_ROOT / params.validate_.suite), params.features.numeric)
    assert bounds["hour"] == ColumnBounds("hour", 0, 23)
    assert "arr_delay" not in bounds  # the target: not a request field


@pytest.fixture(scope="module")
def flight() -> TypeAdapter:
    from pipelines.config import load_params

    params = load_params(PARAMS_FILE)
    model = flight_model(params.features, "time_hour", {"hour": ColumnBounds("hour", 0, 23),
                                                        "distance": ColumnBounds("distance", 0, 5000, True, True)})
    return TypeAdapter(model)


def _row() -> dict:
    return {"carrier": "UA", "origin": "EWR", "dest": "ORD", "plane_manufacturer": None, "plane_engine": None,
            "hour": 14, "minute": 5, "sched_arr_time": 1600, "distance": 719, "plane_year": None,
            "plane_seats": None, "plane_engines": None, "temp": None, "dewp": None, "humid": None, "wind_dir": None,
            "wind_speed": None, "wind_gust": None, "precip": None, "pressure": None, "visib": None,
            "time_hour": "2013-09-02T10:00:00-04:00"}


def test_a_valid_flight_is_read_in_utc(flight: TypeAdapter) -> None:
    parsed = flight.validate_json(json.dumps(_row()))
    assert parsed["time_hour"].isoformat() == "2013-09-02T14:00:00+00:00"


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"time_hour": "0001-01-01T00:00:01+01:00"}, "time_hour", "outside the representable date range"),
    ({"time_hour": "9999-12-31T23:59:59-23:59"}, "time_hour", "outside the representable date range"),
    ({"time_hour": 0}, "time_hour", "ISO 8601 date-time string with a UTC offset"),
    ({"time_hour": "1377900000000"}, "time_hour", "ISO 8601 date-time string with a UTC offset"),
    ({"time_hour": "2013-09-02T14:00:00"}, "time_hour", "ISO 8601 date-time string with a UTC offset"),
    ({"hour": 25}, "hour", "less than or equal to 23"),
    ({"distance": 0}, "distance", "greater than 0"),
    ({"distance": -1e308}, "distance", "greater than 0"),
])
def test_nonsense_is_refused_naming_the_field(flight: TypeAdapter, change: dict, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as error:
        flight.validate_json(json.dumps({**_row(), **change}))
    (item,) = error.value.errors()
    assert item["loc"] == (field,) and message in item["msg"]


@pytest.mark.parametrize(("content_type", "refused"), [
    (b"application/json", False), (b"Application/JSON; charset=UTF-8", False),
    (b"application/json;charset=utf8", False),
    (None, True), (b"text/plain", True), (b"multipart/form-data", True), (b"application/x-www-form-urlencoded", True),
    (b"application/json; charset=latin-1", True), (b"application/jsonx", True),
])
def test_only_json_bodies_pass(content_type: bytes | None, refused: bool) -> None:
    assert (_media_type_problem(content_type) is not None) is refused


def test_the_openapi_fix_describes_the_answers_and_leaves_its_input_alone() -> None:
    spec = {"openapi": "3.0.2", "paths": {
        "/predict": {"post": {"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                              "responses": {"200": {}, "400": {"description": "detail is a string"}}}},
        "/readyz": {"get": {"responses": {"200": {}}}}}}
    before = json.dumps(spec)
    fixed = describe_errors(spec, ["/predict", "/absent"], max_body_bytes=2048)
    assert json.dumps(spec) == before
    operation = fixed["paths"]["/predict"]["post"]
    assert operation["requestBody"]["required"] is True
    assert set(operation["responses"]) == {"200", "400", "408", "413", "415", "503"}
    error = fixed["components"]["schemas"][operation["responses"]["400"]["content"]["application/json"]["schema"][
        "$ref"].rsplit("/", 1)[1]]
    assert error["properties"]["detail"]["type"] == "array"
    assert "503" in fixed["paths"]["/readyz"]["get"]["responses"]
    assert fixed["openapi"] == "3.1.0"


def test_the_suite_path_is_packed_into_the_bento() -> None:
    import yaml

    bentofile = yaml.safe_load((REPO_ROOT / "services" / "bentofile.yaml").read_text())
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())  # the live file: the Bento packs it
    suite = Path(params["validate"]["suite"])
    assert any(suite.match(pattern) for pattern in bentofile["include"])

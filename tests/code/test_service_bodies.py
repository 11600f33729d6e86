"""Request bodies checked row by row (services/bodies.py), without a server: bounded refusals whatever the body,
batches answered per row, a row meaning the same in the fast and the row-by-row path."""

from __future__ import annotations

import json

import pytest

from pipelines.data.suite import ColumnBounds
from services.bodies import CALLER, BodyChecker, BoundedValidationError, CheckedRows, Rejected
from services.schemas import flight_model
from support.params import PARAMS_FILE

MAX_ERRORS = 5


@pytest.fixture(scope="module")
def flight() -> object:
    from pipelines.config import load_params

    params = load_params(PARAMS_FILE)
    return flight_model(params.features, "time_hour", {"hour": ColumnBounds("hour", 0, 23)}, "flight")


def _row(**change: object) -> dict:
    row = {"carrier": "UA", "origin": "EWR", "dest": "ORD", "plane_manufacturer": None, "plane_engine": None,
           "hour": 14, "minute": 5, "sched_arr_time": 1600, "distance": 719, "plane_year": None,
           "plane_seats": None, "plane_engines": None, "temp": None, "dewp": None, "humid": None, "wind_dir": None,
           "wind_speed": None, "wind_gust": None, "precip": None, "pressure": None, "visib": None,
           "time_hour": "2013-09-02T10:00:00-04:00"}
    return {**row, **change}


def _single(flight: object) -> BodyChecker:
    return BodyChecker("flight", flight, batch=False, max_rows=1, max_errors=MAX_ERRORS, title="OneFlight")


def _batch(flight: object, max_rows: int = 100, max_errors: int = MAX_ERRORS) -> BodyChecker:
    return BodyChecker("flights", flight, batch=True, max_rows=max_rows, max_errors=max_errors, title="Flights")


def _refusal(checker: BodyChecker, body: object) -> BoundedValidationError:
    with pytest.raises(BoundedValidationError) as refused:
        checker.check(body if isinstance(body, bytes) else json.dumps(body).encode(), "peer:1.2.3.4")
    return refused.value


def test_a_valid_row_is_read_in_utc_with_its_caller(flight: object) -> None:
    row = _single(flight).check(json.dumps({"flight": _row(request_id="r1")}).encode(), "key:replay")
    assert row["time_hour"].isoformat() == "2013-09-02T14:00:00+00:00"
    assert row[CALLER] == "key:replay" and row["request_id"] == "r1"


def test_a_row_of_junk_keys_gets_a_bounded_refusal_that_counts_them_all(flight: object) -> None:
    junk = {f"junk{i}": [i, {"x": "y" * 10}] for i in range(20_000)}
    refusal = _refusal(_single(flight), {"flight": {**_row(), **junk}, "also": 1, "more": 2})
    detail = refusal.errors()
    assert refusal.error_count() == 20_002
    assert len(detail) == MAX_ERRORS + 1 and detail[-1]["type"] == "too_many_errors"
    assert detail[-1]["msg"] == "19997 more error(s) not listed (serve.max_errors: 5)"
    assert [tuple(item["loc"]) for item in detail[:2]] == [("also",), ("more",)]
    assert all(item["type"] == "extra_forbidden" for item in detail[:-1])
    assert len(json.dumps(detail)) < 2_000


def test_a_bad_field_of_a_single_row_is_a_400_naming_it(flight: object) -> None:
    refusal = _refusal(_single(flight), {"flight": _row(hour=25, temp=float("nan"))})
    assert {tuple(item["loc"]) for item in refusal.errors()} == {("flight", "hour"), ("flight", "temp")}
    assert refusal.error_count() == 2


def test_a_renamed_field_of_a_single_row_is_named_as_unknown_beside_the_missing_one(flight: object) -> None:
    row = _row()
    row["temp_f"] = row.pop("temp")
    detail = _refusal(_single(flight), {"flight": row}).errors()
    assert {(tuple(item["loc"]), item["type"]) for item in detail} == {(("flight", "temp_f"), "extra_forbidden"),
                                                                        (("flight", "temp"), "missing")}


def test_a_single_row_of_many_unknown_keys_and_a_missing_one_counts_them_all(flight: object) -> None:
    row = {**_row(), **{f"junk{i}": i for i in range(50)}}
    del row["hour"]
    refusal = _refusal(_single(flight), {"flight": row})
    assert refusal.error_count() == 51
    detail = refusal.errors()
    assert len(detail) == MAX_ERRORS + 1 and detail[-1]["msg"].startswith("46 more error(s)")


def test_a_batch_answers_its_valid_rows_and_refuses_the_others_by_index_and_field(flight: object) -> None:
    rows = [_row(request_id="a"), _row(hour=25, request_id="b"), {"x": 1}, _row(gate="B12"),
            _row(temp=float("nan")), _row(request_id="f")]
    checked = _batch(flight, max_errors=100).check(json.dumps({"flights": rows}).encode(), "peer:1.2.3.4")
    assert isinstance(checked, CheckedRows) and checked.caller == "peer:1.2.3.4" and checked.rejected_count == 4
    kinds = [type(item).__name__ for item in checked]
    assert kinds == ["dict", "Rejected", "Rejected", "Rejected", "Rejected", "dict"]
    answers = [item.answer for item in checked if isinstance(item, Rejected)]
    assert [(a["index"], a["request_id"], [e["field"] for e in a["errors"]][:1]) for a in answers] == [
        (1, "b", ["hour"]), (2, None, ["x"]), (3, None, ["gate"]), (4, None, ["temp"])]
    assert checked[0]["request_id"] == "a" and checked[0][CALLER] == "peer:1.2.3.4"


def test_a_row_means_the_same_alone_as_in_a_valid_batch(flight: object) -> None:
    """The row-by-row path re-validates each row from its own JSON: the same values as the whole-body pass."""
    rows = [_row(distance=1, temp=51.5, carrier="AA", plane_year=1999.0), _row(minute=7)]
    fast = _batch(flight).check(json.dumps({"flights": rows}).encode(), "c")
    slow = _batch(flight).check(json.dumps({"flights": [*rows, _row(hour=99)]}).encode(), "c")
    assert list(fast) == list(slow)[:2]


def test_a_batch_of_invalid_rows_lists_at_most_max_errors_and_counts_every_row(flight: object) -> None:
    rows = [{**_row(hour=25), **{f"junk{j}": j for j in range(50)}} for _ in range(80)]
    checked = _batch(flight).check(json.dumps({"flights": rows}).encode(), "c")
    assert checked.rejected_count == 80 and all(isinstance(item, Rejected) for item in checked)
    assert sum(len(item.answer["errors"]) for item in checked) == MAX_ERRORS
    assert all(item.answer["error_count"] == 51 for item in checked)


@pytest.mark.parametrize(("body", "loc"), [
    (b"[1, 2]", ()), (b'{"flights": [', ()), ({"flights": []}, ("flights",)), ({"flights": {}}, ("flights",)),
    ({}, ("flights",)), ({"flights": [_row()], "model_tag": "x"}, ("model_tag",)),
    ({"flights": [_row()] * 101}, ("flights",)), ({"flights": [_row(), [None], 3]}, ("flights", 1)),
])
def test_a_wrong_envelope_refuses_the_batch(flight: object, body: object, loc: tuple) -> None:
    refusal = _refusal(_batch(flight), body)
    assert tuple(refusal.errors()[0]["loc"]) == loc


def test_a_wrong_envelope_with_junk_keys_is_bounded(flight: object) -> None:
    refusal = _refusal(_batch(flight), {"flights": 3, **{f"k{i}": i for i in range(10_000)}})
    assert refusal.error_count() == 10_001 and len(refusal.errors()) == MAX_ERRORS + 1

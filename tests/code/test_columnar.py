"""The columnar batch checks (services/columnar.py) against pydantic on generated rows: a row the columns prove
valid is one pydantic accepts with the same values (types and time zones included), and a batch checked with the
columnar fast path answers exactly as one checked by pydantic alone (the same rows, values and refusals)."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import TypeAdapter, ValidationError

from pipelines.config import load_params
from pipelines.data.suite import column_bounds, read_suite
from services.bodies import BodyChecker, CheckedRows, Rejected
from services.columnar import ColumnarRows
from services.schemas import CategoryText, flight_model
from support.params import PARAMS_FILE, REPO_ROOT

TIMES = [
    "2013-09-02T10:00:00Z", "2013-09-02T10:00:00+00:00", "2013-09-02T10:00:00-04:00", "2013-09-02T10:00:00+05:30",
    "2013-09-02T10:00:00-00:00", "2013-09-02T10:00:00+23:59", "2013-09-02T10:00:00+24:00", "2013-09-02T10:00:00.5Z",
    "2013-09-02T10:00:00.123456+01:00", "2013-09-02T10:00:00.1234567Z", "2013-09-02t10:00:00z",
    "2013-09-02 10:00:00Z", "2013-09-02T10:00Z", "2013-09-02T10:00:00+0530", "2013-09-02T10:00:00",
    "2013-09-02", "2013-02-30T10:00:00Z", "2013-09-02T24:00:00Z", "2013-09-02T23:59:60Z", "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2016-02-29T12:00:00Z", "2013-13-02T10:00:00Z",
    "2013-09-02T10:00:00,5Z", "2013-09-02T10:00:00Z ", "", "now", 1378116000, 1378116000.0, None, True,
    "2013-09-02T10:00:00\u00b1", "\u0662\u0660\u0661\u0663-09-02T10:00:00Z",
]
TEXTS = ["UA", "", "é" * 200, "é" * 201, "x" * 200, "x" * 201, "\U0001f600" * 200, "\U0001f600" * 201, "7", "7.0",
         "true", " UA ", None, 7, 7.0, -0.0, 2**53, 2**53 + 1, True, False, [], {}, 1.5]
IDS = ["r1", "", "x" * 200, "x" * 201, None, 5, 5.0, True, ["r"]]


def _numbers(schema: dict[str, Any]) -> list[Any]:
    """Values around a numeric field's bounds, and of the wrong kinds."""
    values: list[Any] = [None, 0, 1, -1, 0.5, -0.0, 1e308, -1e308, 2**53 - 1, 2**53, -(2**53), 2**60, True, False,
                         "12", "1.5", "", [], {}, 1.0000000000000002, 12345678901234567]
    for key in ("ge", "gt", "le", "lt"):
        if key in schema:
            bound = schema[key]
            values += [bound, int(bound), np.nextafter(bound, -math.inf).item(), np.nextafter(bound, math.inf).item(),
                       bound - 1, bound + 1]
    return values


def _field_values(adapter: TypeAdapter, name: str) -> list[Any]:
    spec = adapter.core_schema["fields"][name]["schema"]
    inner = spec.get("schema", spec)
    if inner.get("type") == "float":
        return _numbers(inner)
    if "function" in spec:
        return TIMES
    if name == "request_id":
        return IDS
    return TEXTS + _numbers({"ge": -(2**53), "le": 2**53})


def _valid(adapter: TypeAdapter, name: str, rng: random.Random) -> Any:
    """A value pydantic accepts for the field (tried on the generated ones)."""
    while True:
        value = rng.choice(_field_values(adapter, name))
        if _accepts_field(adapter, name, value):
            return value


def _accepts_field(adapter: TypeAdapter, name: str, value: Any) -> bool:
    row = dict(BASE[id(adapter)])
    row[name] = value
    try:
        adapter.validate_json(orjson.dumps(row))
    except ValidationError:
        return False
    return True


BASE: dict[int, dict[str, Any]] = {}


def _models() -> dict[str, Any]:
    params = load_params(PARAMS_FILE)
    suite = read_suite(REPO_ROOT / params.validate_.suite)
    bounds = column_bounds(suite, params.features.numeric)
    return {
        "flights": flight_model(params.features, "time_hour", bounds, "flight"),
        "coded, booleans, dates": flight_model(params.features, "time_hour", bounds, "flight",
                                               coded_categories=["carrier"], boolean_columns=["origin", "precip"],
                                               date_only=True),
    }


MODELS = _models()


@pytest.fixture(scope="module", params=list(MODELS))
def model(request: pytest.FixtureRequest) -> tuple[Any, TypeAdapter]:
    flight = MODELS[request.param]
    adapter = TypeAdapter(flight)
    base = {"carrier": "UA", "origin": "EWR", "dest": "ORD", "plane_manufacturer": None, "plane_engine": "Turbo-fan",
            "hour": 14, "minute": 5.0, "sched_arr_time": 1600, "distance": 719.0, "plane_year": 2004.0,
            "plane_seats": 150, "plane_engines": 2.0, "temp": 71.1, "dewp": None, "humid": 50.5, "wind_dir": 220,
            "wind_speed": 10.357, "wind_gust": None, "precip": 0.0, "pressure": 1012.5, "visib": 10,
            "time_hour": "2013-09-02T10:00:00-04:00"}
    if "precip" in adapter.core_schema["fields"] and "bool" in str(adapter.core_schema["fields"]["precip"]):
        base["precip"] = False
    adapter.validate_json(orjson.dumps(base))  # the base row is valid
    BASE[id(adapter)] = base
    return flight, adapter


def _generated(adapter: TypeAdapter, rng: random.Random, count: int) -> list[bytes]:
    """Rows as JSON: mostly valid, then one to three fields changed to any generated value, unknown or missing
    keys, duplicate keys (the last one wins, in JSON parsers and pydantic alike)."""
    names = list(adapter.core_schema["fields"])
    rows = []
    for _ in range(count):
        row = {name: _valid(adapter, name, rng) for name in names if name != "request_id"}
        if rng.random() < 0.5:
            row["request_id"] = rng.choice(IDS)
        if rng.random() < 0.6:
            for name in rng.sample(names, rng.randint(1, 3)):
                row[name] = rng.choice(_field_values(adapter, name))
        if rng.random() < 0.05:
            row["gate"] = "B12"
        if rng.random() < 0.05:
            del row[rng.choice(names[:-1])]
        text = orjson.dumps(row)
        if rng.random() < 0.05:
            name = rng.choice(names)
            duplicate = orjson.dumps({name: rng.choice(_field_values(adapter, name))})[1:-1]
            text = b"{" + duplicate + b"," + text[1:] if rng.random() < 0.5 else text[:-1] + b"," + duplicate + b"}"
        rows.append(text)
    return rows


def _same(left: Any, right: Any) -> bool:
    """Equal, of the same type, and (datetimes) with the same time zone object."""
    if type(left) is not type(right):
        return False
    if isinstance(left, datetime):
        return left == right and left.tzinfo == right.tzinfo and type(left.tzinfo) is type(right.tzinfo)
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    return left == right and (not isinstance(left, float) or math.copysign(1, left) == math.copysign(1, right))


def test_a_row_proven_valid_is_one_pydantic_accepts_with_the_same_values(model: tuple[Any, TypeAdapter]) -> None:
    flight, adapter = model
    columnar = ColumnarRows.build(flight)
    assert columnar is not None
    rng = random.Random(37)
    texts = _generated(adapter, rng, 3000)
    rows = [orjson.loads(text) for text in texts]
    checked = columnar.check(rows)
    accepted = proven_valid = 0
    for i, text in enumerate(texts):
        try:
            expected = adapter.validate_json(text)
        except ValidationError:
            assert not checked.proven[i], f"proven valid, refused by pydantic: {text!r}"
            continue
        accepted += 1
        if not checked.proven[i]:
            continue
        proven_valid += 1
        assert _same(rows[i], expected), (text, rows[i], expected)
        for name, column in checked.columns.items():
            value = column[i]
            wanted = expected.get(name)
            if isinstance(column, np.ndarray):
                assert (math.isnan(value) and wanted is None) or value == wanted, (name, text)
            else:
                assert _same(value, wanted), (name, text)
    # Not a checker that proves nothing: a good share of the accepted rows are proven, although the generated
    # ones are mostly edge cases left to pydantic (ints past 2**53, times in other ISO forms).
    assert accepted > 600 and proven_valid > 0.3 * accepted, (accepted, proven_valid)


def test_canonical_rows_are_all_proven(model: tuple[Any, TypeAdapter]) -> None:
    flight, adapter = model
    base = BASE[id(adapter)]
    rows = [dict(base, request_id=f"r{i}", time_hour=time) for i, time in
            enumerate(["2013-09-02T10:00:00Z", "2013-09-02T10:00:00+00:00", "2013-09-02T10:00:00.25-04:00"])]
    checked = ColumnarRows.build(flight).check(rows)  # type: ignore[union-attr]
    assert checked.proven.all()
    assert [row["time_hour"].isoformat() for row in rows] == [
        "2013-09-02T10:00:00+00:00", "2013-09-02T10:00:00+00:00", "2013-09-02T14:00:00.250000+00:00"]
    assert rows[0]["hour"] == 14.0 and type(rows[0]["hour"]) is float  # pydantic's float: the int as a float


def _answer(checked: CheckedRows) -> list[Any]:
    return [("rejected", item.answer) if isinstance(item, Rejected) else ("row", item) for item in checked]


def test_a_batch_answers_the_same_with_and_without_the_columnar_path(model: tuple[Any, TypeAdapter]) -> None:
    flight, adapter = model
    rng = random.Random(7)
    fast = BodyChecker("flights", flight, batch=True, max_rows=100, max_errors=7, title="Flights")
    slow = BodyChecker("flights", flight, batch=True, max_rows=100, max_errors=7, title="Flights")
    slow.columnar = None
    assert fast.columnar is not None
    took_fast_path = 0
    for _ in range(60):
        texts = _generated(adapter, rng, rng.randint(1, 60))
        if rng.random() < 0.3:  # batches of valid canonical rows: the fast path's whole-batch case
            texts = [orjson.dumps(dict(BASE[id(adapter)], request_id=f"r{i}")) for i in range(rng.randint(1, 60))]
        body = b'{"flights":[' + b",".join(texts) + b"]}"
        got, want = fast.check(body, "peer:a"), slow.check(body, "peer:a")
        took_fast_path += got.columns is not None
        assert got.rejected_count == want.rejected_count and got.caller == want.caller
        assert all(_same(a, b) for a, b in zip(_answer(got), _answer(want), strict=True)), body[:300]
    assert took_fast_path >= 10


def test_a_schema_it_does_not_cover_leaves_every_row_to_pydantic() -> None:
    from typing import Annotated

    from pydantic import ConfigDict, Field
    from typing_extensions import TypedDict

    coded = TypedDict("Coded", {"code": Annotated[str, Field(pattern=r"^[A-Z]{2}$")], "name": CategoryText})  # noqa: UP013
    coded.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    assert ColumnarRows.build(coded) is None
    checker = BodyChecker("rows", coded, batch=True, max_rows=10, max_errors=5, title="Rows")
    checked = checker.check(json.dumps({"rows": [{"code": "ua", "name": "x"}]}).encode(), "peer:a")
    assert checked.rejected_count == 1 and checked[0].answer["errors"][0]["field"] == "code"


def test_each_time_form_is_proven_only_as_pydantic_reads_it(model: tuple[Any, TypeAdapter]) -> None:
    """Every generated time (odd offsets, lower-case t, leap seconds, years 0 and 9999, non-ASCII digits) in an
    otherwise valid row: proven only when pydantic accepts it, and then to the same UTC datetime."""
    flight, adapter = model
    base = BASE[id(adapter)]
    rows = [dict(base, time_hour=time) for time in TIMES]
    checked = ColumnarRows.build(flight).check(rows)  # type: ignore[union-attr]
    proven = 0
    for time, row, ok in zip(TIMES, rows, checked.proven, strict=True):
        try:
            expected = adapter.validate_json(orjson.dumps(dict(base, time_hour=time)))
        except ValidationError:
            assert not ok, time
            continue
        if ok:
            proven += 1
            assert _same(row["time_hour"], expected["time_hour"]), time
    assert proven >= 8


def test_a_row_left_to_pydantic_is_left_as_it_was_parsed(model: tuple[Any, TypeAdapter]) -> None:
    """A row whose time is proven but whose later field is not keeps its parsed values (pydantic reads those)."""
    flight, adapter = model
    base = BASE[id(adapter)]
    rows = [dict(base, hour=14, visib="10"), dict(base, hour=14)]
    checked = ColumnarRows.build(flight).check(rows)  # type: ignore[union-attr]
    assert checked.proven.tolist() == [False, True]
    assert rows[0]["time_hour"] == base["time_hour"] and type(rows[0]["hour"]) is int
    assert isinstance(rows[1]["time_hour"], datetime) and type(rows[1]["hour"]) is float

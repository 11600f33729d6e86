"""The shared feature code: vocabularies from train only, unknowns as missing, rows equal frames."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from pipelines.features import (
    FeatureError,
    FeatureSchema,
    encode,
    encode_frame,
    fit_feature_schema,
    make_label,
    records_to_columns,
)


def _schema() -> FeatureSchema:
    return FeatureSchema(time_column="t", categorical={"carrier": ["AA", "UA"]}, numeric=["distance"],
                         time_parts=["day_of_week", "month", "hour_of_day", "day_of_year"])


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "carrier": ["UA", "AA", "ZZ", None],
        "distance": [100.0, None, 300.0, 400.0],
        "t": pd.to_datetime(["2013-01-07T10:00Z", "2013-03-01T23:00Z", "2013-12-31T00:00Z", "2013-06-15T05:00Z"]),
    })


def test_encode_frame_values() -> None:
    matrix = encode_frame(_frame(), _schema())
    assert matrix.shape == (4, 6)
    assert matrix[:, 0].tolist()[:2] == [1.0, 0.0]
    assert np.isnan(matrix[2, 0]) and np.isnan(matrix[3, 0])  # unseen and missing categories -> missing
    assert np.isnan(matrix[1, 1])
    assert matrix[:, 2].tolist() == [0, 4, 1, 5]  # Mon, Fri, Tue, Sat
    assert matrix[:, 3].tolist() == [1, 3, 12, 6]
    assert matrix[:, 4].tolist() == [10, 23, 0, 5]
    assert matrix[:, 5].tolist() == [7, 60, 365, 166]


def test_request_rows_encode_exactly_like_the_training_frame() -> None:
    frame = _frame()
    records = frame.drop(columns="t").to_dict("records")
    times = [stamp.to_pydatetime().astimezone(UTC).replace(tzinfo=None) for stamp in frame["t"]]
    by_rows = encode(records_to_columns(records, ["carrier", "distance"]), times, _schema())
    np.testing.assert_array_equal(by_rows, encode_frame(frame, _schema()))


def test_vocabulary_drops_rare_categories_and_ignores_later_splits(make_params) -> None:
    params = make_params({"features.min_category_count": 2})
    train = pd.DataFrame({name: [1.0] * 3 for name in params.features.numeric})
    for name in params.features.categorical:
        train[name] = ["x", "x", "rare"]
    train["time_hour"] = pd.to_datetime(["2013-01-01"] * 3, utc=True)
    schema = fit_feature_schema(train, params.features, "time_hour")
    assert schema.categorical["carrier"] == ["x"]


def test_schema_round_trip(tmp_path) -> None:
    path = tmp_path / "schema.json"
    _schema().save(path)
    loaded = FeatureSchema.load(path)
    assert loaded == _schema()
    np.testing.assert_array_equal(encode_frame(_frame(), loaded), encode_frame(_frame(), _schema()))


def test_non_numeric_value_is_named() -> None:
    frame = _frame().assign(distance=["100", "far", None, 3])
    with pytest.raises(FeatureError, match=r"numeric feature 'distance' has non-numeric values, e.g. \['far'\]"):
        encode_frame(frame, _schema())


def test_missing_column_is_named() -> None:
    with pytest.raises(FeatureError, match=r"missing column\(s\) \['distance'\]"):
        encode_frame(_frame().drop(columns="distance"), _schema())


def test_label_threshold_and_binary_target(make_params) -> None:
    params = make_params()
    frame = pd.DataFrame({"arr_delay": [15.0, 16.0, -3.0]})
    assert make_label(frame, params.source).tolist() == [0, 1, 0]
    binary = make_params({"source.positive_above": None}).source
    assert make_label(pd.DataFrame({"arr_delay": [0, 1, 1]}), binary).tolist() == [0, 1, 1]
    with pytest.raises(FeatureError, match="is not 0/1 or boolean"):
        make_label(pd.DataFrame({"arr_delay": [0, 5]}), binary)


def test_time_parts_accept_python_datetimes() -> None:
    stamp = datetime(2013, 1, 7, 10)
    matrix = encode({"carrier": ["AA"], "distance": [1.0]}, [stamp], _schema())
    assert matrix[0, 2] == 0 and matrix[0, 4] == 10

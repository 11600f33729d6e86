"""A user's own table: every target shape, missing targets, integer-coded categories, and each early error naming
the params key that causes it (issue 13)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.config import Params, ParamsError
from pipelines.data.collect import (
    SourceError,
    check_params_columns,
    params_columns,
    parse_time,
    require_times,
    select_window,
)
from pipelines.data.draft import draft_suite
from pipelines.data.preprocess import prepare
from pipelines.features import (
    FeatureError,
    category_text,
    encode,
    fit_feature_schema,
    lightgbm_names,
    make_label,
)
from pipelines.model.evaluate import feature_importance

DAYS = 60


def _own(make_params: Callable[..., Params], **overrides: Any) -> Params:
    """Params for a small synthetic table: t (time), y (target), store (integer-coded category), x (numeric)."""
    return make_params({
        "source.kind": "file", "source.path": "mine.csv", "source.time_column": "t", "source.target": "y",
        "source.positive_above": None, "source.positive_class": None, "source.drop_missing_target": True,
        "features.categorical": ["store"], "features.numeric": ["x"], "features.time_parts": ["day_of_week"],
        "features.forbidden": [], "features.min_category_count": 1, "evaluate.slices": ["store"],
        "split.valid_days": 7, "split.test_days": 7, **overrides})


def _table(target: list[Any]) -> pd.DataFrame:
    """DAYS days of four rows each; `target` is cycled over the rows."""
    rows = DAYS * 4
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "t": pd.date_range("2024-01-01", periods=rows, freq="6h", tz="UTC"),
        "store": [(1, 2, 3, None)[i % 4] for i in range(rows)],  # an int column with a gap: float64 in pandas
        "x": rng.normal(size=rows),
        "y": pd.Series([target[i % len(target)] for i in range(rows)]),  # dtype as pandas infers it
    })


# --- target shapes -------------------------------------------------------------------------------------------------

SHAPES = [
    # (description, overrides, target values cycled, expected labels for the first len(values) rows)
    ("numeric > threshold", {"source.positive_above": 15}, [3.0, 20.0, np.nan, 16.0], [0, 1, None, 1]),
    ("0/1 integers with gaps", {}, [0, 1, None, 1], [0, 1, None, 1]),
    ("booleans with gaps", {}, [True, False, None, True], [1, 0, None, 1]),
    ("yes/no text", {"source.positive_class": "YES"}, ["NO", "YES", None, "YES"], [0, 1, None, 1]),
    ("named class", {"source.positive_class": "churned"}, ["stayed", "churned", np.nan, "stayed"], [0, 1, None, 0]),
    ("integer codes, class as text", {"source.positive_class": "2"}, [1, 2, None, 2], [0, 1, None, 1]),
    ("booleans, class 'false'", {"source.positive_class": "false"}, [True, False, None, True], [0, 1, None, 0]),
]


@pytest.mark.parametrize(("overrides", "values", "expected"), [shape[1:] for shape in SHAPES],
                         ids=[shape[0] for shape in SHAPES])
def test_every_target_shape_labels_and_keeps_missing_as_missing(make_params, overrides, values, expected) -> None:
    source = _own(make_params, **overrides).source
    label = make_label(pd.DataFrame({"y": pd.Series(values, dtype=object if None in values else None)}), source)
    assert [None if np.isnan(v) else int(v) for v in label] == expected


def test_categorical_dtype_target(make_params) -> None:
    source = _own(make_params, **{"source.positive_class": "YES"}).source
    target = pd.Series(["NO", "YES", None, "YES"], dtype="category")
    assert make_label(pd.DataFrame({"y": target}), source).fillna(-1).tolist() == [0, 1, -1, 1]


@pytest.mark.parametrize(("overrides", "values"), [shape[1:3] for shape in SHAPES], ids=[s[0] for s in SHAPES])
def test_missing_targets_are_dropped_for_every_shape(make_params, overrides, values) -> None:
    """The old crash: a 0/1 target with gaps was cast to int before the rows without a target were dropped."""
    params = _own(make_params, **overrides)
    table = _table(values)
    prepared = prepare(table, params.source, params.features, params.split, keep=params.evaluate.slices)
    kept = sum(len(prepared.split(name)) for name in ("train", "valid", "test"))
    assert kept == len(table) - len(table) // 4  # one row in four has no target
    assert set(prepared.train["label"].unique()) == {0, 1}
    assert prepared.train["label"].dtype == "int8"


def test_missing_targets_refused_when_drop_is_off(make_params) -> None:
    params = _own(make_params, **{"source.drop_missing_target": False})
    with pytest.raises(FeatureError, match=r"60 of 240 rows have no 'y' .*source.drop_missing_target is false"):
        prepare(_table([0, 1, None, 1]), params.source, params.features, params.split)


def test_positive_class_missing_from_the_target_lists_the_values(make_params) -> None:
    source = _own(make_params, **{"source.positive_class": "yes"}).source  # case-sensitive: the data says YES
    with pytest.raises(FeatureError, match=r"source.positive_class 'yes' is not a value of target 'y' .*"
                                           r"values seen: \['NO', 'YES'\]"):
        make_label(pd.DataFrame({"y": ["NO", "YES", None]}), source)


def test_a_multi_class_target_without_a_positive_class_names_the_key(make_params) -> None:
    source = _own(make_params).source
    with pytest.raises(FeatureError, match=r"target 'y' \(source.target\) is not 0/1 or boolean, 3 values seen: "
                                           r"\['fog', 'rain', 'sunny'\]; set source.positive_class .*one-vs-rest"):
        make_label(pd.DataFrame({"y": ["rain", "sunny", "fog", None]}), source)


def test_a_multi_class_target_with_a_positive_class_is_one_vs_rest(make_params) -> None:
    """label = (target == positive_class): the named class against every other, however many there are."""
    source = _own(make_params, **{"source.positive_class": "sunny"}).source
    label = make_label(pd.DataFrame({"y": ["rain", "sunny", "fog", None, "snow", "sunny"]}), source)
    assert label.tolist()[:3] == [0.0, 1.0, 0.0] and pd.isna(label[3]) and label.tolist()[4:] == [0.0, 1.0]


def test_draft_suite_on_a_multi_class_target(make_params) -> None:
    """A 4-class text target: with positive_class the suite bounds that class's share; without, the error names
    the key (it crashed with "could not convert string to float")."""
    times = pd.date_range("2021-01-04", periods=400, freq="8h", tz="UTC")
    frame = pd.DataFrame({"when": times, "x": np.arange(400.0),
                          "y": np.tile(["rain", "sunny", "fog", "snow", "rain", "fog", "rain", "snow"], 50)})
    suite = draft_suite(frame, "weather", label_column="y", positive_class="sunny", time_column="when",
                        period="week")
    bounds = [item for item in suite["expectations"] if item["kwargs"].get("value_set") == ["sunny"]]
    assert {item["type"] for item in bounds} == {"expect_column_values_to_be_in_set",
                                                 "expect_column_values_to_not_be_in_set"}
    assert 0 < bounds[0]["kwargs"]["mostly"] < 0.125 < 1 - bounds[1]["kwargs"]["mostly"] < 1
    with pytest.raises(ValueError, match=r"'y' \(source.target\) is not 0/1 but has 4 values .*set "
                                         r"source.positive_class .*one-vs-rest"):
        draft_suite(frame, "weather", label_column="y", time_column="when", period="week")


@pytest.mark.parametrize(("values", "key"), [(["NO", "YES"], "source.positive_class"),
                                             ([0.5, 3.0, 7.0], "source.positive_above")])
def test_a_target_that_needs_a_key_names_it(make_params, values, key) -> None:
    with pytest.raises(FeatureError, match=f"is not 0/1 or boolean.*set {key}"):
        make_label(pd.DataFrame({"y": values}), _own(make_params).source)


def test_threshold_on_a_text_target_is_refused(make_params) -> None:
    source = _own(make_params, **{"source.positive_above": 0.5}).source
    with pytest.raises(FeatureError, match=r"source.positive_above needs a numeric target.*source.positive_class"):
        make_label(pd.DataFrame({"y": ["NO", "YES"]}), source)


def test_replay_windows_skip_the_training_checks(make_params) -> None:
    """A later week with no positive at all is real data, not a params error."""
    source = _own(make_params, **{"source.positive_class": "YES"}).source
    assert make_label(pd.DataFrame({"y": ["NO", None]}), source, check=False).fillna(-1).tolist() == [0, -1]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"source.positive_above": 15, "source.positive_class": "YES"},
     "source.positive_above and source.positive_class are both set"),
    ({"source.positive_class": True}, 'quote the value exactly as the target spells it, e.g. positive_class: "YES"'),
])
def test_loader_refuses_ambiguous_label_keys(make_params, overrides, message) -> None:
    with pytest.raises(ParamsError) as error:
        _own(make_params, **overrides)
    assert message in str(error.value)


def test_positive_class_given_as_a_yaml_number_is_its_text(make_params) -> None:
    assert _own(make_params, **{"source.positive_class": 2}).source.positive_class == "2"


# --- columns named by params ---------------------------------------------------------------------------------------

def test_every_key_naming_a_missing_column_is_reported_at_once(make_params) -> None:
    params = make_params({"source.kind": "file", "source.path": "mine.csv", "source.time_column": "t",
                          "source.target": "y", "features.categorical": ["store", "regoin"],
                          "features.numeric": ["x"], "features.forbidden": ["refund"]})
    # evaluate.slices keeps the flights default [carrier, origin, month]: the slip a new user makes.
    with pytest.raises(SourceError) as error:
        check_params_columns(["t", "y", "store", "region", "x"],
                             params_columns(params.source, params.features, params.evaluate.slices))
    text = str(error.value)
    assert "features.categorical: 'regoin' is not a column of the table (did you mean 'region'?)" in text
    assert "features.forbidden: 'refund' is not a column of the table" in text
    for slice_column in ("carrier", "origin", "month"):
        assert f"evaluate.slices: {slice_column!r} is not a column of the table" in text
    assert "source.target" not in text and "features.numeric" not in text


# --- time column and window ----------------------------------------------------------------------------------------

def test_unparseable_time_column_is_named_with_three_bad_values() -> None:
    frame = pd.DataFrame({"when": ["2024-01-01 10:00", "yesterday", "2024-01-03 11:00", "soon", "n/a", "later"]})
    with pytest.raises(SourceError, match=r"time column 'when' \(source.time_column\) has 4 of 6 values that do not "
                                          r"parse as dates, e.g. 'yesterday', 'soon', 'n/a'$"):
        require_times(parse_time(frame, "when"), "when")


def test_numeric_time_column_is_refused_not_read_as_1970() -> None:
    with pytest.raises(SourceError, match=r"time column 'year' \(source.time_column\) holds numbers, not dates, "
                                          r"e.g. 2016, 2017"):
        parse_time(pd.DataFrame({"year": [2016, 2017, 2016]}), "year")


def test_epoch_seconds_read_as_text_are_named_as_numbers_without_a_pandas_warning() -> None:
    """Epoch seconds in a CSV whose suite types the time column as datetimes (collect reads it as text then): refused
    by name, saying they are numbers and which keys fix it, and without pandas' "could not infer format" UserWarning
    (a file path and line of ours) in the user's terminal."""
    import warnings

    frame = pd.DataFrame({"t": ["1583020800", "1583280000", "1583366400"], "y": [0, 1, 0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parsed = parse_time(frame, "t")
    with pytest.raises(SourceError, match=r"time column 't' \(source.time_column\) has 3 of 3 values that do not "
                                          r"parse as dates, e.g. '1583020800', '1583280000', '1583366400': they are "
                                          r"numbers \(an epoch, a year, a day count\?\), not dates: .* set "
                                          r"source.time_format"):
        require_times(parsed, "t")

def test_decimal_commas_read_with_a_decimal_point_name_source_read_decimal(make_params) -> None:
    """A spreadsheet's `;` CSV with decimal commas, where the user set source.read.delimiter but not decimal: the
    numbers do not parse; the failure validate reports (and collect warns) says which key reads them."""
    from pipelines.data.collect import PARSE_ERRORS, coerce_types
    from pipelines.data.explain import parse_failures

    frame = pd.DataFrame({"age": ["0,8", "21,0", "1.234,5", None], "code": ["1", "x", "2", "3"]})
    errors = coerce_types(frame, {"age": "numeric", "code": "numeric"}).attrs[PARSE_ERRORS]
    failures = {failure.column: failure.observed for failure in parse_failures(errors)}
    assert failures["age"] == ("3 cells did not (read as null); they look like numbers with a decimal comma: set "
                               "source.read.decimal: ','")
    assert failures["code"] == "1 cells did not (read as null)"


def test_text_stamps_become_utc_datetimes() -> None:
    parsed = parse_time(pd.DataFrame({"when": ["2017-01-01T06:00:42Z", "2017-01-01 01:00:00-05:00"]}), "when")
    assert str(parsed["when"].dtype) == "datetime64[ns, UTC]"
    assert parsed["when"].iloc[1] == pd.Timestamp("2017-01-01T06:00:00Z")


def test_draft_suite_refuses_a_window_wider_than_the_table(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A collect window wider than the table (the user's guess of a year around a few months of data): validate
    checks every month of the window, so the drafted suite would fail on its own table. draft-suite says so before
    writing anything, naming collect.start/collect.end, the empty months and the table's own range."""

    from pipelines.cli import main

    _table(["NO", "YES"]).assign(id=lambda frame: range(len(frame))).to_csv(tmp_path / "mine.csv", index=False)
    _write_mine_params(tmp_path, "2023-12-01", "2024-04-01", "month")
    assert main(["draft-suite", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "mine.json")]) == 1
    error = " ".join(capsys.readouterr().err.split())
    assert "collect.start .. collect.end (2023-12-01 .. 2024-04-01) is wider than the table" in error
    assert "2023-12 (0 rows, at least" in error and "2024-03 (0 rows, at least" in error
    assert 'set collect.start: "2024-01-01" and collect.end: "2024-03-01"' in error
    assert not (tmp_path / "mine.json").exists()


def test_empty_window_names_the_keys_and_the_tables_range(make_params) -> None:
    params = make_params({"collect.start": "2030-01-01", "collect.end": "2030-02-01"})
    frame = parse_time(pd.DataFrame({"t": ["2024-01-01", "2024-03-31"]}), "t")
    with pytest.raises(SourceError, match=r"2030-01-01 .. 2030-02-01 \(collect.start .. collect.end\) holds no "
                                          r"rows; the table's 't' spans 2024-01-01 00:00:00\+00:00 .. 2024-03-31"):
        select_window(frame, "t", params.collect.start, params.collect.end)


# --- constant features ---------------------------------------------------------------------------------------------

def test_constant_features_are_dropped_with_a_warning(make_params, caplog: pytest.LogCaptureFixture) -> None:
    params = _own(make_params, **{"features.numeric": ["x", "flat"], "features.categorical": ["store", "region"]})
    table = _table([0, 1]).assign(flat=5.0, region="north")
    with caplog.at_level(logging.WARNING, logger="pipelines.data.preprocess"):
        prepared = prepare(table, params.source, params.features, params.split)
    assert set(prepared.dropped_features) == {"flat", "region"}
    assert "numeric feature 'flat' (features.numeric) is 5.0 in every row" in prepared.dropped_features["flat"]
    assert prepared.schema.feature_names == ["store", "x", "day_of_week"]
    assert "dropping feature: categorical feature 'region'" in caplog.text


def test_a_target_named_label_is_still_a_target(make_params) -> None:
    """'label' is reserved for features and slices (config.RESERVED_NAMES), not for the target it is made from."""
    params = _own(make_params, **{"source.target": "label"})
    prepared = prepare(_table([0, 1]).rename(columns={"y": "label"}), params.source, params.features, params.split)
    assert prepared.train["label"].isin([0, 1]).all() and prepared.train["label"].nunique() == 2


# --- column names LightGBM will not hold ---------------------------------------------------------------------------

@pytest.mark.parametrize(("names", "safe"), [
    (["carrier", "dep_hour", "day_of_week"], ["carrier", "dep_hour", "day_of_week"]),  # most tables: unchanged
    (['weight [kg]', "city, state", "a:b", '{"x"}', "two words", "line\nbreak", "tab\there"],
     ["weight__kg_", "city__state", "a_b", "__x__", "two_words", "line_break", "tab_here"]),
    (["a b", "a_b", "a:b", "a_b_2"], ["a_b", "a_b_2", "a_b_3", "a_b_2_2"]),  # unique after the change, in order
])
def test_lightgbm_names_are_safe_unique_and_in_order(names, safe) -> None:
    assert lightgbm_names(names) == safe


def test_columns_with_json_characters_in_their_names_train_and_report_under_their_own_names(make_params) -> None:
    """LightGBM refuses `" , : [ ] { }` in a feature name and rewrites spaces: a table's "weight [kg]" or
    "city, state" once crashed train with its raw error. The model file holds safe names; the schema, the encoded
    request and the importance report keep the table's."""
    from pipelines.model.train import train_model

    names = {"store": "store, id", "x": "x [kg]", "extra": "x_kg_"}  # the last one collides once made safe
    params = _own(make_params, **{"features.categorical": ["store, id"], "features.numeric": ["x [kg]", "x_kg_"],
                                  "evaluate.slices": ["store, id"], "train.lightgbm.min_data_in_leaf": 5})
    table = _table([0, 1])
    table = table.assign(extra=table["x"] * 2, y=(table["x"] > 0).astype(int)).rename(columns=names)
    prepared = prepare(table, params.source, params.features, params.split)
    model = train_model(prepared.train, prepared.valid, prepared.schema, params.train)
    assert prepared.schema.feature_names == ["store, id", "x [kg]", "x_kg_", "day_of_week"]
    assert model.booster.feature_name() == ["store__id", "x__kg_", "x_kg_", "day_of_week"]
    # The same rows score the same through the schema's names (as the service sends them) and the split's frame.
    rows = prepared.valid.head(20)
    matrix = encode({name: rows[name] for name in prepared.schema.raw_columns}, rows["t"], prepared.schema)
    assert np.allclose(model.booster.predict(matrix), model.predict_proba(rows))
    importance = feature_importance(model).set_index("feature")
    gains = model.booster.feature_importance(importance_type="gain")
    assert importance["weight"].to_dict() == dict(zip(prepared.schema.feature_names, gains, strict=True))
    assert importance.loc["x [kg]", "weight"] + importance.loc["x_kg_", "weight"] > 0  # the label is x > 0


# --- integer-coded categoricals ------------------------------------------------------------------------------------

def test_integer_codes_mean_the_same_as_int_float_or_text(make_params) -> None:
    """Training reads an int column with a gap as float (1.0); a caller sends 1 or "1": one vocabulary entry."""
    params = _own(make_params)
    table = _table([0, 1])
    assert table["store"].dtype == "float64"
    schema = fit_feature_schema(table, params.features, "t")
    assert schema.categorical["store"] == ["1", "2", "3"]
    stamps = pd.to_datetime(["2024-01-01"] * 5, utc=True)
    matrix = encode({"store": [2, "2", 2.0, np.int64(2), "7"], "x": [0.0] * 5}, stamps, schema)
    assert matrix[:4, 0].tolist() == [1.0] * 4
    assert np.isnan(matrix[4, 0])  # unseen


@pytest.mark.parametrize(("value", "text"), [(7, "7"), (7.0, "7"), (np.float32(7.5), "7.5"), ("07", "07"),
                                             (True, "true"), (None, None), (float("nan"), None)])
def test_category_text(value, text) -> None:
    assert category_text(value) == text


# --- drafting from what validate will see --------------------------------------------------------------------------

def test_a_drafted_suite_passes_validate_on_the_data_it_was_drafted_from(tmp_path) -> None:
    """draft-suite without --table drafts from the collected table (text stamps parsed to UTC, the window cut), with
    label-rate bounds for the named class; collect then reads the file with the suite's types and validate passes."""
    import json

    from pipelines import stages
    from pipelines.cli import main
    from pipelines.config import load_params

    table = _table(["NO", "YES", None, "NO", "NO"]).assign(
        t=lambda frame: frame["t"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"), id=lambda frame: range(len(frame)))
    table.to_csv(tmp_path / "mine.csv", index=False)
    _write_mine_params(tmp_path, "2024-01-01", "2024-03-01", "week")
    assert main(["draft-suite", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "mine.json")]) == 0
    suite = json.loads((tmp_path / "mine.json").read_text())
    types = {item["kwargs"].get("column"): item["kwargs"] for item in suite["expectations"]
             if item["type"] == "expect_column_type_to_be"}
    assert types["t"]["type_"].startswith("datetime64[") and types["t"]["type_"].endswith(", UTC]")
    rates = [item for item in suite["expectations"] if item["kwargs"].get("column") == "y"
             and item.get("meta", {}).get("notes", "").startswith("label rate")]
    assert {item["type"] for item in rates} == {"expect_column_values_to_be_in_set",
                                                "expect_column_values_to_not_be_in_set"}
    assert all(item["kwargs"]["value_set"] == ["YES"] for item in rates)
    params = load_params(tmp_path / "params.yaml")
    stages.run_collect(params)
    summary = stages.run_validate(params)
    assert summary["success"], summary


def test_the_request_schema_takes_numbers_only_for_integer_coded_categories(make_params) -> None:
    from pydantic import TypeAdapter, ValidationError

    from services.schemas import flight_model

    params = _own(make_params, **{"features.categorical": ["store", "region"]})
    row = TypeAdapter(flight_model(params.features, "t", entity="sale", coded_categories=["store"]))
    base = {"store": None, "region": "north", "x": 1.0, "t": "2024-01-01T10:00:00Z"}
    for store in (5, 5.0, "5"):
        assert row.validate_python({**base, "store": store})["store"] == store
    for bad in ({"store": True}, {"store": float("nan")}, {"region": 5}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            row.validate_python({**base, **bad})


# --- boolean columns -----------------------------------------------------------------------------------------------

def _file_project(tmp_path, table: pd.DataFrame, suffix: str, categorical: list[str], numeric: list[str]) -> Any:
    """A file project over `table` (t, y, id and the features) with its suite drafted and the table collected."""
    import yaml

    from pipelines import stages
    from pipelines.cli import main
    from pipelines.config import load_params
    from support.params import params_dict

    source = tmp_path / f"mine.{suffix}"
    table.to_csv(source, index=False) if suffix == "csv" else table.to_parquet(source, index=False)
    data = params_dict(tmp_path, {
        "source.kind": "file", "source.path": str(source), "source.time_column": "t", "source.target": "y",
        "source.positive_above": None, "source.positive_class": None, "source.key_columns": ["id"],
        "collect.start": "2024-01-01", "collect.end": "2024-03-01", "validate.suite": str(tmp_path / "mine.json"),
        "validate.calibration": str(tmp_path / "mine.calibration.json"), "validate.period": "week",
        "features.categorical": categorical, "features.numeric": numeric,
        "features.forbidden": [], "features.min_category_count": 1, "evaluate.slices": categorical[:1],
        "split.valid_days": 7, "split.test_days": 7, "train.lightgbm.min_data_in_leaf": 5})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    assert main(["draft-suite", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "mine.json")]) == 0
    params = load_params(tmp_path / "params.yaml")
    stages.run_collect(params)
    return params


BOOLEAN_FEATURES = {"categorical": ["store", "member"], "numeric": ["x", "promo"]}


def _with_booleans(table: pd.DataFrame) -> pd.DataFrame:
    """`promo`: booleans with gaps that carry the label; `member`: booleans with gaps, used as a category."""
    gaps = np.arange(len(table)) % 7 == 0
    promo = pd.Series(table["x"] > 0, dtype=object).where(~gaps, None)
    member = pd.Series(np.arange(len(table)) % 3 == 0, dtype=object).where(~gaps, None)
    return table.assign(promo=promo, member=member, y=(table["x"] > 0).astype(int), id=range(len(table)),
                        t=table["t"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_booleans_with_gaps_are_booleans_from_draft_to_model(tmp_path, suffix) -> None:
    """A CSV's True/False column with empty cells was made text by collect, drafted as a text set, and then refused
    as a numeric feature ("non-numeric values, e.g. ['True', ...]"); an object column of Python booleans (what
    Parquet gives for booleans with gaps) was refused with "e.g. []". Both are booleans now: typed `boolean` by
    draft-suite, read so by collect, 1/0/NaN to the model."""
    from pipelines import io, stages
    from pipelines.data.suite import read_suite, suite_column_types

    params = _file_project(tmp_path, _with_booleans(_table([0, 1])), suffix, BOOLEAN_FEATURES["categorical"],
                           BOOLEAN_FEATURES["numeric"])
    kinds = suite_column_types(read_suite(params.validate_.suite))
    assert kinds["promo"] == kinds["member"] == "boolean"
    assert stages.run_validate(params)["success"]
    stages.run_preprocess(params)
    train = pd.read_parquet(io.prepared_path(params.paths, "train"))
    assert train["promo"].dtype == "float64" and set(train["promo"].dropna()) == {0.0, 1.0}
    assert train["promo"].isna().any()
    stages.run_train(params)
    schema = json.loads((params.paths.model_dir / "feature_schema.json").read_text())
    assert schema["categorical"]["member"] == ["false", "true"]


def test_a_bad_cell_in_a_boolean_column_is_counted_by_name(tmp_path) -> None:
    from pipelines import stages
    from pipelines.data.validate import DataValidationError

    table = _with_booleans(_table([0, 1]))
    params = _file_project(tmp_path, table, "csv", **BOOLEAN_FEATURES)
    table["promo"] = table["promo"].astype(object)
    table.loc[5, "promo"] = "maybe"
    table.to_csv(params.source.path, index=False)
    stages.run_collect(params)
    with pytest.raises(DataValidationError, match=r"promo.*maybe"):
        stages.run_validate(params)


def test_numeric_features_held_as_objects_are_numbers_and_text_is_named(make_params) -> None:
    from decimal import Decimal

    params = _own(make_params)
    table = _table([0, 1])
    prepared = prepare(table.assign(x=[Decimal(str(round(v, 3))) for v in table["x"]]), params.source,
                       params.features, params.split)
    assert prepared.train["x"].dtype == "float64"
    with pytest.raises(FeatureError, match=r"numeric feature 'x' \(features.numeric\) has dtype object with "
                                           r"non-numeric values, e.g. \['3.5'\]$"):
        prepare(table.assign(x=pd.Series([1.0, "3.5", None] * (len(table) // 3), dtype=object)), params.source,
                params.features, params.split)


def test_the_request_schema_takes_true_and_false_for_boolean_features(make_params) -> None:
    from pydantic import TypeAdapter, ValidationError

    from services.schemas import flight_model

    params = _own(make_params, **{"features.categorical": ["store", "member"], "features.numeric": ["x", "promo"]})
    row = TypeAdapter(flight_model(params.features, "t", entity="sale", boolean_columns=["promo", "member"]))
    base = {"store": "1", "member": True, "x": 1.0, "promo": False, "t": "2024-01-01T10:00:00Z"}
    for promo in (True, False, None):
        assert row.validate_python({**base, "promo": promo})["promo"] is promo
    for member in (True, "true", None):
        assert row.validate_python({**base, "member": member})["member"] == member
    for bad in ({"promo": 1}, {"promo": "true"}, {"promo": 0.5}, {"member": 1}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            row.validate_python({**base, **bad})
    # What the service encodes from them is what training encoded from the table's booleans.
    schema = fit_feature_schema(pd.DataFrame({"store": ["1", "2"], "member": pd.array([True, False]),
                                              "x": [0.0, 1.0], "promo": [True, False],
                                              "t": pd.to_datetime(["2024-01-01"] * 2, utc=True)}),
                                params.features, "t")
    stamps = pd.to_datetime(["2024-01-01"] * 3, utc=True)
    matrix = encode({"store": ["1"] * 3, "member": [True, "true", False], "x": [0.0] * 3,
                     "promo": [True, False, None]}, stamps, schema)
    names = schema.feature_names
    assert matrix[:, names.index("member")].tolist() == [schema.categorical["member"].index("true")] * 2 + [
        schema.categorical["member"].index("false")]
    assert matrix[:2, names.index("promo")].tolist() == [1.0, 0.0] and np.isnan(matrix[2, names.index("promo")])


# --- numeric dtypes beyond int64/float64 ---------------------------------------------------------------------------

OTHER_NUMBERS = {  # dtype -> what collect makes of it
    "Int64": "float64", "Float64": "float64", "uint8": "int64", "int16": "int64", "float16": "float64",
    "UInt32": "int64",
}


def _other_numbers(table: pd.DataFrame) -> pd.DataFrame:
    rows = np.arange(len(table))
    columns = {f"n_{dtype}": pd.array([None if dtype in ("Int64", "Float64") and i % 5 == 0 else i % 100
                                       for i in rows], dtype=dtype) for dtype in OTHER_NUMBERS}
    return table.assign(**columns, id=rows, t=table["t"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))


def test_a_drafted_suite_holds_for_parquet_numbers_of_any_dtype(tmp_path) -> None:
    """Parquet written from pandas keeps nullable Int64/Float64, and other tools write uint8 or float16: the
    drafted type check named int64/int32/float64/float32 only, so the suite failed on the very table it was
    drafted from. collect gives every number one of those dtypes."""
    from pipelines import io, stages

    numeric = ["x", *(f"n_{dtype}" for dtype in OTHER_NUMBERS)]
    params = _file_project(tmp_path, _other_numbers(_table([0, 1])), "parquet", ["store"], numeric)
    raw = io.parquet_frame(params.paths.raw_table)
    assert {name: str(raw[f"n_{name}"].dtype) for name in OTHER_NUMBERS} == OTHER_NUMBERS
    assert raw["n_Int64"].isna().sum() == (np.arange(len(raw)) % 5 == 0).sum()
    assert stages.run_validate(params)["success"]
    stages.run_preprocess(params)
    stages.run_train(params)


def test_uint64_past_int64_is_float_and_a_datetime_feature_is_named(make_params) -> None:
    from pipelines.data.collect import as_plain_numbers

    assert as_plain_numbers(pd.Series([1, 2**63 + 5], dtype="uint64")).dtype == "float64"
    assert as_plain_numbers(pd.Series([1, 2], dtype="uint64")).tolist() == [1, 2]
    params = _own(make_params)
    table = _table([0, 1])
    with pytest.raises(FeatureError, match=r"numeric feature 'x' \(features.numeric\) holds datetime64\[ns, UTC\] "
                                           r"values: only source.time_column's calendar parts"):
        prepare(table.assign(x=table["t"]), params.source, params.features, params.split)


def _write_mine_params(tmp_path: Path, start: str, end: str, period: str) -> Path:
    """params.yaml for tmp_path/mine.csv (`_table`'s columns, a YES/NO label, an id key) over collect `start` ..
    `end`, the suite checked per `period`."""
    import yaml

    from support.params import params_dict

    data = params_dict(tmp_path, {
        "source.kind": "file", "source.path": str(tmp_path / "mine.csv"), "source.time_column": "t",
        "source.target": "y", "source.positive_above": None, "source.positive_class": "YES",
        "source.key_columns": ["id"], "collect.start": start, "collect.end": end,
        "validate.suite": str(tmp_path / "mine.json"), "validate.period": period,
        "validate.calibration": str(tmp_path / "mine.calibration.json"), "features.categorical": ["store"],
        "features.numeric": ["x"], "features.forbidden": [], "evaluate.slices": ["store"]})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path

"""Corrupted batches built from real months never get past validation, and nothing downstream runs on them.

Each corruption is applied to the real March-May 2013 flights, written as the user's own file (`source.kind:
file`), and run through the real stages: collect reads it (never a raw pandas/pyarrow error), validate fails with
a message naming the check (and the period, for a per-period check), and preprocess, train, evaluate and gate
refuse the table by its hash. The registry and the champion (trained once on the clean months) do not change.
`tests/integration/test_dvc_repro_corruptions.py` runs two of these kinds through `dvc repro`.

The learned-behaviour classes (issue 35: a fault that keeps every column's marginal plausible) are judged against
the committed calibration (`expectations/flights_raw.calibration.json`); each names the column, the period and the
segment at the grain where the fault sits, and is also run with no champion yet (nothing is registered).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from pipelines import stages
from pipelines.config import Params, parse_params
from pipelines.contracts import GateMetrics, GateReport, GateScores
from pipelines.data.suite import NotValidatedError
from pipelines.data.validate import DataValidationError
from pipelines.features import FeatureError
from pipelines.io import file_md5
from pipelines.release import registry
from support.params import SMALL_WINDOW, params_dict

pytestmark = pytest.mark.model  # the champion the corruptions must not move is a real (small) model

WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]


def _month(frame: pd.DataFrame, month: int) -> pd.Series:
    return frame["time_hour"].dt.month == month


def null_weather_in_april(frame: pd.DataFrame) -> pd.DataFrame:
    april = _month(frame, 4)
    return frame.assign(**{name: frame[name].where(~april) for name in WEATHER})


def text_in_distance(frame: pd.DataFrame) -> pd.DataFrame:
    text = frame["distance"].astype(object)
    text[_month(frame, 4) & (frame.index % 50 == 0)] = "far away"
    return frame.assign(distance=text)


def label_null_in_april(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(arr_delay=frame["arr_delay"].where(~_month(frame, 4)))


def label_constant_in_train(frame: pd.DataFrame) -> pd.DataFrame:
    # March (train split): every flight "late".
    return frame.assign(arr_delay=frame["arr_delay"].mask(_month(frame, 3) & frame["arr_delay"].notna(), 60.0))


def label_constant_in_test(frame: pd.DataFrame) -> pd.DataFrame:
    # May holds the valid and test splits: every flight on time.
    return frame.assign(arr_delay=frame["arr_delay"].mask(_month(frame, 5) & frame["arr_delay"].notna(), -5.0))


def one_category_times_ten(frame: pd.DataFrame) -> pd.DataFrame:
    alaska = frame[frame["carrier"] == "AS"]
    return pd.concat([frame, *[alaska] * 9], ignore_index=True).sort_values("time_hour", kind="stable")


def missing_week(frame: pd.DataFrame) -> pd.DataFrame:
    day = frame["time_hour"].dt.tz_convert(None).dt.normalize()
    return frame[~day.between(pd.Timestamp("2013-04-08"), pd.Timestamp("2013-04-14"))]


def doubled_week(frame: pd.DataFrame) -> pd.DataFrame:
    day = frame["time_hour"].dt.tz_convert(None).dt.normalize()
    week = frame[day.between(pd.Timestamp("2013-04-08"), pd.Timestamp("2013-04-14"))]
    return pd.concat([frame, week], ignore_index=True).sort_values("time_hour", kind="stable")


def distance_in_minutes_units(frame: pd.DataFrame) -> pd.DataFrame:
    # A unit change x60 in one column for one month (e.g. an upstream switch of units).
    return frame.assign(distance=frame["distance"].where(~_month(frame, 4), frame["distance"] * 60))


def new_carrier_on_most_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = _month(frame, 4) & (frame.index % 10 < 6)
    return frame.assign(carrier=frame["carrier"].where(~rows, "ZZ"))


def key_reused_with_other_values(frame: pd.DataFrame) -> pd.DataFrame:
    # The same flights sent twice with a corrected delay: not exact duplicates, but the key repeats.
    again = frame[_month(frame, 4) & (frame.index % 20 == 0)]
    again = again.assign(arr_delay=again["arr_delay"] + 7)
    return pd.concat([frame, again], ignore_index=True).sort_values("time_hour", kind="stable")


def garbage_time_stamps(frame: pd.DataFrame) -> pd.DataFrame:
    stamps = frame["time_hour"].astype(str).astype(object)
    stamps[frame.index % 97 == 0] = "not a time"
    return frame.assign(time_hour=stamps)


def target_column_dropped_weather_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["pressure"])


def weather_zero_in_april(frame: pd.DataFrame) -> pd.DataFrame:
    # A failed weather join filled with a default for one month: non-null, and 0 is inside every column's range.
    return frame.assign(**{name: frame[name].where(~_month(frame, 4), 0.0) for name in ("temp", "humid", "wind_dir")})


def pressure_in_inches(frame: pd.DataFrame) -> pd.DataFrame:
    # hPa -> inHg for one month: stays numeric and non-null, leaves the reviewed range.
    return frame.assign(pressure=frame["pressure"].where(~_month(frame, 5), frame["pressure"] / 33.8639))


def _local_month(frame: pd.DataFrame, month: int) -> pd.Series:
    return frame["time_hour"].dt.tz_convert("America/New_York").dt.month == month


def humidity_as_a_fraction_at_lga_in_april(frame: pd.DataFrame) -> pd.DataFrame:
    # One airport's feed switched to a 0-1 fraction for a month: 0.0-1.0 is inside humidity's physical range.
    rows = (frame["origin"] == "LGA") & _local_month(frame, 4)
    return frame.assign(humid=frame["humid"].where(~rows, frame["humid"] / 100))


def distances_in_kilometres_for_one_carrier(frame: pd.DataFrame) -> pd.DataFrame:
    # One carrier's distances in km in every month: within the physical range, 1.6x the same routes of the others.
    rows = frame["carrier"] == "B6"
    return frame.assign(distance=frame["distance"].where(~rows, (frame["distance"] * 1.609344).round()))


def time_axis_two_hours_early_in_may(frame: pd.DataFrame) -> pd.DataFrame:
    # The timestamps of one month shifted (a time zone applied twice); the hour and date columns untouched.
    rows = _local_month(frame, 5)
    return frame.assign(time_hour=frame["time_hour"].where(~rows, frame["time_hour"] - pd.Timedelta(hours=2)))


def labels_flipped_on_a_quarter_of_march(frame: pd.DataFrame) -> pd.DataFrame:
    # A quarter of March's outcomes swapped (late -> 5 min early, on time -> 45 min late): March's late rate
    # rises from 24% to 37%, inside the monthly bounds 2013's own months need.
    rows = _local_month(frame, 3) & frame["arr_delay"].notna() & (frame.index % 4 == 1)
    late = frame["arr_delay"] > 15
    return frame.assign(arr_delay=frame["arr_delay"].mask(rows & late, -5.0).mask(rows & ~late, 45.0))


def seats_doubled_for_one_carrier(frame: pd.DataFrame) -> pd.DataFrame:
    # A join that doubled one carrier's seat counts: its planes now seat twice what the same models seat elsewhere.
    rows = frame["carrier"] == "UA"
    return frame.assign(plane_seats=frame["plane_seats"].where(~rows, frame["plane_seats"] * 2))


def wind_in_kmh_for_one_carrier(frame: pd.DataFrame) -> pd.DataFrame:
    # One carrier's copy of the weather in km/h: the same airport and hour hold two wind speeds.
    rows = frame["carrier"] == "DL"
    return frame.assign(wind_speed=frame["wind_speed"].where(~rows, frame["wind_speed"] * 1.609344))


@dataclass(frozen=True)
class Corruption:
    corrupt: Callable[[pd.DataFrame], pd.DataFrame]
    expected: tuple[str, ...]  # every text must be in the failure message (check names, columns, periods)
    suffix: str = ".parquet"


CORRUPTIONS = {
    "null-weather-for-a-period": Corruption(null_weather_in_april, (
        "[period 2013-04] expect_column_values_to_not_be_null on column 'temp'",)),
    "text-in-a-numeric-column": Corruption(text_in_distance, (
        "collect_cells_parse_as_column_type on column 'distance'", "'far away'"), ".csv"),
    "label-null-for-a-period": Corruption(label_null_in_april, (
        "[period 2013-04] expect_column_values_to_not_be_null on column 'arr_delay'",)),
    "label-constant-in-train": Corruption(label_constant_in_train, (
        "[period 2013-03] expect_column_values_to_be_between on column 'arr_delay'", "label rate upper bound")),
    "label-constant-in-test": Corruption(label_constant_in_test, (
        "[period 2013-05] expect_column_values_to_be_between on column 'arr_delay'", "label rate lower bound")),
    "one-category-duplicated-x10": Corruption(one_category_times_ten, (
        "expect_compound_columns_to_be_unique", "exact duplicates", "the table's key")),
    "a-missing-week": Corruption(missing_week, ("[period 2013-04] expect_table_row_count_to_be_between",)),
    "a-doubled-week": Corruption(doubled_week, (
        "[period 2013-04] expect_table_row_count_to_be_between", "exact duplicates")),
    "unit-change-x60": Corruption(distance_in_minutes_units, (
        "expect_column_values_to_be_between on column 'distance'",)),
    "new-category-on-most-rows": Corruption(new_carrier_on_most_rows, (
        "[period 2013-04] expect_column_values_to_be_in_set on column 'carrier'", "'ZZ'")),
    "key-reused-with-other-values": Corruption(key_reused_with_other_values, (
        "expect_compound_columns_to_be_unique", "the table's key")),
    "stuck-at-a-default-for-a-period": Corruption(weather_zero_in_april, (
        "[period 2013-04] expect_column_unique_value_count_to_be_between on column 'temp'",
        "[period 2013-04] expect_column_unique_value_count_to_be_between on column 'wind_dir'")),
    "unit-change-in-one-month": Corruption(pressure_in_inches, (
        "expect_column_values_to_be_between on column 'pressure'",)),
}

# Faults that keep every column's marginal plausible: the learned behaviour catches them (issue 35).
LEARNED = {
    "unit-change-in-one-segment": Corruption(humidity_as_a_fraction_at_lga_in_april, (
        "[period 2013-04, origin=LGA] calibrated_statistic on column 'humid'",
        "[period 2013-04, origin=LGA] column_relation on column 'humid'")),
    "unit-change-for-one-carrier-every-month": Corruption(distances_in_kilometres_for_one_carrier, (
        "[period 2013-03, carrier=B6] calibrated_statistic on column 'distance'",
        "[period 2013-04, carrier=B6] calibrated_statistic on column 'distance'",
        "[period 2013-05, carrier=B6] calibrated_statistic on column 'distance'",
        "functional_dependency on column 'distance'", "(origin, dest) -> distance")),
    "time-axis-shifted-for-one-month": Corruption(time_axis_two_hours_early_in_may, (
        "[period 2013-05] time_consistency on column 'hour'", "the hour of time_hour in America/New_York",
        "[period 2013-05] hour_profile on column 'time_hour'")),
    "labels-flipped-on-part-of-a-month": Corruption(labels_flipped_on_a_quarter_of_march, (
        "[period 2013-03] label_relation on column 'arr_delay'", "label model ROC AUC")),
    "one-carriers-seats-doubled": Corruption(seats_doubled_for_one_carrier, (
        "carrier=UA] calibrated_statistic on column 'plane_seats'", "plane_model -> ")),
    "one-carriers-weather-in-other-units": Corruption(wind_in_kmh_for_one_carrier, (
        "carrier=DL] calibrated_statistic on column 'wind_speed'", "(origin, time_hour) -> ",
        "functional_dependency on column 'wind_speed'")),
}


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _params(root: Path, source: Path, registry_dir: Path, **overrides: object) -> Params:
    # The gate's latency budget is opened wide: the champion must exist on a busy CI machine too (what is tested
    # here is that corrupted data never reaches the gate, not the gate).
    return parse_params(params_dict(root, {**SMALL_WINDOW, "source.kind": "file", "source.path": str(source),
                                           "search.strategy": "none", "paths.registry_dir": str(registry_dir),
                                           "gate.max_latency_ms": 60_000, **overrides}))


def _model_name() -> str:
    from pipelines.config import load_params
    from support.params import PARAMS_FILE

    return load_params(PARAMS_FILE).project.model_name  # these tests keep params.yaml's project section


def _registry_state(registry_dir: Path) -> tuple[dict[str, bytes], list[str]]:
    files = {path.name: path.read_bytes() for path in sorted(registry_dir.iterdir()) if path.is_file()}
    return files, sorted(model.tag for model in registry.list_models(registry_dir, name=_model_name()))


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, small_table: pd.DataFrame) -> Path:
    """The clean months through every stage: validated, trained, gated and promoted; returns the registry."""
    root = tmp_path_factory.mktemp("clean")
    registry_dir = root / "registry"
    params = _params(root, _write(small_table, root / "flights.parquet"), registry_dir)
    stages.run_collect(params)
    assert stages.run_validate(params)["success"]
    stages.run_preprocess(params)
    stages.run_search(params)
    stages.run_evaluate(params)
    assert stages.run_gate_and_promote(params)["promote"]
    return registry_dir


def test_the_clean_months_pass_and_are_promoted(champion: Path) -> None:
    assert registry.champion_tag(champion) is not None


@pytest.mark.parametrize("kind", [*CORRUPTIONS, *LEARNED])
def test_a_corrupted_batch_fails_validation_by_name_and_nothing_downstream_runs(
    kind: str, champion: Path, small_table: pd.DataFrame, tmp_path: Path,
) -> None:
    corruption = {**CORRUPTIONS, **LEARNED}[kind]
    source = _write(corruption.corrupt(small_table.copy()), tmp_path / f"flights{corruption.suffix}")
    params = _params(tmp_path, source, champion)
    before = _registry_state(champion)

    stages.run_collect(params)  # reads whatever the file holds: never a raw library error
    with pytest.raises(DataValidationError) as raised:
        stages.run_validate(params)
    message = str(raised.value)
    for text in corruption.expected:
        assert text in message, f"{kind}: {text!r} not in:\n{message}"
    refused = params.paths.validation_dir / "failed"  # a refused table's reports, never over the last good ones
    summary = json.loads((refused / "summary.json").read_text())
    assert summary["success"] is False and summary["table_md5"] == file_md5(params.paths.raw_table)
    assert (refused / "data_docs" / "index.html").exists()
    assert not (params.paths.validation_dir / "summary.json").exists()

    digest = file_md5(params.paths.raw_table)
    for stage in (stages.run_preprocess, stages.run_search, stages.run_evaluate, stages.run_gate_and_promote):
        with pytest.raises(NotValidatedError) as refused:
            stage(params)
        assert f"table {digest} has not passed validation (" in str(refused.value)
        assert "summary.json says success: false" in str(refused.value)
    assert not params.paths.prepared_dir.exists()  # nothing was prepared from it
    assert _registry_state(champion) == before  # no model registered, the champion did not move


@pytest.mark.parametrize("kind", list(LEARNED))
def test_with_no_champion_yet_a_corrupted_batch_registers_nothing(kind: str, small_table: pd.DataFrame,
                                                                  tmp_path: Path) -> None:
    """A fresh deployment: the issue's four faults each beat the naive baselines and became the first champion."""
    registry_dir = tmp_path / "registry"
    params = _params(tmp_path, _write(LEARNED[kind].corrupt(small_table.copy()), tmp_path / "flights.parquet"),
                     registry_dir)
    stages.run_collect(params)
    with pytest.raises(DataValidationError):
        stages.run_validate(params)
    for stage in (stages.run_preprocess, stages.run_search, stages.run_gate_and_promote):
        with pytest.raises(NotValidatedError):
            stage(params)
    assert registry.champion_tag(registry_dir) is None
    assert registry.trained_on(file_md5(params.paths.raw_table), name=_model_name()) == []
    assert not params.paths.model_dir.exists()


def test_warn_only_validation_still_never_registers(champion: Path, small_table: pd.DataFrame,
                                                    tmp_path: Path) -> None:
    """validate.fail_on_error: false lets a person explore a failed table, but no model trained on it is stored."""
    source = _write(label_constant_in_test(small_table.copy()), tmp_path / "flights.parquet")
    params = _params(tmp_path, source, champion, **{"validate.fail_on_error": False})
    before = _registry_state(champion)
    stages.run_collect(params)
    assert stages.run_validate(params)["success"] is False
    with pytest.raises(FeatureError, match=r"degenerate split: valid .* has only label \[0\]; test"):
        stages.run_preprocess(params)  # the constant test month is named by preprocess too
    with pytest.raises(NotValidatedError, match="has not passed validation"):
        stages.run_promote(params, GateReport(promote=True, compared_with="baselines", champion=None,
                                              metric="roc_auc", checks=[], challenger_md5="x",
                                              metrics=GateMetrics(challenger=GateScores())))
    assert _registry_state(champion) == before


def test_garbage_time_stamps_stop_collect_by_key_and_nothing_downstream_runs(
    champion: Path, small_table: pd.DataFrame, tmp_path: Path,
) -> None:
    """The time column is the one column a bad cell cannot be nulled in: rows are windowed and split by it. So
    collect refuses the table, naming source.time_column and bad values, before anything is written."""
    from pipelines.data.collect import SourceError

    source = _write(garbage_time_stamps(small_table.copy()), tmp_path / "flights.csv")
    params = _params(tmp_path, source, champion)
    before = _registry_state(champion)
    with pytest.raises(SourceError) as refused:
        stages.run_collect(params)
    message = str(refused.value)
    assert "time column 'time_hour' (source.time_column)" in message and "'not a time'" in message
    assert not params.paths.raw_table.exists()
    with pytest.raises(NotValidatedError):
        stages.run_preprocess(params)
    assert _registry_state(champion) == before


def test_a_column_the_params_name_missing_stops_collect_by_key_and_nothing_downstream_runs(
    champion: Path, small_table: pd.DataFrame, tmp_path: Path,
) -> None:
    """A batch without a column params.yaml names (a weather column the join lost): collect checks every named
    column, so the table is refused there, naming the key and the column, before anything is written (the suite's
    own column-set check stands behind it for columns no key names)."""
    from pipelines.data.collect import SourceError

    source = _write(target_column_dropped_weather_column(small_table.copy()), tmp_path / "flights.parquet")
    params = _params(tmp_path, source, champion)
    before = _registry_state(champion)
    with pytest.raises(SourceError) as refused:
        stages.run_collect(params)
    assert "features.numeric: 'pressure' is not a column of the table" in str(refused.value)
    assert not params.paths.raw_table.exists()
    with pytest.raises(NotValidatedError):
        stages.run_preprocess(params)
    assert _registry_state(champion) == before

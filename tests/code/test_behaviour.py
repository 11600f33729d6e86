"""The learned behaviour on small synthetic tables: what draft-suite learns (time parts and their zone, functional
dependencies, segment statistics, relations, the label model), that its own reference passes, and that each kind of
fault fails at the grain where it sits, named by column, period and segment."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.data.behaviour import (
    Behaviour,
    Floors,
    LabelSpec,
    _excess,
    draft_behaviour,
    judge,
    read_behaviour,
    statistics,
    unit_codes,
    write_behaviour,
)
from pipelines.data.dependencies import dependency_violations, draft_dependencies
from pipelines.data.timeparts import draft_time_parts, time_part_violations
from pipelines.monitor.calibration import beyond_band

SEGMENTS = ["shop", "region"]


def _table(days: int = 364, per_day: int = 60, seed: int = 0) -> pd.DataFrame:
    """A year of hourly sales in Chicago: local `hour` and `day` columns, a shop -> region key, a near-determined
    `total = price * units`, a seasonal temperature, and a label that follows `units`."""
    rng = np.random.default_rng(seed)
    rows = days * per_day
    local = (pd.Timestamp("2021-01-04", tz="America/Chicago")
             + pd.to_timedelta(np.repeat(np.arange(days), per_day), unit="D")
             + pd.to_timedelta(rng.integers(7, 22, rows), unit="h"))
    shop = rng.choice(["s1", "s2", "s3", "s4", "s5", "s6"], rows, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    region = pd.Series(shop).map({"s1": "north", "s2": "north", "s3": "south", "s4": "south", "s5": "west",
                                  "s6": "west"}).to_numpy()
    price = rng.uniform(5, 50, rows).round(2)
    units = rng.integers(1, 10, rows).astype(float)
    season = 15 + 12 * np.sin(2 * np.pi * (local.dayofyear.to_numpy() - 100) / 365)
    temp = season + rng.normal(0, 3, rows)
    late = (rng.random(rows) < 1 / (1 + np.exp(-(units - 6) - 0.05 * (temp - 15)))).astype(int)
    return pd.DataFrame({
        "id": np.arange(rows), "time": local.tz_convert("UTC"), "hour": local.hour, "day": local.day,
        "shop": shop, "region": region, "price": price, "units": units, "total": (price * units).round(2),
        "temp": temp.round(1), "late": late}).sort_values("time", kind="stable").reset_index(drop=True)


def _draft(frame: pd.DataFrame) -> Behaviour:
    return draft_behaviour(frame, time_column="time", period="month", label=LabelSpec(target="late"),
                           key_columns=["id"], segments=SEGMENTS, margin=2.0,
                           floors=Floors(missing=0.05, share=0.02, outside=0.02), relation_r2=0.95)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return _table()


@pytest.fixture(scope="module")
def behaviour(reference: pd.DataFrame) -> Behaviour:
    return _draft(reference)


def _month(frame: pd.DataFrame, month: int) -> pd.Series:
    return frame["time"].dt.month == month  # periods are UTC months


def _lines(findings: list) -> list[str]:
    return [f"{f.check} {f.column} [{f.unit}, {f.segment}]" for f in findings]


# --- what is learned ----------------------------------------------------------------------------------------------

def test_the_timestamps_own_parts_are_found_in_their_zone(reference: pd.DataFrame) -> None:
    parts = {(part.column, part.part, part.zone) for part in draft_time_parts(reference, "time", exclude=["id"])}
    assert parts == {("hour", "hour", "America/Chicago"), ("day", "day", "America/Chicago")}


def test_a_shifted_time_axis_breaks_the_hour_column_row_by_row(reference: pd.DataFrame) -> None:
    (hour,) = [part for part in draft_time_parts(reference, "time", exclude=["id"]) if part.column == "hour"]
    shifted = reference.assign(time=reference["time"] + pd.Timedelta(hours=3))
    assert not time_part_violations(reference, "time", hour).any()
    assert time_part_violations(shifted, "time", hour).all()


def test_keys_that_determine_a_column_are_found_and_a_broken_one_is_named(reference: pd.DataFrame) -> None:
    found = {dependency.describe() for dependency in draft_dependencies(reference, time_column="time",
                                                                       exclude=["id", "hour", "day"])}
    assert found == {"shop -> region"}  # nothing else determines anything: prices, units and temperatures vary
    (dependency,) = draft_dependencies(reference, time_column="time", exclude=["id", "hour", "day"])
    moved = reference.assign(region=reference["region"].mask(reference["shop"] == "s5", "north"))
    broken, columns, examples = dependency_violations(moved, dependency)
    assert columns == ["region"] and broken.sum() == (reference["shop"] == "s5").sum()  # against the reference
    assert "s5" in examples and "region {'north'}" in examples["s5"] and "reference region 'west'" in examples["s5"]


def test_the_drafted_file_round_trips_and_is_bounded(behaviour: Behaviour, tmp_path) -> None:
    path = write_behaviour(behaviour, tmp_path / "sales.calibration.json")
    assert read_behaviour(path) == behaviour
    assert set(behaviour.segments) == set(SEGMENTS) and "total" in (behaviour.relations.values or {})
    assert behaviour.label_model is not None and behaviour.drafted_from["periods"] == {"month": 12, "week": 52}
    # its size grows with the columns and segments, never with the rows or periods
    assert len(behaviour.bands) < 2 * 12 * 60 and path.stat().st_size < 400_000


def test_the_vectorised_excess_is_the_monitors_band_rule() -> None:
    values = np.array([0.5, 1.0, 1.21, -0.3, 5.0, np.nan])
    low, high, width = np.array([0.0, 0.0, 0.0, 0.0, np.nan, 0.0]), np.array([1.0, 1.0, 1.0, np.nan, 1.0, 1.0]), \
        np.full(6, 0.2)
    excess = _excess(values, low, high, width)
    for value, lo, hi, w, beyond in zip(values, low, high, width, excess, strict=True):
        assert (beyond > 0) == beyond_band(value, None if math.isnan(lo) else lo, None if math.isnan(hi) else hi, w)


def test_units_of_time_are_the_periods_validation_cuts(reference: pd.DataFrame) -> None:
    codes, labels = unit_codes(reference["time"].iloc[[0, -1]], "week")
    assert labels[0] == "2021-01-04..2021-01-10" and codes[0] == 0
    codes, labels = unit_codes(reference["time"], "month")
    assert labels[0] == "2021-01" and len(labels) == 13  # the last evening hours are 2022-01 in UTC


# --- judged -------------------------------------------------------------------------------------------------------

def test_the_reference_itself_passes_every_period_week_and_segment(reference: pd.DataFrame,
                                                                   behaviour: Behaviour) -> None:
    judged, findings = judge(reference, behaviour)
    assert findings == [], _lines(findings)
    assert {"month", "week"} <= set(judged["grain"]) and judged["segment"].str.startswith("shop=").any()


def test_another_year_of_the_same_behaviour_passes(behaviour: Behaviour) -> None:
    """Not in the reference: new rows, the same behaviour (the tolerance is the reference periods' spread)."""
    judged, findings = judge(_table(days=120, seed=1), behaviour)
    assert findings == [], _lines(findings)


def test_a_long_tailed_columns_percentiles_are_read_close_to_the_exact_ones(reference: pd.DataFrame) -> None:
    """Hourly precipitation: 0 on most rows, a long tail to 1.2. A wet month's 90th percentile sits in the tail; read
    from quantile bins alone (one bin over the whole tail) it came out 0.27 for an exact 0.07, and a real rainy June
    was refused. With edges through the tail too, it is read within a 32nd of the range of the exact value."""
    rng = np.random.default_rng(3)
    wet = rng.random(len(reference)) < np.where(reference["time"].dt.month == 6, 0.14, 0.05)
    rain = np.where(wet, np.minimum(rng.exponential(0.08, len(reference)) + 0.01, 1.2), 0.0).round(2)
    frame = reference.assign(rain=rain)
    learned = _draft(frame)
    measured = statistics(frame, learned)
    q90 = measured[(measured["statistic"] == "rain.q90") & (measured["segment"] == "*") &
                   (measured["grain"] == "month")].set_index("unit")["value"]
    exact = frame.groupby(frame["time"].dt.strftime("%Y-%m"))["rain"].quantile(0.9)
    step = (rain.max() - rain.min()) / 32
    assert len(q90) >= 10 and (q90 - exact.reindex(q90.index)).abs().max() <= step, pd.DataFrame(
        {"histogram": q90, "exact": exact})
    assert exact["2021-06"] > 0.02  # the wet month's percentile is in the tail, where it matters


AWKWARD = {"price": "price [usd]", "temp": "temp.c (avg)", "shop": "shop [id], name", "region": "region: [zone]"}


def test_column_names_with_brackets_dots_and_commas_learn_and_judge_as_plain_ones(reference: pd.DataFrame,
                                                                               behaviour: Behaviour) -> None:
    """A statistic's column is resolved against the learned names, never by splitting the statistic's name at "["
    or ".": renamed columns get the same band widths (a column's spread found), pass as their own reference, and a
    fault is named by the full column name."""
    renamed = reference.rename(columns=AWKWARD)
    awkward = draft_behaviour(renamed, time_column="time", period="month", label=LabelSpec(target="late"),
                              key_columns=["id"], segments=[AWKWARD[name] for name in SEGMENTS], margin=2.0,
                              floors=Floors(missing=0.05, share=0.02, outside=0.02), relation_r2=0.95)

    def plain(name: str) -> str:
        for old, new in AWKWARD.items():
            name = name.replace(new, old)
        return name

    widths = {(grain, plain(segment), plain(statistic)): width for grain, segment, statistic, *_, width, _ in
              awkward.bands}
    expected = {(grain, segment, statistic): width for grain, segment, statistic, *_, width, _ in behaviour.bands}
    assert widths == expected
    _, findings = judge(renamed, awkward)
    assert findings == [], _lines(findings)
    rows = (renamed["shop [id], name"] == "s2") & _month(renamed, 6)
    corrupted = renamed.assign(**{"price [usd]": renamed["price [usd]"].where(~rows, renamed["price [usd]"] / 100)})
    _, findings = judge(corrupted, awkward)
    assert ("calibrated_statistic", "price [usd]", "2021-06", "shop [id], name=s2") in \
        {(f.check, f.column, f.unit, f.segment) for f in findings}, _lines(findings)


def test_a_unit_change_in_one_segment_for_one_month_is_named_there(reference: pd.DataFrame,
                                                                  behaviour: Behaviour) -> None:
    rows = (reference["shop"] == "s2") & _month(reference, 6)
    corrupted = reference.assign(price=reference["price"].where(~rows, reference["price"] / 100))
    _, findings = judge(corrupted, behaviour)
    assert findings and all(f.unit.startswith("2021-06") for f in findings), _lines(findings)
    named = {(f.check, f.column, f.unit, f.segment) for f in findings}
    assert ("calibrated_statistic", "price", "2021-06", "shop=s2") in named
    assert ("column_relation", "total", "2021-06", "shop=s2") in named  # total ~ price, units: broken there


def test_a_fault_confined_to_a_week_is_named_by_its_week(reference: pd.DataFrame, behaviour: Behaviour) -> None:
    rows = (reference["time"] >= pd.Timestamp("2021-09-13", tz="UTC")) & \
        (reference["time"] < pd.Timestamp("2021-09-20", tz="UTC"))
    corrupted = reference.assign(temp=reference["temp"].where(~rows, reference["temp"] * 9 / 5 + 32))
    _, findings = judge(corrupted, behaviour)
    temp = [f for f in findings if f.column == "temp"]
    assert temp and {f.unit for f in temp} == {"2021-09-13..2021-09-19"}, _lines(findings)


def test_labels_flipped_on_part_of_a_month_break_the_label_relation(reference: pd.DataFrame,
                                                                   behaviour: Behaviour) -> None:
    rows = _month(reference, 4) & (reference.index % 3 == 0)
    corrupted = reference.assign(late=reference["late"].where(~rows, 1 - reference["late"]))
    _, findings = judge(corrupted, behaviour)
    assert ("label_relation", "late", "2021-04", None) in {(f.check, f.column, f.unit, f.segment)
                                                           for f in findings}, _lines(findings)


def test_a_time_shift_of_one_day_is_named_by_that_day(reference: pd.DataFrame, behaviour: Behaviour) -> None:
    rows = reference["time"].dt.date == pd.Timestamp("2021-03-10").date()  # a UTC day, as periods are cut
    corrupted = reference.assign(time=reference["time"].where(~rows, reference["time"] + pd.Timedelta(hours=2)))
    _, findings = judge(corrupted, behaviour)
    time = [f for f in findings if f.check == "time_consistency"]
    assert [(f.column, f.unit, f.grain) for f in time] == [("hour", "2021-03-10", "day")], _lines(findings)
    assert "the hour of time in America/Chicago" in time[0].expected and time[0].examples


def test_a_broken_dependency_names_its_keys_and_segment(reference: pd.DataFrame, behaviour: Behaviour) -> None:
    rows = (reference["shop"] == "s6") & _month(reference, 8)
    corrupted = reference.assign(region=reference["region"].mask(rows, "south"))
    _, findings = judge(corrupted, behaviour)
    (dependency,) = [f for f in findings if f.check == "functional_dependency"]
    assert (dependency.column, dependency.unit, dependency.segment) == ("region", "2021-08", "shop=s6")
    assert "shop -> region" in dependency.expected and any("s6: region" in text for text in dependency.examples)


def test_a_row_number_is_in_no_relation_nor_the_label_model() -> None:
    """A daily table exported from R: `rownames` 1..N beside y = x + a trend in time. Through the row number y is
    determined on the reference (R^2 0.999) and the label model ranks with it, and both break on every later period
    (the row number leaves its range); it is a counter, so neither uses it."""
    rng = np.random.default_rng(4)
    days = 730
    x = rng.normal(0, 1, days)
    frame = pd.DataFrame({"time": pd.Timestamp("2021-01-01", tz="UTC") + pd.to_timedelta(np.arange(days), unit="D"),
                          "rownames": np.arange(1, days + 1), "x": x,
                          "y": x + 0.004 * np.arange(days) + rng.normal(0, 0.05, days),
                          "late": (rng.random(days) < 1 / (1 + np.exp(-x))).astype(int)})
    drafted = draft_behaviour(frame, time_column="time", period="month", label=LabelSpec(target="late"),
                              margin=2.0, floors=Floors(missing=0.05, share=0.02, outside=0.02), relation_r2=0.95)
    assert drafted.relations.counters == ["rownames"]
    used = {name for target, model in drafted.relations.values.items() for name in [target, *model.predictors]}
    assert "rownames" not in used
    assert drafted.label_model is not None and drafted.label_model.predictors == ["x", "y"]

"""Real Evidently on real flights, judged by a real calibration of a real model: no alarm on same-distribution
traffic, a big shift of an important feature alarms alone, a shift of a feature the model does not use is reported
but does not alarm, data-quality faults alarm as data quality and never retrain, live quality once outcomes arrive."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from pipelines.config import parse_params
from pipelines.monitor.decision import decide_retrain
from pipelines.monitor.distances import ReferenceSide, code_column, distance
from pipelines.monitor.drift import analyse_window, live_quality
from pipelines.monitor.log import predictions_frame
from pipelines.monitor.prediction_log import LogRead, PredictionRecord
from pipelines.monitor.reference import build_reference
from support.monitoring import into_week, later_schedules, log_records, shift, train_small
from support.params import SMALL_WINDOW, params_dict

pytestmark = pytest.mark.model

OVERRIDES = {**SMALL_WINDOW, "monitor.reference_rows": 15000, "monitor.min_window_rows": 500}
END = datetime(2013, 9, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_table):
    root = tmp_path_factory.mktemp("drift")
    params = parse_params(params_dict(root, OVERRIDES))
    trained = train_small(root, params, small_table)
    reference, calibration = build_reference([trained.train], trained.model, params.features, "time_hour",
                                             params.monitor)
    # Held-out: training-split rows that are not in the reference sample.
    held_out = trained.train.drop(trained.train.sample(params.monitor.reference_rows,
                                                       random_state=params.monitor.seed).index)
    return params, trained, reference, calibration, held_out


def _window(params, trained, rows):
    records = log_records(rows, trained.model, params.features.raw_columns, "time_hour")
    log = LogRead([PredictionRecord.model_validate(record) for record in records])
    parsed = predictions_frame(log, params.features, "time_hour")
    assert parsed.skipped_total == 0
    return parsed.frame


def _analyse(setup, rows, **kwargs):
    params, trained, reference, calibration, _ = setup
    return analyse_window(_window(params, trained, rows), reference, params.features, "time_hour", params.monitor,
                          calibration, **kwargs).report


def test_the_calibration_is_the_models_own(setup):
    params, trained, reference, calibration, _ = setup
    # The reference is stored scored by the model it belongs to: a monitoring run does not re-predict it.
    np.testing.assert_allclose(reference["probability"], trained.model.predict_proba(reference))
    assert calibration.windows >= 6  # Mar..Apr of SMALL_WINDOW's train split, weekly
    assert calibration.vocabulary == trained.model.schema.categorical
    assert sum(calibration.weights.values()) == pytest.approx(1.0, abs=1e-4)
    # The weather columns vary week to week; schedules barely: their thresholds say so.
    assert calibration.columns["temp"] > 5 * calibration.columns["hour"]
    values = calibration.values["columns"]["temp"]
    assert len(values) == calibration.windows
    # 10 windows at quantile 0.95: rank ceil(11 x 0.95) = 11 > 10, so the largest ("beyond every reference week").
    assert calibration.windows < 19 and calibration.columns["temp"] == pytest.approx(max(values), abs=1e-5)


def test_the_calibration_statistic_is_evidentlys_value_drift(setup):
    """Calibration computes the distances on counts (`pipelines.monitor.distances`); the live report runs
    `ValueDrift`. Both must give the same number on the same data, or the thresholds would not fit the scores."""
    params, trained, reference, calibration, held_out = setup
    window = _window(params, trained, into_week(held_out.sample(1500, random_state=4), "2013-09-02", "time_hour",
                                                4, "same"))
    summary = analyse_window(window, reference, params.features, "time_hour", params.monitor, calibration).report
    for column in [*params.features.raw_columns, "probability"]:
        coded = code_column(reference[column], [window[column]], column not in params.features.categorical)
        direct = distance(coded, ReferenceSide.of(coded, coded.counts(coded.reference)),
                          coded.counts(coded.windows[0]))
        live = summary.prediction_drift.score if column == "probability" else summary.columns[column].score
        assert live == pytest.approx(direct, abs=1e-5), column


def test_same_distribution_traffic_raises_no_alarm(setup):
    params, trained, reference, calibration, held_out = setup
    rows = into_week(held_out.sample(3000, random_state=7), "2013-09-02", "time_hour", 1, "same")
    summary = _analyse(setup, rows)
    assert summary.drift is False, summary.reasons
    window = _window(params, trained, rows)
    for column in params.features.raw_columns:  # the reference's by Evidently's MissingValueCount
        assert summary.missing[column].current == pytest.approx(window[column].isna().mean(), abs=1e-5)
        assert summary.missing[column].reference == pytest.approx(reference[column].isna().mean(), abs=1e-5)
    assert summary.drift_index < summary.drift_index_threshold
    assert decide_retrain(summary, END, None, params.monitor).reason == "no alarm"


def test_missing_shares_are_exact_over_the_whole_window_not_the_sample(setup):
    """The distances use a sample of monitor.window_sample_rows; the counts every row: 7 missing temperatures
    among 3,000 rows are 0.2333% (a share no 500-row sample can show: its shares are multiples of 0.2%)."""
    params, trained, reference, calibration, held_out = setup
    rows = into_week(held_out.sample(3000, random_state=11), "2013-09-02", "time_hour", 1, "exact")
    rows = rows.assign(temp=rows["temp"].where(rows["temp"].notna(), 50.0))
    rows.loc[rows.index[:7], "temp"] = np.nan
    monitor = params.monitor.model_copy(update={"window_sample_rows": 500})
    summary = analyse_window(_window(params, trained, rows), reference, params.features, "time_hour", monitor,
                             calibration).report
    assert summary.missing["temp"].current == pytest.approx(7 / 3000, abs=1e-5)  # stored to 5 places


@pytest.mark.parametrize("scenario", ["control", "later", "new_category", "missing"])
def test_the_sampled_analysis_raises_the_alarms_a_full_window_analysis_raises(setup, scenario):
    """Distances on a seeded sample of monitor.window_sample_rows (the cap that keeps a million-row window at the
    cost of a few thousand rows) against every row of the window: the same alarms, by kind."""
    params, trained, reference, calibration, held_out = setup
    rows = into_week(held_out.sample(12000, random_state=12), "2013-09-02", "time_hour", 6, scenario)
    if scenario == "later":
        rows = later_schedules(rows)
    elif scenario == "new_category":
        rows = rows.assign(carrier=rows["carrier"].mask(np.arange(len(rows)) % 10 == 0, "Q9"))
    elif scenario == "missing":
        rows = rows.assign(temp=rows["temp"].mask(np.arange(len(rows)) % 3 == 0))
    window = _window(params, trained, rows)
    assert len(window) > 2 * params.monitor.window_sample_rows
    kinds = {}
    for name, sample_rows in (("sampled", params.monitor.window_sample_rows), ("full", len(window))):
        monitor = params.monitor.model_copy(update={"window_sample_rows": sample_rows})
        summary = analyse_window(window, reference, params.features, "time_hour", monitor, calibration).report
        kinds[name] = sorted(reason.label for reason in summary.reasons)
    assert kinds["sampled"] == kinds["full"]
    assert bool(kinds["full"]) == (scenario != "control"), kinds


def test_a_big_shift_of_an_important_feature_alarms_alone(setup):
    params, trained, reference, calibration, held_out = setup
    rows = later_schedules(into_week(held_out.sample(3000, random_state=8), "2013-09-02", "time_hour", 2, "late"))
    summary = _analyse(setup, rows)
    assert summary.drift is True and summary.quality_reasons == [], summary.reasons
    assert "hour" in summary.drifted_columns
    assert summary.drift_index > summary.drift_index_threshold
    assert any(reason.kind == "data_drift" and "hour" in reason.text for reason in summary.retrain_reasons)
    assert decide_retrain(summary, END, None, params.monitor).retrain is True


def test_a_shift_of_a_feature_the_model_barely_uses_is_reported_but_does_not_alarm(setup):
    params, trained, reference, calibration, held_out = setup
    unused = min(params.features.numeric, key=lambda name: calibration.weights[name])
    assert calibration.weights[unused] < 0.01
    base = into_week(held_out.sample(3000, random_state=11), "2013-09-02", "time_hour", 6, "unused")
    # A big shift that stays inside the reference's range (not a data-quality fault): every value moved to the
    # column's upper quartile or above.
    values = base[unused].astype(float)
    high = values.quantile(0.75)
    rows = base.assign(**{unused: np.where(values.notna(), np.maximum(values, high), np.nan)})
    summary = _analyse(setup, rows)
    assert unused in summary.drifted_columns, summary.columns[unused]
    assert summary.drift is False, summary.reasons


@pytest.mark.parametrize(("fault", "reason"), [
    ("missing", "missing-value surge"),
    ("new_category", "outside the champion's vocabulary"),
    ("unit", "a unit change"),
    ("celsius", "values no longer fit the other columns"),
    ("dropped", "its other columns explain"),
])
def test_data_quality_faults_alarm_as_data_quality_and_never_retrain(setup, fault, reason):
    params, trained, reference, calibration, held_out = setup
    rows = into_week(held_out.sample(2000, random_state=10), "2013-09-02", "time_hour", 5, fault)
    if fault == "missing":  # a third of the temperatures stop arriving
        rows = rows.assign(temp=rows["temp"].mask(np.arange(len(rows)) % 3 == 0))
    elif fault == "new_category":  # a carrier code the champion never learned, on 10% of rows
        rows = rows.assign(carrier=rows["carrier"].mask(np.arange(len(rows)) % 10 == 0, "Q9"))
    elif fault == "celsius":  # temperature and dew point in Celsius: inside temp's own yearly range
        rows = rows.assign(temp=(rows["temp"] - 32) / 1.8, dewp=(rows["dewp"] - 32) / 1.8)
    elif fault == "dropped":  # pressure dropped at random on a fifth of the rows (the weather explains ~11%)
        rows = rows.assign(pressure=rows["pressure"].mask(np.random.default_rng(3).random(len(rows)) < 0.2))
    else:  # pressure sent in inches of mercury instead of hectopascals
        rows = rows.assign(pressure=rows["pressure"] / 33.8639)
    summary = _analyse(setup, rows)
    assert summary.drift is True
    assert any(r.text.startswith("data quality") and reason in r.text for r in summary.quality_reasons), \
        summary.reasons
    decision = decide_retrain(summary, END, None, params.monitor)
    assert decision.retrain is False and decision.reason.startswith("data quality fault, not retraining")


@pytest.mark.parametrize("column", ["temp", "carrier"])
def test_a_column_that_stops_arriving_altogether_is_a_missing_surge_not_a_crash(setup, column):
    """A feed that stops sending a column: no value of it in the window, so no distance can be computed (Evidently
    raises on an empty column); the window is still judged, and the column is a missing-value surge."""
    params, trained, reference, calibration, held_out = setup
    rows = into_week(held_out.sample(2000, random_state=11), "2013-09-02", "time_hour", 6, "stopped")
    summary = _analyse(setup, rows.assign(**{column: None}))
    assert column not in summary.columns and summary.missing[column].current == 1.0
    assert any(r.kind == "missing_surge" and column in r.columns for r in summary.quality_reasons), summary.reasons
    assert decide_retrain(summary, END, None, params.monitor).retrain is False


def test_the_old_gross_shift_is_caught_as_data_quality_and_drift(setup):
    rows = shift(into_week(setup[4].sample(3000, random_state=8), "2013-09-02", "time_hour", 2, "shift"))
    summary = _analyse(setup, rows)
    assert summary.drift is True
    assert {"temp", "distance", "dest", "carrier"} <= set(summary.drifted_columns)
    assert summary.new_categories["dest"].surge and summary.new_categories["dest"].examples == ["XYZ"]
    assert summary.quality_reasons and summary.retrain_reasons


def test_live_quality_compares_with_the_champion_figures(setup):
    params, trained, reference, calibration, held_out = setup
    rows = into_week(held_out.sample(2000, random_state=9), "2013-09-02", "time_hour", 3, "q")
    frame = _window(params, trained, rows)
    outcomes = rows[["request_id", "label"]].rename(columns={"label": "actual"})
    half = live_quality(frame, outcomes.iloc[:1000], {"roc_auc": 0.99}, params.monitor)
    assert half.model_dump(exclude_none=True) == {"labelled": 1000, "labelled_share": 0.5, "complete": False,
                                                 "labels": {}}  # no label-quality figures on half the outcomes
    summary = analyse_window(frame, reference, params.features, "time_hour", params.monitor, calibration,
                             outcomes=outcomes, expected={"roc_auc": 0.99, "log_loss": 0.5}).report
    quality = summary.quality
    assert quality.complete and quality.labelled == 2000
    assert 0.5 < quality.metrics["roc_auc"] < 0.99
    assert quality.decayed is True
    assert [reason.kind for reason in summary.retrain_reasons if reason.kind == "performance_decay"]


def test_a_small_window_is_never_acted_on(setup):
    params = setup[0]
    rows = later_schedules(into_week(setup[4].sample(300, random_state=12), "2013-09-02", "time_hour", 7, "s"))
    summary = _analyse(setup, rows)
    decision = decide_retrain(summary, END, None, params.monitor)
    assert decision.retrain is False and "monitor.min_window_rows" in decision.reason
    assert pd.Timestamp(summary.first) >= pd.Timestamp("2013-09-02", tz="UTC")


def test_a_prediction_only_change_is_caught_by_re_scoring_the_logged_inputs(setup):
    params, trained, reference, calibration, held_out = setup
    rows = into_week(held_out.sample(2000, random_state=13), "2013-09-02", "time_hour", 8, "p")
    window = _window(params, trained, rows)
    tag = window["model_tag"].iloc[0]
    clean = analyse_window(window, reference, params.features, "time_hour", params.monitor, calibration,
                           champion=trained.model, champion_tag=tag).report
    assert clean.integrity.model_dump() == {"rows": 2000, "mismatch_share": 0.0, "mean_difference": 0.0,
                                            "fault": False}
    served = window.assign(probability=(window["probability"] + 0.05).clip(0, 1))
    summary = analyse_window(served, reference, params.features, "time_hour", params.monitor, calibration,
                             champion=trained.model, champion_tag=tag).report
    assert summary.integrity.fault is True and summary.integrity.mismatch_share > 0.99
    assert any(r.kind == "rescoring" and "served probabilities differ from the champion's own scores" in r.text
               for r in summary.quality_reasons)
    assert decide_retrain(summary, END, None, params.monitor).retrain is False
    # Rows another model served are not the champion's to check.
    other = analyse_window(served.assign(model_tag="delay-classifier:previous"), reference, params.features,
                           "time_hour", params.monitor, calibration, champion=trained.model,
                           champion_tag=tag).report
    assert other.integrity is None


def test_a_long_reference_period_is_calibrated_on_its_latest_windows_with_the_same_reference_sample(setup):
    """monitor.calibration_windows under the period's full windows: only the latest windows are analysed (each
    gives the statistics it gives in the uncapped calibration), and the stored reference sample does not change."""
    params, trained, reference, _, _ = setup
    whole_windows = params.monitor.model_copy(update={"window_sample_rows": 10**6})  # no per-window sampling
    _, uncapped = build_reference([trained.train], trained.model, params.features, "time_hour", whole_windows)
    capped_reference, capped = build_reference([trained.train], trained.model, params.features, "time_hour",
                                               whole_windows.model_copy(update={"calibration_windows": 3}))
    pd.testing.assert_frame_equal(capped_reference, reference)
    assert uncapped.windows > 3 == capped.windows
    # Every per-window statistic but those judged against the *other* calibration windows (fewer here): the drift
    # index and its value per resampled draw (`draw`), weighted by thresholds learned from them, and the share
    # outside the range they observed. (The draws are seeded by the window's own start day, so each week's column
    # distances are the same in both.)
    for statistic in set(capped.values) - {"drift_index", "draw", "outside_observed"}:
        assert capped.values[statistic] == {name: values[-3:] for name, values in
                                            uncapped.values[statistic].items()}, statistic
    weeks = pd.Timestamp(capped.period[0]), pd.Timestamp(capped.period[1])
    assert weeks[0].weekday() == 0 and weeks[1] == pd.Timestamp(uncapped.period[1])


def _gusts_missing_on(rows: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """`rows` with wind_gust missing on exactly `share` of them: present values dropped at random (a feed losing
    reports), nothing else changed."""
    present = np.flatnonzero(rows["wind_gust"].notna().to_numpy())
    drop = round(share * len(rows)) - (len(rows) - len(present))
    assert drop >= 0, "the window already misses more than asked"
    chosen = np.random.default_rng(seed).choice(present, size=drop, replace=False)
    gusts = rows["wind_gust"].copy()
    gusts.iloc[chosen] = np.nan
    return rows.assign(wind_gust=gusts)


def test_a_rise_in_a_mostly_missing_column_is_judged_against_its_base_rate(setup):
    """Wind gusts are reported in gusty weather only (64-76% of the rows have none). A feed that loses a share of the
    reports it still sends (73% -> 85% missing) is a missing surge; the week-to-week spread of the base rate
    (73% -> 75%) is not. The rise is judged against the share the window's other columns explain (the weather
    says how gusty the week was), not against a fixed share of the rows."""
    params, trained, reference, calibration, held_out = setup
    assert reference["wind_gust"].isna().mean() > 0.6  # the premise: a mostly-missing column
    # A week missing 73% of its gusts: real held-out rows, 1,460 without a gust and 540 with one.
    pool = held_out[held_out["time_hour"].notna()]
    rows = pd.concat([pool[pool["wind_gust"].isna()].sample(1460, random_state=21),
                      pool[pool["wind_gust"].notna()].sample(540, random_state=21)]).sample(frac=1, random_state=21)
    week = into_week(rows, "2013-09-02", "time_hour", 21, "gusts")
    summaries = {share: _analyse(setup, _gusts_missing_on(week, share, seed=21)) for share in (0.73, 0.75, 0.85)}
    for share, summary in summaries.items():
        assert summary.missing["wind_gust"].current == pytest.approx(share, abs=1e-5)
    for share in (0.73, 0.75):  # the reference's own spread
        summary = summaries[share]
        assert not summary.missing["wind_gust"].surge, summary.missing["wind_gust"]
        assert not any(r.kind == "missing_surge" for r in summary.reasons), summary.reasons
    surged = summaries[0.85]
    gusts = surged.missing["wind_gust"]
    assert gusts.surge and gusts.expected is not None and gusts.current - gusts.expected > gusts.threshold, gusts
    assert [r.columns for r in surged.quality_reasons if r.kind == "missing_surge"] == [["wind_gust"]], \
        surged.reasons
    assert decide_retrain(surged, END, None, params.monitor).retrain is False

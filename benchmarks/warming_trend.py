"""Measurement (a prototype, not a monitor check): can a multi-week trend test tell the drift-scenarios benchmark's
warming (+3 F a week, dew point following at the same humidity, accumulating over consecutive weeks) from weather,
with no false alarm on real weeks?

    .venv/bin/python -m benchmarks.warming_trend [--weeks 2 3 4 5] [--r2 0.85]

The rule measured: each weekly window's mean of a column, minus the reference's seasonal expectation for that week
(an annual harmonic, a + b cos(2 pi d / 365.25) + c sin(2 pi d / 365.25) of the window's middle day, fitted by
least squares on the reference windows' means), in units of the reference windows' leave-one-out residual standard
deviation; the running mean of the last K consecutive weeks' departures alarms past the prediction bound
(`calibration.prediction_bound` at `monitor.alarm_quantile`) of the reference's own K-week running means of
leave-one-out departures, two-sided. Only columns whose weekly means the harmonic explains (R2 >= --r2) are tested:
on the others (hour, distance, pressure) a seasonal expectation from one partial year is a guess. A single warm week
moves one of K terms; a warming that accumulates moves all K the same way.

Weeks, rows and the warming are the drift-scenarios benchmark's own (`benchmarks.drift_scenarios`): the held-out
weeks' reference period (the benchmark's champion, Jan-Jul 2013 without its held-out weeks); the controls (the
held-out weeks and the test month) and the later weeks (Sep-Dec) with their real preceding weeks as history; the
warming of +D F on each base week has history weeks warmed by D - 3, D - 6, ... (never below 0). Each window's mean
is over all its rows (the monitor's 5,000-row sample moves a weekly temperature mean by ~0.15 F). Printed per K and
per scope ("all": every week judged; "in span": only weeks whose calendar days the reference period covered, the
expectation interpolated, never extrapolated; "leverage": every week, its running mean shrunk by the expectation's
own error there, sqrt(v / (v + h - h_ref)), v the reference running means' variance, h the leverage of the weeks'
mean design row, h_ref its mean over the reference runs; "change": every week, the running mean minus that of the K
weeks before it, against the reference's own such changes, so the expectation's level error cancels): false alarms
on the reference weeks (each judged against a threshold learned without the values that share a week with it), on
the controls and on the later weeks, and the warmings caught at +9, +12 and +15 F (the benchmark's counted sizes).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

WEEK = pd.Timedelta(days=7)
YEAR_DAYS = 365.25


@dataclass
class Seasonal:
    """One column's seasonal expectation, fitted on the reference windows' means."""
    beta: np.ndarray
    sd: float            # leave-one-out residual standard deviation of a weekly mean
    r2: float
    loo: pd.Series       # each reference week's leave-one-out departure, in sds
    inverse: np.ndarray  # (X'X)^-1 of the reference windows' design
    first_day: int       # the calendar span the reference covered (day of year of its windows' middles)
    last_day: int


def _design(starts: pd.DatetimeIndex) -> np.ndarray:
    angle = 2 * np.pi * (starts + pd.Timedelta(days=3.5)).dayofyear.to_numpy() / YEAR_DAYS
    return np.column_stack([np.ones(len(angle)), np.cos(angle), np.sin(angle)])


def fit_seasonal(means: pd.Series) -> Seasonal:
    """The annual harmonic of a column's weekly means (indexed by window start) and its leave-one-out departures
    (the exact hat-matrix form: residual / (1 - leverage))."""
    x, y = _design(pd.DatetimeIndex(means.index)), means.to_numpy(dtype=float)
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    residual = y - x @ beta
    leverage = np.einsum("ij,ji->i", x, np.linalg.pinv(x))
    loo = residual / (1 - leverage)
    sd = float(loo.std(ddof=1))
    days = (pd.DatetimeIndex(means.index) + pd.Timedelta(days=3.5)).dayofyear
    return Seasonal(beta=beta, sd=sd, inverse=np.linalg.inv(x.T @ x), r2=float(1 - residual.var() / y.var()),
                    loo=pd.Series(loo / sd, index=means.index), first_day=int(days.min()), last_day=int(days.max()))


def departure(seasonal: Seasonal, starts: pd.DatetimeIndex, means: np.ndarray) -> np.ndarray:
    """Weekly means' departures from the seasonal expectation, in the reference's sds."""
    return (means - _design(starts) @ seasonal.beta) / seasonal.sd


def mean_leverage(seasonal: Seasonal, starts: pd.DatetimeIndex) -> float:
    """The variance of the fitted expectation's mean over `starts`, in residual variances: x'(X'X)^-1 x of the
    weeks' mean design row. Small inside the reference's calendar span, growing fast outside it."""
    row = _design(starts).mean(axis=0)
    return float(row @ seasonal.inverse @ row)


def in_span(seasonal: Seasonal, start: pd.Timestamp) -> bool:
    day = (start + pd.Timedelta(days=3.5)).dayofyear
    return seasonal.first_day <= day <= seasonal.last_day


def running(departures: pd.Series, weeks: int) -> pd.Series:
    """The mean of each week's departure and its `weeks` - 1 predecessors, where all are consecutive weeks."""
    full = departures.reindex(pd.date_range(departures.index.min(), departures.index.max(), freq="7D"))
    return full.rolling(weeks, min_periods=weeks).mean().reindex(departures.index)


def change(departures: pd.Series, weeks: int) -> pd.Series:
    """The running mean of the last `weeks` departures minus that of the `weeks` before them (consecutive weeks):
    the expectation's level error cancels, its error in the seasonal change does not."""
    full = departures.reindex(pd.date_range(departures.index.min(), departures.index.max(), freq="7D"))
    run = full.rolling(weeks, min_periods=weeks).mean()
    return (run - run.shift(weeks)).reindex(departures.index)


def leave_out_alarms(runs: pd.Series, weeks: int, quantile: float) -> tuple[list[str], int, float]:
    """Reference running means passing a threshold learned from the running means that share no week with them;
    returns (the weeks that passed, how many were judged, the threshold from all)."""
    from pipelines.monitor.calibration import prediction_bound

    values = runs.dropna().abs()
    alarms = []
    for start, value in values.items():
        others = values[(values.index <= start - weeks * WEEK) | (values.index >= start + weeks * WEEK)]
        if value > prediction_bound(others.tolist(), quantile):
            alarms.append(f"{start:%Y-%m-%d}")
    return alarms, len(values), prediction_bound(values.tolist(), quantile)


def _weekly_means(year: pd.DataFrame, starts: list[pd.Timestamp], columns: list[str], time_column: str,
                  warming: dict[pd.Timestamp, float] | None = None) -> pd.DataFrame:
    from benchmarks.drift_scenarios import _dew_point_at, _week

    rows = []
    for start in starts:
        week = _week(year, f"{start:%Y-%m-%d}", time_column)
        degrees = (warming or {}).get(start, 0.0)
        if degrees:
            week = week.assign(temp=week["temp"] + degrees, dewp=_dew_point_at(week["temp"] + degrees, week["humid"]))
        rows.append({"start": start, **{c: float(week[c].mean()) for c in columns}})
    return pd.DataFrame(rows).set_index("start")


def measure(weeks: list[int], r2: float, period: str = "benchmark", columns: list[str] | None = None
            ) -> dict[str, Any]:
    from benchmarks.drift_scenarios import BASES, HELD_OUT_TRAIN, HELD_OUT_VALID, LATER, TEST_MONTH, _held_out, _year
    from pipelines.config import load_params
    from pipelines.monitor.calibration import reference_windows
    from pipelines.monitor.windows import window_starts

    params = load_params("params.yaml")
    time_column, monitor = params.source.time_column, params.monitor.model_copy(
        update={"window_days": 7, "min_window_rows": 2000})
    year = _year(params)
    if period == "benchmark":  # the drift-scenarios champion's: its held-out weeks are not reference windows
        prepared = _held_out(params, year)
    else:  # the sweep's, the champion `dvc repro` trains: every week of collect.start .. collect.end
        from pipelines.data.preprocess import prepare

        end = pd.Timestamp(params.collect.end)
        prepared = prepare(year[year[time_column] < end].drop(columns="label"), params.source, params.features,
                           params.split, keep=params.evaluate.slices)
    period = pd.concat([prepared.train, prepared.valid], ignore_index=True)
    windows = reference_windows(period, time_column, monitor)
    reference_starts = [window_starts(w[time_column].iloc[:1], 7).iloc[0] for w in windows]
    numeric = list(params.features.numeric)
    reference = pd.DataFrame([{"start": s, **{c: float(w[c].mean()) for c in numeric}}
                              for s, w in zip(reference_starts, windows, strict=True)]).set_index("start")
    fits = {c: fit_seasonal(reference[c].dropna()) for c in numeric if reference[c].notna().sum() > 3}
    tested = [c for c, f in fits.items() if f.r2 >= r2 and (not columns or c in columns)]
    out: dict[str, Any] = {"reference_weeks": len(reference), "r2": {c: round(f.r2, 3) for c, f in fits.items()},
                           "tested": tested, "sd": {c: round(fits[c].sd, 2) for c in tested}, "variants": []}
    stamp = lambda day: pd.Timestamp(day, tz="UTC")  # noqa: E731
    # Controls: weeks no reference window was cut from (the held-out weeks only exist in the benchmark's period).
    controls = [stamp(d) for d in [*HELD_OUT_TRAIN, *HELD_OUT_VALID, *TEST_MONTH] if stamp(d) not in reference.index]
    later = [stamp(d) for d in LATER]
    for k in weeks:
        thresholds, shift_limits = {}, {}
        reference_alarms: list[str] = []
        shift_alarms: list[str] = []
        for c in tested:
            alarms, _, thresholds[c] = leave_out_alarms(running(fits[c].loo, k), k, params.monitor.alarm_quantile)
            reference_alarms += [f"{week} {c}" for week in alarms]
            alarms, _, shift_limits[c] = leave_out_alarms(change(fits[c].loo, k), 2 * k,
                                                          params.monitor.alarm_quantile)
            shift_alarms += [f"{week} {c}" for week in alarms]

        spread = {c: float(running(fits[c].loo, k).dropna().var()) for c in tested}
        typical = {c: float(np.mean([mean_leverage(fits[c], pd.date_range(end=start, periods=k, freq="7D"))
                                     for start in running(fits[c].loo, k).dropna().index])) for c in tested}

        def judged(end: pd.Timestamp, warming: dict[pd.Timestamp, float] | None, scope: str,
                   k: int = k, thresholds: dict[str, float] = thresholds, spread: dict[str, float] | None = None,
                   typical: dict[str, float] | None = None, shift_limits: dict[str, float] = shift_limits
                   ) -> list[str]:
            span = 2 * k if scope == "change" else k
            starts = [end - j * WEEK for j in range(span - 1, -1, -1)]
            means = _weekly_means(year, starts, tested, time_column, warming)
            moved = []
            for c in tested:
                if scope == "in span" and not in_span(fits[c], end):
                    continue
                z = departure(fits[c], pd.DatetimeIndex(starts), means[c].to_numpy())
                run = float(np.mean(z[-k:]) - (np.mean(z[:k]) if scope == "change" else 0.0))
                if scope == "leverage":  # the expectation's own error, beyond what the reference runs carried
                    assert spread is not None and typical is not None
                    extra = max(0.0, mean_leverage(fits[c], pd.DatetimeIndex(starts)) - typical[c])
                    run *= math.sqrt(spread[c] / (spread[c] + extra))
                if abs(run) > (shift_limits if scope == "change" else thresholds)[c]:
                    moved.append(f"{c} {run:+.2f}")
            return moved

        for scope in ("all", "in span", "leverage", "change"):
            fixed = {"spread": spread, "typical": typical}
            control = {f"{s:%Y-%m-%d}": judged(s, None, scope, **fixed) for s in controls}
            late = {f"{s:%Y-%m-%d}": judged(s, None, scope, **fixed) for s in later}
            caught = {}
            for base in BASES:
                end = stamp(base)
                for d in (9, 12, 15):
                    warming = {end - j * WEEK: float(d - 3 * j) for j in range(2 * k) if d - 3 * j > 0}
                    caught[f"{base} +{d} F"] = judged(end, warming, scope, **fixed)
            out["variants"].append({
                "weeks": k, "scope": scope,
                "thresholds": {c: round(t, 2) for c, t in (shift_limits if scope == "change" else thresholds).items()},
                "reference_alarms": (f"{len(shift_alarms)} of "
                                     f"{sum(int(change(fits[c].loo, k).notna().sum()) for c in tested)} {shift_alarms}"
                                     if scope == "change" else
                                     f"{len(reference_alarms)} of {judged_count(fits, tested, k)} {reference_alarms}"),
                "control_alarms": {w: m for w, m in control.items() if m},
                "later_alarms": {w: m for w, m in late.items() if m},
                "caught": f"{sum(bool(m) for m in caught.values())} of {len(caught)}",
                "warmings": caught})
    return out


def judged_count(fits: dict[str, Seasonal], tested: list[str], k: int) -> int:
    return sum(int(running(fits[c].loo, k).notna().sum()) for c in tested)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.warming_trend", description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", nargs="+", type=int, default=[2, 3, 4, 5], help="running-mean lengths K")
    parser.add_argument("--r2", type=float, default=0.85, help="columns whose weekly means the harmonic explains")
    parser.add_argument("--period", choices=["benchmark", "sweep"], default="benchmark",
                        help="the reference of the scenarios' champion (held-out weeks left out) or the sweep's")
    parser.add_argument("--columns", nargs="+", help="test only these columns (of those passing --r2)")
    args = parser.parse_args(argv)
    found = measure(args.weeks, args.r2, args.period, args.columns)
    print(f"period {args.period}: reference weeks {found['reference_weeks']}; "
          f"harmonic R2 of weekly means {found['r2']}")
    print(f"tested {found['tested']}; leave-one-out sd of a weekly mean {found['sd']}")
    for v in found["variants"]:
        print(f"K={v['weeks']} {v['scope']:<8} thresholds {v['thresholds']}  reference alarms {v['reference_alarms']}"
              f"  controls {len(v['control_alarms'])} {v['control_alarms']}  later {len(v['later_alarms'])} "
              f"{v['later_alarms']}  warmings caught {v['caught']}: "
              + ", ".join(name for name, m in v["warmings"].items() if m))
    return 0


if __name__ == "__main__":
    sys.exit(main())

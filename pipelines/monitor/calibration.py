"""Drift thresholds learned from the reference period's own variation, and the model's reliance on each column.

Why: one real week of weather always differs from months of weather (weather is autocorrelated), so a fixed
per-column threshold flags the weather columns every week, and a fixed share of drifted columns is noise. Here
every drift statistic is computed for each window of the reference period (the data the champion was fitted and
early-stopped on, cut into windows of `monitor.window_days`) against the rest of the reference, and a live window
alarms only when it is beyond that spread.

The threshold of a statistic is the split-conformal quantile of its n reference-window values (Vovk, Gammerman &
Shafer, *Algorithmic Learning in a Random World*, 2005; Angelopoulos & Bates, *A Gentle Introduction to Conformal
Prediction*, 2021, §1): the ceil((n + 1) q)-th smallest value. For a window exchangeable with the reference windows
the chance of passing it is at most 1 - q; when (n + 1) q > n the largest value is used ("beyond every reference
window") and the guarantee is 1 / (n + 1), the best n windows can give.

Statistics (computed by Evidently's own registered stat tests, the functions its `ValueDrift` metric calls, on the
same bounded sample sizes as the live analysis so that sampling noise is the same on both sides):
- per column: normed Wasserstein distance (numeric) or Jensen-Shannon distance (categorical);
- prediction drift: normed Wasserstein distance of the predicted probability;
- the drift index: the model's gain-weighted sum of each column's score in units of its own threshold, so a big
  shift of an important feature alarms alone and a shift of a feature the model barely uses does not;
- data quality: per column the rise of the missing share beyond what the window's other columns explain
  (`pipelines.monitor.consistency`), the share of category values outside the champion's vocabulary, the share of
  numeric values far outside the rest of the reference's range (`range_band`), the window's mean (a unit change
  moves the mean far outside every reference window's, in units of the column's spread), and, for a column the
  others determine, its mean residual from that relation (a unit change inside the column's own range breaks it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from pipelines.config import FeaturesParams, MonitorParams
from pipelines.monitor.consistency import Consistency, expected_missing, fit_consistency, mean_residuals

CALIBRATION_VERSION = 2
# The smallest distance threshold: below it a distance is sampling noise (at 5,000 rows the noise of a Wasserstein
# or Jensen-Shannon distance is ~0.01), and a column identical in every reference window would otherwise get a
# threshold of 0 that any noise passes.
MIN_DISTANCE = 0.01
# The smallest residual threshold, in residual sds: the mean of 5,000 standardised residuals has a sampling noise of
# ~0.014; a relation that holds equally in every reference window would otherwise get a threshold any noise passes.
MIN_RESIDUAL = 0.1


def conformal_quantile(values: Sequence[float], quantile: float) -> float:
    """The ceil((n + 1) q)-th smallest of n values (the largest when that rank passes n); NaNs ignored."""
    finite = np.sort(np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float))
    if finite.size == 0:
        return float("nan")
    rank = min(math.ceil((finite.size + 1) * quantile), finite.size)
    return float(finite[max(rank, 1) - 1])


def prediction_bound(values: Sequence[float], quantile: float) -> float:
    """An upper bound that a new value passes with probability at most 1 - `quantile`, from few values.

    The conformal quantile needs n >= q / (1 - q) values to reach level q (19 at 0.95); with fewer it is the
    largest value, whose level is only n / (n + 1) (7 values: a window in 8 passes it by chance). For a statistic
    that is close to normal — a window's ROC AUC is an average over its pairs of flights (Hanley & McNeil, 1982) —
    the Gaussian prediction interval gives the level asked for: mean + t(q, n - 1) x sd x sqrt(1 + 1/n) (Geisser,
    *Predictive Inference*, 1993), never below the largest value seen. With enough values the conformal quantile.
    """
    from scipy import stats

    finite = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if finite.size == 0:
        return float("nan")
    if finite.size >= quantile / (1 - quantile) or finite.size < 2:
        return conformal_quantile(finite.tolist(), quantile)
    spread = float(finite.std(ddof=1)) * math.sqrt(1 + 1 / finite.size)
    bound = float(finite.mean()) + float(stats.t.ppf(quantile, finite.size - 1)) * spread
    return max(bound, float(finite.max()))


def gain_shares(weights: Mapping[str, float], columns: Sequence[str]) -> dict[str, float]:
    """Each raw column's share of the model's total weight (`TrainedModel.importance("weight")`: split gain for
    trees; derived time parts are not monitored columns and are left out of the total). A column the model never
    uses has share 0."""
    gains = {name: float(value) for name, value in weights.items()}
    total = float(sum(gains.get(name, 0.0) for name in columns))
    if total <= 0:
        return {name: 1.0 / len(columns) for name in columns}
    return {name: round(float(gains.get(name, 0.0)) / total, 6) for name in columns}


def sample_window(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """At most `rows` seeded rows: calibration and live windows are compared at the same size."""
    return frame.sample(rows, random_state=seed) if len(frame) > rows else frame


def _score(method: str, reference: pd.Series, current: pd.Series) -> float:
    """Evidently's registered stat test by name, on the values its `ValueDrift` would use (inf and NaN dropped)."""
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest
    from evidently.legacy.core import ColumnType

    kind = ColumnType.Numerical if method == "wasserstein" else ColumnType.Categorical
    ref = reference.replace([-np.inf, np.inf], np.nan).dropna()
    cur = current.replace([-np.inf, np.inf], np.nan).dropna()
    if ref.empty or cur.empty:
        return float("nan")
    if kind is ColumnType.Numerical:
        ref, cur = ref.astype(float), cur.astype(float)
    return float(get_registered_stattest(method, kind)(ref, cur, kind, 1.0).drift_score)


def drift_method(column: str, features: FeaturesParams) -> str:
    """The per-column test, fixed by column type (not left to Evidently's size-dependent choice, so calibration and
    live windows always use the same statistic)."""
    return "jensenshannon" if column in features.categorical else "wasserstein"


def out_of_vocabulary_share(values: pd.Series, vocabulary: Sequence[str]) -> float:
    """Share of rows whose category the champion never learned (unknown to the model; missing is not counted)."""
    present = values.dropna()
    return float((~present.isin(set(vocabulary))).sum() / len(values)) if len(values) else 0.0


def out_of_range_share(values: pd.Series, low: float, high: float) -> float:
    present = pd.to_numeric(values, errors="coerce").dropna()
    return float(((present < low) | (present > high)).sum() / len(values)) if len(values) else 0.0


class WindowStatistics(BaseModel):
    """Every calibrated statistic of one window against a reference."""

    model_config = ConfigDict(extra="forbid")

    rows: int
    columns: dict[str, float]
    prediction: float
    missing_rise: dict[str, float]
    new_categories: dict[str, float]
    out_of_range: dict[str, float]
    means: dict[str, float | None]
    residuals: dict[str, float] = {}


def range_band(values: pd.Series, margin: float) -> tuple[float, float]:
    """The reference's [min, max] widened by `margin` standard deviations: values beyond it are far outside
    anything the reference holds (a hot week just past the reference's hottest is not; a unit change is)."""
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    spread = float(numbers.std()) if len(numbers) > 1 else 0.0
    return float(numbers.min()) - margin * spread, float(numbers.max()) + margin * spread


def missing_rise(current: pd.DataFrame, reference: pd.DataFrame, features: FeaturesParams,
                 consistency: Consistency | None) -> dict[str, float]:
    """Per column: the window's missing share minus the share expected of it: what the window's other columns
    imply where the column's missingness was modelled, the reference's share elsewhere."""
    explained = expected_missing(current, features.numeric, consistency) if consistency is not None else {}
    return {name: float(current[name].isna().mean() - explained.get(name, reference[name].isna().mean()))
            for name in features.raw_columns}


def window_statistics(current: pd.DataFrame, reference: pd.DataFrame, features: FeaturesParams,
                      vocabulary: Mapping[str, Sequence[str]], margin: float,
                      probability: str = "probability", consistency: Consistency | None = None) -> WindowStatistics:
    """The statistics of `current` against `reference` (both raw columns + `probability`), already sampled;
    `margin` is `monitor.unit_margin`; `consistency` the reference's column relations (none: not judged)."""
    columns = {name: _score(drift_method(name, features), reference[name], current[name])
               for name in features.raw_columns}
    numeric = {name: pd.to_numeric(reference[name], errors="coerce") for name in features.numeric}
    return WindowStatistics(
        rows=len(current),
        columns=columns,
        prediction=_score("wasserstein", reference[probability], current[probability]),
        missing_rise=missing_rise(current, reference, features, consistency),
        new_categories={name: out_of_vocabulary_share(current[name], vocabulary.get(name, []))
                        for name in features.categorical},
        out_of_range={name: out_of_range_share(current[name], *range_band(values, margin))
                      for name, values in numeric.items() if values.notna().any()},
        means={name: _mean(current[name]) for name in features.numeric},
        residuals={} if consistency is None else mean_residuals(current, consistency),
    )


def _mean(values: pd.Series) -> float | None:
    mean = pd.to_numeric(values, errors="coerce").mean()
    return None if pd.isna(mean) else float(mean)


class Calibration(BaseModel):
    """The thresholds a live window is judged by, learned from `windows` reference windows; stored with the model
    (`calibration.json`) beside its reference sample."""

    model_config = ConfigDict(extra="forbid")

    version: int = CALIBRATION_VERSION
    quantile: float
    windows: int
    window_days: int
    window_sample_rows: int
    # The window minimum the reference windows were cut with (monitor.min_window_rows, `auto` resolved) and how the
    # size was chosen, in words (None / "" in calibrations made before auto sizing).
    min_window_rows: int | None = None
    sizing: str = ""
    period: list[str]
    weights: dict[str, float]
    vocabulary: dict[str, list[str]]
    columns: dict[str, float]
    prediction: float
    drift_index: float
    missing_rise: dict[str, float]
    new_categories: dict[str, float]
    out_of_range: dict[str, float]
    # Performance: the champion's weekly ROC AUC drop below its whole held-out AUC, on the labelled splits it was
    # not fitted on (validation, test): their prediction_bound (a handful of windows); None when there were none.
    auc_drop: float | None = None
    auc_windows: int = 0
    # Column relations (pipelines.monitor.consistency) and, per column the others determine, the threshold of its
    # window mean residual (absolute, in residual sds). None / empty in calibrations made before version 2.
    consistency: Consistency | None = None
    residuals: dict[str, float] = {}
    means: dict[str, list[float]]            # [lowest, highest] mean over the reference windows
    spreads: dict[str, float]                # the column's standard deviation over the reference period
    # The reference windows' own values, per statistic, for audit (what the thresholds were learned from).
    values: dict[str, dict[str, list[float | None]]]

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def drift_index(scores: Mapping[str, float], thresholds: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Gain-weighted sum of each column's score in units of its own threshold (1.0 = every column at its
    threshold). A column with no finite score or threshold adds nothing."""
    total = 0.0
    for name, weight in weights.items():
        score, limit = scores.get(name), thresholds.get(name)
        if score is None or limit is None or math.isnan(score) or math.isnan(limit):
            continue
        total += weight * score / max(limit, 1e-9)
    return total


# monitor.window_days / min_window_rows `auto`: the window lengths tried (whole weeks, so windows stay Monday-aligned
# calendar weeks), the rows and rarer-label rows a typical window must hold for the calibrated tests, and the
# smallest window minimum. A distance between 200 rows and the reference has a sampling noise of ~0.05 (the
# calibration learns its spread from windows of the same size, so smaller windows only alarm later, never falsely);
# a window's ROC AUC needs both labels, and with fewer than ~10 of the rarer one its spread swamps any decay.
AUTO_WINDOW_DAYS = (7, 14, 28)
AUTO_WINDOW_ROWS = 200
AUTO_RARER_LABELS = 10
AUTO_MIN_ROWS_FLOOR = 100


class WindowSizeError(ValueError):
    """The reference period is too small for any monitoring window; the message has the numbers."""


def size_windows(stamps: pd.Series, monitor: MonitorParams, labels: pd.Series | None = None) -> MonitorParams:
    """`monitor` with `window_days` / `min_window_rows` resolved where they are `auto`, from the reference period's
    scheduled times (`stamps`) and, for the rarer label's count, its 0/1 `labels`.

    window_days auto: the shortest of `AUTO_WINDOW_DAYS` whose median full window (two at least) holds
    `AUTO_WINDOW_ROWS` rows and `AUTO_RARER_LABELS` of the rarer label. min_window_rows auto: half that median (a
    clipped first or last window is not judged), at least `AUTO_MIN_ROWS_FLOOR`. Raises `WindowSizeError` with the
    numbers when no window length leaves two windows with enough rows."""
    from pipelines.monitor.windows import window_starts

    auto_days, auto_rows = monitor.window_days == "auto", monitor.min_window_rows == "auto"
    if not (auto_days or auto_rows):
        return monitor.model_copy()
    rarer = float(min(labels.mean(), 1 - labels.mean())) if labels is not None and len(labels) else 1.0
    tried = []
    for days in ([monitor.window_days] if not auto_days else AUTO_WINDOW_DAYS):
        sizes = window_starts(stamps, int(days)).value_counts().sort_index()
        full = sizes.iloc[1:-1] if len(sizes) > 2 else sizes  # the first and last windows may be clipped
        median = float(full.median()) if len(full) else 0.0
        minimum = (max(math.ceil(median / 2), AUTO_MIN_ROWS_FLOOR) if auto_rows else int(monitor.min_window_rows))
        enough = int((sizes >= minimum).sum())
        tried.append(f"{days} days: {len(sizes)} windows, median {median:,.0f} rows, ~{median * rarer:,.1f} of the "
                     f"rarer label")
        if enough >= 2 and (not auto_days or (median >= AUTO_WINDOW_ROWS and median * rarer >= AUTO_RARER_LABELS)):
            return monitor.model_copy(update={"window_days": int(days), "min_window_rows": int(minimum)})
    span = (stamps.max() - stamps.min()).days if len(stamps) else 0
    raise WindowSizeError(
        f"the reference period ({len(stamps):,} rows over {span} days, {rarer:.1%} of the rarer label) is too small "
        f"for monitoring windows: {'; '.join(tried)}; a window needs {AUTO_WINDOW_ROWS} rows and "
        f"{AUTO_RARER_LABELS} of the rarer label, and calibration two windows. Collect a longer window "
        "(collect.start), or set monitor.window_days and monitor.min_window_rows by hand")


def sizing_text(asked: tuple[int | str, int | str], window_days: int, min_window_rows: int) -> str:
    """How the windows were sized, in words (`asked`: the params' window_days and min_window_rows): for the
    reference stage's log and receipt and the loop's start."""
    return (f"monitor.window_days={window_days}{' (auto)' if asked[0] == 'auto' else ''}, "
            f"monitor.min_window_rows={min_window_rows}{' (auto)' if asked[1] == 'auto' else ''}")


def reference_windows(period: pd.DataFrame, time_column: str, monitor: MonitorParams) -> list[pd.DataFrame]:
    """The reference period cut into windows of `monitor.window_days` (Monday-aligned like live windows); windows
    under `monitor.min_window_rows` (a partial first or last week) are left out, as they would be live. A small
    table with fewer than two such windows keeps every window of two rows or more: thresholds learned from small
    windows are wider (noisier), which errs towards fewer alarms, not towards refusing to register the model."""
    from pipelines.monitor.windows import window_starts

    starts = window_starts(period[time_column], monitor.window_days)
    windows = [rows for _, rows in period.groupby(starts, sort=True)]
    full = [rows for rows in windows if len(rows) >= monitor.min_window_rows]
    return full if len(full) >= 2 else [rows for rows in windows if len(rows) >= 2]


def calibration_start(stamps: pd.Series, monitor: MonitorParams) -> int:
    """Where, in the time-ordered reference period's `stamps`, its latest `monitor.calibration_windows` full windows
    (at least `min_window_rows` rows) begin; 0 when it has no more than that (or no cap). Thresholds come from those
    windows: a year of weeks has every season once, and a period of years would cost a window analysis per week."""
    from pipelines.monitor.windows import window_starts

    if monitor.calibration_windows is None:
        return 0
    starts = window_starts(stamps, monitor.window_days)
    sizes = starts.value_counts()
    full = sizes[sizes >= monitor.min_window_rows].index.sort_values()
    if len(full) <= monitor.calibration_windows:
        return 0
    return int(starts.searchsorted(full[-monitor.calibration_windows]))


def calibrate(period: pd.DataFrame, reference: pd.DataFrame, features: FeaturesParams, time_column: str,
              monitor: MonitorParams, weights: Mapping[str, float],
              vocabulary: Mapping[str, Sequence[str]], probability: str = "probability") -> Calibration:
    """Thresholds from the reference period's windows, each against the reference sample without its own rows.

    `period` is the data the champion was fitted on, with the champion's `probability`; `reference` the stored
    reference sample (drawn from `period`), also with `probability`; a window is compared with the reference rows
    outside it. Both sides are sampled to the
    sizes the live analysis uses (`monitor.window_sample_rows`, `monitor.reference_rows`).
    """
    from pipelines.monitor.windows import window_starts

    windows = reference_windows(period, time_column, monitor)
    reference_starts = window_starts(reference[time_column], monitor.window_days)
    if len(windows) < 2:
        raise ValueError(f"calibration needs at least 2 reference windows of monitor.window_days="
                         f"{monitor.window_days} with monitor.min_window_rows={monitor.min_window_rows}; the "
                         f"reference period has {len(windows)}")
    consistency = fit_consistency(reference, features, monitor.consistency_r2)
    stats = []
    for number, window in enumerate(windows):
        start = window_starts(window[time_column].iloc[:1], monitor.window_days).iloc[0]
        rest = reference.loc[reference_starts != start]
        current = sample_window(window, monitor.window_sample_rows, monitor.seed + number)
        stats.append(window_statistics(current, rest, features, vocabulary, monitor.unit_margin, probability,
                                       consistency))
    q = monitor.calibration_quantile
    column_values = {name: [s.columns[name] for s in stats] for name in features.raw_columns}
    columns = {name: _floored(conformal_quantile(values, q)) for name, values in column_values.items()}
    # The drift index of each window, its column thresholds learned from the *other* windows (leave one out), so
    # the index's own threshold is not learned from thresholds that saw the window.
    index_values = []
    for number, s in enumerate(stats):
        others = {name: _floored(conformal_quantile([v for i, v in enumerate(values) if i != number], q))
                  for name, values in column_values.items()}
        index_values.append(drift_index(s.columns, others, weights))
    means = {name: [m for m in (s.means[name] for s in stats) if m is not None] for name in features.numeric}
    values: dict[str, dict[str, list[float | None]]] = {
        "columns": {name: _rounded(v) for name, v in column_values.items()},
        "prediction": {"probability": _rounded([s.prediction for s in stats])},
        "drift_index": {"index": _rounded(index_values)},
        "missing_rise": {name: _rounded([s.missing_rise[name] for s in stats]) for name in features.raw_columns},
        "new_categories": {name: _rounded([s.new_categories[name] for s in stats]) for name in features.categorical},
        "out_of_range": {name: _rounded([s.out_of_range.get(name, 0.0) for s in stats]) for name in features.numeric},
        "residuals": {name: _rounded([s.residuals.get(name, float("nan")) for s in stats])
                      for name in consistency.values},
    }
    return Calibration(
        quantile=q, windows=len(windows), window_days=monitor.window_days,
        window_sample_rows=monitor.window_sample_rows, min_window_rows=monitor.min_window_rows,
        period=[period[time_column].min().isoformat(), period[time_column].max().isoformat()],
        weights=dict(weights), vocabulary={name: list(v) for name, v in vocabulary.items()},
        columns=_finite(columns), prediction=_floored(conformal_quantile([s.prediction for s in stats], q)),
        drift_index=conformal_quantile(index_values, q),
        missing_rise=_finite({name: conformal_quantile(values["missing_rise"][name], q)
                              for name in features.raw_columns}),
        new_categories=_finite({name: conformal_quantile(values["new_categories"][name], q)
                                for name in features.categorical}),
        out_of_range=_finite({name: conformal_quantile(values["out_of_range"][name], q)
                              for name in features.numeric}),
        means={name: [min(m), max(m)] for name, m in means.items() if m},
        spreads=_finite({name: float(pd.to_numeric(period[name], errors="coerce").std())
                         for name in features.numeric}),
        consistency=consistency,
        residuals=_finite({name: _floored(conformal_quantile([abs(v) for v in values["residuals"][name]
                                                              if v is not None], q), MIN_RESIDUAL)
                           for name in consistency.values}),
        values=values,
    )


def _floored(threshold: float, floor: float = MIN_DISTANCE) -> float:
    return threshold if math.isnan(threshold) else max(threshold, floor)


def _finite(thresholds: Mapping[str, float]) -> dict[str, float]:
    """Thresholds that could be learned (a column with no value in any reference window has none: not judged)."""
    return {name: value for name, value in thresholds.items() if not math.isnan(value)}


def _rounded(values: Sequence[float]) -> list[float | None]:
    return [None if v is None or math.isnan(v) else round(float(v), 6) for v in values]


def auc_drops(labelled: pd.DataFrame, time_column: str, monitor: MonitorParams, label: str = "label",
              probability: str = "probability") -> list[float]:
    """Per window of the labelled held-out splits: the champion's ROC AUC on all of them minus its AUC on the
    window (the week-to-week spread of live quality when nothing changed). Windows with one class are skipped."""
    from sklearn.metrics import roc_auc_score

    if labelled.empty or labelled[label].nunique() < 2:
        return []
    overall = roc_auc_score(labelled[label], labelled[probability])
    drops = []
    for window in reference_windows(labelled, time_column, monitor):
        if window[label].nunique() == 2:
            drops.append(float(overall - roc_auc_score(window[label], window[probability])))
    return drops

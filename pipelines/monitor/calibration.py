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

A window's value is not one number but a distribution: another draw of the same week's flights gives another
distance. With ~30 weekly windows the threshold *is* the highest week's value, so the highest week itself, drawn
again, passes it about half the time. So each reference window's distances are computed on
`monitor.calibration_resamples` draws of its rows (the live-sized sample, then bootstrap draws of that size) and
the window's value is their prediction bound at the same level (`prediction_bound`): a threshold above every
reference week's own sampling noise. How often a new week like the reference alarms is measured by leave-one-out
(`leave_one_out`: each window against the thresholds of the others, the live alarm rules applied), with its exact
binomial confidence interval (`FalseAlarms`).

Statistics (the distances equal Evidently's registered stat tests, computed on counts: `pipelines.monitor.distances`;
the rest on the same bounded sample sizes as the live analysis, so sampling noise is the same on both sides):
- per column: normed Wasserstein distance (numeric) or Jensen-Shannon distance (categorical);
- prediction drift: normed Wasserstein distance of the predicted probability;
- the drift index: the model's gain-weighted sum of each column's score in units of its own threshold, so a big
  shift of an important feature alarms alone and a shift of a feature the model barely uses does not. The index
  and prediction drift ask for a retrain, so their thresholds are set further out: the prediction bound of the
  windows' values at `monitor.alarm_quantile` (beyond the largest when ~30 windows cannot show a 1-in-100 week);
- data quality: per column the rise of the missing share beyond what the window's other columns explain
  (`pipelines.monitor.consistency`: a column that goes missing only with its whole source is told by the source's
  other columns, so its own rise stands out against its base rate), the share of category values outside the
  champion's vocabulary, the share of numeric values far
  outside the rest of the reference's range (`range_band`), the window's mean (a unit change moves the mean far
  outside every reference window's, in units of the column's spread), and, for a column the others determine, its
  mean residual from that relation (a unit change inside the column's own range breaks it);
- the share of values beyond the range the reference period observed (`observed`): values the model never saw.
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

CALIBRATION_VERSION = 3
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


def evidently_distance(method: str, reference: pd.Series, current: pd.Series) -> float:
    """Evidently's registered stat test by name, on the values its `ValueDrift` would use (inf and NaN dropped):
    the definition `pipelines.monitor.distances` reproduces on counts (tests compare the two)."""
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


def beyond_band(value: float | None, low: float | None, high: float | None, width: float) -> bool:
    """Whether `value` lies beyond the reference values' [`low`, `high`] by more than `width`: the rule every
    calibrated statistic is judged by, the monitor's window means (width: `monitor.unit_margin` column sds) and
    validation's period and segment statistics alike. A side given as None is open; an unknown value or bound
    (None, NaN) is not beyond anything."""
    if value is None or math.isnan(value) or math.isnan(width):
        return False
    below = low is not None and not math.isnan(low) and value < low - width
    above = high is not None and not math.isnan(high) and value > high + width
    return bool(below or above)


def spread_width(values: Sequence[float], margin: float, floor: float = 0.0) -> float:
    """`margin` times the reference values' own spread (their standard deviation over the reference periods),
    never below `floor`: how far beyond the lowest and highest reference value a new period may lie."""
    finite = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    spread = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return max(margin * spread, floor)


def range_band(values: pd.Series, margin: float) -> tuple[float, float]:
    """The reference's [min, max] widened by `margin` standard deviations: values beyond it are far outside
    anything the reference holds (a hot week just past the reference's hottest is not; a unit change is)."""
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    spread = float(numbers.std()) if len(numbers) > 1 else 0.0
    return float(numbers.min()) - margin * spread, float(numbers.max()) + margin * spread


def quality_limit(threshold: float | None, floor: float, monitor: MonitorParams) -> float:
    """A data-quality limit: `monitor.quality_factor` x the calibrated threshold, never below `floor`.

    A window has ~60 data-quality statistics, each beyond its own calibrated threshold about once in (windows + 1)
    windows by chance, so "just beyond" is noise somewhere most weeks; a fault is *far* beyond."""
    calibrated = 0.0 if threshold is None or math.isnan(threshold) else threshold
    return max(monitor.quality_factor * calibrated, floor)


class WindowStatistics(BaseModel):
    """The data-quality statistics of one window against a reference (the distances are computed apart, on
    counts, several draws per window)."""

    model_config = ConfigDict(extra="forbid")

    rows: int
    missing_rise: dict[str, float]
    new_categories: dict[str, float]
    out_of_range: dict[str, float]
    means: dict[str, float | None]
    residuals: dict[str, float] = {}


def missing_rise(current: pd.DataFrame, reference: pd.DataFrame, features: FeaturesParams,
                 consistency: Consistency | None) -> dict[str, float]:
    """Per column: the window's missing share minus the share expected of it: what the window's other columns
    imply where the column's missingness was modelled, the reference's share elsewhere."""
    explained = expected_missing(current, features.numeric, consistency) if consistency is not None else {}
    return {name: float(current[name].isna().mean() - explained.get(name, reference[name].isna().mean()))
            for name in features.raw_columns}


def window_statistics(current: pd.DataFrame, reference: pd.DataFrame, features: FeaturesParams,
                      vocabulary: Mapping[str, Sequence[str]], margin: float,
                      consistency: Consistency | None = None) -> WindowStatistics:
    """The data-quality statistics of `current` against `reference` (both raw columns), already sampled; `margin`
    is `monitor.unit_margin`; `consistency` the reference's column relations (none: not judged)."""
    numeric = {name: pd.to_numeric(reference[name], errors="coerce") for name in features.numeric}
    return WindowStatistics(
        rows=len(current),
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


LABEL_CHECKS = ("log_loss_excess", "brier_excess", "calibration_gap")


class LabelCalibration(BaseModel):
    """The champion's held-out label figures and the limits of a window's departure from them
    (`pipelines.monitor.labels`)."""

    model_config = ConfigDict(extra="forbid")

    windows: int
    reference: dict[str, float]           # each check's figure over all held-out windows
    limits: dict[str, float]              # the largest departure a window like them shows (prediction bound)
    values: dict[str, list[float]]        # each held-out window's departure, for audit


class FalseAlarms(BaseModel):
    """How often a new window like the reference windows alarms, measured by leave-one-out (`leave_one_out`): each
    reference window judged by the thresholds learned from the others, as a live window is judged. `low`/`high`:
    the exact (Clopper-Pearson) 95% interval of the rate; `by_check`: how many windows each check would have
    alarmed, by the kind of alarm it raises."""

    model_config = ConfigDict(extra="forbid")

    windows: int
    alarms: int
    rate: float
    low: float
    high: float
    by_check: dict[str, int] = {}


class Calibration(BaseModel):
    """The thresholds a live window is judged by, learned from `windows` reference windows; stored with the model
    (`calibration.json`) beside its reference sample."""

    model_config = ConfigDict(extra="forbid")

    version: int = CALIBRATION_VERSION
    quantile: float
    # The level of the drift index and prediction thresholds (their prediction bound over the windows); None in
    # calibrations made before: the conformal quantile at `quantile`.
    alarm_quantile: float | None = None
    windows: int
    window_days: int
    window_sample_rows: int
    resamples: int = 1                       # draws per reference window the distance thresholds come from
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
    # The reference period's observed [min, max] per numeric column, and the calibrated share of a window beyond
    # it (each reference window against the range of the others). Empty before version 3.
    observed: dict[str, list[float]] = {}
    outside_observed: dict[str, float] = {}
    # Performance: the champion's weekly ROC AUC drop below its whole held-out AUC, on the labelled splits it was
    # not fitted on (validation, test): their prediction_bound (a handful of windows); None when there were none.
    auc_drop: float | None = None
    auc_windows: int = 0
    # Label quality on the same held-out windows: log loss, Brier, calibration-in-the-large (version 3).
    labels: LabelCalibration | None = None
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
        f"(collect.start), or set monitor.window_days and monitor.min_window_rows by hand"
        f"{_longer(len(stamps), span, rarer)}")


def _longer(rows: int, span: int, rarer: float) -> str:
    """For a long but sparse period (years of a few rows a day): the whole weeks a window needs for the rows and
    rarer labels auto asks, as values to set, when the period holds at least two such windows; else ''."""
    if rows == 0 or span <= 0 or rarer <= 0:
        return ""
    per_day = rows / span
    days = math.ceil(max(AUTO_WINDOW_ROWS / per_day, AUTO_RARER_LABELS / (per_day * rarer)) / 7) * 7
    if span // days < 2:
        return ""
    expected = per_day * days
    few = (f"; only {span // days} windows: the thresholds would be noisy (fewer than {FEW_CALIBRATION_WINDOWS}), "
           "a longer reference period gives more" if span // days < FEW_CALIBRATION_WINDOWS else "")
    return (f" (this period is long but sparse: windows of {days} days would hold ~{expected:,.0f} rows, "
            f"{span // days} of them: monitor.window_days: {days}, monitor.min_window_rows: "
            f"{max(math.ceil(expected / 2), AUTO_MIN_ROWS_FLOOR)}{few})")


# Below this many reference windows a threshold is the highest of a handful of values: where it lands is chance, so
# the alarm rate of live windows like the reference is too (the conformal quantile needs 19 values to reach 0.95).
FEW_CALIBRATION_WINDOWS = 10


def calibration_warning(calibration: Calibration) -> str | None:
    """Why the thresholds of `calibration` are noisy, naming the numbers and the params that change them; None when
    they are not: fewer than `FEW_CALIBRATION_WINDOWS` reference windows, windows under `AUTO_MIN_ROWS_FLOOR` rows,
    or held-out splits (validation, test) that hold a single window, so the calibrated ROC AUC drop is that window
    against itself (0) and the decay limit is monitor.auc_drop alone.

    Said by the reference stage, `python -m pipelines monitor calibration` and the loop's start; the model is
    registered all the same."""
    windows, window_days, min_window_rows = calibration.windows, calibration.window_days, calibration.min_window_rows
    problems = []
    if windows < FEW_CALIBRATION_WINDOWS:
        problems.append(f"{windows} reference windows (fewer than {FEW_CALIBRATION_WINDOWS}: each threshold is about "
                        "the highest of them, so where it lands is chance)")
    if min_window_rows is not None and min_window_rows < AUTO_MIN_ROWS_FLOOR:
        problems.append(f"windows of {min_window_rows}+ rows (under {AUTO_MIN_ROWS_FLOOR}: a window's distances "
                        "and ROC AUC are mostly sampling noise)")
    if calibration.auc_drop is not None and calibration.auc_windows < 2:
        problems.append(f"held-out splits (split.valid_days, split.test_days) that hold "
                        f"{calibration.auc_windows} window{'' if calibration.auc_windows == 1 else 's'} (the "
                        "performance-decay limit is monitor.auc_drop alone, the label checks "
                        f"{'uncalibrated' if calibration.labels is None else 'from one window'})")
    if not problems:
        return None
    return (f"noisy calibration: {' and '.join(problems)}, at monitor.window_days={window_days}: the alarm "
            "thresholds and the false-alarm rate are uncertain. Lengthen the reference period (collect.start "
            "earlier, so training and its held-out splits cover more time) for more windows, or shorten "
            "monitor.window_days if its windows still hold monitor.min_window_rows rows"
            + ("; longer held-out splits (split.valid_days, split.test_days) give the decay and label limits more "
               "windows" if calibration.auc_drop is not None and calibration.auc_windows < 2 else "")
            + "; then dvc repro")


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


def window_draws(rows: int, monitor: MonitorParams, number: int) -> list[np.ndarray]:
    """The positions of a reference window's rows each of its `monitor.calibration_resamples` draws uses: first the
    sample a live window of that size would be cut to (`sample_window`), then bootstrap draws of the same size
    (another week of the same flights: rows drawn with replacement). `number` seeds them: the window's own key
    (`window_key`), so a week is drawn the same whichever windows are calibrated beside it."""
    size = min(rows, monitor.window_sample_rows)
    first = np.arange(rows) if rows <= size else np.sort(
        np.random.RandomState(monitor.seed + number).choice(rows, size, replace=False))
    generator = np.random.default_rng([monitor.seed, number])
    return [first, *(generator.integers(0, rows, size) for _ in range(monitor.calibration_resamples - 1))]


def window_key(start: Any) -> int:
    """A window's seed for its draws: the day its window starts (days since 1970), not its place in a list."""
    return int(pd.Timestamp(start).value // 86_400_000_000_000)


def resampled_distances(windows: Sequence[pd.DataFrame], reference: pd.DataFrame, in_window: Sequence[np.ndarray],
                        columns: Mapping[str, bool], monitor: MonitorParams, keys: Sequence[int]
                        ) -> dict[str, np.ndarray]:
    """Per column (name -> numeric?): the distance of each window's draws (`window_draws`, seeded by `keys[i]`) from
    the reference without that window's rows (`in_window[i]`: the reference rows inside window i), as an array
    windows x draws."""
    from pipelines.monitor.distances import ReferenceSide, code_column, distance

    draws = [window_draws(len(window), monitor, key) for key, window in zip(keys, windows, strict=True)]
    scores = {}
    for name, numeric in columns.items():
        coded = code_column(reference[name], [window[name] for window in windows], numeric)
        total = coded.counts(coded.reference)
        values = np.full((len(windows), monitor.calibration_resamples), np.nan)
        for number, positions in enumerate(draws):
            rest = ReferenceSide.of(coded, total - coded.counts(coded.reference[in_window[number]]))
            for draw, chosen in enumerate(positions):
                values[number, draw] = distance(coded, rest, coded.counts(coded.windows[number][chosen]))
        scores[name] = values
    return scores


def calibrate(period: pd.DataFrame, reference: pd.DataFrame, features: FeaturesParams, time_column: str,
              monitor: MonitorParams, weights: Mapping[str, float],
              vocabulary: Mapping[str, Sequence[str]], probability: str = "probability") -> Calibration:
    """Thresholds from the reference period's windows, each against the reference sample without its own rows.

    `period` is the data the champion was fitted on, with the champion's `probability`; `reference` the stored
    reference sample (drawn from `period`), also with `probability`; a window is compared with the reference rows
    outside it. Both sides are sampled to the sizes the live analysis uses (`monitor.window_sample_rows`,
    `monitor.reference_rows`); the distances of each window are computed on `monitor.calibration_resamples` draws.
    """
    windows = [window.reset_index(drop=True) for window in reference_windows(period, time_column, monitor)]
    if len(windows) < 2:
        raise ValueError(f"calibration needs at least 2 reference windows of monitor.window_days="
                         f"{monitor.window_days} with monitor.min_window_rows={monitor.min_window_rows}; the "
                         f"reference period has {len(windows)}")
    from threadpoolctl import threadpool_limits

    # The linear algebra here is small (50,000 x 66 at most): OpenBLAS's threads only spin against each other and
    # against the machine's other work (on a busy 2-core machine a 60 ms product took 0.6-1.2 s with them).
    with threadpool_limits(1, user_api="blas"):
        return _calibrate(windows, reference, features, time_column, monitor, weights, vocabulary, period,
                          probability)


def _calibrate(windows: list[pd.DataFrame], reference: pd.DataFrame, features: FeaturesParams, time_column: str,
               monitor: MonitorParams, weights: Mapping[str, float], vocabulary: Mapping[str, Sequence[str]],
               period: pd.DataFrame, probability: str) -> Calibration:
    from pipelines.monitor.windows import window_starts

    q = monitor.calibration_quantile
    consistency = fit_consistency(reference, features, monitor.consistency_r2, monitor.unit_margin,
                                  time=reference[time_column])
    reference_starts = window_starts(reference[time_column], monitor.window_days).to_numpy()
    starts = [window_starts(window[time_column].iloc[:1], monitor.window_days).iloc[0] for window in windows]
    in_window = [reference_starts == start for start in starts]
    # --- distances: each window's draws against the reference without its rows --------------------------------
    kinds = {name: name not in features.categorical for name in features.raw_columns} | {probability: True}
    keys = [window_key(start) for start in starts]
    scores = resampled_distances(windows, reference, in_window, kinds, monitor, keys)
    column_bounds = {name: [_bound(scores[name][i], q) for i in range(len(windows))] for name in features.raw_columns}
    prediction_bounds = [_bound(row, q) for row in scores[probability]]
    columns = {name: _floored(conformal_quantile(values, q)) for name, values in column_bounds.items()}
    # The drift index of each draw, its column thresholds learned from the *other* windows (leave one out), so the
    # index's own threshold is not learned from thresholds that saw the window.
    others_columns = [{name: _floored(conformal_quantile(_without(values, number), q))
                       for name, values in column_bounds.items()} for number in range(len(windows))]
    index_draws = np.array([[drift_index({name: scores[name][number, draw] for name in features.raw_columns},
                                         others_columns[number], weights)
                             for draw in range(monitor.calibration_resamples)] for number in range(len(windows))])
    index_bounds = [_bound(row, q) for row in index_draws]
    # --- data quality: each window's live-sized sample --------------------------------------------------------
    stats = [window_statistics(window.iloc[window_draws(len(window), monitor, keys[number])[0]], reference.loc[
        ~in_window[number]], features, vocabulary, monitor.unit_margin, consistency)
        for number, window in enumerate(windows)]
    observed = _observed_ranges(period, reference, features)
    outside = {name: _outside_others(windows, name) for name in observed}
    means = {name: [m for m in (s.means[name] for s in stats) if m is not None] for name in features.numeric}
    values: dict[str, dict[str, list[float | None]]] = {
        "columns": {name: _rounded(v) for name, v in column_bounds.items()},
        "prediction": {"probability": _rounded(prediction_bounds)},
        "drift_index": {"index": _rounded(index_bounds)},
        "missing_rise": {name: _rounded([s.missing_rise[name] for s in stats]) for name in features.raw_columns},
        "new_categories": {name: _rounded([s.new_categories[name] for s in stats]) for name in features.categorical},
        "out_of_range": {name: _rounded([s.out_of_range.get(name, 0.0) for s in stats]) for name in features.numeric},
        "outside_observed": {name: _rounded(v) for name, v in outside.items()},
        "residuals": {name: _rounded([s.residuals.get(name, float("nan")) for s in stats])
                      for name in consistency.values},
        "means": {name: _rounded([float("nan") if s.means[name] is None else s.means[name] for s in stats])
                  for name in features.numeric},
        # Each window's first draw (the live-sized sample), for the leave-one-out false-alarm estimate.
        "draw": {"index": _rounded(index_draws[:, 0]), "prediction": _rounded(scores[probability][:, 0])},
    }
    return Calibration(
        quantile=q, alarm_quantile=monitor.alarm_quantile, windows=len(windows), window_days=monitor.window_days,
        window_sample_rows=monitor.window_sample_rows, min_window_rows=monitor.min_window_rows,
        resamples=monitor.calibration_resamples,
        period=[period[time_column].min().isoformat(), period[time_column].max().isoformat()],
        weights=dict(weights), vocabulary={name: list(v) for name, v in vocabulary.items()},
        columns=_finite(columns), prediction=_floored(prediction_bound(prediction_bounds, monitor.alarm_quantile)),
        drift_index=prediction_bound(index_bounds, monitor.alarm_quantile),
        missing_rise=_finite({name: conformal_quantile(values["missing_rise"][name], q)
                              for name in features.raw_columns}),
        new_categories=_finite({name: conformal_quantile(values["new_categories"][name], q)
                                for name in features.categorical}),
        out_of_range=_finite({name: conformal_quantile(values["out_of_range"][name], q)
                              for name in features.numeric}),
        observed=observed,
        outside_observed=_finite({name: conformal_quantile(v, q) for name, v in outside.items()}),
        means={name: [min(m), max(m)] for name, m in means.items() if m},
        spreads=_finite({name: float(pd.to_numeric(period[name], errors="coerce").std())
                         for name in features.numeric}),
        consistency=consistency,
        residuals=_finite({name: _floored(conformal_quantile([abs(v) for v in values["residuals"][name]
                                                              if v is not None], q), MIN_RESIDUAL)
                           for name in consistency.values}),
        values=values,
    )


def _bound(values: np.ndarray, quantile: float) -> float:
    """A window's value from its draws: the prediction bound of them (the single value when there is one draw)."""
    finite = [float(v) for v in values if not math.isnan(v)]
    if not finite:
        return float("nan")
    return finite[0] if len(finite) == 1 else prediction_bound(finite, quantile)


def _without(values: Sequence[float | None], number: int) -> list[float]:
    return [float("nan") if v is None else v for i, v in enumerate(values) if i != number]


def _observed_ranges(period: pd.DataFrame, reference: pd.DataFrame, features: FeaturesParams
                     ) -> dict[str, list[float]]:
    """Each numeric column's [min, max] over the calibrated period and the reference sample (the model saw both)."""
    ranges = {}
    for name in features.numeric:
        values = pd.concat([pd.to_numeric(period[name], errors="coerce"),
                            pd.to_numeric(reference[name], errors="coerce")]).replace([np.inf, -np.inf], np.nan)
        if values.notna().any():
            ranges[name] = [float(values.min()), float(values.max())]
    return ranges


def _outside_others(windows: Sequence[pd.DataFrame], name: str) -> list[float]:
    """Per window: the share of its rows beyond the range the *other* windows observed."""
    values = [pd.to_numeric(w[name], errors="coerce").replace([np.inf, -np.inf], np.nan) for w in windows]
    lows = np.array([v.min() for v in values], dtype=float)
    highs = np.array([v.max() for v in values], dtype=float)
    shares = []
    for number, own in enumerate(values):
        low, high = np.delete(lows, number), np.delete(highs, number)
        if np.isnan(low).all():
            shares.append(float("nan"))
            continue
        shares.append(out_of_range_share(own, float(np.nanmin(low)), float(np.nanmax(high))))
    return shares


def leave_one_out(calibration: Calibration, monitor: MonitorParams) -> FalseAlarms | None:
    """How often a new window like the reference windows alarms: each reference window, as the live analysis draws
    it (its first draw), against the thresholds learned from the *other* windows, with the floors and
    `monitor.quality_factor` applied as live; None for a calibration made before the draws were stored.

    Checked: the drift index, prediction drift, a missing surge, categories outside the vocabulary, values far
    outside the range or beyond the observed one, a mean far outside every other window's, a broken relation.
    (Not label quality, refused requests or re-scoring: they need outcomes, the service or the served model.)"""
    from scipy import stats as scipy_stats

    values = calibration.values
    if "draw" not in values:
        return None
    q = calibration.quantile
    windows = calibration.windows
    counts: dict[str, int] = {}
    alarms = 0
    for number in range(windows):
        def others(statistic: str, name: str, absolute: bool = False, number: int = number) -> float:
            kept = [v for v in _without(values.get(statistic, {}).get(name, []), number) if not math.isnan(v)]
            return conformal_quantile([abs(v) for v in kept] if absolute else kept, q)

        def own(statistic: str, name: str, number: int = number) -> float:
            series = values.get(statistic, {}).get(name)
            value = series[number] if series is not None and number < len(series) else None
            return float("nan") if value is None else float(value)

        def alarm_level(statistic: str, name: str, number: int = number) -> float:
            kept = [v for v in _without(values.get(statistic, {}).get(name, []), number) if not math.isnan(v)]
            return prediction_bound(kept, calibration.alarm_quantile) if calibration.alarm_quantile else \
                conformal_quantile(kept, q)

        fired = set()
        if own("draw", "index") > alarm_level("drift_index", "index"):
            fired.add("data_drift")
        if own("draw", "prediction") > _floored(alarm_level("prediction", "probability")):
            fired.add("prediction_drift")
        for statistic, surge, kind in (("missing_rise", monitor.missing_surge, "missing_surge"),
                                       ("new_categories", monitor.new_category_surge, "new_category"),
                                       ("out_of_range", monitor.out_of_range_surge, "out_of_range"),
                                       ("outside_observed", monitor.out_of_range_surge, "beyond_range")):
            for name in values.get(statistic, {}):
                if own(statistic, name) > quality_limit(others(statistic, name), surge, monitor):
                    fired.add(kind)
        for name, series in values.get("means", {}).items():
            mean, spread = own("means", name), calibration.spreads.get(name)
            kept = [m for m in _without(series, number) if not math.isnan(m)]
            if math.isnan(mean) or not kept or spread is None:
                continue
            margin = monitor.unit_margin * spread
            if not min(kept) - margin <= mean <= max(kept) + margin:
                fired.add("mean_outside")
        for name in calibration.residuals:
            residual = own("residuals", name)
            limit = monitor.quality_factor * _floored(others("residuals", name, absolute=True), MIN_RESIDUAL)
            if not math.isnan(residual) and abs(residual) > limit:
                fired.add("relation_broken")
        for check in fired:
            counts[check] = counts.get(check, 0) + 1
        alarms += bool(fired)
    interval = scipy_stats.binomtest(alarms, windows).proportion_ci(confidence_level=0.95, method="exact")
    return FalseAlarms(windows=windows, alarms=alarms, rate=round(alarms / windows, 5),
                       low=round(float(interval.low), 5), high=round(float(interval.high), 5),
                       by_check=dict(sorted(counts.items())))


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

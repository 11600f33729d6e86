"""How columns relate to each other in the reference, as data-quality checks that per-column statistics cannot make.

Why: a column can go wrong and stay inside everything its own history spans. Temperature in Celsius in a summer
week looks like a winter week in Fahrenheit; +15 F on a March week looks like May; a feed that drops pressure on a
fifth of the rows looks like a stormy week (pressure goes missing in rain and fog, up to +19 points in a real week
of the reference). What the corrupted week cannot keep is the column's *relation to the others*: a temperature
below its own dew point, pressure missing on dry clear hours. Two models, fitted on the reference sample at
registration and stored in `calibration.json`, say what the other columns imply:

- **value consistency**, for each numeric column: least squares on the other columns' standardised values, their
  squares and pairwise products (a second-order response surface: dew point, humidity and temperature are bound
  by a curved law, which a linear fit leaves ~0.7 residual sd of seasonal bias in a week). Kept only where the fit
  explains at least `monitor.consistency_r2` of the column's variance: a near-deterministic relation, not a
  correlation the weather moves. The window statistic is the mean residual in units of the reference residual's
  standard deviation;
- **explained missingness**, for each column with missing values in the reference: a logistic model of "missing"
  on the other columns' values and missing flags. The window statistic is the observed missing share minus the
  mean predicted one: the part of a missing surge the rest of the row does not explain.

Both statistics are calibrated like every other (`pipelines.monitor.calibration`: the conformal quantile over the
reference windows, an alarm `monitor.quality_factor` times beyond it). The models are fitted once on the whole
reference sample, not refitted per window: with ~140 terms on 50,000 rows the in-sample optimism of a window's
mean residual is of the order of terms / rows (0.3%), far below the spread it is compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

# A numeric column predicts others only where it is present on this share of the reference rows: rows lacking a
# predictor are skipped, and a column missing on many rows (wind gust: 76%) would leave too few.
PREDICTOR_PRESENT = 0.95
# Fewer reference rows than this (present target and predictors, or missing values) and no model is fitted.
MIN_ROWS = 200
# Fewer missing (or present) reference rows than this and a column's missingness is not modelled. Far fewer are
# needed than for a value model: a column that goes missing only with its whole source (temperature, on 0.1% of the
# rows, exactly when the hour has no weather record) is told by the other columns' flags, and then a rise of its
# own (2% of temperatures dropped while the rest of the weather arrives) stands out against its base rate.
MIN_MISSING_ROWS = 30
# A value model keeps at least this many complete reference rows per term. Its window statistic is judged against
# the reference windows' own spread, and those windows are rows the model was fitted on: with ~1,200 terms (48
# columns, squares and products) on a year of daily rows the fit reproduces every reference row, its residual sd
# shrinks to nothing and every later window alarms. At 20 rows a term the in-sample optimism is ~5% of the variance.
ROWS_PER_TERM = 20
# When the row budget allows fewer predictors than the table has, at most this many are chosen (`_forward`):
# relations live in a few columns, and a wider greedy search costs rounds x candidates least-squares fits.
FORWARD_PREDICTORS = 8
# A counter (`counters`): a numeric column whose rank correlation with time (or row order) reaches this in absolute
# value, and that takes at least COUNTER_MIN_VALUES distinct values.
COUNTER_RANK_CORRELATION = 0.99
# More distinct values than any calendar part has (a day of the month: 31), so that a month column over a year's
# reference (rank correlation with time 0.997, 12 values) or a day over one month's stays a column like the others.
COUNTER_MIN_VALUES = 32
# Ridge penalty on the standardised terms: keeps collinear squares and perfectly separated missing flags finite;
# negligible against tens of thousands of rows.
RIDGE = 1.0


class ValueModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    predictors: list[str]
    coefficients: list[float]   # intercept, linear terms, then the upper triangle of products (row-major)
    residual_sd: float
    r2: float
    main: list[str]             # the predictors with the largest linear terms: what an alarm names


class Consistency(BaseModel):
    """The fitted models and the standardisation they use; stored in the calibration."""

    model_config = ConfigDict(extra="forbid")

    center: dict[str, float]          # per numeric column: the reference median (also what a missing value becomes)
    scale: dict[str, float]           # per numeric column: the reference standard deviation
    # Per numeric column: the reference's [min, max], widened by monitor.unit_margin sds since version 3. A predictor
    # is clipped to it, so a value far outside (pressure in inHg) does not extrapolate the fit and make the *other*
    # columns look wrong (its own checks catch it), while one a little past (a warm week) is still judged.
    bounds: dict[str, list[float]]
    flags: list[str]                  # raw columns with missing values in the reference: their missing flags
    values: dict[str, ValueModel]     # numeric columns the others determine (R^2 >= monitor.consistency_r2)
    missing: dict[str, list[float]]   # per column: logistic coefficients over missing_terms(column)
    # Numeric columns that only rise (or fall) with time (`counters`): no value model's predictor or target, no
    # missingness or label model's predictor.
    counters: list[str] = []


class Columns(Protocol):
    """What the models are fitted over: the numeric columns, and every column whose missingness is modelled.
    `FeaturesParams` is one (the monitor's: the champion's raw features); `ColumnSet` any other (validation's: the
    table's own columns)."""

    @property
    def numeric(self) -> list[str]: ...

    @property
    def raw_columns(self) -> list[str]: ...


@dataclass(frozen=True)
class ColumnSet:
    numeric: list[str]
    raw_columns: list[str]


def _standardised(frame: pd.DataFrame, columns: Sequence[str], consistency: Consistency) -> np.ndarray:
    if not columns:
        return np.zeros((len(frame), 0))
    values = np.column_stack([pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                              for c in columns])
    low = np.array([consistency.bounds[c][0] for c in columns])
    high = np.array([consistency.bounds[c][1] for c in columns])
    center = np.array([consistency.center[c] for c in columns])
    scale = np.array([consistency.scale[c] for c in columns])
    return np.nan_to_num((np.clip(values, low, high) - center) / scale, nan=0.0)


def _term_count(predictors: int) -> int:
    return 1 + predictors + predictors * (predictors + 1) // 2


def value_terms(frame: pd.DataFrame, predictors: Sequence[str], consistency: Consistency) -> np.ndarray:
    """Intercept, standardised predictors, and their squares and pairwise products."""
    z = _standardised(frame, predictors, consistency)
    upper = np.triu_indices(z.shape[1])
    products = (z[:, :, None] * z[:, None, :])[:, upper[0], upper[1]]
    return np.column_stack([np.ones(len(frame)), z, products])


def missing_terms(frame: pd.DataFrame, target: str, numeric: Sequence[str], consistency: Consistency,
                  standardised: np.ndarray | None = None, missing: np.ndarray | None = None) -> np.ndarray:
    """Intercept, the other numeric columns standardised (missing at the median), the other columns' missing
    flags: a column that goes missing with its whole source (every weather column when the hour has no record) is
    explained by the flags, one that goes missing in bad weather by the values. `standardised` (every numeric
    column, in `numeric` order) and `missing` (every flag column's missing flag, in `consistency.flags` order) may
    be passed in when the frame serves several targets."""
    numeric = list(numeric)
    if standardised is None:
        standardised = _standardised(frame, numeric, consistency)
    if missing is None:
        missing = frame[consistency.flags].isna().to_numpy(dtype=float)
    others = [i for i, c in enumerate(numeric) if c != target and c not in consistency.counters]
    flags = [i for i, c in enumerate(consistency.flags) if c != target]
    return np.column_stack([np.ones(len(frame)), standardised[:, others], missing[:, flags]])


def _complete_rows(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    return frame[list(columns)].apply(pd.to_numeric, errors="coerce").notna().all(axis=1).to_numpy()


def _least_squares(terms: np.ndarray, target: np.ndarray) -> np.ndarray:
    penalty = RIDGE * np.eye(terms.shape[1])
    penalty[0, 0] = 0.0
    return np.linalg.solve(terms.T @ terms + penalty, terms.T @ target)


def _logistic(terms: np.ndarray, target: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Ridge-penalised logistic regression by Newton's method (iteratively reweighted least squares)."""
    coefficients = np.zeros(terms.shape[1])
    penalty = RIDGE * np.eye(terms.shape[1])
    for _ in range(iterations):
        probability = _sigmoid(terms @ coefficients)
        weight = probability * (1 - probability)
        step = np.linalg.solve((terms * weight[:, None]).T @ terms + penalty,
                               terms.T @ (target - probability) - RIDGE * coefficients)
        coefficients += step
        if np.abs(step).max() < 1e-6:
            break
    return coefficients


def _sigmoid(eta: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(eta, -30, 30)))


def _forward(values: pd.DataFrame, target: str, candidates: list[str], limit: int | None,
             sample_rows: int = 5000) -> list[str]:
    """Up to `limit` predictors chosen greedily (all of them without a limit), each the one whose second-order terms
    add the most R^2 on a sample of complete rows: a table of 30 numeric columns would otherwise give each model
    ~500 terms, where the relation lives in two or three columns (temperature in dew point and humidity, whose
    linear correlations with it are weak: the relation is curved, so the screen fits the curve)."""
    if limit is None or len(candidates) <= limit:
        return candidates
    rows = values[[target, *candidates]].dropna()
    if len(rows) > sample_rows:
        rows = rows.sample(sample_rows, random_state=0)
    if len(rows) < MIN_ROWS:
        return candidates[:limit]
    z = ((rows - rows.mean()) / rows.std().replace(0, 1)).to_numpy()
    y, columns = z[:, 0], {name: z[:, index + 1] for index, name in enumerate(candidates)}
    chosen: list[str] = []
    reached = 0.0
    for _ in range(limit):
        best, best_r2 = None, -1.0
        for name in candidates:
            if name in chosen:
                continue
            picked = np.column_stack([columns[c] for c in [*chosen, name]])
            upper = np.triu_indices(picked.shape[1])
            terms = np.column_stack([np.ones(len(y)), picked,
                                     (picked[:, :, None] * picked[:, None, :])[:, upper[0], upper[1]]])
            residual = y - terms @ np.linalg.lstsq(terms, y, rcond=None)[0]
            r2 = 1.0 - float(residual.var()) / max(float(y.var()), 1e-12)
            if r2 > best_r2:
                best, best_r2 = name, r2
        if best is None or (chosen and best_r2 - reached < 0.002):  # nothing more to explain
            break
        chosen.append(best)
        reached = best_r2
    return [name for name in candidates if name in chosen]


def predictor_budget(rows: int) -> int:
    """The most predictors a value model on `rows` complete rows may have: its terms (intercept, linear, squares and
    products: 1 + k + k(k+1)/2) at most rows / ROWS_PER_TERM."""
    k = 0
    while ROWS_PER_TERM * _term_count(k + 1) <= rows:
        k += 1
    return k


def counters(frame: pd.DataFrame, numeric: Sequence[str], time: pd.Series | None = None) -> list[str]:
    """The numeric columns that only rise (or fall) with time: row numbers (an R export's `rownames`), running ids,
    day indexes, cumulative totals. A relation through one holds on the reference and breaks on every later period
    by construction: the counter leaves its reference range, is clipped to it, and the fit's prediction goes stale
    (or, as a target, the counter runs past what its predictors can give). So no model uses them.

    A counter is a column whose rank (Spearman) correlation with `time` (with row order where `time` is None)
    reaches COUNTER_RANK_CORRELATION in absolute value, and that takes at least COUNTER_MIN_VALUES distinct values.
    Rank, not linear, correlation: a counter need not rise evenly (ids issued faster on busy days). Not "unique per
    row and integer-stepped": a day index on an hourly table repeats, a running total is not integer, and both leave
    their range all the same. A column that close to a function of time carries nothing a relation could check that
    time does not; the distinct-value floor keeps calendar parts (month, day of month), which move with time over a
    short reference but repeat each year or month instead of running on, out of the rule (no flights column is a
    counter: `month` reaches 0.992 over the eight months collected, with 8 values)."""
    names = [name for name in numeric if name in frame.columns]
    if not names or len(frame) < 3:
        return []
    order = pd.Series(np.arange(len(frame)), index=frame.index) if time is None else time.rank()
    ranks = frame[names].apply(pd.to_numeric, errors="coerce").astype(float).rank()
    ranks = ranks.loc[:, ranks.nunique() >= COUNTER_MIN_VALUES]
    correlation = ranks.corrwith(order).abs().fillna(0.0)
    return [name for name in ranks.columns if correlation[name] >= COUNTER_RANK_CORRELATION]


def fit_consistency(reference: pd.DataFrame, features: Columns, min_r2: float, margin: float = 0.0, *,
                    max_predictors: int | None = None, missing: bool = True,
                    time: pd.Series | None = None) -> Consistency:
    """Both kinds of model on the reference sample (raw columns in the service's form). A predictor is clipped to
    the reference's [min, max] widened by `margin` standard deviations (`monitor.unit_margin`): a window that moved
    a little past the reference (a warm week, every weather column with it) is still judged by the fit, one far
    outside (pressure in inHg) does not make the other columns look wrong.

    Each value model keeps ROWS_PER_TERM complete rows a term (`predictor_budget`); where that allows fewer
    predictors than the table has, or `max_predictors` is smaller, it keeps the columns that explain its target best
    (`_forward`); `missing: False` fits no missingness model (validation judges missing
    shares per period and segment instead). `time` (the reference's time stamps; None: its row order) tells the
    counters (`counters`), which no model uses as a predictor and no value model as its target."""
    numeric = list(features.numeric)
    values = reference[numeric].apply(pd.to_numeric, errors="coerce").astype(float)
    scale = values.std().fillna(0.0)
    consistency = Consistency(
        center={c: float(v) for c, v in values.median().fillna(0.0).items()},
        scale={c: float(s) if s > 0 else 1.0 for c, s in scale.items()},
        bounds={c: [float(values[c].min()) - margin * float(scale[c]), float(values[c].max())
                    + margin * float(scale[c])] if values[c].notna().any() else [0.0, 0.0] for c in numeric},
        flags=[c for c in features.raw_columns if reference[c].isna().any()], values={}, missing={},
        counters=counters(values, numeric, time))
    present = values.notna().mean()
    predictors = [c for c in numeric if present[c] >= PREDICTOR_PRESENT and scale[c] > 0
                  and c not in consistency.counters]
    for target in (c for c in numeric if c not in consistency.counters):
        candidates = [c for c in predictors if c != target]
        budget = predictor_budget(int(values[target].notna().sum()))
        limit = budget if len(candidates) <= budget else min(budget, FORWARD_PREDICTORS)
        if max_predictors is not None:
            limit = min(limit, max_predictors)
        others = _forward(values, target, candidates, limit) if limit else []
        rows = _complete_rows(reference, [target, *others])
        if not others or rows.sum() < max(MIN_ROWS, ROWS_PER_TERM * _term_count(len(others))) or scale[target] <= 0:
            continue
        terms = value_terms(reference.loc[rows], others, consistency)
        y = values.loc[rows, target].to_numpy()
        coefficients = _least_squares(terms, y)
        residual = y - terms @ coefficients
        r2 = 1.0 - float(residual.var()) / float(y.var())
        if r2 >= min_r2:
            linear = np.abs(coefficients[1:len(others) + 1])
            main = [others[i] for i in np.argsort(-linear)[:3]]
            consistency.values[target] = ValueModel(predictors=others, coefficients=coefficients.tolist(),
                                                    residual_sd=float(residual.std()), r2=round(r2, 6), main=main)
    if missing and consistency.flags:
        standardised = _standardised(reference, numeric, consistency)
        flags = reference[consistency.flags].isna().to_numpy(dtype=float)
        for target in consistency.flags:
            absent = reference[target].isna().to_numpy(dtype=float)
            if absent.sum() < MIN_MISSING_ROWS or absent.sum() > len(absent) - MIN_MISSING_ROWS:
                continue
            terms = missing_terms(reference, target, numeric, consistency, standardised, flags)
            consistency.missing[target] = _logistic(terms, absent).tolist()
    return consistency


def mean_residuals(frame: pd.DataFrame, consistency: Consistency) -> dict[str, float]:
    """Per modelled column: the window's mean residual in reference residual sds (NaN without complete rows)."""
    residuals = {}
    for target, model in consistency.values.items():
        rows = _complete_rows(frame, [target, *model.predictors])
        if not rows.any():
            residuals[target] = float("nan")
            continue
        subset = frame.loc[rows]
        observed = pd.to_numeric(subset[target], errors="coerce").to_numpy(dtype=float)
        predicted = value_terms(subset, model.predictors, consistency) @ np.asarray(model.coefficients)
        residuals[target] = float(np.mean(observed - predicted) / model.residual_sd)
    return residuals


def row_residuals(frame: pd.DataFrame, consistency: Consistency, chunk_rows: int = 200_000) -> pd.DataFrame:
    """Per modelled column, each row's residual in reference residual sds (NaN where the row lacks the column or a
    predictor): what `mean_residuals` averages over a window, kept per row so that a caller can average it over any
    grouping (validation: per period and segment). Computed in parts of `chunk_rows` rows (each model's terms are
    ~50 floats a row)."""
    out = pd.DataFrame(index=frame.index, columns=list(consistency.values), dtype=float)
    for target, model in consistency.values.items():
        values = np.full(len(frame), np.nan)
        complete = np.flatnonzero(_complete_rows(frame, [target, *model.predictors]))
        coefficients = np.asarray(model.coefficients)
        for start in range(0, len(complete), chunk_rows):
            rows = complete[start:start + chunk_rows]
            subset = frame.iloc[rows]
            observed = pd.to_numeric(subset[target], errors="coerce").to_numpy(dtype=float)
            values[rows] = (observed - value_terms(subset, model.predictors, consistency) @ coefficients) \
                / model.residual_sd
        out[target] = values
    return out


class LabelModel(BaseModel):
    """The label's relation to the other columns: a ridge logistic model on the standardised numeric columns most
    correlated with it (their squares and products, as `value_terms`) and indicators of the commonest categories.
    What is judged is how well it still ranks the label (ROC AUC) in a period: labels flipped at random on part of a
    period keep the label rate plausible and break exactly this."""

    model_config = ConfigDict(extra="forbid")

    predictors: list[str]
    categories: dict[str, list[str]]  # per categorical column: the values with an indicator
    coefficients: list[float]


def _label_terms(frame: pd.DataFrame, model: LabelModel, consistency: Consistency) -> np.ndarray:
    parts = [value_terms(frame, model.predictors, consistency)]
    for column, values in model.categories.items():
        from pipelines.features import category_texts

        codes = pd.Categorical(category_texts(frame[column]), categories=values).codes
        parts.append((codes[:, None] == np.arange(len(values))[None, :]).astype(float))
    return np.column_stack(parts)


def fit_label_model(reference: pd.DataFrame, label: pd.Series, numeric: Sequence[str],
                    categories: dict[str, list[str]], consistency: Consistency,
                    max_predictors: int = 6) -> LabelModel | None:
    """The label model on the reference rows with a label (None when there are too few of either class).
    `consistency` supplies the standardisation and the counters, never predictors (`fit_consistency` on the same
    reference)."""
    known = label.notna().to_numpy()
    y = label[known].astype(float)
    if min(y.sum(), len(y) - y.sum()) < MIN_ROWS:
        return None
    rows = reference.loc[known]
    values = rows[list(numeric)].apply(pd.to_numeric, errors="coerce").astype(float)
    present = [c for c in numeric if values[c].notna().mean() >= PREDICTOR_PRESENT and consistency.scale[c] > 0
               and values[c].nunique() > 1 and c not in consistency.counters]
    strength = values[present].corrwith(pd.Series(y.to_numpy(), index=values.index)).abs().fillna(0.0)
    chosen = set(strength.sort_values(ascending=False, kind="stable").index[:max_predictors])
    model = LabelModel(predictors=[c for c in present if c in chosen], categories=dict(categories),
                       coefficients=[])
    terms = _label_terms(rows, model, consistency)
    model.coefficients = _logistic(terms, y.to_numpy()).tolist()
    return model


def label_scores(frame: pd.DataFrame, model: LabelModel, consistency: Consistency,
                 chunk_rows: int = 200_000) -> np.ndarray:
    """The label model's linear score per row (higher: more likely positive)."""
    coefficients = np.asarray(model.coefficients)
    return np.concatenate([_label_terms(frame.iloc[start:start + chunk_rows], model, consistency) @ coefficients
                           for start in range(0, len(frame), chunk_rows)]) if len(frame) else np.zeros(0)


def expected_missing(frame: pd.DataFrame, numeric: Sequence[str], consistency: Consistency) -> dict[str, float]:
    """Per modelled column: the missing share the window's other columns imply."""
    if frame.empty or not consistency.missing:
        return {}
    standardised = _standardised(frame, list(numeric), consistency)
    flags = frame[consistency.flags].isna().to_numpy(dtype=float)
    return {target: float(_sigmoid(missing_terms(frame, target, numeric, consistency, standardised, flags)
                                   @ np.asarray(coefficients)).mean())
            for target, coefficients in consistency.missing.items()}

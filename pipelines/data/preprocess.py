"""preprocess: label, clean and split the collected table by time; fit the feature schema on the train split.

The output keeps raw columns (not encoded ones): the model encodes through `pipelines.features` at training and
serving time alike, and the monitoring reference is readable (a carrier code, not an integer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from itertools import islice

import numpy as np
import pandas as pd

from pipelines.config import FeaturesParams, SourceParams, SplitParams
from pipelines.features import (
    LABEL,
    FeatureError,
    FeatureSchema,
    category_texts,
    check_columns,
    fit_feature_schema,
    make_label,
    time_parts,
)

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class PreparedData:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    schema: FeatureSchema
    # Configured features left out of the schema because the train split gives them nothing to learn from,
    # each with the reason (`constant_features`).
    dropped_features: dict[str, str] = field(default_factory=dict)
    # Valid or test splits too thin for their ROC AUC to mean much (`thin_split_warnings`).
    split_warnings: list[str] = field(default_factory=list)

    def split(self, name: str) -> pd.DataFrame:
        return getattr(self, name)


# What pandas infers for an object column that holds only numbers, booleans and gaps.
_NUMBER_LIKE = ("integer", "floating", "mixed-integer-float", "decimal", "boolean", "empty")
_NUMBER_TYPES = (bool, int, float, Decimal, np.number)


def _check_numeric(frame: pd.DataFrame, names: list[str]) -> None:
    """Refuse a numeric feature that holds text. An object column of numbers, booleans and gaps (Parquet's
    Decimals, Python ints with None) is numbers: `encode` reads it as floats."""
    for name in names:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue
        if pd.api.types.infer_dtype(column, skipna=True) in _NUMBER_LIKE:
            continue
        if pd.api.types.is_datetime64_any_dtype(column) or pd.api.types.is_timedelta64_dtype(column):
            raise FeatureError(f"numeric feature {name!r} (features.numeric) holds {column.dtype} values: only "
                               "source.time_column's calendar parts (features.time_parts) are made from times; "
                               f"put a number derived from {name!r} (e.g. days before the row's time) in the table")
        texts = [value for value in pd.unique(column.dropna()) if not isinstance(value, _NUMBER_TYPES)]
        # The values that are not even numbers written as text come first: they are what to fix.
        unparseable = list(islice((v for v in texts if pd.isna(pd.to_numeric(str(v), errors="coerce"))), 5))
        raise FeatureError(f"numeric feature {name!r} (features.numeric) has dtype {column.dtype} with "
                           f"non-numeric values, e.g. {(unparseable or texts)[:5]}")


def split_by_time(frame: pd.DataFrame, time_column: str, split: SplitParams) -> dict[str, pd.DataFrame]:
    """The last `test_days` days test, the `valid_days` before them validate, the rest train."""
    positions = split_positions(frame[time_column], split)
    return {name: take_rows(frame, list(frame.columns), rows) for name, rows in positions.items()}


def split_positions(stamps: pd.Series, split: SplitParams) -> dict[str, np.ndarray]:
    """The row positions of each split (in table order): `split_by_time` without touching the other columns."""
    last_day = stamps.max().normalize() + timedelta(days=1)
    test_start = last_day - timedelta(days=split.test_days)
    valid_start = test_start - timedelta(days=split.valid_days)
    positions = {
        "train": np.flatnonzero((stamps < valid_start).to_numpy()),
        "valid": np.flatnonzero(((stamps >= valid_start) & (stamps < test_start)).to_numpy()),
        "test": np.flatnonzero((stamps >= test_start).to_numpy()),
    }
    empty = [name for name, rows in positions.items() if not len(rows)]
    if empty:
        raise FeatureError(
            f"time split leaves {empty} empty: the data spans {stamps.min()} .. {stamps.max()}, "
            f"valid starts {valid_start:%Y-%m-%d}, test starts {test_start:%Y-%m-%d} "
            f"(split.valid_days={split.valid_days}, split.test_days={split.test_days}); widen collect.start/end"
        )
    return positions


def take_rows(frame: pd.DataFrame, columns: list[str], rows: np.ndarray,
              extra: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """`frame[columns]` at `rows` (plus `extra` columns already cut), copying each column once.

    `frame.loc[mask][columns].reset_index()` would copy the rows up to three times; at 10M rows a copy of the train
    split is gigabytes. Columns stay separate (no block consolidation, which would copy them again).
    """
    data = {name: frame[name].array.take(rows) for name in columns}
    data.update(extra or {})
    result = pd.DataFrame(data, copy=False)
    result.attrs = dict(frame.attrs)
    return result


def constant_features(train: pd.DataFrame, features: FeaturesParams, time_column: str) -> dict[str, str]:
    """Configured features that cannot split the train split, with why: one value (or none) in every row, or a
    categorical with no value seen `min_category_count` times. They are dropped with a warning, not a failure:
    a constant column is common in a user's table (one store, one year) and the rest of the model is still good."""
    reasons = {}
    for name in features.numeric:
        distinct = train[name].nunique(dropna=True)
        if distinct <= 1:
            reasons[name] = f"numeric feature {name!r} (features.numeric) is {_constant_text(train[name])}"
    for name in features.categorical:
        counts = category_texts(train[name]).value_counts()
        if len(counts) <= 1:
            reasons[name] = f"categorical feature {name!r} (features.categorical) is {_constant_text(train[name])}"
        elif int((counts >= features.min_category_count).sum()) == 0:
            reasons[name] = (f"categorical feature {name!r} (features.categorical) has no value seen "
                             f"features.min_category_count={features.min_category_count} times")
    if len(train):
        parts = time_parts(train[time_column], features.time_parts)
        for part, values in parts.items():
            if len(set(values.tolist())) <= 1:
                reasons[part] = (f"time part {part!r} (features.time_parts) is {values[0]:g} in every row of the "
                                 "train split")
    return reasons


def _constant_text(values: pd.Series) -> str:
    present = values.dropna()
    if present.empty:
        return "missing in every row of the train split"
    return f"{present.tolist()[0]!r} in every row of the train split that has a value"


# A split whose ROC AUC has a standard error above this (Hanley & McNeil, at AUC 0.75) is too thin for its scores
# to choose or compare models: early stopping, the threshold and the gate's comparisons read noise (a 0.02 standard
# error is ~100-150 rows of the rarer class; the flights' test split is ~0.004).
THIN_SPLIT_AUC_SE = 0.02
_TYPICAL_AUC = 0.75


def roc_auc_standard_error(positives: int, negatives: int, auc: float = _TYPICAL_AUC) -> float:
    """Hanley & McNeil (1982)'s standard error of a ROC AUC from `positives` and `negatives` rows."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (
        positives * negatives)
    return float(np.sqrt(variance))


def thin_split_warnings(parts: dict[str, pd.DataFrame], split: SplitParams) -> list[str]:
    """The valid and test splits whose ROC AUC is known only to more than THIN_SPLIT_AUC_SE, each with its rows per
    class and the split days that would hold enough at its own rate (the error shrinks as one over the square root
    of the rows): they train, but what they decide is mostly noise (a table sparse in time, one row a day)."""
    warnings = []
    table_rows = sum(len(part) for part in parts.values())
    for name, key in (("valid", "valid_days"), ("test", "test_days")):
        labels = parts[name][LABEL].to_numpy()
        positives = int(labels.sum())
        negatives = len(labels) - positives
        error = roc_auc_standard_error(positives, negatives)
        if error > THIN_SPLIT_AUC_SE:
            days = getattr(split, key)
            growth = (error / THIN_SPLIT_AUC_SE) ** 2
            enough = int(np.ceil(days * growth))
            # A split that would need most of the table cannot be widened: say so rather than name a length the
            # table does not have (a 3-year daily table was told split.valid_days: 597).
            remedy = (f"at its {len(labels) / days:.3g} rows a day, split.{key}: {enough} would hold enough (or "
                      "widen collect.start/end)") if len(labels) * growth <= table_rows / 2 else (
                f"enough would take ~{int(len(labels) * growth):,} rows, more than half of the table's "
                f"{table_rows:,}: the table is too small for this split to decide; collect more history")
            warnings.append(
                f"the {name} split is thin: {len(labels):,} rows over split.{key}={days} days ({positives:,} "
                f"positive, {negatives:,} negative), so its ROC AUC is known to about ±{error:.3f} (one standard "
                f"error, Hanley-McNeil at AUC {_TYPICAL_AUC}), above {THIN_SPLIT_AUC_SE}: "
                + ("early stopping and the threshold" if name == "valid" else "the gate's comparisons and the slices")
                + f" read mostly noise; {remedy}"
                + ("" if name == "valid" else "; or set gate.max_p_value (e.g. 0.05) so the gate promotes only a "
                   "lead this split can prove"))
    return warnings


def check_both_classes(parts: dict[str, pd.DataFrame], time_column: str) -> None:
    """Every split must hold both labels: a one-class split cannot train, stop early or be scored.

    Raises `FeatureError` naming each degenerate split, its rows, dates and only label, instead of a LightGBM or
    scikit-learn exception from deep inside a later stage.
    """
    problems = []
    for name, part in parts.items():
        classes = sorted(int(value) for value in pd.unique(part[LABEL]))
        if len(classes) < 2:
            problems.append(f"{name} ({len(part):,} rows, {part[time_column].min():%Y-%m-%d} .. "
                            f"{part[time_column].max():%Y-%m-%d}) has only label {classes}")
    if problems:
        raise FeatureError("degenerate split: " + "; ".join(problems) + ". Every split needs both classes: "
                           "check the target (validation's per-period label rate) or widen the window/split days")


def prepare(table: pd.DataFrame, source: SourceParams, features: FeaturesParams, split: SplitParams,
            keep: list[str] | None = None) -> PreparedData:
    """Label, drop unlabelled rows, split by time, fit the schema; `keep` adds columns (e.g. slices) untouched.

    Rows without a target are dropped (source.drop_missing_target) or refused, whatever the target's shape; the
    label is computed before any cast so a missing target never meets one. Features constant on the train split
    are dropped from the schema with a warning (`PreparedData.dropped_features` says which and why).
    """
    extra = [name for name in (keep or []) if name not in features.raw_columns and name != source.time_column]
    check_columns(table, [*features.raw_columns, source.time_column, source.target, *extra])
    _check_numeric(table, features.numeric)
    label = make_label(table, source)
    unlabelled = label.isna()
    labelled = np.flatnonzero(~unlabelled.to_numpy())
    if unlabelled.any():
        if not source.drop_missing_target:
            raise FeatureError(f"{int(unlabelled.sum()):,} of {len(table):,} rows have no {source.target!r} "
                               "(source.target) and source.drop_missing_target is false")
        log.info("dropping %d of %d rows without a target (%s)", int(unlabelled.sum()), len(table), source.target)
    # Each split is cut from the table once, only the columns it keeps: no labelled copy of the whole table first.
    columns = [name for name in dict.fromkeys([source.time_column, *features.raw_columns, *extra]) if name != LABEL]
    labels = label.to_numpy()
    positions = split_positions(table[source.time_column].iloc[labelled], split)
    parts = {name: take_rows(table, columns, labelled[rows], {LABEL: labels[labelled[rows]].astype("int8")})
             for name, rows in positions.items()}
    check_both_classes(parts, source.time_column)
    # A numeric feature held as booleans or objects is 1/0/NaN floats in the splits, as the model reads it: the
    # monitoring reference and its reports then compare the numbers the service's log holds.
    as_floats = [name for name in features.numeric
                 if pd.api.types.is_bool_dtype(table[name]) or not pd.api.types.is_numeric_dtype(table[name])]
    for part in parts.values():
        for name in as_floats:
            part[name] = np.asarray(part[name], dtype=float)
    dropped = constant_features(parts["train"], features, source.time_column)
    for reason in dropped.values():
        log.warning("dropping feature: %s", reason)
    kept = features.model_copy(update={
        "categorical": [name for name in features.categorical if name not in dropped],
        "numeric": [name for name in features.numeric if name not in dropped],
        "time_parts": [name for name in features.time_parts if name not in dropped]})
    if not kept.raw_columns and not kept.time_parts:
        raise FeatureError("every configured feature is constant on the train split: " + "; ".join(dropped.values()))
    schema = fit_feature_schema(parts["train"], kept, source.time_column)
    for name, part in parts.items():
        log.info("%s: %d rows, %s .. %s, positive rate %.3f", name, len(part), part[source.time_column].min(),
                 part[source.time_column].max(), part[LABEL].mean())
    thin = thin_split_warnings(parts, split)
    for warning in thin:
        log.warning("%s", warning)
    return PreparedData(schema=schema, dropped_features=dropped, split_warnings=thin, **parts)

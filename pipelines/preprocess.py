"""preprocess: label, clean and split the collected table by time; fit the feature schema on the train split.

The output keeps raw columns (not encoded ones): the model encodes through `pipelines.features` at training and
serving time alike, and the monitoring reference is readable (a carrier code, not an integer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from pipelines.config import FeaturesParams, SourceParams, SplitParams
from pipelines.features import (
    LABEL,
    FeatureError,
    FeatureSchema,
    check_columns,
    fit_feature_schema,
    make_label,
)

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class PreparedData:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    schema: FeatureSchema

    def split(self, name: str) -> pd.DataFrame:
        return getattr(self, name)


def _check_numeric(frame: pd.DataFrame, names: list[str]) -> None:
    for name in names:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue
        coerced = pd.to_numeric(column, errors="coerce")
        bad = column[coerced.isna() & column.notna()]
        raise FeatureError(f"numeric feature {name!r} has dtype {column.dtype} with non-numeric values, "
                           f"e.g. {bad.head(5).tolist()}")


def split_by_time(frame: pd.DataFrame, time_column: str, split: SplitParams) -> dict[str, pd.DataFrame]:
    """The last `test_days` days test, the `valid_days` before them validate, the rest train."""
    last_day = frame[time_column].max().normalize() + timedelta(days=1)
    test_start = last_day - timedelta(days=split.test_days)
    valid_start = test_start - timedelta(days=split.valid_days)
    stamps = frame[time_column]
    parts = {
        "train": frame.loc[stamps < valid_start],
        "valid": frame.loc[(stamps >= valid_start) & (stamps < test_start)],
        "test": frame.loc[stamps >= test_start],
    }
    empty = [name for name, part in parts.items() if part.empty]
    if empty:
        raise FeatureError(
            f"time split leaves {empty} empty: the data spans {stamps.min()} .. {stamps.max()}, "
            f"valid starts {valid_start:%Y-%m-%d}, test starts {test_start:%Y-%m-%d} "
            f"(split.valid_days={split.valid_days}, split.test_days={split.test_days}); widen collect.start/end"
        )
    return {name: part.reset_index(drop=True) for name, part in parts.items()}


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
    """Label, drop unlabelled rows, split by time, fit the schema; `keep` adds columns (e.g. slices) untouched."""
    extra = [name for name in (keep or []) if name not in features.raw_columns and name != source.time_column]
    check_columns(table, [*features.raw_columns, source.time_column, source.target, *extra])
    _check_numeric(table, features.numeric)
    frame = table.assign(**{LABEL: make_label(table, source)})
    unlabelled = table[source.target].isna()
    if unlabelled.any():
        if not source.drop_missing_target:
            raise FeatureError(f"{int(unlabelled.sum())} rows have no {source.target!r} and "
                               "source.drop_missing_target is false")
        log.info("dropping %d of %d rows without a target (%s)", int(unlabelled.sum()), len(table), source.target)
        frame = frame.loc[~unlabelled]
    columns = list(dict.fromkeys([source.time_column, *features.raw_columns, *extra, LABEL]))
    parts = split_by_time(frame[columns], source.time_column, split)
    check_both_classes(parts, source.time_column)
    schema = fit_feature_schema(parts["train"], features, source.time_column)
    for name, part in parts.items():
        log.info("%s: %d rows, %s .. %s, positive rate %.3f", name, len(part), part[source.time_column].min(),
                 part[source.time_column].max(), part[LABEL].mean())
    return PreparedData(schema=schema, **parts)

"""The prediction log and the delivered outcomes as typed frames, one row per request.

The records come from `pipelines.monitor.prediction_log`'s reader (`PredictionRecord`, validated line by line);
what can only be checked against the features in params (an input missing, a number or time that does not parse)
is checked here, by the one typing function of both readers (`type_rows`, into the frame of
`pipelines.contracts.PredictionFrameSchema`), counted by reason beside the reader's own skips, and never raised: a
wrong-schema row must not poison a window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import FeaturesParams
from pipelines.contracts import (
    ACTUAL,
    LOGGED_AT,
    MODEL_TAG,
    PREDICTED_LABEL,
    PROBABILITY,
    REQUEST_ID,
    THRESHOLD,
    OutcomeRecord,
    PredictionFrameSchema,
    PredictionRecord,
)
from pipelines.monitor.prediction_log import LogRead


@dataclass
class PredictionFrame:
    """The log's good predictions as a typed frame (`PredictionFrameSchema`), and every skipped line counted by
    reason."""

    frame: pd.DataFrame
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return int(sum(self.skipped.values()))


def as_category_strings(values: pd.Series) -> pd.Series:
    """Categories as strings, missing as None: the form the reference and the live window share, and the one the
    model's vocabulary uses (`category_text`: a logged 7 and a reference 7.0 are one category)."""
    from pipelines.features import category_texts

    return category_texts(values)


@dataclass(frozen=True)
class TypedRows:
    """`type_rows`' answer: every row typed, which to keep, and why the others go."""

    frame: pd.DataFrame
    keep: np.ndarray
    skipped: Counter


def type_rows(schema: PredictionFrameSchema, request_ids: Sequence[Any], logged_at: Sequence[Any],
              model_tags: Sequence[Any], inputs: Callable[[str], pd.Series], probability: Any, label: Any,
              threshold: Any) -> TypedRows:
    """Raw log rows typed into the frame's columns: the one typing function of both readers (this module's line
    reader and `pipelines.monitor.columnar`).

    The record fields come as sequences, the inputs by name (a Series; all None where no record has the input).
    A time that does not parse (`bad_time`) or a number that does not (`bad_number_<name>`, counted only on rows
    whose time parsed) drops the row: `keep` says which rows stay, `skipped` counts the others by reason.
    """
    skipped: Counter = Counter()
    stamps = pd.to_datetime(inputs(schema.time_column), utc=True, errors="coerce", format="ISO8601")
    keep = ~stamps.isna().to_numpy()
    skipped["bad_time"] += int((~keep).sum())
    frame = pd.DataFrame({REQUEST_ID: pd.Series(request_ids, index=stamps.index, dtype=object),
                          LOGGED_AT: pd.Series(logged_at, index=stamps.index, dtype=object),
                          MODEL_TAG: pd.Series(model_tags, index=stamps.index, dtype=object),
                          schema.time_column: stamps})
    for name in schema.numeric:
        given = inputs(name)
        values = pd.to_numeric(given, errors="coerce")
        bad = (values.isna() & given.notna()).to_numpy()
        skipped[f"bad_number_{name}"] += int((bad & keep).sum())
        keep &= ~bad
        frame[name] = values.astype(float)
    for name in schema.categorical:
        frame[name] = as_category_strings(inputs(name))
    frame[PROBABILITY] = np.asarray(probability, dtype=float)
    frame[PREDICTED_LABEL] = np.asarray(label, dtype=np.int64)
    frame[THRESHOLD] = np.asarray(threshold, dtype=float)
    return TypedRows(frame, keep, skipped)


def predictions_frame(log: LogRead[PredictionRecord], features: FeaturesParams, time_column: str) -> PredictionFrame:
    """Flatten the log records: one row per prediction, the raw inputs as columns, typed like the reference
    (`type_rows`, as the columnar reader types them).

    A record whose inputs lack a feature or the time column, or whose time or numbers do not parse, is skipped
    and counted here. A request logged twice (a retried call) keeps its latest record by log time, then write order.
    """
    schema = PredictionFrameSchema.of(features, time_column)
    if not log.records:
        return PredictionFrame(schema.empty(), Counter(log.skipped), log.examples)
    records = log.records
    inputs = pd.DataFrame([record.inputs for record in records])
    skipped = Counter(log.skipped)
    for name in schema.inputs:
        if name not in inputs.columns:
            skipped[f"inputs_missing_{name}"] += len(records)
            return PredictionFrame(schema.empty(), skipped, log.examples)
    typed = type_rows(
        schema, [r.request_id for r in records], [r.ts for r in records], [r.model_tag for r in records],
        inputs.__getitem__, probability=np.fromiter((r.probability for r in records), float, len(records)),
        label=np.fromiter((r.label for r in records), np.int64, len(records)),
        threshold=np.fromiter((r.threshold for r in records), float, len(records)))
    skipped.update(typed.skipped)
    frame, keep = typed.frame, typed.keep
    logged = pd.to_datetime(frame[LOGGED_AT], utc=True, errors="coerce", format="ISO8601")
    order = logged.sort_values(kind="stable", na_position="first").index
    frame = frame.loc[order[keep[order]]].drop_duplicates(REQUEST_ID, keep="last")
    skipped = Counter({k: v for k, v in skipped.items() if v})
    return PredictionFrame(frame.sort_index().reset_index(drop=True), skipped, log.examples)


def outcomes_frame(log: LogRead[OutcomeRecord]) -> pd.DataFrame:
    """Outcomes by request id; a re-delivered outcome replaces the earlier one (file order)."""
    frame = pd.DataFrame({REQUEST_ID: pd.Series([r.request_id for r in log.records], dtype=object),
                          ACTUAL: pd.Series([r.actual for r in log.records], dtype="int8")})
    return frame.drop_duplicates(REQUEST_ID, keep="last").reset_index(drop=True)

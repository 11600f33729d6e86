"""replay: send a later period of the real table (flights by default) to the running service, in time order,
then their outcomes.

This is how the monitoring loop is exercised without production traffic: the months after the training window
arrive as requests at a configured rate, and the actual outcomes (was the arrival > 15 min late?) are delivered
afterwards into `paths.outcomes_dir`, `label_delay_hours` of scheduled time behind the predictions — the way ground
truth arrives in production. Cancelled or diverted flights never get an outcome (they have no arrival delay).

The pure parts (request bodies, row keys, outcomes) are separate from the HTTP loop so they are tested alone.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines import io
from pipelines.config import REQUEST_ID_MAX, Params
from pipelines.contracts import OutcomeRecord

log = logging.getLogger(__name__)


class ReplayError(RuntimeError):
    """The service could not be reached or refused the replayed requests; the message says which and why."""


def row_keys(frame: pd.DataFrame, time_column: str, key_columns: list[str]) -> pd.Series:
    """A stable request id per row (same row, same id on every replay): its time, then its `source.key_columns`
    (for flights: carrier and flight number), the outcome's join key in the monitoring.

    A table without key columns falls back to the time and the row's position in the period. An id longer than
    the service takes (`REQUEST_ID_MAX`) is replaced by its SHA-256 hex digest, still one id per key.
    """
    keys = frame[time_column].dt.strftime("%Y%m%dT%H%M")
    for name in key_columns:
        if name != time_column:
            keys = keys + "-" + frame[name].astype(str)
    if not key_columns:
        keys = keys + "-" + pd.Series(range(len(frame)), index=frame.index).astype(str)
    too_long = keys.str.len() > REQUEST_ID_MAX
    if too_long.any():
        keys = keys.where(~too_long, keys[too_long].map(lambda key: hashlib.sha256(key.encode()).hexdigest()))
    # Two rows sharing a key would overwrite each other's outcome: make the rare duplicate unique.
    duplicate = keys.groupby(keys).cumcount()
    return keys.where(duplicate == 0, keys + "-" + duplicate.astype(str))


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    return value


def request_records(frame: pd.DataFrame, columns: list[str], time_column: str, keys: pd.Series) -> list[dict]:
    """Rows as the service's request objects: the raw fields, the time as ISO UTC, and the client request id."""
    records = []
    times = frame[time_column].map(lambda t: t.isoformat())
    values = frame[columns].astype(object).to_numpy()
    for row, stamp, key in zip(values, times, keys, strict=True):
        record = {name: _json_value(value) for name, value in zip(columns, row, strict=True)}
        record[time_column] = stamp
        record["request_id"] = key
        records.append(record)
    return records


def outcome_labels(frame: pd.DataFrame, params: Params) -> pd.Series:
    """The actual label per row (the training label definition); NaN where the flight has no outcome."""
    from pipelines.features import make_label

    return make_label(frame, params.source, check=False)


@dataclass
class ReplayResult:
    sent: int
    predicted: int
    outcomes: int
    no_outcome: int
    seconds: float
    outcomes_file: str

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _batches(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(start + size, total)


def _post(client: Any, url: str, body: dict[str, Any]) -> dict[str, Any]:
    import httpx

    try:
        response = client.post(url, json=body)
    except httpx.ConnectError as error:
        raise ReplayError(f"the service at {url} is unreachable ({error}); start it first "
                          "(bentoml serve) and check --url") from None
    except httpx.TimeoutException:
        raise ReplayError(f"the service at {url} did not answer within replay.timeout_s") from None
    if response.status_code >= 400:
        kind = "rejected the request" if response.status_code < 500 else "failed"
        raise ReplayError(f"the service at {url} {kind}: HTTP {response.status_code}: {response.text[:500]}")
    try:
        return response.json()
    except ValueError:
        raise ReplayError(f"the service at {url} answered HTTP {response.status_code} with non-JSON: "
                          f"{response.text[:200]!r}") from None


class _OutcomeWriter:
    """Appends outcomes as JSONL; each line flushed, so a reader never sees outcomes before their predictions."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.path = directory / io.outcome_log_name(stamp, os.getpid())
        self.handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (held for the replay, closed by close())
        self.count = 0

    def write(self, keys: list[str], actuals: list[int]) -> None:
        delivered = datetime.now(UTC).isoformat()
        for key, actual in zip(keys, actuals, strict=True):
            record = OutcomeRecord(request_id=key, actual=int(actual), delivered_at=delivered)
            self.handle.write(record.model_dump_json() + "\n")
        self.handle.flush()
        self.count += len(keys)

    def close(self) -> None:
        self.handle.close()


def replay(frame: pd.DataFrame, params: Params, url: str, sleep: Callable[[float], None] = time.sleep,
           client: Any = None) -> ReplayResult:
    """Send `frame` (collected, time-ordered) to `url` in batches at `replay.rate` rows/s, outcomes afterwards.

    After each batch, outcomes of earlier flights whose scheduled time is `label_delay_hours` behind the newest
    predicted flight are delivered; the rest are delivered at the end. An outcome is never written before its
    prediction was answered.
    """
    import httpx

    settings, time_column = params.replay, params.source.time_column
    plural = params.project.entity_plural  # the batch's key: {"flights": [...]}, {"stops": [...]}
    frame = frame.sort_values(time_column, kind="stable").reset_index(drop=True)
    keys = row_keys(frame, time_column, params.source.key_columns)
    records = request_records(frame, params.features.raw_columns, time_column, keys)
    labels = outcome_labels(frame, params)
    delay = pd.Timedelta(hours=settings.label_delay_hours)
    endpoint = url.rstrip("/") + "/predict_batch"
    writer = _OutcomeWriter(params.paths.outcomes_dir)
    owns_client = client is None
    client = client or httpx.Client(timeout=settings.timeout_s)
    started = time.monotonic()
    predicted = delivered = 0
    try:
        for first, last in _batches(len(records), settings.batch_size):
            answer = _post(client, endpoint, {plural: records[first:last]})
            predictions = answer.get("predictions") if isinstance(answer, dict) else None
            if not isinstance(predictions, list) or len(predictions) != last - first:
                raise ReplayError(f"the service at {endpoint} answered {last - first} {plural} with "
                                  f"{len(predictions) if isinstance(predictions, list) else 'no'} predictions")
            predicted += len(predictions)
            # Outcomes now known: flights scheduled label_delay before the newest answered one.
            horizon = frame[time_column].iloc[last - 1] - delay
            due = delivered + int((frame[time_column].iloc[delivered:last] <= horizon).sum())
            delivered = _deliver(writer, keys, labels, delivered, due)
            behind = last / settings.rate - (time.monotonic() - started)
            if behind > 0:
                sleep(behind)
        delivered = _deliver(writer, keys, labels, delivered, len(records))
    finally:
        writer.close()
        if owns_client:
            client.close()
    result = ReplayResult(sent=len(records), predicted=predicted, outcomes=writer.count,
                          no_outcome=int(labels.isna().sum()), seconds=round(time.monotonic() - started, 2),
                          outcomes_file=str(writer.path))
    log.info("replayed %d %s to %s in %.1f s; %d outcomes delivered, %d without outcome",
             result.sent, plural, url, result.seconds, result.outcomes, result.no_outcome)
    return result


def _deliver(writer: _OutcomeWriter, keys: pd.Series, labels: pd.Series, start: int, stop: int) -> int:
    if stop > start:
        chunk = labels.iloc[start:stop]
        known = chunk.notna().to_numpy()
        writer.write(keys.iloc[start:stop][known].tolist(), chunk[known].astype(int).tolist())
    return stop


def collect_replay(params: Params) -> pd.DataFrame:
    """The replay period, read and joined exactly like the training data (`pipelines.data.collect`)."""
    from pipelines.config import CollectParams
    from pipelines.data.collect import collect

    window = CollectParams(start=params.replay.start, end=params.replay.end)
    return collect(params.source, window, section="replay")


def run_replay(params: Params, url: str) -> dict[str, Any]:
    """The CLI's entry point: collect the replay period, replay it against `url`."""
    return replay(collect_replay(params), params, url).to_dict()

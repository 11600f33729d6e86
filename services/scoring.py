"""The service's model half, free of HTTP: which champion is loaded, how validated flights become answers.

Kept apart from `services/service.py` so it can be tested on a tiny trained model without a server.
`score` builds features with `pipelines.features.encode` (the function training used: parity by construction)
and predicts from the NumPy matrix, never a one-row DataFrame (~20 us instead of ~1 ms).

Hot reload: `ChampionWatcher.check` compares the champion pointer's stat with the last one it saw; on a
change it
loads the new model (off the event loop) and replaces `current` in one assignment. A request reads `current`
once
and uses that model for features, prediction, threshold and tag, so a swap between requests drops nothing.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.features import encode, records_to_columns
from pipelines.prediction_log import PredictionLog, prediction_record, utc_now_iso
from pipelines.train import TrainedModel

log = logging.getLogger(__name__)


class IncompatibleModel(RuntimeError):
    """A model whose raw inputs the service's request schema does not carry."""


@dataclass(frozen=True)
class LoadedModel:
    tag: str
    model: TrainedModel
    store_metadata: dict[str, Any] = field(default_factory=dict)
    loaded_at: str = field(default_factory=utc_now_iso)


def load_tagged(tag: str, request_fields: Sequence[str], time_column: str) -> LoadedModel:
    """Load a model from the BentoML store and refuse one the request schema cannot feed."""
    import bentoml

    stored = bentoml.models.get(tag)
    model = TrainedModel.load(Path(stored.path))
    missing = [name for name in model.schema.raw_columns if name not in request_fields]
    if missing or model.schema.time_column != time_column:
        raise IncompatibleModel(
            f"model {tag} needs raw fields {missing} / time column {model.schema.time_column!r} that the "
            f"service's request schema (params.yaml features) does not carry")
    return LoadedModel(tag=str(stored.tag), model=model, store_metadata=dict(stored.info.metadata))


class ChampionWatcher:
    """Holds the loaded champion; follows the registry's pointer file when there is one."""

    def __init__(self, pointer: Path | None, request_fields: Sequence[str], time_column: str,
                 fixed_tag: str | None = None) -> None:
        self.pointer = pointer
        self.request_fields = list(request_fields)
        self.time_column = time_column
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self._seen: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        if fixed_tag is not None:
            self.current = load_tagged(fixed_tag, self.request_fields, time_column)

    def check(self) -> bool:
        """Load the pointer's champion if the pointer changed since the last check; True when swapped."""
        if self.pointer is None:
            return False
        with self._lock:  # one loader at a time; requests never take this lock
            try:
                stat = self.pointer.stat()
            except FileNotFoundError:
                return False
            seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if seen == self._seen:
                return False
            from pipelines.registry import champion_tag

            try:
                tag = champion_tag(self.pointer.parent)
                if tag is None or (self.current is not None and self.current.tag == tag):
                    self._seen = seen
                    return False
                loaded = load_tagged(tag, self.request_fields, self.time_column)
            except Exception as error:  # keep serving the old champion; say why in /metadata and the log
                self.last_error = f"{type(error).__name__}: {error}"
                log.exception("could not load the new champion; still serving %s",
                              self.current.tag if self.current else None)
                self._seen = seen
                return False
            previous = self.current.tag if self.current else None
            self.current = loaded
            self._seen = seen
            self.last_error = None
            log.info("champion %s -> %s", previous, loaded.tag)
            return True


def _utc_naive(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is None else stamp.astimezone(UTC).replace(tzinfo=None)


def score(loaded: LoadedModel, rows: Sequence[Mapping[str, Any]], time_column: str,
          prediction_log: PredictionLog | None) -> list[dict[str, Any]]:
    """Validated request rows -> one answer dict per row (request_id, probability, label, unknown_categories).

    The rows are logged (one write for the whole request) before the answers are returned.
    """
    model = loaded.model
    schema = model.schema
    times = [_utc_naive(row[time_column]) for row in rows]
    columns = records_to_columns(rows, schema.raw_columns)
    matrix = encode(columns, times, schema)
    # One thread: requests already run concurrently, and OpenMP start-up costs more than a small matrix.
    probabilities = model.booster.predict(matrix, num_threads=1)
    threshold = model.threshold
    unknown = _unknown_categories(matrix, columns, list(schema.categorical))
    stamp = utc_now_iso()
    answers, records = [], []
    for i, row in enumerate(rows):
        request_id = row.get("request_id") or uuid.uuid4().hex
        probability = float(probabilities[i])
        label = int(probability >= threshold)
        answers.append({"request_id": request_id, "probability": probability, "label": label,
                        "unknown_categories": unknown[i]})
        if prediction_log is not None:
            inputs = {name: value for name, value in row.items() if name != "request_id"}
            inputs[time_column] = times[i].replace(tzinfo=UTC).isoformat()
            records.append(prediction_record(request_id=request_id, ts=stamp, model_tag=loaded.tag,
                                             inputs=inputs, probability=probability, label=label,
                                             threshold=threshold))
    if prediction_log is not None:
        prediction_log.write(records)
    return answers


def _unknown_categories(matrix: np.ndarray, columns: Mapping[str, list[Any]],
                        names: list[str]) -> list[list[str]]:
    """Per row, the categorical fields that were given a value the vocabulary lacks (encoded as NaN)."""
    flagged: list[list[str]] = [[] for _ in range(matrix.shape[0])]
    if not names:
        return flagged
    missing = np.isnan(matrix[:, : len(names)])
    for i, j in zip(*np.nonzero(missing), strict=True):
        value = columns[names[j]][i]
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            flagged[i].append(names[j])
    return flagged

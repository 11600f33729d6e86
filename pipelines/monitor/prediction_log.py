"""The service's prediction log: append-only JSONL files that the monitoring flow reads.

Why JSONL with one `os.write` per request rather than BentoML's monitoring API or Parquet: the record must be on
disk (in the kernel's page cache) before the answer leaves the service, so a `kill -9` loses nothing that a caller
already saw. One `write(2)` on an `O_APPEND` descriptor puts the whole request's lines at the end of the file in one
piece (no interleaving with another process, no half-flushed Python buffer), costs a few microseconds, and needs
no background thread. BentoML's monitoring API buffers records in a logger and Parquet needs whole row groups,
so both can lose the tail on a crash. (Surviving a power loss would need an fsync per request: ~ms, not worth it.)

One record per line, exactly a `PredictionRecord`:
`{"request_id", "ts" (ISO UTC), "model_tag", "inputs" {raw fields, time as ISO string}, "probability", "label",
"threshold", "served" (the model itself, "full", or the variant that answered for it)}`. Files are
`predictions-YYYYMMDDTHH-<pid>[.<n>].jsonl`: one writer per process (no locks), a new file each UTC hour (if
`rotate_hourly`) and whenever a file reaches `rotate_bytes` (then `.1`, `.2`, ...).

Callers are kept apart. Each record's `request_id` is the caller's id namespaced by who sent it,
`<caller>/<request_id>` (`key:<name>` for an API key, else `peer:<address>`): a caller reusing another's id writes a
record of its own rather than replacing the other's, and an outcome is joined on the same namespaced id. Each
caller may add `caller_budget_bytes` per UTC hour (per writer); past it the records are not written, and what was
left out is counted per caller and hour in `over-budget-<pid>.json` beside the log (`OverBudgetLog`, read by
`read_over_budget`), so one caller sending junk cannot push the others' rows out of the size cap below.

The records are `pipelines.contracts`' `PredictionRecord` and `OutcomeRecord`: the writer's `prediction_record`
spells the same fields as `PredictionRecord` (tested), and `read_prediction_log` (used by the monitor and the
tests) validates each line against it. The writer builds plain
dicts rather than models because it runs on the request path (a model per row costs more than the write itself).
The outcomes delivered later for logged predictions (`OutcomeRecord`) are read by the same reader.

Bounded disk (`max_total_bytes`): after each rotation, and after every tenth of the cap written, a writer deletes
the oldest closed files (earlier files of a live writer, any file of a dead one; never a live writer's current
file) until the directory fits, and records each dropped file with its row count and time span in `dropped.json`
beside them (`read_dropped`), so monitoring knows which traffic it will not see. The trim runs in a background
thread (counting a 100 MB file's rows takes tens of ms) under a file lock shared by all writers.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from pipelines import io
from pipelines.contracts import (
    DroppedFile,
    DroppedLog,
    OutcomeRecord,
    OverBudgetCount,
    OverBudgetLog,
    PredictionRecord,
    RefusalRecord,
)

MAX_EXAMPLES = 10  # skipped lines kept as examples per read
MAX_OVER_BUDGET_ENTRIES = 10_000  # (hour, caller) counts a writer keeps; a crowd of callers cannot grow it further
CALLER_SEPARATOR = "/"  # between the caller and its request id; never in a caller's identity
log = logging.getLogger(__name__)
# Naive datetimes are UTC and written like `datetime.isoformat()` of an aware one: 2013-06-01T10:00:00+00:00.
_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE | orjson.OPT_NAIVE_UTC


_BETWEEN_RECORDS = b'},{"request_id":'
_LIST_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC


def jsonl(records: Sequence[Mapping[str, Any]]) -> bytes:
    """The records as JSONL, each line ending in a newline.

    One `orjson.dumps` of the whole list, its separators between records turned into newlines: ~10x faster than a
    call per record (orjson's per-call cost dominated: ~15 us per 22-field record against ~1.4 us in a list, on a
    loaded 2-core machine). A record begins with `{"request_id":` (`prediction_record`'s first key), a sequence no
    JSON string can hold (its quotes would be escaped); the line count is checked, and anything else is dumped
    record by record.
    """
    data = orjson.dumps(records, option=_LIST_OPTIONS)
    # orjson writes no line breaks of its own: counting the separators is counting the lines (and is ~2x cheaper).
    if data.count(_BETWEEN_RECORDS) == len(records) - 1 and data.startswith(b'[{"request_id":'):
        return data[1:-1].replace(_BETWEEN_RECORDS, b'}\n{"request_id":') + b"\n"
    return b"".join(orjson.dumps(record, option=_DUMP_OPTIONS) for record in records)


def logged_id(caller: str, request_id: str) -> str:
    """The id a prediction is logged (and its outcome joined) under: the caller's id in the caller's namespace."""
    return f"{caller}{CALLER_SEPARATOR}{request_id}" if caller else request_id


def prediction_record(*, request_id: str, ts: str, model_tag: str, inputs: Mapping[str, Any],
                      probability: float, label: int, threshold: float, served: str = "full") -> dict[str, Any]:
    """One log line as a dict with exactly `PredictionRecord`'s fields (the writer's hot path skips validation)."""
    return prediction_records([request_id], ts, model_tag, [inputs], [probability], [label], threshold, served)[0]


def prediction_records(request_ids: Sequence[str], ts: str, model_tag: str, inputs: Sequence[Mapping[str, Any]],
                       probabilities: Sequence[float], labels: Sequence[int],
                       threshold: float, served: str = "full") -> list[dict[str, Any]]:
    """`prediction_record` for the rows of one request (one time stamp, model, variant and threshold), in one
    comprehension: a keyword call per row cost ~1 ms per 1,000 rows."""
    return [{"request_id": request_id, "ts": ts, "model_tag": model_tag, "inputs": row,
             "probability": probability, "label": label, "threshold": threshold, "served": served}
            for request_id, row, probability, label in zip(request_ids, inputs, probabilities, labels, strict=True)]


class PredictionLog:
    """Appends records to the current file of this process; rotation is checked on every write."""

    def __init__(self, directory: Path, *, rotate_hourly: bool, rotate_bytes: int,
                 max_total_bytes: int | None = None, clock: Callable[[], float] = time.time,
                 background_trim: bool = True, caller_budget_bytes: int | None = None) -> None:
        self.directory = Path(directory)
        self.rotate_hourly = rotate_hourly
        self.rotate_bytes = rotate_bytes
        self.max_total_bytes = max_total_bytes
        self.caller_budget_bytes = caller_budget_bytes
        self._spent: dict[str, int] = {}       # bytes written per caller in `_budget_hour`
        self._budget_hour: int | None = None
        self._over: dict[tuple[str, str], list[int]] = {}  # (hour, caller) -> [rows, bytes] left out
        self._over_lock = threading.Lock()
        self._over_timer: threading.Timer | None = None
        self._clock = clock
        self._background_trim = background_trim
        self._written_since_trim = 0
        self._trimming = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._hour: int | None = None
        self._pid: int | None = None
        self._size = 0

    @property
    def path(self) -> Path | None:
        return self._path

    def write(self, records: Sequence[Mapping[str, Any]], caller: str = "") -> None:
        """Append the records with one write; returns once the kernel holds them (a crash of this process after
        that loses nothing). Records past `caller`'s budget for this hour are left out and counted."""
        self.write_groups({caller: records})

    def write_groups(self, groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """`write` for the records of several callers (a merged adaptive batch), still one write."""
        parts = []
        for caller, records in groups.items():
            if not records:
                continue
            data = jsonl(records)
            if self._within_budget(caller, len(data), len(records)):
                parts.append(data)
        if not parts:
            return
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        fd = self._file_for(len(data))
        view = memoryview(data)
        while view:  # a regular file takes it all at once; the loop only guards against a short write
            written = os.write(fd, view)
            view = view[written:]
        self._size += len(data)
        if self.max_total_bytes is not None:
            self._written_since_trim += len(data)
            if self._written_since_trim >= self.max_total_bytes // 10:
                self._trim()

    def _trim(self) -> None:
        """Bring the directory under `max_total_bytes` (off the request path unless `background_trim` is off)."""
        self._written_since_trim = 0
        if self.max_total_bytes is None or not self._trimming.acquire(blocking=False):
            return  # a trim is already running in this process; it sees this write too
        keep = {self._path} if self._path is not None else set()

        def run() -> None:
            try:
                trim_prediction_log(self.directory, self.max_total_bytes, keep=keep)
            except Exception:  # a failed trim must not fail requests; the next rotation retries
                log.exception("could not trim the prediction log in %s", self.directory)
            finally:
                self._trimming.release()

        if self._background_trim:
            threading.Thread(target=run, name="prediction-log-trim", daemon=True).start()
        else:
            run()

    def _within_budget(self, caller: str, size: int, rows: int) -> bool:
        """Whether `caller` may add `size` more bytes this UTC hour; if not, the rows are counted as left out."""
        if self.caller_budget_bytes is None or not caller:
            return True
        hour = int(self._clock() // 3600)
        if hour != self._budget_hour:
            self._budget_hour, self._spent = hour, {}
        spent = self._spent.get(caller, 0)
        if spent + size <= self.caller_budget_bytes:
            self._spent[caller] = spent + size
            return True
        stamp = datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%dT%H")
        with self._over_lock:
            counted = self._over.setdefault((stamp, caller), [0, 0])
            if counted == [0, 0]:
                log.warning("caller %s is over serve.prediction_log.caller_bytes_per_hour in the hour %s: its "
                            "predictions are answered but not logged until the hour ends", caller, stamp)
                while len(self._over) > MAX_OVER_BUDGET_ENTRIES:  # the oldest hours go first
                    del self._over[min(self._over)]
            counted[0] += rows
            counted[1] += size
            if self._over_timer is None:  # saved within a second, off the request path, however many requests
                self._over_timer = threading.Timer(1.0, self._save_over_budget)
                self._over_timer.daemon = True
                self._over_timer.start()
        return False

    def _save_over_budget(self) -> None:
        """This writer's left-out counts, rewritten atomically (a second after the first new count, and at close)."""
        with self._over_lock:
            self._over_timer = None
            counts = OverBudgetLog(counts=[OverBudgetCount(hour=hour, caller=caller, rows=rows, bytes=size)
                                           for (hour, caller), (rows, size) in sorted(self._over.items())])
        try:
            counts.save(self.directory, os.getpid())
        except OSError:  # counting must not fail a request; the next count saves again
            log.exception("could not write the over-budget counts in %s", self.directory)

    def close(self) -> None:
        if self._over_timer is not None:
            self._over_timer.cancel()
        if self._over:
            self._save_over_budget()
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self._path = self._hour = None

    def _file_for(self, incoming: int) -> int:
        now = self._clock()
        hour = int(now // 3600) if self.rotate_hourly else 0
        pid = os.getpid()  # a forked worker must not share its parent's file
        if (self._fd is None or pid != self._pid or hour != self._hour
                or (self._size and self._size + incoming > self.rotate_bytes)):
            self._open(now, hour, pid, incoming)
        assert self._fd is not None
        return self._fd

    def _open(self, now: float, hour: int, pid: int, incoming: int) -> None:
        if self._fd is not None and pid == self._pid:
            os.close(self._fd)
        self._fd = None  # closed (or a forked parent's): never closed or written again from here
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H")
        # The new file is always the last of this pid and hour in write order: after the highest sequence there is
        # (kept by a restarted container that reuses pids), never in a gap the size cap's trim left. A trim keeps
        # each live writer's last file, so a reused lower name would be taken for a closed file and deleted.
        taken = [_file_order(path)[2] for path in self.directory.glob(io.prediction_log_name(stamp, pid, "*"))
                 if _file_order(path)[1] == pid]
        sequence = max(taken, default=0)
        while True:  # skip files this pid already filled
            suffix = f".{sequence}" if sequence else ""
            path = self.directory / io.prediction_log_name(stamp, pid, suffix)
            try:  # no exists() then stat(): another worker's trim may delete a closed file in between
                size = path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size == 0 or size + incoming <= self.rotate_bytes:
                break
            sequence += 1
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._path, self._hour, self._pid, self._size = path, hour, pid, size
        if self.max_total_bytes is not None:
            self._trim()  # the file just closed may now be deleted


# A refused row's scheduled time is kept as sent, cut to this many characters (a bounded record whatever was sent).
MAX_SCHEDULED_CHARS = 40


def refusal_record(*, ts: str, route: str, fields: Sequence[str], scheduled: Any) -> dict[str, Any]:
    """One refused row as a dict with exactly `RefusalRecord`'s fields: field names only, never the values sent
    (the scheduled time excepted, as a text, cut short: it places the row in its window)."""
    return {"ts": ts, "route": route, "fields": [str(name)[:60] for name in fields][:20],
            "scheduled": scheduled[:MAX_SCHEDULED_CHARS] if isinstance(scheduled, str) else None}


class RefusalLog:
    """The rows the service refused, one `RefusalRecord` a line, in `REFUSAL_LOG_DIR` beside the prediction log.

    The prediction log's own writer in its own folder: one `write` per request, hourly files, the same size cap
    (`max_total_bytes`, counted for this folder apart), so a flood of bad requests can neither lose the
    predictions' records nor fill the disk. Monitoring reads it with `read_refusals` and counts refused rows per
    window: traffic the model never sees is watched like the traffic it does."""

    def __init__(self, directory: Path, *, rotate_hourly: bool, rotate_bytes: int,
                 max_total_bytes: int | None = None, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._log = PredictionLog(Path(directory) / io.REFUSAL_LOG_DIR, rotate_hourly=rotate_hourly,
                                  rotate_bytes=rotate_bytes, max_total_bytes=max_total_bytes, clock=clock)

    def record(self, route: str, rows: Sequence[tuple[Sequence[str], Any]]) -> None:
        """Record refused rows, each as (the fields at fault, the scheduled time as sent)."""
        ts = datetime.fromtimestamp(self._clock(), UTC).isoformat()
        self._log.write([refusal_record(ts=ts, route=route, fields=fields, scheduled=scheduled)
                         for fields, scheduled in rows])

    def close(self) -> None:
        self._log.close()


def read_refusals(directory: Path) -> LogRead[RefusalRecord]:
    """Every refused row recorded beside the prediction log in `directory`, in the order they were written."""
    return read_records(log_files(Path(directory) / io.REFUSAL_LOG_DIR, io.PREDICTION_LOG_GLOB), RefusalRecord)


def trim_prediction_log(directory: Path, max_total_bytes: int, keep: set[Path] | frozenset[Path] = frozenset(),
                        now: Callable[[], str] | None = None) -> list[DroppedFile]:
    """Delete the oldest closed log files until the directory holds at most `max_total_bytes`; returns what was
    dropped (also appended to `dropped.json`).

    Closed means no writer appends to it any more: a file of a process that no longer runs, or one that is not the
    newest file of its process. `keep` (the caller's own current file) is never deleted.
    """
    directory = Path(directory)
    with open(directory / io.LOG_TRIM_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one trim at a time across workers: no double counting, one manifest
        files = sorted(directory.glob(io.PREDICTION_LOG_GLOB), key=_file_order)
        sizes = {}
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                sizes[path] = path.stat().st_size
        total = sum(sizes.values())
        if total <= max_total_bytes:
            return []
        newest: dict[int, Path] = {}
        for path in sizes:
            newest[_file_order(path)[1]] = path  # sorted: the last one per pid wins
        open_files = {path for pid, path in newest.items() if _alive(pid)} | set(keep)
        dropped = []
        for path in sizes:
            if total <= max_total_bytes:
                break
            if path in open_files:
                continue
            if sizes[path] == 0:  # a writer killed between creating its file and its first write: nothing lost
                path.unlink(missing_ok=True)
                continue
            entry = DroppedFile(file=path.name, bytes=sizes[path], **_span(path), dropped_at=(now or utc_now_iso)())
            path.unlink(missing_ok=True)
            total -= sizes[path]
            dropped.append(entry)
        if dropped:  # under the trim lock: one writer of the manifest at a time
            DroppedLog(files=[*DroppedLog.load(directory).files, *dropped]).save(directory)
            log.warning("prediction log over max_total_bytes (%d): dropped %d oldest file(s), %d rows",
                        max_total_bytes, len(dropped), sum(entry.rows for entry in dropped))
        return dropped


def read_dropped(directory: Path) -> list[DroppedFile]:
    """What the size cap deleted, oldest first (`DroppedLog`)."""
    return DroppedLog.load(Path(directory)).files


def read_over_budget(directory: Path) -> list[OverBudgetCount]:
    """What the per-caller budget left out, by UTC hour and caller, summed over the writers, oldest hour first
    (`OverBudgetLog`)."""
    return OverBudgetLog.load(Path(directory)).counts


def _span(path: Path) -> dict[str, Any]:
    """Row count and first/last serving time of a log file, read once before it is deleted."""
    with open(path, "rb") as handle:
        data = handle.read()
    lines = [line for line in (data[: data.find(b"\n") + 1], data[data.rfind(b"\n", 0, len(data) - 1) + 1:])
             if line.endswith(b"\n")]
    stamps = []
    for line in lines:
        try:
            stamps.append(orjson.loads(line).get("ts"))
        except (orjson.JSONDecodeError, AttributeError):
            stamps.append(None)
    return {"rows": data.count(b"\n"), "first_ts": stamps[0] if stamps else None,
            "last_ts": stamps[-1] if stamps else None}


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


R = TypeVar("R", bound=BaseModel)


@dataclass
class LogRead(Generic[R]):
    """The good records in file order, and what was skipped: counts by reason plus a few examples for people."""

    records: list[R]
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return int(sum(self.skipped.values()))


def read_prediction_log(directory: Path) -> LogRead[PredictionRecord]:
    """Every record in the directory's prediction-log files, in the order they were written."""
    return read_records(log_files(directory, io.PREDICTION_LOG_GLOB), PredictionRecord)


def read_outcomes(directory: Path) -> LogRead[OutcomeRecord]:
    return read_records(log_files(directory, io.OUTCOME_GLOB), OutcomeRecord)


def log_files(directory: Path, pattern: str) -> list[Path]:
    """The files in write order: hour, then process, then rotation number as a number (`.2` before `.10`)."""
    directory = Path(directory)
    return sorted(directory.glob(pattern), key=_file_order) if directory.exists() else []


def read_records(paths: Iterable[Path], model: type[R]) -> LogRead[R]:
    """Validate every line against `model`; a bad line is counted by reason and skipped, never raised.

    The files are written by processes that can be killed mid-line and by code that can change. A last line
    without its newline (a write interrupted by a full disk, or still arriving) is skipped as `incomplete_line`.
    """
    result: LogRead[R] = LogRead([])
    for path in paths:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                record, reason = check_line(line, model)
                if record is not None:
                    result.records.append(record)
                else:
                    result.skipped[reason] += 1
                    if len(result.examples) < MAX_EXAMPLES:
                        result.examples.append(skip_example(path, number, reason, line))
    return result


def check_line(line: bytes, model: type[R]) -> tuple[R | None, str | None]:
    """One non-blank line (with its newline, if it has one) -> (the record, None) or (None, why it is skipped).

    The one definition of a good line: the line reader and the columnar reader (`pipelines.monitor.columnar`,
    for the lines its fast path cannot vouch for) both ask this.
    """
    if not line.endswith(b"\n"):
        return None, "incomplete_line"
    try:
        return model.model_validate_json(line), None
    except ValidationError as error:
        return None, _reason(error)


def skip_example(path: Path, number: int, reason: str, line: bytes) -> str:
    """How a skipped line is shown to people: file, line number, reason and the line's start."""
    return f"{path.name}:{number}: {reason}: {line[:120]!r}"


def _reason(error: ValidationError) -> str:
    """A short, countable name for why a line failed: its first error, by field."""
    first = error.errors()[0]
    kind, name = first["type"], str(first["loc"][0]) if first["loc"] else ""
    if kind == "json_invalid":
        return "invalid_json"
    if kind == "model_type":
        return "not_an_object"
    if kind == "missing":
        return f"missing_{name}"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{name}_out_of_range"
    return f"bad_type_{name}"


def _file_order(path: Path) -> tuple[str, int, int]:
    stem = path.name.split("-", 1)[-1].removesuffix(io.JSONL_SUFFIX)
    stamp, _, rest = stem.partition("-")
    pid, _, sequence = rest.partition(".")
    return stamp, int(pid) if pid.isdigit() else 0, int(sequence) if sequence.isdigit() else 0


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()

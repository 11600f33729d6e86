"""The prediction log read column-wise: the same `PredictionFrame` as the line reader, at millions of rows.

The line reader (`read_prediction_log` + `predictions_frame`) validates each line with pydantic and builds the
frame from Python dicts: ~30 us a line, so a week of 10M predictions takes minutes. This reader gives the same
frame and the same skip counts, and gets there in two steps:

1. **Parse** each log file with Arrow's multithreaded JSON reader, in chunks of lines. A chunk that Arrow cannot
   parse (a garbage line, a type that changes between lines) or whose columns are not of the kinds the contract
   allows is split in two and retried, down to a few lines, which go through the line reader's own check
   (`prediction_log.check_line`); so does every row Arrow parsed but cannot vouch for (a null where the contract
   wants a value, a probability out of [0, 1]). A few bad lines cost a few small re-parses, never the file.
2. **Type** the file's rows with the one typing function `predictions_frame` uses (`pipelines.monitor.log.type_rows`
   into `pipelines.contracts.PredictionFrameSchema`: time, numbers and categories per feature, rows with a bad time
   or number counted and dropped), then, over all files, the same duplicate-request rule.

Closed files do not change, so each file's typed rows are kept as a sidecar (an Arrow IPC file, LZ4) in
`.columnar/` beside the log, keyed by the file's size and modification time and by the features they were typed
for; the next monitoring run reads the sidecar (a columnar read, ~0.5 s per million rows with the conversion to
pandas) and parses only new or grown files. Sidecars of
files the size cap deleted are removed. The JSONL file stays the record (crash-safe, one write per request); the
sidecar is a cache that can be deleted at any time. Where the directory is not writable the reader still works,
it just parses every time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines import io
from pipelines.config import FeaturesParams
from pipelines.contracts import (
    LOGGED_AT,
    MODEL_TAG,
    PREDICTED_LABEL,
    PROBABILITY,
    REQUEST_ID,
    THRESHOLD,
    PredictionFrameSchema,
    PredictionRecord,
)
from pipelines.monitor.log import PredictionFrame, type_rows
from pipelines.monitor.prediction_log import MAX_EXAMPLES, check_line, log_files, skip_example

log = logging.getLogger(__name__)

CACHE_DIR = io.COLUMNAR_CACHE_DIR
SIDECAR_SUFFIX = io.COLUMNAR_SIDECAR_SUFFIX  # Arrow IPC file, LZ4-compressed: read back at memory speed, no decoding
_OLD_SUFFIXES = (".parquet",)  # sidecars of earlier versions, removed as orphans
CACHE_VERSION = 2  # 2: texts stored as dictionaries where they repeat (`_dictionaries_where_repeated`)
CHUNK_LINES = 20_000  # lines per Arrow parse (~12 MB of log): a bad line costs re-parsing at most this
LEAF_LINES = 64  # below this, a chunk that Arrow refuses goes line by line
_LINE = "_line"
_INPUT = "in:"  # prefix of the raw input columns while a file is being typed
_STRING_FIELDS = (REQUEST_ID, LOGGED_AT, MODEL_TAG)
_FLOAT_FIELDS = (PROBABILITY, THRESHOLD)


@dataclass
class FileRows:
    """One log file's typed, kept rows (an Arrow table of `PredictionFrameSchema.arrow_types`) and what was skipped
    in it (what the sidecar holds)."""

    table: Any  # None once `assemble` has taken it
    records: int = 0  # lines that passed the record contract (before the per-feature checks)
    keys: set[str] = field(default_factory=set)  # input names present in at least one record
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)


def read_predictions_columnar(directory: Path, features: FeaturesParams, time_column: str, *,
                              cache: bool = True) -> PredictionFrame:
    """Every good prediction in the directory's log files: equal to `predictions_frame(read_prediction_log(...))`."""
    directory = Path(directory)
    paths = log_files(directory, io.PREDICTION_LOG_GLOB)
    signature = _signature(features, time_column)
    parts = [_file_rows(path, features, time_column, signature, cache) for path in paths]
    if cache:
        _remove_orphans(directory, paths)
    return assemble(parts, features, time_column)


def assemble(parts: Sequence[FileRows], features: FeaturesParams, time_column: str) -> PredictionFrame:
    """The files' rows in write order as one frame: a request logged twice keeps its latest record by log time,
    then write order (the line reader's rule).

    The files' Arrow tables are concatenated (no copy) and turned into pandas once (`_to_pandas`); the parts hand
    their tables over (`table` is None after this), so Arrow's memory is freed as the frame is built.
    """
    schema = PredictionFrameSchema.of(features, time_column)
    skipped: Counter = Counter()
    examples: list[str] = []
    for part in parts:
        examples.extend(part.examples[:MAX_EXAMPLES - len(examples)])
    reader_skips = Counter()
    for part in parts:
        for reason, count in part.skipped.items():
            (skipped if schema.is_typing_reason(reason) else reader_skips)[reason] += count
    records = sum(part.records for part in parts)
    if not records:
        return PredictionFrame(schema.empty(), reader_skips, examples)
    present = set().union(*(part.keys for part in parts))
    for name in schema.inputs:
        if name not in present:  # as the line reader: a column no record has makes every record unusable
            reader_skips[f"inputs_missing_{name}"] += records
            return PredictionFrame(schema.empty(), reader_skips, examples)
    types = schema.arrow_types()
    tables = [_conform(part.table, types) for part in parts]
    for part in parts:  # the parts' Arrow memory goes to the frame column by column (`_to_pandas`)
        part.table = None
    frame, suspects = _to_pandas(tables, types)
    total = reader_skips + skipped
    return PredictionFrame(_latest_per_request(frame, suspects), Counter({k: v for k, v in total.items() if v}),
                           examples)


def _conform(table: Any, types: dict[str, Any]) -> Any:
    """A file's table with exactly `types`' columns, in order: a text stays a dictionary of strings where it is one
    (other than the request id); a column all-missing in the file (Arrow's null type) becomes one of its type."""
    import pyarrow as pa
    import pyarrow.types as t

    arrays = []
    for name, kind in types.items():
        column = table.column(name)
        kept = column.type == kind or (name != REQUEST_ID and t.is_string(kind) and t.is_dictionary(column.type)
                                       and t.is_string(column.type.value_type))
        arrays.append(column if kept else column.cast(kind))
    return pa.Table.from_arrays(arrays, names=list(types))


def _dictionaries_where_repeated(table: Any) -> Any:
    """The texts (other than the request id) that repeat within the file as dictionaries: the model tag and the
    categories always, the log time when requests came in batches. A text with mostly distinct values (the log
    time of one-row requests) stays plain: as a dictionary it would only cost a hash table."""
    import pyarrow.types as t

    for index, name in enumerate(table.schema.names):
        column = table.column(name)
        if name == REQUEST_ID or not t.is_string(column.type) or not len(column):
            continue
        encoded = column.combine_chunks().dictionary_encode()
        if 2 * len(encoded.dictionary) <= len(encoded):
            table = table.set_column(index, name, encoded)
    return table


def _to_pandas(tables: list[Any], types: dict[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    """The files' tables as the frame `predictions_frame` builds (texts as object columns, str or None where
    missing; the time as datetime64[ns, UTC]; numbers float64; the label int64), and the positions of the rows
    whose request id may repeat (`_maybe_repeated`). Consumes `tables`: Arrow's buffers are freed as it goes.

    Arrow writes the numbers and the time straight into pandas columns (multithreaded, one block per column, each
    Arrow column freed once converted). Each text column is filled file by file (`_text_objects`): from a
    dictionary by one take of its distinct texts, from plain strings (the request ids) one Python string a row.
    """
    import pyarrow as pa
    import pyarrow.types as t

    chunks = {name: [chunk for table in tables for chunk in table.column(name).chunks] for name in types}
    tables.clear()
    suspects = _maybe_repeated(_id_hashes(chunks[REQUEST_ID]))
    numbers = [name for name, kind in types.items() if not t.is_string(kind)]
    rest = pa.Table.from_arrays([pa.chunked_array(chunks.pop(name), types[name]) for name in numbers],
                                names=numbers)
    frame = rest.to_pandas(split_blocks=True, self_destruct=True)
    del rest
    with warnings.catch_warnings():  # one block per column is by design here, however many features
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        for position, name in enumerate(types):  # in frame order, so each position is final
            if name in chunks:
                frame.insert(position, name, _text_objects(chunks.pop(name), types[name]))
    pa.default_memory_pool().release_unused()  # hand the freed Arrow memory back for pandas' use
    return frame, suspects


def _text_objects(chunks: list[Any], kind: Any) -> np.ndarray:
    """Text chunks (plain or dictionaries of strings) as one object array: str, None where missing."""
    import pyarrow as pa
    import pyarrow.types as t

    if all(not t.is_dictionary(chunk.type) for chunk in chunks):
        return pa.chunked_array(chunks, kind).to_numpy(zero_copy_only=False)
    texts = np.empty(sum(len(chunk) for chunk in chunks), dtype=object)
    start = 0
    for chunk in chunks:
        stop = start + len(chunk)
        if t.is_dictionary(chunk.type):
            values = np.append(chunk.dictionary.to_numpy(zero_copy_only=False), None)
            codes = chunk.indices.fill_null(-1) if chunk.indices.null_count else chunk.indices
            np.take(values, codes.to_numpy(zero_copy_only=False), out=texts[start:stop])
        else:
            texts[start:stop] = chunk.to_numpy(zero_copy_only=False)
        start = stop
    return texts


def _latest_per_request(frame: pd.DataFrame, suspects: np.ndarray) -> pd.DataFrame:
    """Rows in write order, each request's latest record by log time (then write order) kept: the line reader's
    sort + drop_duplicates + sort back, over the suspects only (the rows whose request id's hash repeats: every
    repeated request, and the rare collision). That keeps the same rows as over the whole frame: a stable sort
    keeps the relative order of any subset. Usually no request repeats, and the frame is returned as it is.
    """
    if not len(suspects):
        return frame
    subset = frame[[REQUEST_ID, LOGGED_AT]].take(suspects).reset_index(drop=True)
    logged = pd.to_datetime(subset[LOGGED_AT], utc=True, errors="coerce", format="ISO8601")
    order = logged.sort_values(kind="stable", na_position="first").index.to_numpy()
    repeated = subset[REQUEST_ID].take(order).duplicated(keep="last").to_numpy()
    if not repeated.any():
        return frame
    keep = np.ones(len(frame), dtype=bool)
    keep[suspects[order[repeated]]] = False
    return frame.loc[keep].reset_index(drop=True)


_FNV_BASIS = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _id_hashes(chunks: Sequence[Any]) -> np.ndarray:
    """A 64-bit hash (FNV-1 over the UTF-8 bytes, seeded with the length) of each request id, computed on Arrow's
    buffers: one vectorised step per byte position, the ids of one length as the rows of a byte matrix."""
    hashes = []
    for chunk in chunks:
        count = len(chunk)
        if not count:
            continue
        _, offsets_buffer, data_buffer = chunk.buffers()
        offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=count + 1, offset=chunk.offset * 4)
        offsets = offsets.astype(np.int64)
        data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
        lengths = np.diff(offsets)
        hashed = _FNV_BASIS ^ lengths.astype(np.uint64)
        distinct = np.unique(lengths)
        for length in distinct[distinct > 0]:
            if len(distinct) == 1:  # the usual case: one id format, the ids are a byte matrix as they lie
                rows: Any = slice(None)
                matrix = data[offsets[0]:offsets[-1]].reshape(count, length)
            else:
                rows = np.flatnonzero(lengths == length)
                matrix = data[offsets[rows, None] + np.arange(length)]
            value = hashed[rows]
            with np.errstate(over="ignore"):
                for position in range(length):
                    value = (value * _FNV_PRIME) ^ matrix[:, position]
            hashed[rows] = value
        hashes.append(hashed)
    return np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)


def _maybe_repeated(hashes: np.ndarray) -> np.ndarray:
    """Positions (ascending) of the rows whose hash occurs more than once."""
    ordered = np.sort(hashes)
    equal = ordered[1:] == ordered[:-1]
    if not equal.any():
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.isin(hashes, ordered[1:][equal]))


def _signature(features: FeaturesParams, time_column: str) -> str:
    spec = {"version": CACHE_VERSION, "time": time_column, "numeric": list(features.numeric),
            "categorical": list(features.categorical)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


# --- the sidecar --------------------------------------------------------------------------------------------------

def _cache_path(path: Path) -> Path:
    return path.parent / CACHE_DIR / f"{path.name}{SIDECAR_SUFFIX}"


def _file_key(path: Path, signature: str) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}:{signature}"


def _file_rows(path: Path, features: FeaturesParams, time_column: str, signature: str, cache: bool) -> FileRows:
    try:
        key = _file_key(path, signature)
    except FileNotFoundError:  # deleted by the size cap since it was listed
        return FileRows(_empty(features, time_column))
    sidecar = _cache_path(path)
    if cache:
        cached = _read_sidecar(sidecar, key)
        if cached is not None:
            return cached
    try:
        rows = parse_file(path, features, time_column)
    except FileNotFoundError:
        return FileRows(_empty(features, time_column))
    if cache:
        _write_sidecar(sidecar, key, rows)
    return rows


def _read_sidecar(sidecar: Path, key: str) -> FileRows | None:
    import pyarrow as pa

    try:
        with pa.OSFile(str(sidecar)) as source:
            reader = pa.ipc.open_file(source)
            meta = json.loads((reader.schema.metadata or {}).get(b"flightops_log", b"{}"))
            if meta.get("key") != key:
                return None
            table = reader.read_all()  # the texts come back as they were stored: dictionaries where they repeat
    except (OSError, ValueError):  # none yet, or unreadable: parse the file again
        return None
    return FileRows(table.replace_schema_metadata(None), records=meta["records"], keys=set(meta["keys"]),
                    skipped=Counter(meta["skipped"]), examples=list(meta["examples"]))


def _write_sidecar(sidecar: Path, key: str, rows: FileRows) -> None:
    import pyarrow as pa

    meta = {"key": key, "records": rows.records, "keys": sorted(rows.keys), "skipped": dict(rows.skipped),
            "examples": rows.examples}
    # One chunk per column: an IPC file holds one dictionary per column.
    table = rows.table.combine_chunks().replace_schema_metadata({b"flightops_log": json.dumps(meta)})
    temp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    try:
        sidecar.parent.mkdir(exist_ok=True)
        with pa.OSFile(str(temp), "wb") as sink, \
                pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as writer:
            writer.write_table(table)
        os.replace(temp, sidecar)
    except OSError as error:  # a read-only log directory: no cache, same answer
        log.debug("no columnar cache for %s: %s", sidecar, error)
        temp.unlink(missing_ok=True)


def _remove_orphans(directory: Path, paths: Sequence[Path]) -> None:
    names = {_cache_path(path).name for path in paths}
    cache = directory / CACHE_DIR
    if not cache.is_dir():
        return
    for sidecar in cache.iterdir():
        if sidecar.suffix in (SIDECAR_SUFFIX, *_OLD_SUFFIXES) and sidecar.name not in names:
            sidecar.unlink(missing_ok=True)


# --- parsing one file ---------------------------------------------------------------------------------------------

def parse_file(path: Path, features: FeaturesParams, time_column: str) -> FileRows:
    """One log file's lines -> its typed, kept rows (no cache)."""
    data = Path(path).read_bytes()
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64) if len(ends) else np.zeros(0, np.int64)
    state = _Parse(path, data, starts, ends, time_column)
    for first in range(0, len(ends), CHUNK_LINES):
        state.chunk(first, min(first + CHUNK_LINES, len(ends)))
    tail = data[ends[-1] + 1:] if len(ends) else data
    if tail.strip():  # the last line has no newline: cut by a kill or a full disk, or still being written
        state.line(len(ends), tail)
    return _type_rows(state, features, time_column)


class _Parse:
    """The pieces of one file in line order: Arrow tables (the fast path) and records the line check accepted."""

    def __init__(self, path: Path, data: bytes, starts: np.ndarray, ends: np.ndarray, time_column: str) -> None:
        self.path, self.data, self.starts, self.ends = path, data, starts, ends
        self.time_column = time_column
        self.pieces: list[pd.DataFrame] = []
        self.records: list[tuple[int, PredictionRecord]] = []
        self.skipped: Counter = Counter()
        self.examples: list[str] = []

    def chunk(self, first: int, stop: int) -> None:
        """Lines [first, stop): through Arrow if it vouches for them, else halves, else line by line."""
        table = self._arrow(first, stop) if stop - first > 0 else None
        if table is None:
            if stop - first <= LEAF_LINES:
                for index in range(first, stop):
                    self.line(index, self.data[self.starts[index]:self.ends[index] + 1])
                return
            middle = (first + stop) // 2
            self.chunk(first, middle)
            self.chunk(middle, stop)
            return
        lines = self._row_lines(first, stop, table.num_rows)
        doubtful = _doubtful_rows(table, self.time_column)
        if doubtful.any():
            self._take(table.filter(~doubtful), lines[~doubtful])
            for index in lines[doubtful]:
                self.line(int(index), self.data[self.starts[index]:self.ends[index] + 1])
        else:
            self._take(table, lines)

    def line(self, index: int, line: bytes) -> None:
        if not line.strip():
            return
        record, reason = check_line(line, PredictionRecord)
        if record is not None:
            self.records.append((index, record))
            return
        self.skipped[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(skip_example(self.path, index + 1, reason, line))

    def _arrow(self, first: int, stop: int) -> Any:
        import pyarrow as pa
        import pyarrow.json as pj

        view = memoryview(self.data)[self.starts[first]:self.ends[stop - 1] + 1]
        schema = pa.schema([*((name, pa.string()) for name in _STRING_FIELDS),
                            pa.field("inputs", pa.struct([(self.time_column, pa.string())]))])
        try:
            table = pj.read_json(pa.BufferReader(pa.py_buffer(view)),
                                 read_options=pj.ReadOptions(block_size=4 << 20),
                                 parse_options=pj.ParseOptions(explicit_schema=schema,
                                                               unexpected_field_behavior="infer"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        return table if _expected_kinds(table) else None

    def _row_lines(self, first: int, stop: int, rows: int) -> np.ndarray:
        """Line index of each parsed row: Arrow skips blank lines, which the line reader skips too."""
        if rows == stop - first:
            return np.arange(first, stop)
        kept = [index for index in range(first, stop) if self.data[self.starts[index]:self.ends[index] + 1].strip()]
        return np.asarray(kept, dtype=np.int64)

    def _take(self, table: Any, lines: np.ndarray) -> None:
        if table.num_rows == 0:
            return
        inputs = table.column("inputs").combine_chunks()
        columns: dict[str, Any] = {_LINE: lines}
        for name in _STRING_FIELDS:
            columns[name] = table.column(name).to_pandas()
        for name in _FLOAT_FIELDS:
            columns[name] = table.column(name).to_numpy().astype(float)
        columns[PREDICTED_LABEL] = table.column(PREDICTED_LABEL).to_numpy().astype(np.int64)
        for index in range(inputs.type.num_fields):
            name = inputs.type.field(index).name
            columns[_INPUT + name] = inputs.field(index).to_pandas()
        self.pieces.append(pd.DataFrame(columns))

    def from_records(self) -> pd.DataFrame | None:
        if not self.records:
            return None
        records = [record for _, record in self.records]
        inputs = pd.DataFrame([record.inputs for record in records])
        frame = pd.DataFrame({_LINE: np.fromiter((index for index, _ in self.records), np.int64, len(records)),
                              REQUEST_ID: [r.request_id for r in records], LOGGED_AT: [r.ts for r in records],
                              MODEL_TAG: [r.model_tag for r in records],
                              PROBABILITY: np.fromiter((r.probability for r in records), float, len(records)),
                              PREDICTED_LABEL: np.fromiter((r.label for r in records), np.int64, len(records)),
                              THRESHOLD: np.fromiter((r.threshold for r in records), float, len(records))})
        for name in inputs.columns:
            frame[_INPUT + str(name)] = inputs[name].to_numpy()
        return frame


def _expected_kinds(table: Any) -> bool:
    """Whether every column Arrow inferred is one this reader can turn into what the line reader would see."""
    import pyarrow as pa
    import pyarrow.types as t

    names = set(table.schema.names)
    if not {*_STRING_FIELDS, "inputs", *_FLOAT_FIELDS, PREDICTED_LABEL} <= names:
        return False  # a field absent from every line of the chunk: the line check names it
    kinds = {name: table.schema.field(name).type for name in names}
    if not all(t.is_integer(kinds[name]) or t.is_floating(kinds[name]) for name in _FLOAT_FIELDS):
        return False
    if kinds[PREDICTED_LABEL] != pa.int64() or not t.is_struct(kinds["inputs"]):
        return False
    for index in range(kinds["inputs"].num_fields):
        kind = kinds["inputs"].field(index).type
        # Dates Arrow recognised would lose their text; nested values and binaries are not what pandas sees from
        # the JSON; the line reader decides about those.
        if not (t.is_string(kind) or t.is_integer(kind) or t.is_floating(kind) or t.is_boolean(kind)
                or t.is_null(kind)):
            return False
    return True


def _doubtful_rows(table: Any, time_column: str) -> np.ndarray:
    """Rows Arrow parsed that the contract may refuse: a null (missing) field, a probability outside [0, 1].

    A null time is left to the line check too: Arrow cannot tell a missing key from a null value, and the line
    reader treats the two differently (a time key no record has makes every record unusable).
    """
    import pyarrow.compute as pc

    doubtful = np.zeros(table.num_rows, dtype=bool)
    for name in (*_STRING_FIELDS, "inputs", *_FLOAT_FIELDS, PREDICTED_LABEL):
        doubtful |= pc.is_null(table.column(name)).to_numpy(zero_copy_only=False)
    doubtful |= pc.is_null(pc.struct_field(table.column("inputs"), time_column)).to_numpy(zero_copy_only=False)
    probability = table.column(PROBABILITY).to_numpy(zero_copy_only=False).astype(float)
    with np.errstate(invalid="ignore"):
        doubtful |= ~((probability >= 0) & (probability <= 1))
    return doubtful


# --- typing one file's rows ---------------------------------------------------------------------------------------

def _empty(features: FeaturesParams, time_column: str) -> Any:
    import pyarrow as pa

    return pa.schema(list(PredictionFrameSchema.of(features, time_column).arrow_types().items())).empty_table()


def _type_rows(state: _Parse, features: FeaturesParams, time_column: str) -> FileRows:
    """`predictions_frame`'s per-row work on one file, by the same typing function (`log.type_rows`): parse time
    and numbers, categories as text, drop bad rows."""
    import pyarrow as pa

    pieces = [*state.pieces]
    slow = state.from_records()
    if slow is not None:
        pieces.append(slow)
    if not pieces:
        return FileRows(_empty(features, time_column), skipped=state.skipped, examples=state.examples)
    raw = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
    if slow is not None and len(pieces) > 1:  # Arrow's pieces come in line order; the line-checked rows do not
        raw = raw.sort_values(_LINE, kind="stable").reset_index(drop=True)
    keys = {name[len(_INPUT):] for name in raw.columns if name.startswith(_INPUT)}

    def column(name: str) -> pd.Series:
        values = raw.get(_INPUT + name)
        return values if values is not None else pd.Series(None, index=raw.index, dtype=object)

    schema = PredictionFrameSchema.of(features, time_column)
    typed = type_rows(schema, raw[REQUEST_ID], raw[LOGGED_AT], raw[MODEL_TAG], column, probability=raw[PROBABILITY],
                      label=raw[PREDICTED_LABEL], threshold=raw[THRESHOLD])
    skipped = Counter(state.skipped)
    skipped.update(typed.skipped)
    table = _conform(pa.Table.from_pandas(typed.frame.loc[typed.keep], preserve_index=False), schema.arrow_types())
    return FileRows(_dictionaries_where_repeated(table),
                    records=len(raw), keys=keys, skipped=skipped, examples=state.examples)

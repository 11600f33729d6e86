"""Which rows a refused request held, for monitoring: the service's refusals become counted traffic.

A request the service refuses never reaches the prediction log, so a sender whose feed goes wrong (pressure in
inHg, a distance past every bound) would show up as 400s only, never in the monitor. `refused_rows` turns a refused
body and its validation error into one entry per row sent: the fields at fault in that row (none: refused with
its batch) and its scheduled time as sent (the monitor places the row in its window by it). Field names only,
never the values sent; the recording is bounded (`pipelines.monitor.prediction_log.RefusalLog`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Rows of one refused body recorded at most (a body is bounded by serve.max_body_bytes and the batch size anyway).
MAX_ROWS = 10_000


def refused_rows(body: bytes, errors: Sequence[dict[str, Any]], entity: str, entities: str,
                 time_column: str) -> list[tuple[list[str], Any]]:
    """(fields at fault, scheduled time as sent) per row of a refused body.

    `errors` are pydantic's (`ValidationError.errors()`): a location `(entities, i, field, ...)` or
    `(entity, field, ...)` names row i's field. A body that is not JSON, or not the expected object, is one refused
    row naming `body`."""
    import orjson

    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [(["body"], None)]
    if not isinstance(parsed, dict):
        return [(["body"], None)]
    if isinstance(parsed.get(entities), list):
        rows, batch = parsed[entities][:MAX_ROWS], True
    elif entity in parsed:
        rows, batch = [parsed[entity]], False
    else:
        return [(sorted({str(e["loc"][0]) for e in errors if e.get("loc")}) or ["body"], None)]
    fields: list[set[str]] = [set() for _ in rows]
    for error in errors:
        location = list(error.get("loc") or ())
        if batch and len(location) >= 2 and location[0] == entities and isinstance(location[1], int):
            index, rest = location[1], location[2:]
        elif not batch and location and location[0] == entity:
            index, rest = 0, location[1:]
        else:
            continue
        if 0 <= index < len(fields):
            fields[index].add(str(rest[0]) if rest else "row")
    return [(sorted(named), row.get(time_column) if isinstance(row, dict) else None)
            for named, row in zip(fields, rows, strict=True)]

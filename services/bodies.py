"""Request bodies checked row by row, with answers of bounded size whatever was sent.

The service's request models (`services/schemas.py`) are what the OpenAPI documents; this module is how a body is
held to them, under two rules:

- **A refusal is bounded.** A 400 lists the first `serve.max_errors` errors and counts the rest, and finding them
  costs about what parsing a valid body of the same size does. Pydantic alone reports one error per unknown key
  (a 1.6 MB row of junk keys: ~100k errors, a 26 MB answer, seconds of a worker) and cannot be told to stop; so
  rows are parsed with unknown keys *allowed* (each is just parsed, as any value), then the keys are compared with
  the schema's here, at a cost of one `len` per row when there are none. Validation of a row then stops with its
  fields: at most one error per field.
- **A batch answers per row.** `/predict_batch` and `/predict_many` score every valid row of a well-formed batch
  (an object with the plural key and 1 to `serve.max_batch_size` objects) and refuse the others one by one, each
  by its index and fields; a batch is refused as a whole (400) only when its envelope is wrong (not an object with
  the one key, not a list of 1 to `serve.max_batch_size` objects).

A batch's fast path is columnar (`services/columnar.py`): the body parsed once by orjson, its rows proven valid
column by column from the row schema's own core schema, and the validated columns kept for scoring. A row the
columns cannot prove valid (a wrong type, an unknown key, a time in an unusual form) is validated by pydantic on its
own JSON, exactly as in the row-by-row path, so it is accepted or refused, with the same errors, as before. A body
orjson cannot read or whose envelope is wrong takes the pydantic path: one pass over the whole body, and only a body
with an invalid row is parsed again row by row (each row re-validated from its own JSON, so a row means exactly
what it would have meant in the whole body).

A checked batch is a `CheckedRows` list: validated row dicts, and a `Rejected` in the place of each refused row
(adaptive batching merges the lists of several callers, and the places keep each caller's answers aligned). Every
validated row carries its caller under `CALLER`, which scoring pops: the prediction log keys rows by caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
import orjson
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from pipelines.config import REQUEST_ID, REQUEST_ID_MAX
from services.columnar import ColumnarRows

# Set on each validated row by the checker, popped by scoring: who sent the row. Not a JSON field name a body could
# validly carry (a body with this key has an unknown field and is refused).
CALLER = "\x00caller"
_NOT_AN_OBJECT = "Input should be an object"


class BoundedValidationError(ValidationError):
    """A 400 with at most `max_errors` errors listed and the true count: BentoML answers a ValidationError with
    `{"error": "<error_count()> validation error for <title>", "detail": errors()}`, so both are set here."""

    _detail: list[dict[str, Any]]
    _total: int

    @classmethod
    def build(cls, title: str, detail: list[dict[str, Any]], total: int, max_errors: int) -> BoundedValidationError:
        error = cls.from_exception_data(title, [{"type": "value_error", "loc": (), "input": None,
                                                 "ctx": {"error": "bounded"}}])
        listed = detail[:max_errors]
        if total > len(listed):
            listed.append({"type": "too_many_errors", "loc": (),
                           "msg": f"{total - len(listed)} more error(s) not listed (serve.max_errors: {max_errors})"})
        error._detail, error._total = listed, total
        return error

    def error_count(self) -> int:
        return self._total

    def errors(self, **_: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        return [dict(item) for item in self._detail]


class Rejected:
    """A refused row, in its place in the batch; `answer` is its `RejectedRow` item."""

    __slots__ = ("answer",)

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer


class CheckedRows(list):
    """A batch's rows in request order: validated row dicts, a `Rejected` for each refused one; `columns`, when the
    columnar checks proved every row (`services.columnar`), the same values by field, for scoring to read."""

    caller: str = ""
    rejected_count: int = 0
    columns: dict[str, Any] | None = None


def _lenient(row_type: Any) -> Any:
    """The row TypedDict with unknown keys kept rather than reported one by one."""
    lenient = TypedDict(row_type.__name__, dict(row_type.__annotations__))  # type: ignore[operator]  # noqa: UP013
    lenient.__pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[attr-defined]
    return lenient


def _field(loc: tuple[Any, ...]) -> str | None:
    return ".".join(str(part)[:100] for part in loc) or None


class BodyChecker:
    """Checks the bodies of one route: `{key: row}` (single) or `{key: [rows]}` (batch)."""

    def __init__(self, key: str, row_type: Any, *, batch: bool, max_rows: int, max_errors: int, title: str) -> None:
        self.key, self.batch, self.max_rows, self.max_errors, self.title = key, batch, max_rows, max_errors, title
        row = _lenient(row_type)
        self.known = frozenset(row_type.__annotations__)
        self.required = len(row_type.__required_keys__)
        value = Annotated[list[row], Field(min_length=1, max_length=max_rows)] if batch else row  # type: ignore[valid-type]
        envelope = TypedDict(f"{title}Envelope", {key: value})  # type: ignore[operator]
        envelope.__pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[attr-defined]
        self.envelope = TypeAdapter(envelope)
        self.row = TypeAdapter(row)
        self.columnar = ColumnarRows.build(row_type) if batch else None

    # --- shared -------------------------------------------------------------------------------------------------

    def _refuse(self, detail: list[dict[str, Any]], total: int | None = None) -> BoundedValidationError:
        return BoundedValidationError.build(self.title, detail, len(detail) if total is None else total,
                                            self.max_errors)

    def _from(self, error: ValidationError, extra: list[dict[str, Any]] = (),
              extra_count: int | None = None) -> BoundedValidationError:
        """A pydantic error (at most one per field: unknown keys were allowed) as a bounded one, after `extra`
        (`extra_count` of them in all when only the first are listed)."""
        detail = error.errors(include_url=False, include_context=False, include_input=False)[:self.max_errors]
        counted = len(extra) if extra_count is None else extra_count
        return self._refuse([*extra, *detail][:self.max_errors], counted + error.error_count())

    def _unknown(self, mapping: Mapping[str, Any], loc: tuple[Any, ...], allowed: frozenset[str],
                 room: int) -> tuple[list[dict[str, Any]], int]:
        """Errors for the first `room` keys of `mapping` that are not `allowed`, and how many there are."""
        names = [name for name in mapping if name not in allowed]
        return [{"type": "extra_forbidden", "loc": (*loc, name[:100]), "msg": "Extra inputs are not permitted"}
                for name in names[:room]], len(names)

    def _strays(self, body: bytes) -> tuple[list[dict[str, Any]], int]:
        """The unknown keys of a refused single-row body, listed before pydantic's errors: a renamed field (`temp_f`
        for `temp`) is otherwise reported only as the missing one, and the caller never learns which key was not
        read. With how many there are; none when the body is no JSON object (pydantic's own error says so)."""
        from pydantic_core import from_json

        try:
            data = from_json(body)
        except ValueError:
            return [], 0
        if not isinstance(data, dict):
            return [], 0
        detail, total = self._unknown(data, (), frozenset((self.key,)), self.max_errors)
        row = data.get(self.key)
        if isinstance(row, dict):
            more, count = self._unknown(row, (self.key,), self.known, self.max_errors - len(detail))
            detail, total = detail + more, total + count
        return detail, total

    def _extras(self, row: Mapping[str, Any]) -> bool:
        """Whether a validated row holds a key the schema does not have (all required keys are in it)."""
        return len(row) > self.required + (REQUEST_ID in row)

    # --- single row ---------------------------------------------------------------------------------------------

    def check(self, body: bytes, caller: str) -> Any:
        """The body's row (single) or `CheckedRows` (batch); raises BoundedValidationError for a 400."""
        if self.batch:
            return self._check_batch(body, caller)
        try:
            data = self.envelope.validate_json(body)
        except ValidationError as error:
            raise self._from(error, *self._strays(body)) from None
        row = data[self.key]
        if len(data) > 1 or self._extras(row):
            detail, total = self._unknown(data, (), frozenset((self.key,)), self.max_errors)
            more, count = self._unknown(row, (self.key,), self.known, self.max_errors)
            raise self._refuse(detail + more, total + count)
        row[CALLER] = caller
        return row

    # --- batch --------------------------------------------------------------------------------------------------

    def _check_batch(self, body: bytes, caller: str) -> CheckedRows:
        if self.columnar is not None:
            rows = self._columnar(body, caller)
            if rows is not None:
                return rows
        try:
            data = self.envelope.validate_json(body)
        except ValidationError:
            return self._row_by_row(body, caller)
        if len(data) > 1:
            detail, total = self._unknown(data, (), frozenset((self.key,)), self.max_errors)
            raise self._refuse(detail, total)
        rows = CheckedRows(data[self.key])
        rows.caller = caller
        strays = []
        limit = self.required
        for index, row in enumerate(rows):
            if len(row) > limit + (REQUEST_ID in row):
                strays.append(index)
            row[CALLER] = caller
        room = self.max_errors
        for index in strays:
            row = rows[index]
            del row[CALLER]
            errors, count = self._unknown(row, (), self.known, room)
            room -= len(errors)
            rows[index] = Rejected(self._rejection(index, row, errors, count))
        rows.rejected_count = len(strays)
        return rows

    def _rejection(self, index: int, row: Any, errors: list[dict[str, Any]], count: int) -> dict[str, Any]:
        request_id = row.get(REQUEST_ID) if isinstance(row, dict) else None
        valid_id = isinstance(request_id, str) and len(request_id) <= REQUEST_ID_MAX
        return {"index": index, "request_id": request_id if valid_id else None, "error_count": count,
                "errors": [{"field": _field(tuple(item["loc"])), "type": item["type"], "msg": item["msg"]}
                           for item in errors]}

    def _row_by_row(self, body: bytes, caller: str) -> CheckedRows:
        """A batch with at least one invalid row: the envelope checked, then each row on its own."""
        from pydantic_core import from_json

        try:
            data = from_json(body)
        except ValueError as error:
            raise self._refuse([{"type": "json_invalid", "loc": (), "msg": f"Invalid JSON: {error}"}]) from None
        if not isinstance(data, dict):
            raise self._refuse([{"type": "dict_type", "loc": (), "msg": _NOT_AN_OBJECT}])
        detail, total = self._unknown(data, (), frozenset((self.key,)), self.max_errors)
        items = data.get(self.key)
        if self.key not in data:
            detail.append({"type": "missing", "loc": (self.key,), "msg": "Field required"})
        elif not isinstance(items, list):
            detail.append({"type": "list_type", "loc": (self.key,), "msg": "Input should be a valid list"})
        elif not 1 <= len(items) <= self.max_rows:
            kind, bound = ("too_short", "at least 1 item") if not items else (
                "too_long", f"at most {self.max_rows} items (serve.max_batch_size)")
            detail.append({"type": kind, "loc": (self.key,), "msg": f"List should have {bound}, "
                                                                    f"not {len(items)}"})
        else:
            strays = [index for index, item in enumerate(items) if not isinstance(item, dict)]
            detail += [{"type": "dict_type", "loc": (self.key, index), "msg": _NOT_AN_OBJECT}
                       for index in strays[:self.max_errors]]
            total += len(strays) - min(len(strays), self.max_errors)
        if detail:
            raise self._refuse(detail, total + (len(detail) - min(total, self.max_errors)))
        rows = CheckedRows()
        rows.caller = caller
        room = self.max_errors
        for index, item in enumerate(items):
            row, room = self._check_row(index, item, caller, room)
            rows.append(row)
        rows.rejected_count = sum(type(row) is Rejected for row in rows)
        return rows

    def _check_row(self, index: int, item: dict[str, Any], caller: str, room: int) -> tuple[Any, int]:
        """One row of a batch by pydantic, from its own JSON: the validated row, or its `Rejected` with at most
        `room` errors listed; and the room left."""
        from pydantic_core import to_json

        errors, count = self._unknown(item, (), self.known, room)
        clean = {name: value for name, value in item.items() if name in self.known} if count else item
        try:
            row = self.row.validate_json(to_json(clean, inf_nan_mode="constants"))
        except ValidationError as error:
            count += error.error_count()
            if room > len(errors):
                errors += error.errors(include_url=False, include_context=False,
                                       include_input=False)[:room - len(errors)]
        else:
            if not count:
                row[CALLER] = caller
                return row, room
        errors = errors[:room]
        return Rejected(self._rejection(index, item, errors, count)), room - len(errors)

    def _columnar(self, body: bytes, caller: str) -> CheckedRows | None:
        """The fast path of a well-formed batch: parsed once by orjson, its rows proven valid column by column
        (`services.columnar`); a row the columns cannot prove goes through `_check_row`, as in `_row_by_row`. None
        (then pydantic reads the body) when orjson cannot parse it or the envelope is not `{key: [1..max objects]}`:
        the envelope's refusals are pydantic's."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        items = data.get(self.key) if type(data) is dict and len(data) == 1 else None
        if type(items) is not list or not 1 <= len(items) <= self.max_rows or \
                not all(type(item) is dict for item in items):
            return None
        checked = self.columnar.check(items)  # type: ignore[union-attr]
        rows = CheckedRows(items)
        rows.caller = caller
        for row in items:
            row[CALLER] = caller
        if checked.proven.all():
            rows.columns = checked.columns
            return rows
        room = self.max_errors
        for index in np.flatnonzero(~checked.proven).tolist():
            del items[index][CALLER]
            rows[index], room = self._check_row(index, items[index], caller, room)
        rows.rejected_count = sum(type(row) is Rejected for row in rows)
        return rows


def from_body_model(model: Any, key: str, *, batch: bool, max_rows: int, max_errors: int) -> BodyChecker:
    """The checker for a body model built by `services.service.request_body` (`{key: annotation}`)."""
    annotation = model.model_fields[key].annotation
    row_type = annotation.__args__[0] if batch else annotation
    return BodyChecker(key, row_type, batch=batch, max_rows=max_rows, max_errors=max_errors,
                       title=model.__name__)

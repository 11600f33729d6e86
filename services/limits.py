"""The ASGI guard in front of the service: what a request must be before BentoML parses it.

- **415** for a body on an API route that is not declared `application/json` (charset, if given, utf-8). BentoML
  would otherwise pick a parser by content type, and its form and multipart parsers fail with 500s on malformed
  input (missing boundary, invalid UTF-8, deep nesting, huge numbers). A JSON body sent as `text/plain` or with no
  content type is refused too: the API speaks JSON only, and saying so beats guessing.
- **413** for a body above `serve.max_body_bytes` (declared Content-Length, or counted for a chunked body). The
  rest of the body is read and discarded first (up to `serve.discard_body_bytes`, within the body deadline):
  answering and closing while the client is still sending makes the kernel reset the connection, and a client
  that does not send `Expect: 100-continue` (urllib, most SDKs) then sees a broken pipe instead of the 413.
- **408** when the whole body has not arrived within `serve.body_timeout_s` of the request head (a Content-Length
  larger than what is sent, an unfinished chunked body, a client dripping bytes).
- `/docs.json` is rewritten by `describe_errors` so the OpenAPI says what the service answers.

The body is read here, once, and replayed to BentoML; 413/408/415 close the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

Scope = dict[str, Any]
JSON_MEDIA_TYPE = "application/json"


class _Deadlines:
    """Body-read deadlines of this worker's requests, enforced by one periodic task that cancels the reads past
    theirs: arming and cancelling an asyncio timer per request cost ~10-17 us (a loaded 2-core machine), a dict
    entry well under 1 us. A read ends at most `resolution` seconds after its deadline."""

    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        self.pending: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self._checker: asyncio.Task[None] | None = None

    def watch(self, task: asyncio.Task[Any], deadline: float) -> None:
        self.pending[task] = deadline
        if self._checker is None or self._checker.done():
            self._checker = asyncio.get_running_loop().create_task(self._check())

    def finish(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching `task`; True if its deadline had passed (it was, or is being, cancelled)."""
        self.pending.pop(task, None)
        if task in self.expired:
            self.expired.discard(task)
            return True
        return False

    async def _check(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.resolution)
            now = loop.time()
            for task, deadline in list(self.pending.items()):
                if deadline <= now:
                    del self.pending[task]
                    self.expired.add(task)
                    task.cancel()


class RequestGuard:
    """Who may call, how many at once, and the content type, size and time limits of request bodies; the OpenAPI
    served at `/docs.json` corrected.

    Per worker, on the API and admin routes (health probes, `/metrics` and the docs pass untouched):
    - **401** without the admin token on an admin route, or without a valid API key on an API route when
      `serve.api_keys` names some (`access`); the caller's identity goes into the request's scope (`CALLER_SCOPE`).
    - **503 + Retry-After** when `max_concurrency` requests are already in this worker, or when the body would
      take the bytes held by the worker's requests past `max_buffered_bytes`. Every other 503 of these routes
      (no model yet, adaptive batching's load shedding) gets the Retry-After too.
    A refusal made before the body is read reads and drops the body first (within `discard_body_bytes` and the
    body deadline), as the 413 does, so the client reads the answer rather than a reset connection.
    """

    def __init__(self, app: Any, *, max_body_bytes: int, discard_body_bytes: int, body_timeout_s: float,
                 json_routes: Iterable[str], admin_routes: Iterable[str] = (), access: Any = None,
                 max_concurrency: int | None = None, max_buffered_bytes: int | None = None, retry_after_s: int = 1,
                 openapi_path: str = "/docs.json", openapi_notes: Mapping[str, Any] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.discard_body_bytes = discard_body_bytes
        self.body_timeout_s = body_timeout_s
        self.json_routes = frozenset(json_routes)
        self.admin_routes = frozenset(admin_routes)
        self.access = access
        self.max_concurrency = max_concurrency
        self.max_buffered_bytes = max_buffered_bytes
        self.retry_after = str(retry_after_s).encode()
        self.openapi_path = openapi_path
        self.openapi_notes = dict(openapi_notes or {})
        self.in_flight = 0   # requests of the guarded routes in this worker now
        self.buffered = 0    # body bytes they hold (reserved by Content-Length, counted for chunked bodies)
        self._memory = MemoryKeeper(max(1, (max_buffered_bytes or max_body_bytes * 8) // 4))
        self._deadlines = _Deadlines(resolution=min(0.25, body_timeout_s / 4))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        api = path in self.json_routes
        if not api and path not in self.admin_routes:
            if path == self.openapi_path and scope["method"] == "GET":
                await self._openapi(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        declared, length_problem = _declared_length(headers)
        if length_problem is not None:
            await _refuse(send, 400, length_problem)
            return
        if self.access is not None:
            problem = self.access.admit(scope, headers, admin=not api)
            if problem is not None:
                await self._drain_then_refuse(receive, send, headers, declared, 401, problem,
                                              [(b"www-authenticate", b'Bearer realm="flightops"')])
                return
        if self.max_concurrency is not None and self.in_flight >= self.max_concurrency:
            await self._drain_then_refuse(receive, send, headers, declared, 503,
                                          f"this worker is handling serve.max_concurrency ({self.max_concurrency}) "
                                          "requests: retry after the Retry-After seconds", self._retry())
            return
        self.in_flight += 1
        try:
            await self._guarded(scope, receive, _with_retry_after(send, self.retry_after), headers, declared, api)
        finally:
            self.in_flight -= 1

    def _retry(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", self.retry_after)]

    async def _guarded(self, scope: Scope, receive: Any, send: Any, headers: dict[bytes, bytes], declared: int | None,
                       api: bool) -> None:
        if api and scope["method"] == "POST":
            problem = _media_type_problem(headers.get(b"content-type"))
            if problem is not None:
                await _refuse(send, 415, problem)
                return
        if declared is None and b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)  # no body (GET, a bodyless POST)
            return
        if declared is not None and declared > self.max_body_bytes and (
                declared > self.discard_body_bytes or headers.get(b"expect", b"").lower() == b"100-continue"):
            # Nothing sent yet (100-continue), or too much to be worth reading: answer now.
            await self._too_large(send, declared)
            return
        if (declared is not None and declared <= self.max_body_bytes and self.max_buffered_bytes is not None
                and self.buffered + declared > self.max_buffered_bytes):
            await self._drain_then_refuse(receive, send, headers, declared, 503, self._over_buffer(), self._retry())
            return
        await self._read_then_call(scope, receive, send, declared)

    def _over_buffer(self) -> str:
        return (f"this worker holds serve.max_buffered_bytes ({self.max_buffered_bytes}) of request bodies: retry "
                "after the Retry-After seconds")

    async def _receive(self, receive: Any, declared: int | None, keep: bool,
                       grown: list[int] | None = None) -> tuple[list[bytes], int, str]:
        """Read the body within the deadline: (chunks kept, bytes seen, outcome). Outcomes: "complete",
        "too_large", "over_buffer" (the rest is read and dropped), "timeout", "gone". Kept chunks count against
        the worker's buffer: `declared` bytes were reserved by the caller; beyond them (a chunked body) the bytes
        are reserved as they come and added to `grown[0]`, for the caller to give back."""
        task = asyncio.current_task()
        assert task is not None
        self._deadlines.watch(task, asyncio.get_running_loop().time() + self.body_timeout_s)
        chunks: list[bytes] = []
        size, more, outcome = 0, True, "complete"
        reserved = declared or 0
        try:
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return chunks, size, "gone"  # the client left: nobody to answer
                chunk = message.get("body", b"")
                size += len(chunk)
                more = message.get("more_body", False)
                if size > self.max_body_bytes and outcome == "complete":
                    outcome = "too_large"
                if size > self.discard_body_bytes:
                    break
                if not keep or outcome != "complete":
                    continue
                if size > reserved:  # a chunked body (or one longer than declared): reserve as it arrives
                    limit = self.max_buffered_bytes
                    if limit is not None and self.buffered + size - reserved > limit:
                        outcome = "over_buffer"
                        continue
                    self.buffered += size - reserved
                    if grown is not None:
                        grown[0] += size - reserved
                    reserved = size
                    self._memory.note(self.buffered)
                chunks.append(chunk)
        except asyncio.CancelledError:
            if not self._deadlines.finish(task):
                raise  # cancelled for another reason (shutdown, client gone)
            task.uncancel()
            return chunks, size, "timeout" if outcome == "complete" else outcome
        if self._deadlines.finish(task):  # the deadline passed as the last chunk arrived: absorb the cancel
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
            task.uncancel()
            if more and outcome == "complete":
                return chunks, size, "timeout"
        return chunks, size, outcome

    async def _read_then_call(self, scope: Scope, receive: Any, send: Any, declared: int | None) -> None:
        reserved = declared if declared is not None and declared <= self.max_body_bytes else 0
        self.buffered += reserved
        self._memory.note(self.buffered)
        grown = [0]
        try:
            chunks, size, outcome = await self._receive(receive, declared if reserved else None, keep=True,
                                                        grown=grown)
            if outcome == "gone":
                return
            if outcome == "too_large":
                await self._too_large(send, declared or size)
            elif outcome == "over_buffer":
                await _refuse(send, 503, self._over_buffer(), self._retry())
            elif outcome == "timeout":
                await _refuse(send, 408, f"request body not received within serve.body_timeout_s "
                                         f"({self.body_timeout_s:g} s): {size} bytes arrived"
                                         + (f" of {declared}" if declared is not None else ""))
            else:
                body = b"".join(chunks)
                del chunks
                replayed = False

                async def replay() -> dict[str, Any]:
                    nonlocal replayed
                    if not replayed:
                        replayed = True
                        return {"type": "http.request", "body": body, "more_body": False}
                    return await receive()

                await self.app(scope, replay, send)
        finally:
            self.buffered -= reserved + grown[0]
            self._memory.settle(self.buffered)

    async def _drain_then_refuse(self, receive: Any, send: Any, headers: dict[bytes, bytes], declared: int | None,
                                 status: int, message: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
        """Answer without using the body, after reading and dropping it (unless it was never going to be sent, or
        is too large to be worth reading): closing on a client still sending resets its connection."""
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        waits = headers.get(b"expect", b"").lower() == b"100-continue"
        if (declared or chunked) and not waits and (declared or 0) <= self.discard_body_bytes:
            _, _, outcome = await self._receive(receive, None, keep=False)
            if outcome == "gone":
                return
        await _refuse(send, status, message, extra)

    async def _too_large(self, send: Any, size: int) -> None:
        await _refuse(send, 413, f"request body of {size} bytes exceeds serve.max_body_bytes ({self.max_body_bytes})")

    async def _openapi(self, scope: Scope, receive: Any, send: Any) -> None:
        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(parts)
        if start.get("status") == 200:
            spec = describe_errors(json.loads(body), self.json_routes, max_body_bytes=self.max_body_bytes,
                                   admin_routes=self.admin_routes, **self.openapi_notes)
            body = json.dumps(spec).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({"type": "http.response.start", "status": start.get("status", 500),
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _declared_length(headers: dict[bytes, bytes]) -> tuple[int | None, str | None]:
    """The Content-Length as a number, or why it is refused."""
    value = headers.get(b"content-length")
    if value is None:
        return None, None
    try:
        declared = int(value)
    except ValueError:
        declared = -1
    if declared < 0:
        return None, "Content-Length header is not a non-negative number"
    return declared, None


def _with_retry_after(send: Any, seconds: bytes) -> Any:
    """`send` that adds Retry-After to a 503 (no model yet, adaptive batching shedding load): the caller should
    retry, and says when."""

    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] == 503:
            headers = list(message.get("headers", []))
            if not any(key.lower() == b"retry-after" for key, _ in headers):
                message = {**message, "headers": [*headers, (b"retry-after", seconds)]}
        await send(message)

    return sending


class MemoryKeeper:
    """Hands the heap back to the system after a flood of request bodies.

    Bodies arrive in chunks of up to 64 KB, below glibc's mmap threshold: a flood leaves the worker's heap grown
    and fragmented after every chunk is freed (1,000 stalled 1.8 MB bodies took a worker from 0.4 to 1.3 GB, kept).
    When the bytes held drop to zero after having passed `threshold`, `malloc_trim(0)` returns the free pages, at
    most once a second (it walks the heap: a few ms after a flood, nothing on the steady path).
    """

    def __init__(self, threshold: int, min_interval_s: float = 1.0) -> None:
        self.threshold = threshold
        self.min_interval_s = min_interval_s
        self.peak = 0
        self.trims = 0
        self._last = 0.0

    def note(self, held: int) -> None:
        if held > self.peak:
            self.peak = held

    def settle(self, held: int) -> None:
        if held or self.peak < self.threshold:
            return
        import time

        now = time.monotonic()
        if now - self._last < self.min_interval_s:
            return
        from services.hardening import release_free_memory

        self._last, self.peak = now, 0
        if release_free_memory():
            self.trims += 1


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request headers the guard reads (names are lower-case in ASGI); the first of a repeated name wins."""
    found: dict[bytes, bytes] = {}
    for key, value in scope.get("headers", ()):
        found.setdefault(key, value)
    return found


def _media_type_problem(content_type: bytes | None) -> str | None:
    """Why a request's Content-Type is refused, or None for JSON."""
    if content_type == b"application/json":
        return None
    if content_type is None:
        return f"Content-Type is missing: send the body as {JSON_MEDIA_TYPE}"
    text = content_type.decode("latin-1")
    media_type, *parameters = (part.strip() for part in text.split(";"))
    if media_type.lower() != JSON_MEDIA_TYPE:
        return f"Content-Type {media_type[:100]!r} is not supported: send the body as {JSON_MEDIA_TYPE}"
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return f"charset {value.strip()[:40]!r} is not supported: send {JSON_MEDIA_TYPE} in UTF-8"
    return None


async def _refuse(send: Any, status: int, message: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """A JSON error answer that also closes the connection (the rest of a refused body must not be read as the
    next request)."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": body})


# --- the OpenAPI document ---------------------------------------------------------------------------------------

ERROR_SCHEMA = "FlightopsError"
VALIDATION_ERROR_SCHEMA = "FlightopsValidationError"
_REFUSALS = {
    408: "The body did not arrive within serve.body_timeout_s; the connection is closed.",
    413: "The body is larger than serve.max_body_bytes; the connection is closed.",
    415: "The body is not declared as application/json (charset utf-8).",
    503: "Retry after the Retry-After seconds: no champion model is loaded yet, this worker is at "
         "serve.max_concurrency requests or serve.max_buffered_bytes of bodies, or (adaptive batching) the request "
         "cannot be served within serve.adaptive_max_latency_ms.",
}
BEARER = "bearer"
BATCH_ROWS = ("Rows are checked one by one: a row that matches the row schema is scored; any other object is "
              "refused on its own (listed in the answer by index and field) and the batch's other rows are still "
              "answered. Only a wrong envelope (not an object with this one key, not a list of 1 to "
              "serve.max_batch_size objects) refuses the batch with a 400.")


def describe_errors(spec: Mapping[str, Any], json_routes: Iterable[str], *, max_body_bytes: int,
                    admin_routes: Iterable[str] = (), batch_routes: Iterable[str] = (), api_keys: bool = False,
                    max_errors: int = 20, answers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """BentoML's generated OpenAPI with the API routes' answers as the service gives them.

    BentoML declares a 400 whose `detail` is a string, while it answers pydantic's error list; it does not mark the
    body as required, nor list the guard's 401/408/413/415/503 or the 503 of a service without a model. And it
    labels the document OpenAPI 3.0.2 while its schemas are pydantic's JSON Schema 2020-12 (`{"type": "null"}` for
    optional fields, numeric `exclusiveMinimum`), which is OpenAPI 3.1's dialect: a 3.0 reader (schemathesis)
    cannot generate requests from them. The batch routes' rows are declared as the service takes them: any object,
    a row of the schema scored and any other refused alone (`BATCH_ROWS`). Admin routes (and, with `api_keys`, the
    API routes) declare the bearer token they need. `answers` replaces a route's 200 schema (BentoML documents only
    the first member of a union answer). Pure: returns a new document.
    """
    spec = json.loads(json.dumps(spec))
    spec["openapi"] = "3.1.0"
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas[ERROR_SCHEMA] = {
        "title": ERROR_SCHEMA, "type": "object", "required": ["error"],
        "properties": {"error": {"type": "string", "title": "Message"}},
    }
    schemas[VALIDATION_ERROR_SCHEMA] = {
        "title": VALIDATION_ERROR_SCHEMA, "type": "object", "required": ["error", "detail"],
        "description": f"The request did not match the schema. `error` gives the number of errors; `detail` lists "
                       f"at most {max_errors} (serve.max_errors), each naming a field by its path, then an item of "
                       "type `too_many_errors` counting the rest.",
        "properties": {
            "error": {"type": "string", "title": "Message"},
            "detail": {"type": "array", "maxItems": max_errors + 1, "items": {
                "type": "object", "required": ["type", "loc", "msg"],
                "properties": {
                    "type": {"type": "string"},
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "url": {"type": "string"},
                }}},
        },
    }
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http", "scheme": "bearer",
        "description": "Admin routes: the admin token (<paths.stack_dir>/credentials/admin-token). API routes, when "
                       "serve.api_keys names callers: the caller's key (credentials/api-keys/<name>)."}
    retry_after = {"Retry-After": {"description": "Seconds to wait before retrying (serve.retry_after_s).",
                                   "schema": {"type": "integer"}}}

    def answer(description: str, schema: str) -> dict[str, Any]:
        return {"description": description,
                "content": {JSON_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}

    def secured(operation: dict[str, Any], who: str) -> None:
        operation["security"] = [{BEARER: []}]
        operation.setdefault("responses", {})["401"] = answer(f"No valid bearer token ({who}).", ERROR_SCHEMA)

    batch_routes = set(batch_routes)
    for route in json_routes:
        operation = spec.get("paths", {}).get(route, {}).get("post")
        if operation is None:
            continue
        body = operation.get("requestBody") or {}
        body["required"] = True
        body["content"] = {JSON_MEDIA_TYPE: (body.get("content") or {}).get(JSON_MEDIA_TYPE, {})}
        body.setdefault("description", f"A JSON object, at most {max_body_bytes} bytes (serve.max_body_bytes).")
        operation["requestBody"] = body
        if route in batch_routes:
            _rows_checked_one_by_one(spec, body)
            operation["description"] = f"{operation.get('description', '')}\n\n{BATCH_ROWS}".strip()
        responses = operation.setdefault("responses", {})
        if answers and route in answers:
            responses.setdefault("200", {"description": "Successful Response"})["content"] = {
                JSON_MEDIA_TYPE: {"schema": json.loads(json.dumps(answers[route]))}}
        responses["400"] = answer(
            "The body is not valid JSON or its envelope is wrong" + ("" if route in batch_routes else
                                                                    ", or a field is invalid")
            + " (each named in `detail[].loc`).", VALIDATION_ERROR_SCHEMA)
        for status, description in _REFUSALS.items():
            responses[str(status)] = answer(description, ERROR_SCHEMA)
        responses["503"]["headers"] = retry_after
        if api_keys:
            secured(operation, "the caller's API key, serve.api_keys")
    for route in admin_routes:
        for operation in spec.get("paths", {}).get(route, {}).values():
            secured(operation, "the admin token")
    for route in ("/readyz", "/metadata"):  # both answer 503 until a champion is loaded
        operation = spec.get("paths", {}).get(route, {}).get("get")
        if operation is not None:
            operation.setdefault("responses", {})["503"] = {"description": "No champion model is loaded yet."}
    return spec


def _rows_checked_one_by_one(spec: dict[str, Any], body: dict[str, Any]) -> None:
    """The batch body's row items as any object, the row schema still shown as the one that is scored."""
    schema = body["content"].get(JSON_MEDIA_TYPE, {}).get("schema", {})
    reference = schema.get("$ref", "")
    if reference.startswith("#/components/schemas/"):
        schema = spec["components"]["schemas"][reference.rsplit("/", 1)[1]]
    for prop in schema.get("properties", {}).values():
        items = prop.get("items") if prop.get("type") == "array" else None
        if isinstance(items, dict) and "anyOf" not in items:
            prop["items"] = {"anyOf": [items, {"type": "object"}], "description": BATCH_ROWS}

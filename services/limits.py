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
    """Content type, size and time limits for request bodies; the OpenAPI served at `/docs.json` corrected."""

    def __init__(self, app: Any, *, max_body_bytes: int, discard_body_bytes: int, body_timeout_s: float,
                 json_routes: Iterable[str], openapi_path: str = "/docs.json") -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.discard_body_bytes = discard_body_bytes
        self.body_timeout_s = body_timeout_s
        self.json_routes = frozenset(json_routes)
        self.openapi_path = openapi_path
        self._deadlines = _Deadlines(resolution=min(0.25, body_timeout_s / 4))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == self.openapi_path and scope["method"] == "GET":
            await self._openapi(scope, receive, send)
            return
        headers = _headers(scope)
        if scope["method"] == "POST" and scope["path"] in self.json_routes:
            problem = _media_type_problem(headers.get(b"content-type"))
            if problem is not None:
                await _refuse(send, 415, problem)
                return
        length_header = headers.get(b"content-length")
        if length_header is None and b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)  # no body (GET, a bodyless POST)
            return
        declared = None
        if length_header is not None:
            try:
                declared = int(length_header)
                if declared < 0:
                    raise ValueError
            except ValueError:
                await _refuse(send, 400, "Content-Length header is not a non-negative number")
                return
            if declared > self.max_body_bytes and (
                    declared > self.discard_body_bytes or headers.get(b"expect", b"").lower() == b"100-continue"):
                # Nothing sent yet (100-continue), or too much to be worth reading: answer now.
                await self._too_large(send, declared)
                return
        await self._read_then_call(scope, receive, send, declared)

    async def _read_then_call(self, scope: Scope, receive: Any, send: Any, declared: int | None) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._deadlines.watch(task, asyncio.get_running_loop().time() + self.body_timeout_s)
        chunks: list[bytes] = []
        size, more, too_large = 0, True, declared is not None and declared > self.max_body_bytes
        timed_out = False
        try:
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client left: nobody to answer
                chunk = message.get("body", b"")
                size += len(chunk)
                more = message.get("more_body", False)
                if size > self.max_body_bytes:
                    too_large = True
                    if size > self.discard_body_bytes:
                        break
                if not too_large:
                    chunks.append(chunk)
        except asyncio.CancelledError:
            if not self._deadlines.finish(task):
                raise  # cancelled for another reason (shutdown, client gone)
            task.uncancel()
            timed_out = True
        else:
            if self._deadlines.finish(task):  # the deadline passed as the last chunk arrived: absorb the cancel
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0)
                task.uncancel()
                timed_out = more
        if timed_out:
            if too_large:
                await self._too_large(send, declared or size)
            else:
                await _refuse(send, 408, f"request body not received within serve.body_timeout_s "
                                         f"({self.body_timeout_s:g} s): {size} bytes arrived"
                                         + (f" of {declared}" if declared is not None else ""))
            return
        if too_large:
            await self._too_large(send, declared or size)
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

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
            spec = describe_errors(json.loads(body), self.json_routes, max_body_bytes=self.max_body_bytes)
            body = json.dumps(spec).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({"type": "http.response.start", "status": start.get("status", 500),
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


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


async def _refuse(send: Any, status: int, message: str) -> None:
    """A JSON error answer that also closes the connection (the rest of a refused body must not be read as the
    next request)."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# --- the OpenAPI document ---------------------------------------------------------------------------------------

ERROR_SCHEMA = "FlightopsError"
VALIDATION_ERROR_SCHEMA = "FlightopsValidationError"
_REFUSALS = {
    408: "The body did not arrive within serve.body_timeout_s; the connection is closed.",
    413: "The body is larger than serve.max_body_bytes; the connection is closed.",
    415: "The body is not declared as application/json (charset utf-8).",
    503: "No champion model is loaded yet, or (adaptive batching) the request cannot be served within "
         "serve.adaptive_max_latency_ms: retry.",
}


def describe_errors(spec: Mapping[str, Any], json_routes: Iterable[str], *, max_body_bytes: int) -> dict[str, Any]:
    """BentoML's generated OpenAPI with the API routes' answers as the service gives them.

    BentoML declares a 400 whose `detail` is a string, while it answers pydantic's error list; it does not mark the
    body as required, nor list the guard's 408/413/415 or the 503 of a service without a model. And it labels the
    document OpenAPI 3.0.2 while its schemas are pydantic's JSON Schema 2020-12 (`{"type": "null"}` for optional
    fields, numeric `exclusiveMinimum`), which is OpenAPI 3.1's dialect: a 3.0 reader (schemathesis) cannot
    generate requests from them. Pure: returns a new document.
    """
    spec = json.loads(json.dumps(spec))
    spec["openapi"] = "3.1.0"
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_SCHEMA] = {
        "title": ERROR_SCHEMA, "type": "object", "required": ["error"],
        "properties": {"error": {"type": "string", "title": "Message"}},
    }
    schemas[VALIDATION_ERROR_SCHEMA] = {
        "title": VALIDATION_ERROR_SCHEMA, "type": "object", "required": ["error", "detail"],
        "description": "The request did not match the schema; each item of `detail` names a field by its path.",
        "properties": {
            "error": {"type": "string", "title": "Message"},
            "detail": {"type": "array", "items": {
                "type": "object", "required": ["type", "loc", "msg"],
                "properties": {
                    "type": {"type": "string"},
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "url": {"type": "string"},
                }}},
        },
    }

    def answer(description: str, schema: str) -> dict[str, Any]:
        return {"description": description,
                "content": {JSON_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}

    for route in json_routes:
        operation = spec.get("paths", {}).get(route, {}).get("post")
        if operation is None:
            continue
        body = operation.get("requestBody") or {}
        body["required"] = True
        body["content"] = {JSON_MEDIA_TYPE: (body.get("content") or {}).get(JSON_MEDIA_TYPE, {})}
        body.setdefault("description", f"A JSON object, at most {max_body_bytes} bytes (serve.max_body_bytes).")
        operation["requestBody"] = body
        responses = operation.setdefault("responses", {})
        responses["400"] = answer("The body is not valid JSON or not valid for the schema (field named in "
                                  "`detail[].loc`).", VALIDATION_ERROR_SCHEMA)
        for status, description in _REFUSALS.items():
            responses[str(status)] = answer(description, ERROR_SCHEMA)
    for route in ("/readyz", "/metadata"):  # both answer 503 until a champion is loaded
        operation = spec.get("paths", {}).get(route, {}).get("get")
        if operation is not None:
            operation.setdefault("responses", {})["503"] = {"description": "No champion model is loaded yet."}
    return spec

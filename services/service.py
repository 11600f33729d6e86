"""The Bento service: serves the registry's champion, validates every request, logs every prediction.

`bentoml serve services.service:FlightDelay` (from the repo root) serves the champion named by the registry's
pointer and follows promotions (hot reload, see `services/scoring.py`). A built Bento serves the model it was
built with (`python -m deploy.package` bundles the tag). Configuration is `params.yaml` (or the file named by
$FLIGHTOPS_PARAMS): the `serve` section, `features` + `source.time_column` for the request schema, and `paths`.

Import does what BentoML needs at class-definition time and nothing more: read params (the request schema and
the service config are class attributes) and name the champion's tag so `bentoml build` packs that model.
The model itself is loaded when a worker starts.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import json
import logging
import os
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import anyio
import bentoml
from bentoml.validators import ContentType
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, create_model

from pipelines import credentials, io
from pipelines.config import DEFAULT_PARAMS_FILE, PARAMS_ENV, Params, load_params
from pipelines.data.suite import BOOLEAN_KINDS, column_bounds, read_suite, suite_column_types, suite_date_only
from pipelines.monitor.prediction_log import PredictionLog, RefusalLog
from services.access import CALLER_SCOPE, Access
from services.bodies import BodyChecker, BoundedValidationError, CheckedRows, Rejected, from_body_model
from services.hardening import (
    WorkerUser,
    bounded_heap,
    close_idle_connections,
    die_with_parent,
    private_process_manager,
)
from services.limits import RequestGuard
from services.refusals import refused_rows
from services.schemas import (
    BatchPrediction,
    Prediction,
    RejectedRow,
    batch_annotation,
    flight_model,
    request_fields,
)
from services.scoring import ChampionWatcher, LoadedModel, score

MODEL_TAG_ENV = "FLIGHTOPS_MODEL_TAG"
API_ROUTES = ("/predict", "/predict_many", "/predict_batch")
BATCH_ROUTES = ("/predict_many", "/predict_batch")
ADMIN_ROUTES = ("/metadata", "/reload")

log = logging.getLogger("flightops.service")


def startup_tag(params: Params) -> tuple[str | None, bool]:
    """(tag, follow_registry): $FLIGHTOPS_MODEL_TAG pins a model; else the registry's champion is followed; else
    the tag bundled at build time is served; else nothing yet (not ready until a champion is promoted)."""
    from pipelines.release.registry import RegistryError, champion_tag, open_registry

    pinned = os.environ.get(MODEL_TAG_ENV)
    if pinned:
        return pinned, False
    registry = open_registry(params)
    current = champion_tag(registry)
    if current is not None:
        try:  # from a remote registry into this machine's store, where BentoML reads models
            registry.fetch(current)
        except RegistryError as error:  # the watcher says why in /metadata and retries at each check
            log.warning("champion %s not loadable yet: %s", current, error)
        return current, True
    bundled = params.serve.bundled_champion_file
    if bundled.exists():
        return json.loads(bundled.read_text())["tag"], False
    return None, True


class _StrictBody(bentoml.IODescriptor):
    """A request body: unknown top-level keys are refused (a typo such as `flight_s` or a `model_tag` a caller
    hopes to pick a model with must not be silently ignored). The model documents the body (OpenAPI); the body is
    read by its route's `BodyChecker` (`services/bodies.py`): bounded refusals, batches answered per row. Refused
    rows (a whole body, or rows of a batch) are recorded for monitoring (`REFUSALS`): the traffic the model never
    sees is watched too."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> Any:
        checker = _CHECKERS[cls]
        body = await request.body()
        try:
            value = checker.check(body, request.scope.get(CALLER_SCOPE, ""))
        except BoundedValidationError as error:
            _record_refusal(request.url.path, body, error.errors())
            raise
        if isinstance(value, CheckedRows) and value.rejected_count:
            _record_refusal(request.url.path, body, _rejected_errors(value))
        return cls.model_construct(**{checker.key: value})


def _rejected_errors(rows: CheckedRows) -> list[dict[str, Any]]:
    """A batch's refused rows as error locations `(entities, index, field)` (what `refused_rows` reads)."""
    errors = []
    for item in rows:
        if isinstance(item, Rejected):
            fields = [error["field"].split(".")[0] for error in item.answer["errors"] if error.get("field")]
            errors.extend({"loc": (PROJECT.entity_plural, item.answer["index"], field)}
                          for field in fields or ["row"])
    return errors


def _record_refusal(route: str, body: bytes, errors: list[dict[str, Any]]) -> None:
    """The refused rows into the refusal log; a failure to record never changes the caller's answer."""
    try:
        REFUSALS.record(route, refused_rows(body, errors, PROJECT.entity, PROJECT.entity_plural, TIME_COLUMN))
    except Exception:  # the caller's answer is what it is whatever happens here
        log.exception("could not record a refused request on %s", route)


def request_body(name: str, field: str, annotation: Any, description: str) -> type[bentoml.IODescriptor]:
    """The body model of one API: `{field: ...}` and nothing else."""
    return create_model(name, __base__=_StrictBody, **{field: (annotation, Field(description=description))})


class RejectedRequestLog(logging.Filter):
    """BentoML logs every refused request as an ERROR with a traceback whose pydantic message quotes the input
    (~2 KB per request, the caller's values in the service log). A refusal is the caller's error: one WARNING line
    with the route, the status and the fields at fault, no values."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        error = record.exc_info[1] if record.exc_info else None
        status = getattr(getattr(error, "error_code", None), "value", 500)
        if isinstance(error, ValidationError):
            fields = sorted({".".join(str(part)[:60] for part in item["loc"]) or "body"
                             for item in error.errors(include_input=False, include_context=False)})
            summary = f"400, {error.error_count()} error(s) at {', '.join(fields[:10])}"
        elif isinstance(error, bentoml.exceptions.BentoMLException) and 400 <= status < 500:
            summary = f"{status}, {type(error).__name__}"
        elif isinstance(error, bentoml.exceptions.ServiceUnavailable):
            # Load shed (on /predict_many: adaptive batching past serve.adaptive_max_latency_ms): load, not a
            # fault; the caller retries. A traceback per shed request would flood the log when it is busiest.
            summary = f"{status}, load shed ({error}; serve.adaptive_max_latency_ms on /predict_many)"
        else:
            return True
        record.msg, record.args = "refused %s %s: %s", (*(record.args or ("?", "?"))[:2], summary)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


PARAMS = load_params(os.environ.get(PARAMS_ENV) or DEFAULT_PARAMS_FILE)
PROJECT = PARAMS.project  # names and words: the service, the request's keys, the API docs
TIME_COLUMN = PARAMS.source.time_column
# Numeric request fields take the ranges the validation suite holds the training data to: one source of truth.
SUITE = read_suite(PARAMS.validate_.suite)
BOUNDS = column_bounds(SUITE, PARAMS.features.numeric)
KINDS = suite_column_types(SUITE)
# Categorical features the suite types as numbers are integer-coded: they take JSON numbers as well as strings.
CODED = [name for name, kind in KINDS.items() if kind == "numeric" and name in PARAMS.features.categorical]
# Features the suite types as booleans take JSON true/false, as the table held them.
BOOLEANS = [name for name, kind in KINDS.items() if kind in BOOLEAN_KINDS and name in PARAMS.features.raw_columns]
Flight = flight_model(PARAMS.features, TIME_COLUMN, BOUNDS, PROJECT.entity, CODED, BOOLEANS,
                      date_only=suite_date_only(SUITE, TIME_COLUMN))
Flights = batch_annotation(Flight, PARAMS.serve.max_batch_size)
REQUEST_FIELDS = request_fields(Flight)
# The request's keys are project.entity / entity_plural ({"flight": ...} for the default data).
OneFlightBody = request_body(f"One{PROJECT.entity.title().replace('_', '')}", PROJECT.entity, Flight,
                             f"The {PROJECT.entity} to score.")
FlightsBody = request_body(PROJECT.entity_plural.title().replace("_", ""), PROJECT.entity_plural, Flights,
                           f"The {PROJECT.entity_plural} to score.")
_CHECKERS: dict[type, BodyChecker] = {
    OneFlightBody: from_body_model(OneFlightBody, PROJECT.entity, batch=False, max_rows=1,
                                   max_errors=PARAMS.serve.max_errors),
    FlightsBody: from_body_model(FlightsBody, PROJECT.entity_plural, batch=True,
                                 max_rows=PARAMS.serve.max_batch_size, max_errors=PARAMS.serve.max_errors),
}
_TAG, _FOLLOW = startup_tag(PARAMS)
# Each worker process writes its own refusal files (the writer reopens after a fork), beside the prediction log.
REFUSALS = RefusalLog(PARAMS.paths.prediction_log_dir, rotate_hourly=PARAMS.serve.prediction_log.rotate_hourly,
                      rotate_bytes=PARAMS.serve.prediction_log.rotate_bytes,
                      max_total_bytes=PARAMS.serve.prediction_log.max_total_bytes)


def _verifier() -> credentials.Verifier | None:
    """The admin token's and API keys' digests: made (with the secrets, 0600) by the first process that can write
    the credentials folder (the stack, or `bentoml serve` in its main process), read by the workers."""
    if credentials.can_write(credentials.folder(PARAMS)):
        return credentials.ensure_service_credentials(PARAMS)
    verifier = credentials.read_verifier(PARAMS)
    missing = set(PARAMS.serve.api_keys) - set((verifier.api_keys if verifier else {}).values())
    if missing:
        raise credentials.CredentialsError(
            f"serve.api_keys {sorted(missing)} have no key in {credentials.verify_file(PARAMS)}, and this process "
            "cannot make them: start the stack (or the service) once as the user who owns paths.stack_dir")
    return verifier


def _worker_user() -> WorkerUser:
    """Who the workers run as when `bentoml serve` starts as root, and the paths they must reach."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    paths = PARAMS.paths
    models = Path(BentoMLContainer.bentoml_home.get()).resolve() / "models"
    writable = [paths.prediction_log_dir.resolve()]
    if PARAMS.serve.predictor == "compiled":
        writable.append(paths.compiled_dir.resolve())
    if PARAMS.versioning.registry_remote:  # a worker imports each new champion from the remote into this store
        writable.append(models)
    readable = [Path(os.environ.get(PARAMS_ENV) or DEFAULT_PARAMS_FILE).resolve(), PARAMS.validate_.suite.resolve(),
                paths.registry_dir.resolve(), models, credentials.verify_file(PARAMS).resolve(), Path.cwd()]
    if not PARAMS.versioning.registry_remote:  # with a remote, the workers import the champion themselves
        readable += _champion_files(models, paths.registry_dir.resolve())
    return WorkerUser(PARAMS.serve.worker_user, tuple(writable), tuple(readable))


def _champion_files(models: Path, registry_dir: Path) -> list[Path]:
    """The local champion's folder and its model.yaml: a model copied in by `bentoml models import` is a 0700 folder,
    which the workers would fail to read in a restart loop. Nothing when there is no local champion yet."""
    from pipelines.release.registry import champion_tag

    tag = champion_tag(registry_dir)
    if tag is None:
        return []
    name, _, version = tag.partition(":")
    folder = models / name / version
    return [folder, folder / io.BENTOML_MODEL_INFO]


VERIFIER = _verifier()
# BentoML offers no setting for these; each must be in place before BentoML builds what it patches (the main
# process's circus arbiter, each worker's uvicorn server), i.e. when BentoML imports this module. See hardening.py.
private_process_manager(_worker_user())
close_idle_connections(PARAMS.serve.idle_timeout_s)

admin = FastAPI(title="flightops admin")

# A list answer declared as JSON up front: without a declared media type BentoML derives it from the answer's JSON
# schema, which it rebuilds on every request (~20% of a worker's CPU in a profile of a list-returning endpoint).
ManyAnswers = Annotated[list[Prediction | RejectedRow], ContentType("application/json")]
# /predict_many's answer as the OpenAPI shows it (BentoML documents only a union's first member).
MANY_ANSWERS_SCHEMA = {"type": "array", "items": {"anyOf": [{"$ref": "#/components/schemas/Prediction"},
                                                            {"$ref": "#/components/schemas/RejectedRow"}]},
                       "description": "One item per row sent, in order: a prediction, or the row's refusal."}


class NotReady(bentoml.exceptions.BentoMLException):
    error_code = HTTPStatus.SERVICE_UNAVAILABLE


def _api(key: str, annotation: Any, doc: str) -> Any:
    """The endpoint's doc from params, and its request value passed on from the key params name.

    BentoML documents an endpoint with the method's docstring and calls it with the body's keys (the input_spec's
    field, project.entity or entity_plural) as keyword arguments, or the value alone for adaptive batching: this
    sits below `@bentoml.api` and hands that value to the method whatever the key is called.
    """

    def apply(method: Any) -> Any:
        @functools.wraps(method)
        async def endpoint(self: Any, *args: Any, **kwargs: Any) -> Any:
            return await method(self, args[0] if args else kwargs[key])

        signature = inspect.signature(method)
        this = next(iter(signature.parameters.values()))
        endpoint.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
            this, inspect.Parameter(key, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation)])
        endpoint.__doc__ = doc
        del endpoint.__wrapped__  # BentoML must see the signature above, not the method's own
        return endpoint

    return apply


@bentoml.asgi_app(admin, path="/")
@bentoml.service(
    name=PROJECT.name,
    workers=PARAMS.serve.workers,
    http={"host": PARAMS.serve.host, "port": PARAMS.serve.port},
    traffic={"timeout": 30},
    logging={"access": {"enabled": PARAMS.serve.access_log}},
)
class FlightDelay:
    """Probability of the positive label for each row sent (params' project.description), from the promoted
    champion model. The class name is the import path (`services.service:FlightDelay`); the service's name is
    project.name."""

    if _TAG is not None:
        # Declared so that `bentoml build` packs the champion into the Bento.
        bundled_model = bentoml.models.BentoModel(_TAG)

    def __init__(self) -> None:
        serve = PARAMS.serve
        from pipelines.release.registry import open_registry

        registry = open_registry(PARAMS) if _FOLLOW else None
        compiled_dir = PARAMS.paths.compiled_dir if serve.predictor == "compiled" else None
        self.watcher = ChampionWatcher(registry, REQUEST_FIELDS, TIME_COLUMN,
                                       fixed_tag=None if _FOLLOW else _TAG, compiled_dir=compiled_dir,
                                       artifact=serve.artifact, variants_dir=PARAMS.paths.served_dir)
        self.watcher.check()
        budget = serve.prediction_log.caller_bytes_per_hour
        self.prediction_log = PredictionLog(PARAMS.paths.prediction_log_dir,
                                            rotate_hourly=serve.prediction_log.rotate_hourly,
                                            rotate_bytes=serve.prediction_log.rotate_bytes,
                                            max_total_bytes=serve.prediction_log.max_total_bytes,
                                            caller_budget_bytes=None if budget is None else budget // serve.workers)
        self._watch_task: asyncio.Task[None] | None = None

    @bentoml.on_startup
    async def _after_start(self) -> None:
        # A worker ends with the process that started it (kill -9 of `bentoml serve` must not leave it serving).
        die_with_parent()
        bounded_heap()
        logging.getLogger("bentoml._internal.server.http_app").addFilter(RejectedRequestLog())
        # Everything imported and loaded so far lives as long as the worker: freeze it out of the collector's
        # reach, then collect less often (serve.gc_threshold). Each 1,000-row batch allocates ~50k containers, and
        # with the defaults full collections walking the live request objects stalled batches by 100-250 ms.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*PARAMS.serve.gc_threshold)
        if self.watcher.registry is not None and PARAMS.serve.reload_check_seconds > 0:
            self._watch_task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(PARAMS.serve.reload_check_seconds)
            try:
                await anyio.to_thread.run_sync(self.watcher.check)
            except Exception:  # never let the watcher die: the next tick retries
                log.exception("champion check failed")

    @bentoml.on_shutdown
    def _close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        self.prediction_log.close()

    def __is_ready__(self) -> bool:
        """Ready means a champion is loaded (BentoML's /readyz answers 503 until then)."""
        return self.watcher.current is not None

    def _model(self) -> LoadedModel:
        loaded = self.watcher.current
        if loaded is None:
            raise NotReady("no champion model is loaded yet: promote one (the training DAG's gate does)")
        if PARAMS.serve.reload_check_seconds == 0:
            self.watcher.check()
            loaded = self.watcher.current or loaded
        return loaded

    @bentoml.api(route="/predict", input_spec=OneFlightBody)
    @_api(PROJECT.entity, Flight, f"{PROJECT.description}: probability and label for one {PROJECT.entity} "
                                  f"(label 1: {PROJECT.positive_meaning}).")
    async def predict(self, flight: Flight) -> Prediction:  # type: ignore[valid-type]
        loaded = self._model()
        answer = score(loaded, [flight], TIME_COLUMN, self.prediction_log)[0]
        return Prediction.model_construct(**answer, threshold=loaded.model.threshold, model_tag=loaded.tag)

    @bentoml.api(route="/predict_many", batchable=True, batch_dim=0, max_batch_size=PARAMS.serve.max_batch_size,
                 max_latency_ms=PARAMS.serve.adaptive_max_latency_ms, input_spec=FlightsBody)
    @_api(PROJECT.entity_plural, Flights,
          f"Adaptive batching: {PROJECT.entity_plural} from concurrent callers are merged into one model call by "
          "BentoML's dispatcher (up to serve.max_batch_size rows, waiting at most serve.adaptive_max_latency_ms); "
          "each caller gets its own rows back, in order: a prediction naming the model that gave it for each valid "
          "row, a refusal (index, fields) for each invalid one.")
    async def predict_many(self, flights: Flights) -> ManyAnswers:  # type: ignore[valid-type]
        loaded = self._model()
        threshold, tag = loaded.model.threshold, loaded.tag
        refused = [i for i, row in enumerate(flights) if type(row) is Rejected]
        if not refused:
            answers = score(loaded, flights, TIME_COLUMN, self.prediction_log)
            return [Prediction.model_construct(**answer, threshold=threshold, model_tag=tag) for answer in answers]
        valid = [row for row in flights if type(row) is not Rejected]
        answers = iter(score(loaded, valid, TIME_COLUMN, self.prediction_log) if valid else [])
        return [RejectedRow.model_construct(**row.answer) if type(row) is Rejected
                else Prediction.model_construct(**next(answers), threshold=threshold, model_tag=tag)
                for row in flights]

    @bentoml.api(route="/predict_batch", input_spec=FlightsBody)
    @_api(PROJECT.entity_plural, Flights,
          f"{PROJECT.description}: probabilities and labels for up to serve.max_batch_size {PROJECT.entity_plural}, "
          "all from one model. Every valid row is answered; each invalid one is refused on its own, by index and "
          "field.")
    async def predict_batch(self, flights: Flights) -> BatchPrediction:  # type: ignore[valid-type]
        loaded = self._model()
        if flights.rejected_count:
            positions = [i for i, row in enumerate(flights) if type(row) is not Rejected]
            valid = [flights[i] for i in positions]
            answers = score(loaded, valid, TIME_COLUMN, self.prediction_log, positions) if valid else []
            rejected = [RejectedRow.model_construct(**row.answer) for row in flights if type(row) is Rejected]
        else:
            answers = score(loaded, flights, TIME_COLUMN, self.prediction_log, columns=flights.columns)
            rejected = []
        # Not validated again: `score` built the rows with exactly RowPrediction's keys and types (validating 1,000
        # rows would cost ~0.4 ms; the serialised answer is the same, and the test checks it against the schema).
        return BatchPrediction.model_construct(model_tag=loaded.tag, threshold=loaded.model.threshold,
                                               caller=flights.caller, predictions=answers,
                                               rejected=rejected[:PARAMS.serve.max_errors],
                                               rejected_count=flights.rejected_count)

    @admin.get("/metadata")
    def metadata(self) -> dict[str, Any]:
        """The loaded model: tag, metrics, feature schema, training data version, threshold."""
        loaded = self.watcher.current
        if loaded is None:
            return JSONResponse({"error": "no champion model is loaded yet",
                                 "last_error": self.watcher.last_error}, status_code=503)
        meta = loaded.model.meta
        store = loaded.entry.to_metadata()
        return {
            "model_tag": loaded.tag,
            "threshold": loaded.model.threshold,
            "predictor": loaded.predictor,
            "served": loaded.served,  # "full", or the variant answering for model_tag (also in every log line)
            # The registry entry (pipelines.contracts.RegistryEntry): test metrics from the gate, DVC data hash.
            "metrics": store.get("metrics") or {"valid": meta.get("valid_metrics")},
            "training_data_version": store.get("data_version"),
            "feature_schema": loaded.model.schema.to_dict(),
            "request_fields": REQUEST_FIELDS,
            "store_metadata": store,
            "loaded_at": loaded.loaded_at,
            "follows_registry": self.watcher.registry is not None,
            "last_reload_error": self.watcher.last_error,
        }

    @admin.post("/reload")
    async def reload(self) -> Any:
        """Check the champion pointer now (admin token); answers the tag being served."""
        swapped = await anyio.to_thread.run_sync(self.watcher.check)
        current = self.watcher.current
        return {"model_tag": current.tag if current else None, "swapped": swapped,
                "last_reload_error": self.watcher.last_error}


FlightDelay.add_asgi_middleware(RequestGuard, max_body_bytes=PARAMS.serve.max_body_bytes,
                                discard_body_bytes=PARAMS.serve.discard_body_bytes,
                                body_timeout_s=PARAMS.serve.body_timeout_s,
                                json_routes=API_ROUTES, admin_routes=ADMIN_ROUTES,
                                access=Access(VERIFIER, keys_required=bool(PARAMS.serve.api_keys)),
                                max_concurrency=PARAMS.serve.max_concurrency,
                                max_buffered_bytes=PARAMS.serve.max_buffered_bytes,
                                retry_after_s=PARAMS.serve.retry_after_s,
                                openapi_notes={"batch_routes": BATCH_ROUTES, "api_keys": bool(PARAMS.serve.api_keys),
                                               "max_errors": PARAMS.serve.max_errors,
                                               "answers": {"/predict_many": MANY_ANSWERS_SCHEMA}})


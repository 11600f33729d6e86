"""What one 1,000-row `/predict_batch` request costs inside a worker, step by step, beside what the bare endpoint's
handler does with the same body: the ceiling the service's own work puts on its batch throughput, whatever HTTP
and BentoML cost (issue 37's batch goal, docs/serving.md "Figures").

    FLIGHTOPS_PARAMS=params.yaml python -m benchmarks.serving_handler --rows data/prepared/test.parquet

In this process, with the worker's garbage-collection settings (`gc.freeze()` after loading, `serve.gc_threshold`),
on the same rows `benchmarks.serving` sends: the service's body checker (orjson's parse, then the columnar checks,
`services/bodies.py`, `services/columnar.py`), scoring (features, the champion's predictor as the service loads it,
answers: `services.scoring.score`), the prediction log's write (into a temporary folder), and the answer's JSON;
beside them the bare endpoint's handler (`benchmarks/bare_service.py`): pydantic reading the body as
`list[dict[str, Any]]`, as BentoML does for it, and its constant answers. Each step's minimum and median over
`--repeats` requests. The service's handler alone bounds one worker's rows/s from above (a request runs on one
core): `1000 / handler ms`. With `--bare-rows-per-s` (the bare endpoint's 1-client rows/s that `python -m
benchmarks.serving --bare` measured over HTTP on the same machine) it also prints the handler time the service may
take for 0.9x that: the bare request's time less the bare handler is what HTTP and BentoML cost a request, and the
service pays that too.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(step: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Minimum and median milliseconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"min_ms": min(times) * 1e3, "median_ms": statistics.median(times) * 1e3}


def measure(rows_file: Path, batch: int, repeats: int) -> dict[str, Any]:
    import orjson
    from pydantic import TypeAdapter

    from benchmarks.serving import _rows
    from pipelines.config import DEFAULT_PARAMS_FILE, load_params
    from pipelines.monitor.prediction_log import PredictionLog
    from pipelines.release.registry import require_champion
    from services import service
    from services.schemas import BatchPrediction
    from services.scoring import load_tagged, score

    params = load_params(os.environ.get("FLIGHTOPS_PARAMS") or DEFAULT_PARAMS_FILE)
    time_column = params.source.time_column
    compiled_dir = params.paths.compiled_dir if params.serve.predictor == "compiled" else None
    loaded = load_tagged(require_champion(params.paths.registry_dir), service.REQUEST_FIELDS, time_column,
                         compiled_dir)
    rows = _rows(rows_file, params.features.raw_columns, time_column, batch)
    body = json.dumps({params.project.entity_plural: rows}).encode()
    checker = service._CHECKERS[service.FlightsBody]
    bare_body = TypeAdapter(dict[str, list[dict[str, Any]]])
    caller = "peer:127.0.0.1"

    with tempfile.TemporaryDirectory() as folder:
        log = PredictionLog(Path(folder), rotate_hourly=True, rotate_bytes=params.serve.prediction_log.rotate_bytes)

        def checked() -> Any:
            return checker.check(body, caller)

        def scored(prediction_log: PredictionLog | None) -> list[dict[str, Any]]:
            flights = checked()
            return score(loaded, flights, time_column, prediction_log, columns=flights.columns)

        answers = scored(None)

        def answer_json() -> bytes:
            return BatchPrediction.model_construct(model_tag=loaded.tag, threshold=loaded.model.threshold,
                                                   caller=caller, predictions=answers, rejected=[],
                                                   rejected_count=0).model_dump_json().encode()

        gc.collect()
        gc.freeze()
        gc.set_threshold(*params.serve.gc_threshold)
        steps = {
            "service: parse (orjson)": timed(lambda: orjson.loads(body), repeats),
            "service: parse + columnar checks": timed(checked, repeats),
            "service: + features, predict, answers": timed(lambda: scored(None), repeats),
            "service: + prediction log write": timed(lambda: scored(log), repeats),
            "service: answer JSON": timed(answer_json, repeats),
            "bare: pydantic list[dict[str, Any]]": timed(lambda: bare_body.validate_json(body), repeats),
            "bare: answer JSON": timed(lambda: orjson.dumps(
                {"predictions": [{"request_id": "bare", "probability": 0.5, "label": 0} for _ in rows]}), repeats),
        }
        log.close()
    handler = steps["service: + prediction log write"]["min_ms"] + steps["service: answer JSON"]["min_ms"]
    bare = steps["bare: pydantic list[dict[str, Any]]"]["min_ms"] + steps["bare: answer JSON"]["min_ms"]
    return {"rows": len(rows), "predictor": loaded.predictor, "steps": steps, "service_handler_ms": handler,
            "bare_handler_ms": bare, "service_ceiling_rows_per_s": len(rows) / handler * 1e3}


def handler_budget(rows: int, bare_rows_per_s: float, bare_handler_ms: float, goal: float = 0.9) -> dict[str, float]:
    """What the service's handler may take for `goal` x the bare endpoint's rows/s, if the rest of a request (HTTP,
    BentoML: the bare request's time less its handler) costs the service what it costs the bare endpoint."""
    bare_request_ms = rows / bare_rows_per_s * 1e3
    overhead_ms = bare_request_ms - bare_handler_ms
    service_request_ms = bare_request_ms / goal
    return {"bare_request_ms": bare_request_ms, "overhead_ms": overhead_ms, "service_request_ms": service_request_ms,
            "service_handler_budget_ms": service_request_ms - overhead_ms}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", required=True, type=Path, help="a prepared split (parquet) to take the rows from")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--bare-rows-per-s", type=float, default=None,
                        help="the bare endpoint's 1-client rows/s from `benchmarks.serving --bare`, same machine")
    args = parser.parse_args(argv)
    figures = measure(args.rows, args.batch, args.repeats)
    print(f"one {figures['rows']:,}-row request in process ({figures['predictor']}):")
    for name, step in figures["steps"].items():
        print(f"  {name:<42}{step['min_ms']:>8.2f} ms min {step['median_ms']:>8.2f} ms median")
    print(f"service handler (checks, scoring, log, answer): {figures['service_handler_ms']:.2f} ms -> at most "
          f"{figures['service_ceiling_rows_per_s']:,.0f} rows/s per worker even if HTTP cost nothing; bare handler "
          f"{figures['bare_handler_ms']:.2f} ms")
    if args.bare_rows_per_s:
        budget = handler_budget(figures["rows"], args.bare_rows_per_s, figures["bare_handler_ms"])
        print(f"bare endpoint at {args.bare_rows_per_s:,.0f} rows/s: {budget['bare_request_ms']:.2f} ms a request, "
              f"{budget['overhead_ms']:.2f} ms of it outside its handler (HTTP, BentoML); at 0.9x the service has "
              f"{budget['service_request_ms']:.2f} ms a request, so its handler must take at most "
              f"{budget['service_handler_budget_ms']:.2f} ms (now {figures['service_handler_ms']:.2f})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

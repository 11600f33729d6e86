"""Serving figures: latency and throughput of a running service, measured from a second process on loopback.

    python -m benchmarks.serving --url http://127.0.0.1:3000 --rows data/prepared/test.parquet [--bare]

The load generator is a separate process (this one) with keep-alive raw-socket HTTP/1.1 clients, one thread per
concurrent client; it reports single-row p50/p99 at 1 and 16 clients, requests/s, errors, and 1,000-row batch
throughput at 1, 2 and 4 clients, each beside in-process `Booster.predict` on the same rows (the champion loaded
here from the store), and the compiled forest's in-process figures when the service uses one.
It needs the same BENTOML_HOME / FLIGHTOPS_PARAMS as the server to load that model. `--bare` adds the same
load against a bare BentoML JSON endpoint (`benchmarks/bare_service.py`, no model, same workers): the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class Client:
    """A minimal keep-alive HTTP/1.1 client: what the benchmark measures is the server, not httpx."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.host = f"{host}:{port}"

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.sock.sendall(head + body)
        status = int(self.file.readline().split()[1])
        length, chunked = 0, False
        while True:
            line = self.file.readline()
            if line in (b"\r\n", b""):
                break
            key, _, value = line.decode().partition(":")
            if key.lower() == "content-length":
                length = int(value)
            elif key.lower() == "transfer-encoding" and "chunked" in value:
                chunked = True
        if not chunked:
            return status, self.file.read(length)
        data = b""
        while True:
            size = int(self.file.readline(), 16)
            data += self.file.read(size)
            self.file.readline()
            if size == 0:
                return status, data


def _rows(path: Path, fields: list[str], time_column: str, n: int) -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_parquet(path).head(n)
    rows = []
    for record in frame.to_dict("records"):
        row = {}
        for name in fields:
            value = record[name]
            row[name] = None if value is None or (isinstance(value, float) and value != value) else (
                value if isinstance(value, str) else float(value))
        row[time_column] = record[time_column].isoformat()
        rows.append(row)
    return rows


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_clients(url: str, path: str, bodies: list[bytes], clients: int, seconds: float,
                new_connections: bool = False) -> dict[str, Any]:
    """`clients` threads sending `bodies` in turn for `seconds`, each on its own keep-alive connection, or (with
    `new_connections`) on a new connection per request, which the kernel gives to whichever worker accepts first:
    a free one. Kept-alive connections stay with the worker that accepted them, and a few of them can all land on
    one worker while the other idles (four 1,000-row clients did, in one run of three), so the multi-client batch
    scenarios reconnect per request (that cost 0.3–4.4 ms, mean 2 ms, in three paired runs against ~20 ms per
    1,000-row request on one connection)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        client = Client(host, port)
        i = k
        while time.perf_counter() < stop:
            body = bodies[i % len(bodies)]
            i += clients
            start = time.perf_counter()
            try:
                if new_connections:
                    client.close()
                    client = Client(host, port)
                status, _ = client.post(path, body)
            except OSError:
                errors[k] += 1
                client = Client(host, port)
                continue
            latencies[k].append(time.perf_counter() - start)
            if status != 200:
                errors[k] += 1
        client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    flat = [x for chunk in latencies for x in chunk]
    return {"clients": clients, "requests": len(flat), "errors": sum(errors), "rps": len(flat) / elapsed,
            "p50_ms": _percentile(flat, 0.5) * 1e3, "p99_ms": _percentile(flat, 0.99) * 1e3,
            "mean_ms": statistics.fmean(flat) * 1e3}


def in_process(rows: list[dict[str, Any]], tag: str, time_column: str, batch: int,
               compiled_dir: Path | None) -> dict[str, float]:
    """Booster.predict on the same rows (one row; rows/s in `batch`-row matrices, with features), and the same
    for the compiled forest the service uses when `compiled_dir` is given."""
    from datetime import datetime

    from pipelines.features import encode, records_to_columns
    from services.scoring import load_tagged

    loaded = load_tagged(tag, [*rows[0]], time_column, compiled_dir)
    model = loaded.model
    parsed = [{**r, time_column: datetime.fromisoformat(r[time_column]).replace(tzinfo=None)} for r in rows]

    def matrix(chunk: list[dict[str, Any]]) -> Any:
        return encode(records_to_columns(chunk, model.schema.raw_columns), [r[time_column] for r in chunk],
                      model.schema)

    def per_call_s(predict: Any, inputs: list[Any]) -> float:
        start = time.perf_counter()
        for item in inputs:
            predict(item)
        return (time.perf_counter() - start) / len(inputs)

    singles = [matrix([r]) for r in parsed[:2000]]
    chunks = [parsed[i:i + batch] for i in range(0, len(parsed) - batch + 1, batch)]
    figures = {
        "single_predict_us": per_call_s(lambda m: model.predict_matrix(m, 1), singles) * 1e6,
        "single_features_predict_us": per_call_s(lambda r: model.predict_matrix(matrix([r]), 1),
                                                 parsed[:len(singles)]) * 1e6,
        "batch_rows_per_s": batch / per_call_s(lambda c: model.predict_matrix(matrix(c)), chunks),
    }
    if loaded.forest is not None:
        forest = loaded.forest
        figures["compiled_single_predict_us"] = per_call_s(forest.predict, singles) * 1e6
        figures["compiled_batch_rows_per_s"] = batch / per_call_s(lambda c: forest.predict(matrix(c)), chunks)
    return figures


def bare_results(serve: Any, single_bodies: list[bytes], batch_bodies: list[bytes], seconds: float,
                 batch: int, ready_timeout_s: float) -> dict[str, dict[str, Any]]:
    """The same load against `benchmarks/bare_service.py` (the `serve` params' workers and access log): the floor
    of this machine + BentoML."""
    import subprocess
    import sys
    import urllib.request

    from benchmarks.bare_service import ACCESS_LOG_ENV, WORKERS_ENV

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, WORKERS_ENV: str(serve.workers), ACCESS_LOG_ENV: "1" if serve.access_log else "0",
           "BENTOML_DO_NOT_TRACK": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "benchmarks.bare_service:Bare", "--host", "127.0.0.1",
         "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the bare BentoML service did not answer {url}/readyz within "
                                       f"{ready_timeout_s:.0f}s (stack.start_timeout_s)") from None
                time.sleep(0.5)
        run_clients(url, "/predict", single_bodies, 4, 1.0)  # warm up
        results = {"bare_single_1": run_clients(url, "/predict", single_bodies, 1, seconds),
                   "bare_single_16": run_clients(url, "/predict", single_bodies, 16, seconds)}
        for clients in (1, 4):
            result = run_clients(url, "/predict_batch", batch_bodies, clients, max(2.0, seconds / 2),
                                 new_connections=clients > 1)
            result["rows_per_s"] = result["rps"] * batch
            results[f"bare_batch_{clients}"] = result
        return results
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="service URL (default: serve.host/port from params)")
    parser.add_argument("--rows", required=True, type=Path, help="a prepared split (parquet) to send")
    parser.add_argument("--seconds", type=float, default=8.0, help="per single-row scenario")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=60, help="1,000-row requests per batch scenario")
    parser.add_argument("--bare", action="store_true",
                        help="also measure a bare BentoML JSON endpoint (no model) with the same load and workers")
    args = parser.parse_args()

    from pipelines.config import DEFAULT_PARAMS_FILE, load_params
    from pipelines.release.registry import require_champion

    params = load_params(os.environ.get("FLIGHTOPS_PARAMS") or DEFAULT_PARAMS_FILE)
    url = args.url or f"http://{params.serve.host}:{params.serve.port}"
    time_column = params.source.time_column
    rows = _rows(args.rows, params.features.raw_columns, time_column, max(5000, args.batch * 5))
    single_bodies = [json.dumps({"flight": r}).encode() for r in rows]
    batch_bodies = [json.dumps({"flights": rows[i:i + args.batch]}).encode()
                    for i in range(0, len(rows) - args.batch + 1, args.batch)]

    run_clients(url, "/predict", single_bodies, 4, 1.0)  # warm up
    many_bodies = [json.dumps({"flights": [r]}).encode() for r in rows]
    results = {"single_1": run_clients(url, "/predict", single_bodies, 1, args.seconds),
               "single_16": run_clients(url, "/predict", single_bodies, 16, args.seconds),
               # the same one-row requests through the adaptive-batching endpoint (merged across callers)
               "adaptive_16": run_clients(url, "/predict_many", many_bodies, 16, args.seconds)}
    for clients in (1, 2, 4):
        seconds = max(2.0, args.seconds / 2)
        result = run_clients(url, "/predict_batch", batch_bodies, clients, seconds, new_connections=clients > 1)
        result["rows_per_s"] = result["rps"] * args.batch
        results[f"batch_{clients}"] = result
    if args.bare:
        results |= bare_results(params.serve, single_bodies, batch_bodies, args.seconds, args.batch,
                                params.stack.start_timeout_s)
    compiled_dir = params.paths.compiled_dir if params.serve.predictor == "compiled" else None
    reference = in_process(rows, require_champion(params.paths.registry_dir), time_column, args.batch, compiled_dir)

    print(f"service {url}; in-process reference: Booster.predict on one row "
          f"{reference['single_predict_us']:.1f} us "
          f"(with encode {reference['single_features_predict_us']:.1f} us); "
          f"{args.batch}-row batches {reference['batch_rows_per_s']:,.0f} rows/s (encode + predict)")
    if "compiled_single_predict_us" in reference:
        print(f"compiled forest (serve.predictor: compiled): one row {reference['compiled_single_predict_us']:.1f} us; "
              f"{args.batch}-row batches {reference['compiled_batch_rows_per_s']:,.0f} rows/s (encode + predict)")
    print(f"{'scenario':<14}{'clients':>8}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>9}"
          f"{'p99 ms':>9}"
          f"{'rows/s':>12}{'ratio':>10}")
    for name, r in results.items():
        if "single" in name or name.startswith("adaptive"):
            ratio = r["p50_ms"] * 1e3 / reference["single_predict_us"]
            extra = f"{'':>12}{ratio:>9.0f}x"  # served p50 / in-process predict time
        else:
            ratio = reference["batch_rows_per_s"] / r["rows_per_s"]
            extra = f"{r['rows_per_s']:>12,.0f}{ratio:>9.1f}x"  # in-process rows/s / served rows/s
        print(f"{name:<14}{r['clients']:>8}{r['requests']:>10}{r['errors']:>8}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}"
              f"{r['p99_ms']:>9.2f}{extra}")
    print("ratio: single = served p50 / in-process Booster.predict of one row; "
          "batch = in-process rows/s / served rows/s")
    print(json.dumps({"reference": reference, **results}))


if __name__ == "__main__":
    main()

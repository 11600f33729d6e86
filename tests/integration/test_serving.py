"""The Bento service against a real `bentoml serve` on 127.0.0.1: parity, bad input, prediction log, hot
reload,
no loss on SIGKILL, and the built Bento serving."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.config import Params, parse_params
from support.params import REPO_ROOT, SMALL_WINDOW, params_dict
from support.servers import free_port, ready_timeout_s, wait_for

pytestmark = pytest.mark.integration
TRAINED_WINDOW = [SMALL_WINDOW["collect.start"], SMALL_WINDOW["collect.end"]]


class Server:
    def __init__(self, target: str, env: dict[str, str], cwd: Path, python: str = sys.executable) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.params_file = Path(env["FLIGHTOPS_PARAMS"]) if env.get("FLIGHTOPS_PARAMS") else None
        self.target = target
        # Output to a file, never a pipe nobody reads (a full pipe would block the server's access log).
        self.log = cwd / f".bentoml-serve-{self.port}.log" if cwd != REPO_ROOT else Path(
            os.environ["BENTOML_HOME"]) / f"serve-{self.port}.log"
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(
                [python, "-m", "bentoml", "serve", target, "--host", "127.0.0.1",
                 "--port", str(self.port)],
                env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(f"{self.url}/readyz", self.process, ready_timeout_s(), self.log)
        except TimeoutError:
            self.stop()
            raise

    def admin(self) -> dict[str, str]:
        """The admin routes' Authorization header: the token the service made in the params' stack folder (for a
        Bento served without a params file, under the Bento's own source folder, where its params are)."""
        import psutil

        from pipelines.config import load_params
        from pipelines.credentials import admin_token_file, bearer, read_secret

        if self.params_file is None:
            import bentoml

            folder = Path(bentoml.get(self.target).path) / "src"
        else:
            folder = Path(psutil.Process(self.process.pid).cwd())  # where a relative paths.stack_dir is
        params = load_params(self.params_file or folder / "params.yaml")
        return bearer(read_secret(folder / admin_token_file(params)))

    def metadata(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/metadata", headers=self.admin(), timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the server and every worker it started (workers may leave its process group), by pid."""
        import psutil

        if self.process.poll() is not None:
            return
        workers = psutil.Process(self.process.pid).children(recursive=True)
        os.killpg(self.process.pid, sig)
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        _, alive = psutil.wait_procs(workers, timeout=10)
        for worker in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()


def _entry() -> Any:
    """A registry entry of the contract's shape (the pipeline's is built by the gate): the data version only."""
    from pipelines.contracts import DataVersion, RegistryEntry

    return RegistryEntry(data_version=DataVersion(raw_table_md5="test-window", window=TRAINED_WINDOW))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A params file in a temp dir, a tiny real champion in the BentoML store, and test rows."""
    from pipelines import stages
    from pipelines.release import registry

    root = tmp_path_factory.mktemp("serving")
    data = params_dict(root, SMALL_WINDOW)
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    params = parse_params(data)
    stages.run_collect(params)
    stages.run_validate(params)
    stages.run_preprocess(params)
    stages.run_train(params)
    tag = registry.save_model(params.paths.model_dir, _entry(), name=params.project.model_name)
    registry.set_champion(params.paths.registry_dir, tag, reason="test")
    test = pd.read_parquet(params.paths.prepared_dir / "test.parquet").head(300)
    return {"params": params, "params_file": params_file, "tag": tag, "test": test}


def _env(params_file: Path | None) -> dict[str, str]:
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("FLIGHTOPS_PARAMS", None)
    env.pop("FLIGHTOPS_MODEL_TAG", None)
    if params_file is not None:
        env["FLIGHTOPS_PARAMS"] = str(params_file)
    return env


@pytest.fixture(scope="module")
def server(trained: dict[str, Any]) -> Iterator[Server]:
    running = Server("services.service:FlightDelay", _env(trained["params_file"]), REPO_ROOT)
    yield running
    running.stop()


PEER = "peer:127.0.0.1"  # the caller the service sees in these tests (no API keys: the peer address)


def logged(request_id: str, caller: str = PEER) -> str:
    """The id a row is logged under: its caller's namespace, then the caller's id."""
    from pipelines.monitor.prediction_log import logged_id

    return logged_id(caller, request_id)


def _records(frame: pd.DataFrame, params: Params) -> list[dict[str, Any]]:
    rows = []
    for record in frame.to_dict("records"):
        row = {name: (None if pd.isna(record[name]) else record[name] if isinstance(record[name], str)
                      else float(record[name])) for name in params.features.raw_columns}
        row["time_hour"] = record["time_hour"].isoformat()
        rows.append(row)
    return rows


def test_predictions_equal_the_in_process_model(server: Server, trained: dict[str, Any]) -> None:
    from pipelines.release.registry import load_model

    params, test = trained["params"], trained["test"]
    expected = load_model(trained["tag"]).predict_proba(test)
    rows = _records(test, params)
    batch = httpx.post(f"{server.url}/predict_batch", json={"flights": rows}, timeout=30)
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert body["model_tag"] == trained["tag"]
    np.testing.assert_allclose([p["probability"] for p in body["predictions"]], expected, rtol=0, atol=1e-9)
    ids = [p["request_id"] for p in body["predictions"]]
    assert len(set(ids)) == len(ids), "generated request ids must be unique within a batch"
    # The batch answer is model_construct-ed from score's rows: serialising it must not warn (pydantic warns once
    # per row when rows do not match the declared type).
    assert "PydanticSerializationUnexpectedValue" not in server.log.read_text()
    for i in (0, 7, 42):
        flight = {**rows[i], "request_id": f"parity-{i}"}
        single = httpx.post(f"{server.url}/predict", json={"flight": flight})
        answer = single.json()
        assert answer["request_id"] == f"parity-{i}"
        assert abs(answer["probability"] - expected[i]) <= 1e-9
        assert answer["label"] == int(expected[i] >= answer["threshold"])
        assert answer["model_tag"] == trained["tag"]


def test_adaptive_batching_gives_each_concurrent_caller_its_own_rows(server: Server,
                                                                     trained: dict[str, Any]) -> None:
    """/predict_many is batchable: BentoML merges concurrent callers into one model call and splits the answers."""
    from concurrent.futures import ThreadPoolExecutor

    from pipelines.release.registry import load_model

    params, test = trained["params"], trained["test"]
    expected = load_model(trained["tag"]).predict_proba(test)
    rows = [{**row, "request_id": f"many-{i}"} for i, row in enumerate(_records(test, params))]
    before = _adaptive_batches(server)

    def call(start: int) -> list[dict[str, Any]]:
        answer = httpx.post(f"{server.url}/predict_many", json={"flights": rows[start:start + 3]}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, range(0, 48, 3)))
    for start, answer in zip(range(0, 48, 3), answers, strict=True):
        assert [a["request_id"] for a in answer] == [f"many-{i}" for i in range(start, start + 3)]
        np.testing.assert_allclose([a["probability"] for a in answer], expected[start:start + 3], rtol=0, atol=1e-9)
        assert {a["model_tag"] for a in answer} == {trained["tag"]}
    calls, requests = (now - then for now, then in zip(_adaptive_batches(server), before, strict=True))
    assert requests == 16 and 1 <= calls <= 16  # every request went through the dispatcher


def test_a_batch_answers_every_valid_row_and_refuses_each_invalid_one_by_index_and_field(
        server: Server, trained: dict[str, Any]) -> None:
    """Issue 36: one bad row never costs its batch. /predict_batch lists the refused rows beside the answers,
    /predict_many answers in the rows' places; refused rows are neither scored nor logged."""
    from pipelines.monitor.prediction_log import read_prediction_log
    from pipelines.release.registry import load_model

    params, test = trained["params"], trained["test"].head(6)
    expected = load_model(trained["tag"]).predict_proba(test)
    for route in ("/predict_batch", "/predict_many"):
        rows = [{**row, "request_id": f"{route[1:]}-{i}"} for i, row in enumerate(_records(test, params))]
        rows[1]["hour"] = 25
        rows[3]["gate"] = "B12"
        rows[4] = {"nonsense": True}
        answer = httpx.post(f"{server.url}{route}", json={"flights": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        items = body["predictions"] if route == "/predict_batch" else [item for item in body if "probability" in item]
        refused = body["rejected"] if route == "/predict_batch" else [item for item in body if "errors" in item]
        if route == "/predict_batch":
            assert [p["index"] for p in items] == [0, 2, 5]
            assert body["rejected_count"] == 3 and body["caller"] == PEER
        else:
            assert ["errors" in item for item in body] == [False, True, False, True, True, False]
        assert [p["request_id"] for p in items] == [f"{route[1:]}-{i}" for i in (0, 2, 5)]
        np.testing.assert_allclose([p["probability"] for p in items], expected[[0, 2, 5]], rtol=0, atol=1e-9)
        assert [(r["index"], r["request_id"], [e["field"] for e in r["errors"]][:1]) for r in refused] == [
            (1, f"{route[1:]}-1", ["hour"]), (3, f"{route[1:]}-3", ["gate"]), (4, None, ["nonsense"])]
        assert refused[2]["error_count"] == 1 + len(rows[0]) - 1  # the unknown key, and every field missing
    ids = {record.request_id for record in read_prediction_log(params.paths.prediction_log_dir).records}
    for route in ("predict_batch", "predict_many"):
        assert {logged(f"{route}-{i}") for i in (0, 2, 5)} <= ids
        assert not {logged(f"{route}-{i}") for i in (1, 3)} & ids


def _metric(server: Server, name: str, *labels: str) -> float:
    """The sum of a BentoML Prometheus series on /metrics over the lines that carry every one of `labels`."""
    lines = httpx.get(f"{server.url}/metrics").text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith(name + "{") and all(label in line for label in labels))


def _adaptive_batches(server: Server) -> tuple[float, float]:
    """(model calls, requests merged into them) for /predict_many, from BentoML's Prometheus histogram."""
    return tuple(_metric(server, f"bentoml_service_adaptive_batch_size_{suffix}", "predict_many")
                 for suffix in ("count", "sum"))  # type: ignore[return-value]


def _bad_cases(row: dict[str, Any], max_batch: int) -> list[tuple[str, str, bytes, int, str]]:
    def single(flight: dict[str, Any]) -> bytes:
        return json.dumps({"flight": flight}).encode()

    without = {k: v for k, v in row.items() if k != "distance"}
    return [
        ("missing field", "/predict", single(without), 400, "distance"),
        ("unknown field", "/predict", single({**row, "gate": "B12"}), 400, "gate"),
        ("wrong type", "/predict", single({**row, "carrier": 9}), 400, "carrier"),
        ("string for number", "/predict", single({**row, "distance": "far"}), 400, "distance"),
        ("bad time", "/predict", single({**row, "time_hour": "yesterday"}), 400, "time_hour"),
        ("NaN", "/predict", single({**row, "temp": float("nan")}), 400, "temp"),
        ("infinity", "/predict", single({**row, "wind_speed": float("inf")}), 400, "wind_speed"),
        ("empty batch", "/predict_batch", json.dumps({"flights": []}).encode(), 400, "flights"),
        ("empty adaptive batch", "/predict_many", json.dumps({"flights": []}).encode(), 400, "flights"),
        ("adaptive batch not a list", "/predict_many", json.dumps({"flights": {"temp": "hot"}}).encode(), 400,
         "flights"),
        ("oversized batch", "/predict_batch", json.dumps({"flights": [row] * (max_batch + 1)}).encode(), 400,
         "flights"),
        ("malformed JSON", "/predict", b'{"flight": {', 400, "Invalid JSON"),
        ("not an object", "/predict", b"[1, 2]", 400, "object"),
        ("body too large", "/predict_batch", b" " * 2_000_001, 413, "max_body_bytes"),
    ]


def test_bad_input_gets_a_4xx_naming_the_field_and_serving_goes_on(server: Server,
                                                                    trained: dict[str, Any]) -> None:
    params = trained["params"]
    row = _records(trained["test"].head(1), params)[0]
    failures = []
    for name, path, body, status, needle in _bad_cases(row, params.serve.max_batch_size):
        answer = httpx.post(f"{server.url}{path}", content=body, headers={"content-type": "application/json"},
                            timeout=30)
        if answer.status_code != status or needle not in answer.text:
            failures.append(f"{name}: {answer.status_code} {answer.text[:200]}")
    assert not failures, "\n".join(failures)
    assert httpx.post(f"{server.url}/predict", json={"flight": row}).status_code == 200


def test_a_refused_request_is_recorded_and_monitoring_counts_it_as_refused_traffic(server: Server,
                                                                                  trained: dict[str, Any]) -> None:
    """#38: a row the service refuses with a 400 is never scored, so it is not in the prediction log; the service
    writes a `RefusalRecord` beside it (the field at fault and the scheduled time, never the value sent), and
    monitoring reads it as the flow does and counts it in its window's refused traffic, naming the field."""
    from pipelines import io
    from pipelines.contracts import RefusalRecord
    from pipelines.monitor import store
    from pipelines.monitor.drift import refused_traffic
    from pipelines.monitor.prediction_log import read_refusals
    from pipelines.monitor.windows import window_rows

    params = trained["params"]
    scheduled = "2013-11-05T07:00:00+00:00"  # a week no other test sends to
    row = {**_records(trained["test"].head(1), params)[0], "distance": -123456.0, "time_hour": scheduled}
    answer = httpx.post(f"{server.url}/predict", json={"flight": row}, timeout=30)
    assert answer.status_code == 400 and "distance" in answer.text, answer.text
    records = [r for r in read_refusals(params.paths.prediction_log_dir).records if r.scheduled == scheduled]
    assert len(records) == 1 and isinstance(records[0], RefusalRecord)
    assert records[0].route == "/predict" and records[0].fields == ["distance"]
    log_text = "".join(path.read_text() for path in (params.paths.prediction_log_dir / io.REFUSAL_LOG_DIR).rglob("*")
                       if path.is_file())
    assert "123456" not in log_text  # the value sent is never written
    # Monitoring's reading (flows/monitoring.py: store.read_refusals, then the window's rows) counts it.
    refused, _ = store.read_refusals(params)  # (other tests here send bodies with no readable time)
    start = pd.Timestamp("2013-11-04", tz="UTC")
    window = window_rows(refused, params.source.time_column, start, start + pd.Timedelta(days=7))
    traffic = refused_traffic(window, 0, params.monitor)
    assert traffic is not None and traffic.rows == 1 and traffic.fields == {"distance": 1}
    assert traffic.share == 1.0 and traffic.surge is True


def test_requests_are_counted_by_status_and_not_access_logged(server: Server, trained: dict[str, Any]) -> None:
    """serve.access_log: false (the default) writes no line per request; /metrics still counts each by status."""
    assert trained["params"].serve.access_log is False
    count = ("bentoml_service_request_total", 'endpoint="/predict"', 'http_response_code="400"')
    before = _metric(server, *count)
    for _ in range(3):
        assert httpx.post(f"{server.url}/predict", json={"flight": {}}).status_code == 400
    assert _metric(server, *count) == before + 3
    assert "path=/predict" not in server.log.read_text()


def test_unknown_category_is_scored_as_missing_and_flagged(server: Server, trained: dict[str, Any]) -> None:
    row = _records(trained["test"].head(1), trained["params"])[0]
    answer = httpx.post(f"{server.url}/predict", json={"flight": {**row, "dest": "XXX"}})
    assert answer.status_code == 200
    assert answer.json()["unknown_categories"] == ["dest"]
    missing = httpx.post(f"{server.url}/predict", json={"flight": {**row, "dest": None}}).json()
    assert answer.json()["probability"] == missing["probability"]


def test_metadata_and_health(server: Server, trained: dict[str, Any]) -> None:
    meta = server.metadata()
    assert meta["model_tag"] == trained["tag"]
    # what the registry entry's contract holds (pipelines.contracts.DataVersion), as stored
    version = meta["training_data_version"]
    assert version["raw_table_md5"] == "test-window" and version["window"] == TRAINED_WINDOW
    assert meta["feature_schema"]["time_column"] == "time_hour"
    assert 0 < meta["threshold"] < 1
    # serve.predictor: compiled, and the parity test above compared its answers with the booster's
    assert meta["predictor"].startswith("compiled (lleaves"), meta["predictor"]
    for probe in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(f"{server.url}{probe}").status_code == 200
    spec = httpx.get(f"{server.url}/docs.json").json()
    flight = json.dumps(spec)
    assert "plane_manufacturer" in flight and "NaN and infinity are refused" in flight


def test_every_prediction_is_logged(server: Server, trained: dict[str, Any]) -> None:
    from pipelines.io import PREDICTION_LOG_GLOB as FILE_GLOB
    from pipelines.monitor.prediction_log import PredictionRecord, log_files, read_prediction_log

    params = trained["params"]
    rows = _records(trained["test"].head(5), params)
    sent = [{**row, "request_id": f"log-{i}"} for i, row in enumerate(rows)]
    answers = httpx.post(f"{server.url}/predict_batch", json={"flights": sent}).json()["predictions"]
    read = read_prediction_log(params.paths.prediction_log_dir)
    assert read.skipped_total == 0
    records = {r.request_id: r.model_dump() for r in read.records}
    for path in log_files(params.paths.prediction_log_dir, FILE_GLOB):  # exactly the contract's fields, no more
        lines = path.read_text().splitlines()
        assert all(set(json.loads(line)) == set(PredictionRecord.model_fields) for line in lines)
    for row, answer in zip(sent, answers, strict=True):
        record = records[logged(row["request_id"])]
        assert record["probability"] == answer["probability"] and record["label"] == answer["label"]
        assert record["model_tag"] == trained["tag"]
        expected_inputs = {k: v for k, v in row.items() if k != "request_id"}
        expected_inputs["time_hour"] = pd.Timestamp(row["time_hour"]).tz_convert("UTC").isoformat()
        assert record["inputs"] == expected_inputs
        assert record["ts"].endswith("+00:00")


def test_a_promotion_reaches_serving_without_dropping_requests(server: Server,
                                                                trained: dict[str, Any]) -> None:
    """Runs last on the shared server: it changes the champion."""
    from pipelines import stages
    from pipelines.release import registry

    params = trained["params"]
    retrained = params.model_copy(update={"train": params.train.model_copy(update={"seed": 7,
                                                                                   "learning_rate": 0.1})})
    stages.run_train(retrained)
    new_tag = registry.save_model(params.paths.model_dir, _entry(), name=params.project.model_name)
    row = _records(trained["test"].head(1), params)[0]
    clients = 4
    seen: list[list[str]] = [[] for _ in range(clients)]  # per client: one keep-alive connection, one worker
    errors: list[str] = []
    stop = threading.Event()

    def hammer(answers: list[str]) -> None:
        with httpx.Client(base_url=server.url, timeout=ready_timeout_s()) as client:
            while not stop.is_set():
                answer = client.post("/predict", json={"flight": row})
                if answer.status_code != 200:
                    errors.append(answer.text)
                else:
                    answers.append(answer.json()["model_tag"])

    def poll(condition: Any, what: str) -> None:
        """Readiness by polling, never a fixed sleep: a loaded machine is slower, not wrong."""
        deadline = time.monotonic() + ready_timeout_s()
        while not condition():
            assert time.monotonic() < deadline, f"{what} within {ready_timeout_s():.0f}s (stack.start_timeout_s)"
            assert not errors, errors[:3]
            time.sleep(0.05)

    threads = [threading.Thread(target=hammer, args=(answers,)) for answers in seen]
    for thread in threads:
        thread.start()
    try:
        poll(lambda: all(len(answers) >= 3 for answers in seen), "every client answered by the old champion")
        registry.set_champion(params.paths.registry_dir, new_tag, reason="test promotion")
        # Each worker's watcher swaps the model off the request path within serve.reload_check_seconds.
        poll(lambda: all(answers[-1] == new_tag for answers in seen), "every client's worker serves the new tag")
        answered = [len(answers) for answers in seen]
        poll(lambda: all(len(a) >= n + 5 for a, n in zip(seen, answered, strict=True)), "more answers after the swap")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
    for answers, before in zip(seen, answered, strict=True):
        assert answers[0] == trained["tag"]
        switch = answers.index(new_tag)
        assert set(answers[switch:]) <= {new_tag, trained["tag"]}  # in-flight answers may finish on the old model
        assert set(answers[before:]) == {new_tag}, "once swapped, a worker never serves the old champion again"
    # New connections land on any worker: 4 answers per worker in a row naming the new tag means every worker
    # swapped (a worker no client was pinned to follows on its own watcher tick).
    streak: list[str] = []
    poll(lambda: (streak.append(server.metadata()["model_tag"]) or
                  streak[-4 * params.serve.workers:] == [new_tag] * (4 * params.serve.workers)),
         "every worker serves the new champion on new connections")


def test_sigkill_loses_no_answered_prediction(trained: dict[str, Any], tmp_path: Path) -> None:
    from pipelines.monitor.prediction_log import read_prediction_log

    data = yaml.safe_load(trained["params_file"].read_text())
    data["paths"]["prediction_log_dir"] = str(tmp_path / "predictions")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    own = Server("services.service:FlightDelay", _env(params_file), REPO_ROOT)
    row = _records(trained["test"].head(1), trained["params"])[0]
    answered = []
    try:
        with httpx.Client(base_url=own.url) as client:
            for i in range(200):
                answer = client.post("/predict", json={"flight": {**row, "request_id": f"k{i}"}})
                if answer.status_code == 200:
                    answered.append(f"k{i}")
    finally:
        own.stop(signal.SIGKILL)
    written = {r.request_id for r in read_prediction_log(tmp_path / "predictions").records}
    assert len(answered) == 200 and {logged(request_id) for request_id in answered} <= written


def test_the_built_bento_serves_its_own_champion(trained: dict[str, Any], tmp_path: Path) -> None:
    """Served from a fresh venv holding only the Bento's own requirements (what its Dockerfile installs)."""
    import bentoml

    from deploy.package import package

    bento_tag = package(trained["params_file"])
    requirements = Path(bentoml.get(bento_tag).path) / "env" / "python" / "requirements.txt"
    installed = {line.split("==")[0].lower() for line in requirements.read_text().splitlines() if "==" in line}
    assert {"bentoml", "lightgbm", "pandas"} <= installed
    assert not installed & {"prefect", "dvc", "great-expectations", "evidently", "dask"}
    venv = tmp_path / "venv"
    subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "-r",
                    str(requirements)], check=True)
    env = {key: value for key, value in _env(None).items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    bento = Server(bento_tag, env, tmp_path, python=str(venv / "bin" / "python"))  # no registry, no params file
    try:
        row = _records(trained["test"].head(1), trained["params"])[0]
        answer = httpx.post(f"{bento.url}/predict", json={"flight": row})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_tag"] == registry_champion(trained)
        assert bento.metadata()["follows_registry"] is False
    finally:
        bento.stop()


def registry_champion(trained: dict[str, Any]) -> str:
    from pipelines.release.registry import require_champion

    return require_champion(trained["params"].paths.registry_dir)

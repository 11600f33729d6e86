"""Two machines that share nothing but services, on one machine standing for them (issue 41).

Worker A and worker B are `prefect worker` processes with their own homes: their own BentoML store, their own temp
folder (where each flow run clones its commit), their own working directory; nothing of the control checkout is on
their import path. They share only the Prefect API (on the stack's own PostgreSQL, `ops/postgres.py`, behind
Prefect's basic auth: each machine has the credentials in its environment, `PREFECT_API_AUTH_STRING`), a bare git
remote, a DVC remote folder and the registry remote folder (`versioning.registry_remote`), as machines on a network
would share a Prefect server, a git server and a bucket.

- The training deployment's run lands on A, clones the commit into A's temp folder, runs the DAG, pushes its data,
  model and experiment ref, promotes into the registry remote, and attaches the monitoring reference there.
- A drift event (the one the monitoring flow emits) makes the Automation run the retraining deployment; A is gone
  by then, so B takes it, in its own clone, gates against A's champion read from the remote, and promotes.
- The Bento service, a third home with an empty model store, serves A's champion and then B's, imported from the
  remote as each promotion lands.
- A fresh clone that has only the remotes rebuilds the retrained champion byte for byte (`reproduce --check`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from pipelines import io
from support.params import SMALL_WINDOW
from support.project_copy import copy_project, run, venv_env
from support.servers import (
    free_port,
    poll_until,
    postgres_database,
    prefect_server,
    private_folder,
    ready_timeout_s,
    stop,
    wait_for,
    work_timeout_s,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]

RETRAIN_END = "2013-06-15T00:00:00+00:00"
EMIT_DRIFT = f"""
from prefect.events import emit_event
from prefect.events.worker import EventsWorker
from pipelines.monitor.bookkeeping import DRIFT_DETECTED, WINDOW_RESOURCE_PREFIX
emit_event(event=DRIFT_DETECTED, resource={{"prefect.resource.id": f"{{WINDOW_RESOURCE_PREFIX}}test"}},
           payload={{"window_end": "{RETRAIN_END}", "reason": "test: drift on machine A's champion"}})
EventsWorker.drain_all()
"""
AUTH = "flightops:workers-test"  # Prefect's basic auth (`server.api.auth_string` / every client's `api.auth_string`)


def _project(remote_registry: Path, pool: str) -> dict:
    """The committed params every machine reads from git: runs clone the commit, one registry remote for all."""
    return {**SMALL_WINDOW, "search.strategy": "none", "train.seed": 41,
            # The monitoring reference stored with each model, calibrated on fewer, smaller windows: the gate's
            # registration is most of a run's time otherwise, and drift is not what this test is about.
            "monitor.calibration_windows": 4, "monitor.window_sample_rows": 2000,
            # A retrain within 0.05 AUC is promoted, so the test has a second champion (the gate's own rules are
            # tested in test_registry.py).
            "gate.min_improvement": -0.05, "gate.max_slice_drop": 1.0, "gate.max_brier_increase": 1.0,
            "prefect.runner": "workers", "prefect.code_source": "git", "prefect.work_pool": pool,
            "versioning.git_remote": "origin", "versioning.registry_remote": str(remote_registry),
            "deployments.training.paused": True, "deployments.monitoring.paused": True}


def _home(root: Path, name: str) -> dict[str, Path]:
    home = {"root": root / name, "bentoml": root / name / "bentoml", "tmp": root / name / "tmp"}
    for path in home.values():
        path.mkdir(parents=True, exist_ok=True)
    return home


def _machine_env(home: dict[str, Path], api: str) -> dict[str, str]:
    """What a worker machine has: the environment (this venv), the API URL, its own store and temp folder; no
    PYTHONPATH, no params file of ours."""
    env = venv_env(PREFECT_API_URL=api, PREFECT_API_AUTH_STRING=AUTH, BENTOML_HOME=str(home["bentoml"]),
                   TMPDIR=str(home["tmp"]), BENTOML_DO_NOT_TRACK="true", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    for key in ("PYTHONPATH", "FLIGHTOPS_PARAMS", "DVC_ROOT", "PYTEST_CURRENT_TEST"):
        env.pop(key, None)
    return env


def _start_worker(name: str, pool: str, home: dict[str, Path], api: str) -> tuple[subprocess.Popen, Path]:
    log = home["root"] / "worker.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
             "--name", name, "--limit", "1"],
            cwd=home["root"], env=_machine_env(home, api), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    return process, log


def _logs(client, flow_run_id) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
    return "\n".join(entry.message for entry in logs)


def _finished(client, flow_run_id, logs: list[Path], timeout: float):
    def done():
        run_ = client.read_flow_run(flow_run_id)
        return run_ if run_.state.is_final() else None

    def failure() -> str:
        text = "".join(f"\n--- {log}\n{log.read_text(errors='replace')[-4000:]}" for log in logs if log.exists())
        return f"flow run {flow_run_id} did not finish; run logs:\n{_logs(client, flow_run_id)[-6000:]}{text}"

    finished = poll_until(done, timeout, failure, poll=5)
    assert finished.state.is_completed(), failure()
    return finished


def _workdir(client, flow_run_id) -> Path:
    """The checkout the run worked in, as the flow logged it."""
    text = _logs(client, flow_run_id)
    line = next(line for line in text.splitlines() if line.startswith("working in "))
    return Path(line.split()[2])


def _request(table: pd.DataFrame, params) -> dict:
    row = table.iloc[0]
    flight = {name: (None if pd.isna(row[name]) else row[name] if isinstance(row[name], str) else float(row[name]))
              for name in params.features.raw_columns}
    flight[params.source.time_column] = row[params.source.time_column].isoformat()
    return {"flight": flight}


def test_two_workers_share_only_git_dvc_and_the_registry_remote(small_table: pd.DataFrame) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from pipelines.config import load_params
    from pipelines.release.store import RemoteStore

    root = private_folder("workers-")
    origin, dvc_remote, registry_remote = root / "origin.git", root / "dvc-remote", root / "registry-remote"
    pool = f"remote-{uuid.uuid4().hex[:8]}"
    processes: list[subprocess.Popen] = []
    try:
        # --- the control checkout: the project committed and pushed; the remotes are empty --------------------
        subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(origin)], check=True)
        control = copy_project(root / "control", _project(registry_remote, pool), remote=dvc_remote)
        run(control, "git", "remote", "add", "origin", str(origin))
        run(control, "git", "push", "-q", "origin", "HEAD:refs/heads/main")
        commit = run(control, "git", "rev-parse", "HEAD").stdout.strip()
        homes = {name: _home(root, name) for name in ("a", "b", "service", "fresh")}
        with postgres_database() as database, prefect_server(root / "prefect-home", database, AUTH) as api, \
                temporary_settings(updates={PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: AUTH}), \
                get_client(sync_client=True) as client:
            # The API refuses a client without the credentials; every machine below has them in its environment.
            assert httpx.post(f"{api}/deployments/filter", json={}, timeout=30).status_code == 401
            # Registered from the control checkout: the deployments carry the commit and a git_clone pull step.
            register = subprocess.run([sys.executable, "-m", "flows.deployments", "--params", "params.yaml",
                                       "--register-only"], cwd=control,
                                      env=venv_env(PREFECT_API_URL=api, PREFECT_API_AUTH_STRING=AUTH),
                                      capture_output=True, text=True, timeout=work_timeout_s())
            assert register.returncode == 0, register.stdout + register.stderr
            training = client.read_deployment_by_name("training/training")
            clone_step = training.pull_steps[0]["prefect.deployments.steps.git_clone"]
            assert clone_step["commit_sha"] == commit and clone_step["repository"] == str(origin)
            assert training.parameters["params_file"] == "params.yaml"
            assert "working_dir" not in training.job_variables and "PYTHONPATH" not in training.job_variables["env"]

            # --- 1. training lands on A (the only worker up), in A's own clone ---------------------------------
            worker_a, log_a = _start_worker("machine-a", pool, homes["a"], api)
            processes.append(worker_a)
            trained = run_deployment("training/training", timeout=0)
            _finished(client, trained.id, [log_a], 2 * work_timeout_s())
            workdir_a = _workdir(client, trained.id)
            assert workdir_a.is_relative_to(homes["a"]["tmp"]), workdir_a
            store = RemoteStore(str(registry_remote))
            first = store.champion()
            assert first is not None and first.previous is None
            assert store.has(first.tag) and (homes["a"]["bentoml"] / "models").exists()
            entry = store.metadata(first.tag)
            assert entry["lineage"]["git_commit"] == commit
            # The reference stage (after the gate) attached the monitoring reference to the model on the remote.
            index = registry_remote / io.REMOTE_MODELS_DIR / (first.tag.replace(":", "/") + io.REMOTE_RECORD_SUFFIX)
            attached = json.loads(index.read_text())["files"]
            assert set(attached) == {io.REFERENCE_FILE, io.CALIBRATION_FILE}, attached
            assert any(dvc_remote.rglob("*")), "the run pushed its data and model to the DVC remote"
            refs = run(control, "git", "ls-remote", str(origin), "refs/exps/*").stdout
            assert entry["lineage"]["ref"] in refs, "the training run's experiment ref is on the git remote"

            # --- the service: a third home with an empty model store, following the registry remote ------------
            checkout = homes["service"]["root"] / "clone"
            subprocess.run(["git", "clone", "-q", str(origin), str(checkout)], check=True)
            service_params = homes["service"]["root"] / "params.yaml"
            params = load_params(control / "params.yaml")
            data = _service_params(checkout, homes["service"]["root"], free_port())
            service_params.write_text(yaml.safe_dump(data))
            service_env = {**_machine_env(homes["service"], api), "FLIGHTOPS_PARAMS": str(service_params)}
            service_log = homes["service"]["root"] / "serve.log"
            port = data["serve"]["port"]
            with open(service_log, "w") as out:
                service = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "services.service:FlightDelay",
                                            "--host", "127.0.0.1", "--port", str(port)], cwd=checkout,
                                           env=service_env, stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True)
            processes.append(service)
            wait_for(f"http://127.0.0.1:{port}/readyz", service, ready_timeout_s(), service_log)
            request = _request(small_table, params)

            def served() -> str:
                answer = httpx.post(f"http://127.0.0.1:{port}/predict", json=request, timeout=30)
                assert answer.status_code == 200, answer.text
                return answer.json()["model_tag"]

            assert served() == first.tag

            # --- 2. a drift event; A is gone, so the Automation's retrain lands on B ---------------------------
            stop(worker_a)
            worker_b, log_b = _start_worker("machine-b", pool, homes["b"], api)
            processes.append(worker_b)
            # Sent from a process of its own, as the monitoring flow on a machine sends it: this process's Prefect
            # events worker is bound to the first API it sent to (another test's server, in a full run).
            subprocess.run([sys.executable, "-c", EMIT_DRIFT], env=_machine_env(homes["service"], api), check=True,
                           timeout=ready_timeout_s(), cwd=checkout)
            retraining = client.read_deployment_by_name("retraining/retraining")

            def retrain_run():
                runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[retraining.id])), limit=1)
                return runs[0] if runs else None

            retrain = poll_until(retrain_run, ready_timeout_s(), lambda: "the drift Automation started no retrain")
            _finished(client, retrain.id, [log_b], 2 * work_timeout_s())
            workdir_b = _workdir(client, retrain.id)
            assert workdir_b.is_relative_to(homes["b"]["tmp"]), workdir_b
            second = store.champion()
            assert second is not None and second.tag != first.tag and second.previous == first.tag
            assert [r.tag for r in store.history()] == [first.tag, second.tag]
            # B gated against A's champion: it imported it from the remote into its own store to score it, with
            # the reference A's reference stage attached.
            imported = homes["b"]["bentoml"] / "models" / Path(*first.tag.split(":"))
            assert imported.is_dir() and (imported / io.REFERENCE_FILE).is_file()

            # --- 3. the service follows the remote champion (reload_check_seconds) -----------------------------
            poll_until(lambda: served() == second.tag, ready_timeout_s(),
                       lambda: f"the service still serves {served()}, not {second.tag}:\n"
                               f"{service_log.read_text(errors='replace')[-3000:]}")

        # --- 4. a fresh clone with only the remotes rebuilds the retrained champion -------------------------------
        fresh = homes["fresh"]["root"] / "clone"
        subprocess.run(["git", "clone", "-q", str(origin), str(fresh)], check=True)
        env = _machine_env(homes["fresh"], "http://127.0.0.1:9/api")
        done = subprocess.run([sys.executable, "-m", "pipelines", "reproduce", second.tag, "--check"], cwd=fresh,
                              env=env, capture_output=True, text=True, timeout=2 * work_timeout_s())
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        from pipelines.cli import REPORT_START

        report = json.loads(done.stdout[done.stdout.rindex(REPORT_START):])
        assert report["identical"] and report["model_md5"]["rebuilt"] == report["model_md5"]["registry"], report
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _service_params(checkout: Path, home: Path, port: int) -> dict:
    """The committed params as the service's machine uses them: its own port and runtime folders, the same
    registry remote."""
    data = yaml.safe_load((checkout / "params.yaml").read_text())
    data["serve"]["port"] = port
    data["serve"]["workers"] = 1
    for key in ("prediction_log_dir", "compiled_dir", "registry_dir", "stack_dir"):
        data["paths"][key] = str(home / key)
    data["validate"]["suite"] = str(checkout / data["validate"]["suite"])
    return data

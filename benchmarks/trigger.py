"""Benchmark: the monitoring flow's wall time per window, this checkout vs a git ref (default `main`), and the delay
from a `flightops.drift.detected` event to the start of the retraining run the Automation creates.

    .venv/bin/python -m benchmarks.trigger [--ref main] [--weeks 4] [--repeats 2] [--events 5]

Both parts run against a real Prefect server (SQLite, 127.0.0.1, a free port). Per-window time: each version runs
in a subprocess from its own source tree (the ref is `git archive`d to a temp folder) on the same data: the small
real training window (Mar-May 2013), `--weeks` weeks of held-out rows logged as traffic, every other week shifted
(so alarms and their trigger are part of the cost). Event -> start: the served stand-in retraining flow
(tests/integration/slow_retraining.py, same deployment settings, `prefect.toml`'s runner poll frequency), the
Automation from flows/automations.py, one event at a time; the delay is the run's start time minus the event's
occurred time, both stamped by the same machine. Prints one line per measurement and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from support.project_copy import REPO_ROOT, venv_env

# Runs inside the version's own tree (cwd and PYTHONPATH), so it imports that version's flows and pipelines.
WINDOW_SCRIPT = r'''
import json, sys, time, uuid
from pathlib import Path
import pandas as pd, yaml
from pipelines.data.collect import collect
from pipelines.config import parse_params
from support.params import SMALL_WINDOW, params_dict
from support.monitoring import into_week, log_records, shift, train_small, write_log
from flows.retraining import retraining
from flows.monitoring import monitoring_flow

root, weeks = Path(sys.argv[1]), int(sys.argv[2])
deployment = f"retraining-bench-{uuid.uuid4().hex[:8]}"
data = params_dict(root, {**SMALL_WINDOW, "monitor.reference_rows": 15000, "monitor.min_window_rows": 500,
                          "monitor.retraining_deployment": f"retraining/{deployment}", "monitor.cooldown_days": 0})
(root / "params.yaml").write_text(yaml.safe_dump(data))
params = parse_params(data)
table = collect(params.source, params.collect)
trained = train_small(root, params, table)
retraining.to_deployment(name=deployment).apply()
held = trained.train.sample(frac=1.0, random_state=3)
start = pd.Timestamp("2013-09-02", tz="UTC")
for week in range(weeks + 1):  # one more week so the last measured one is complete
    day = (start + pd.Timedelta(days=7 * week)).strftime("%Y-%m-%d")
    rows = into_week(held.iloc[week * 1000:(week + 1) * 1000], day, "time_hour", week, f"w{week}")
    rows = shift(rows) if week % 2 else rows
    write_log(params.paths.prediction_log_dir, log_records(rows, trained.model, params.features.raw_columns,
              "time_hour"), hour=f"{day.replace('-', '')}T00")
began = time.perf_counter()
results = monitoring_flow(params_file=str(root / "params.yaml"))
seconds = time.perf_counter() - began
print("RESULT " + json.dumps({"windows": len(results), "seconds": seconds,
                              "alarms": sum(r["drift"] for r in results)}))
'''


def _version_tree(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", ref], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def per_window(tree: Path, api: str, weeks: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as root:
        env = venv_env(PREFECT_API_URL=api, PYTHONPATH=str(tree), BENTOML_HOME=str(Path(root) / "bentoml"))
        done = subprocess.run([sys.executable, "-c", WINDOW_SCRIPT, root, str(weeks)], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=1800)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"monitoring run failed in {tree}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    result = json.loads(line.removeprefix("RESULT "))
    result["per_window_s"] = result["seconds"] / max(result["windows"], 1)
    return result


def event_to_start(api: str, events: int) -> list[float]:
    """Seconds from each drift event to its retraining run's start, on a served deployment and the Automation."""
    import httpx
    import yaml
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.automations import apply_automations
    from pipelines.config import parse_params
    from pipelines.contracts import Reason
    from pipelines.monitor import bookkeeping
    from support.monitoring import window_record
    from support.params import params_dict
    from support.servers import stop

    delays = []
    with tempfile.TemporaryDirectory(prefix="bench-trigger-") as root, \
            temporary_settings(updates={PREFECT_API_URL: api}):
        data = params_dict(Path(root), {"monitor.retraining_deployment": "retraining/bench"})
        params_file = Path(root) / "params.yaml"
        params_file.write_text(yaml.safe_dump(data))
        params = parse_params(data)
        env = {**venv_env(PREFECT_API_URL=api), "SLOW_RETRAINING_SECONDS": "0.5"}
        runner = subprocess.Popen([sys.executable, "-m", "tests.integration.slow_retraining", str(params_file),
                                   "bench"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while httpx.get(f"{api}/deployments/name/retraining/bench", timeout=10).status_code != 200:
                if time.monotonic() > deadline or runner.poll() is not None:
                    raise RuntimeError("the stand-in retraining deployment did not register")
                time.sleep(0.5)
            deployment_id = httpx.get(f"{api}/deployments/name/retraining/bench", timeout=10).json()["id"]
            apply_automations(params)
            import pandas as pd

            for index in range(events):
                start = pd.Timestamp("2013-09-02", tz="UTC") + pd.Timedelta(days=7 * index)
                spec = bookkeeping.drift_event(
                    window_record(True, start.to_pydatetime(), rows=1, drift_share=1.0,
                                  reasons=[Reason(kind="data_drift", text="benchmark")]),
                    start.to_pydatetime(), (start + pd.Timedelta(days=7)).to_pydatetime(), "bench")
                event = emit_event(event=spec.event, resource=spec.resource, related=spec.related,
                                   payload=spec.payload)
                wanted = (start + pd.Timedelta(days=7)).isoformat()
                deadline = time.monotonic() + 120
                while True:
                    runs = httpx.post(f"{api}/flow_runs/filter", timeout=10, json={
                        "deployments": {"id": {"any_": [deployment_id]}}}).json()
                    run = next((r for r in runs if r["parameters"].get("data_end") == wanted), None)
                    if run and run["start_time"] and run["state_type"] in ("COMPLETED", "FAILED", "CRASHED"):
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no finished run for event {index}: {run}")
                    time.sleep(0.2)
                delay = (pd.Timestamp(run["start_time"]) - pd.Timestamp(event.occurred)).total_seconds()
                delays.append(delay)
                print(f"event {index}: retraining run started {delay:.2f} s after the event")
        finally:
            stop(runner)
    return delays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trigger", description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="git ref to compare with (default: main)")
    parser.add_argument("--weeks", type=int, default=4, help="monitoring windows per run (default 4)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per version, interleaved (default 2)")
    parser.add_argument("--events", type=int, default=5, help="drift events for the delay (default 5)")
    args = parser.parse_args(argv)
    from support.servers import prefect_server

    summary: dict = {"ref": args.ref, "weeks": args.weeks, "per_window_s": {"before": [], "after": []}}
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch, \
            prefect_server(Path(scratch) / "prefect") as api:
        before = _version_tree(args.ref, Path(tempfile.mkdtemp(prefix="before-", dir=scratch)))
        for repeat in range(args.repeats):
            for label, tree in (("before", before), ("after", REPO_ROOT)):
                result = per_window(tree, api, args.weeks)
                summary["per_window_s"][label].append(round(result["per_window_s"], 2))
                print(f"{label} ({args.ref if label == 'before' else 'this checkout'}) run {repeat + 1}: "
                      f"{result['windows']} windows ({result['alarms']} alarms) in {result['seconds']:.1f} s = "
                      f"{result['per_window_s']:.2f} s per window")
        if args.events:
            delays = event_to_start(api, args.events)
            summary["event_to_start_s"] = {"each": [round(d, 2) for d in delays],
                                           "median": round(statistics.median(delays), 2),
                                           "max": round(max(delays), 2)}
    summary["cpu_count"] = os.cpu_count()
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

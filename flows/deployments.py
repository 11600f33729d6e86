"""The Prefect deployments, declared in the repo: `python -m flows.deployments [--register-only]`.

Who runs their flow runs is `prefect.runner` in params.yaml:
- `serve` (default): this process registers the deployments (schedules, parameters, tags, descriptions from
  `params.yaml`) and then runs their flow runs as subprocesses in this checkout (`prefect.serve`): no pool, no
  worker, nothing to copy; one machine.
- `workers`: the deployments are registered on the `process` work pool `prefect.work_pool` and this process exits
  (`--register-only`, which the stack runs); `prefect worker start --pool ...` processes, here or on other
  machines, take the runs (`ops/workers.py`, docs/scale-out.md).
A user pauses, edits or triggers the deployments in the Prefect UI; the next registration re-applies what
`params.yaml` says (the repo is the source of truth).

Deployment names equal flow names (`training/training`, `monitoring/monitoring`, `retraining/retraining`): the
Automation in `flows/automations.py` runs `retraining/retraining` (`monitor.retraining_deployment`) on drift; it is
applied here, after the deployments and before serving, with the two that mark silent runs Crashed and queue
crashed runs again (`ops/workers.py`).

What the operator changed in the UI survives a restart (prefect#19302: Prefect 3.9 re-activates a paused schedule
on redeploy): before applying, the deployments' paused flag and each schedule's `active` (matched by slug) are
read from the server and kept; `deployments.<name>.paused: true` in params still pauses. Schedules' timing,
parameters and descriptions come from params.yaml on every start (the repo is the source of truth for those).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pipelines import io
from pipelines.config import PARAMS_ENV, Params, load_params

REPO_ROOT = Path(__file__).resolve().parents[1]
# What every process the project starts gets: no analytics, no tracking.
QUIET_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "BENTOML_DO_NOT_TRACK": "True"}
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"

# flow name -> (module, attribute): the deployment name is the flow name.
FLOWS = {
    "training": ("flows.training", "training"),
    "monitoring": ("flows.monitoring", "monitoring_flow"),
    "retraining": ("flows.retraining", "retraining"),
}
DESCRIPTIONS = {
    "training": "The training DAG (collect -> validate -> preprocess -> train -> evaluate -> gate) on the "
                "window in params.yaml, each a DVC stage (as dvc repro). Weekly; trigger it from the UI with "
                "Run -> Quick run.",
    "monitoring": "Compares the latest window of logged predictions (and outcomes) with the reference data "
                  "in Evidently; past the drift/decay thresholds it emits flightops.drift.detected (the "
                  "Automation 'flightops: retrain on drift' runs retraining). Hourly.",
    "retraining": "The training DAG on a newer window as a DVC experiment (dvc exp run --temp), "
                  "behind the same promotion gate. No schedule: run by "
                  "the Automation 'flightops: retrain on drift' on the monitoring flow's drift event; one at a "
                  "time (its own concurrency limit).",
}
# One schedule per scheduled deployment, named so its state on the server can be matched on the next start.
SCHEDULE_SLUGS = {"training": "training-cron", "monitoring": "monitoring-interval"}


@dataclass(frozen=True)
class OperatorState:
    """What the server says the operator left: the deployment's pause and each schedule's `active`, by slug."""

    paused: bool = False
    active: Mapping[str, bool] = field(default_factory=dict)


def load_flow(name: str) -> Any:
    """The flow object, imported on use: listing deployment names must not pay for Prefect and the stack."""
    module_name, attribute = FLOWS[name]
    return getattr(importlib.import_module(module_name), attribute)


def deployment_parameters(name: str, params_file: Path) -> dict[str, Any]:
    """Default parameters of each deployment: the absolute params file, so runs read the same config."""
    parameters: dict[str, Any] = {"params_file": str(params_file.resolve())}
    if name == "retraining":
        parameters["data_end"] = None
    return parameters


def schedule_for(name: str, params: Params, kept: OperatorState | None = None) -> dict[str, Any]:
    """`to_deployment` keyword arguments for the schedule of `name` (none for retraining).

    `kept` is the state found on the server: a paused deployment or an inactive schedule stays so; params'
    `paused: true` pauses too. A schedule the server does not know yet starts active.
    """
    from prefect.schedules import Cron, Interval

    section = params.deployments
    kept = kept or OperatorState()
    slug = SCHEDULE_SLUGS.get(name)
    active = kept.active.get(slug, True) if slug else True
    if name == "training":
        return {"schedules": [Cron(section.training.cron, timezone=section.timezone, slug=slug, active=active)],
                "paused": section.training.paused or kept.paused}
    if name == "monitoring":
        return {"schedules": [Interval(timedelta(minutes=section.monitoring.interval_minutes),
                                       timezone=section.timezone, slug=slug, active=active)],
                "paused": section.monitoring.paused or kept.paused}
    return {}


def concurrency_for(name: str, params: Params) -> dict[str, Any]:
    """The retraining deployment's own limit: the server refuses a second concurrent run, whoever starts it."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    if name != "retraining":
        return {}
    section = params.deployments.retraining
    return {"concurrency_limit": ConcurrencyLimitConfig(limit=section.concurrency_limit,
                                                        collision_strategy=section.collision_strategy)}


def read_operator_state(names: Sequence[str]) -> dict[str, OperatorState]:
    """The paused flag and schedule states of the deployments already on the server (absent ones are left out)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found = {}
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                deployment = client.read_deployment_by_name(f"{name}/{name}")
            except ObjectNotFound:
                continue
            schedules = deployment.schedules or []
            active = {s.slug: s.active for s in schedules if s.slug}
            slug = SCHEDULE_SLUGS.get(name)
            if slug and slug not in active and len(schedules) == 1:
                active[slug] = schedules[0].active  # registered before schedules had slugs
            found[name] = OperatorState(paused=bool(deployment.paused), active=active)
    return found


def run_environment(params: Params, params_file: Path) -> dict[str, str]:
    """What every flow run's process gets, whoever starts it: the params file, the checkout on its import path, the
    heartbeat period, and dependencies left alone (the worker's environment is already `uv sync --frozen`)."""
    return {**QUIET_ENV, PARAMS_ENV: str(Path(params_file).resolve()), "PYTHONPATH": str(REPO_ROOT),
            HEARTBEAT_ENV: str(params.prefect.heartbeat_s), "PREFECT_RUNNER_AUTO_INSTALL_DEPENDENCIES": "false"}


def job_variables(params: Params, params_file: Path) -> dict[str, Any]:
    """The deployments' job variables on the process pool: run in this checkout, with `run_environment`."""
    return {"working_dir": str(REPO_ROOT), "env": run_environment(params, params_file)}


def ensure_work_pool(params: Params) -> Any:
    """Create the process work pool once; an existing one is left as the operator configured it (paused, limits)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(params.prefect.work_pool)
        except ObjectNotFound:
            try:
                return client.create_work_pool(WorkPoolCreate(
                    name=params.prefect.work_pool, type="process",
                    description="flightops deployments; `prefect worker start --pool "
                                f"{params.prefect.work_pool}` on any machine with the checkout (docs/scale-out.md)"))
            except ObjectAlreadyExists:  # created meanwhile by another process
                return client.read_work_pool(params.prefect.work_pool)
        if pool.type != "process":
            raise RuntimeError(f"work pool {pool.name!r} (prefect.work_pool) has type {pool.type!r}, not 'process': "
                               "name another pool or delete that one")
        return pool


def build_deployments(params_file: Path | str, kept: Mapping[str, OperatorState] | None = None) -> list[Any]:
    """The RunnerDeployments of every flow present in this checkout, configured by `params_file`.

    `kept`: the operator's state per deployment name (`read_operator_state`), preserved in what is applied.
    """
    from prefect.deployments.runner import EntrypointType

    params_file = Path(params_file)
    params = load_params(params_file)
    kept = kept or {}
    on_pool: dict[str, Any] = {}
    if params.prefect.runner == "workers":
        on_pool = {"work_pool_name": params.prefect.work_pool, "job_variables": job_variables(params, params_file)}
    deployments = []
    for name in FLOWS:
        flow = load_flow(name)
        deployments.append(flow.to_deployment(
            name=name,
            parameters=deployment_parameters(name, params_file),
            description=DESCRIPTIONS[name],
            tags=[*params.deployments.tags, name],
            # Loaded by module path, so a run finds the flow from any working directory of this checkout.
            entrypoint_type=EntrypointType.MODULE_PATH,
            **schedule_for(name, params, kept.get(name)),
            **concurrency_for(name, params),
            **on_pool,
        ))
    return deployments


def apply_all(params_file: Path | str) -> list[Any]:
    """Register the deployments (keeping the operator's pauses) and then the Automations; returns the deployments.

    The Automation's action names the retraining deployment by id, so the deployments go first.
    """
    from flows.automations import apply_automations, apply_crash_automations

    params = load_params(params_file)
    if params.prefect.runner == "workers":
        ensure_work_pool(params)
    deployments = build_deployments(params_file, read_operator_state(list(FLOWS)))
    for deployment in deployments:
        deployment.apply()  # on the work pool it was built with, if any
    apply_automations(params)
    apply_crash_automations(params)
    return deployments


def serve_deployments(params_file: Path | str) -> None:
    """Register the deployments and Automations, then run their flow runs until SIGTERM/Ctrl-C (blocks)."""
    from prefect import serve

    params = load_params(params_file)
    deployments = apply_all(params_file)
    # Schedules stay as the user left them on shutdown: the server keeps them, the next start keeps them too.
    serve(*deployments, limit=params.deployments.limit, pause_on_shutdown=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.deployments", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=io.PARAMS_FILE, help=f"params file (default: {io.PARAMS_FILE})")
    parser.add_argument("--register-only", action="store_true",
                        help="register the deployments (on the work pool with prefect.runner: workers) and the "
                             "Automations, then exit; workers run the flow runs")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if args.register_only:
        apply_all(args.params)
        return 0
    if params.prefect.runner == "workers":
        parser.error(f"prefect.runner is workers in {args.params}: the work pool's workers run the flow runs; "
                     "use --register-only (the stack does), or set prefect.runner: serve")
    serve_deployments(args.params)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

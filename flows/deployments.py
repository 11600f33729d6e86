"""The Prefect deployments, declared in the repo: `python -m flows.deployments [--register-only]`.

Who runs their flow runs is `prefect.runner` in params.yaml:
- `serve` (default): this process registers the deployments (schedules, parameters, tags, descriptions from
  `params.yaml`) and then runs their flow runs as subprocesses in this checkout (`prefect.serve`): no pool, no
  worker, nothing to copy; one machine.
- `workers`: the deployments are registered on the `process` work pool `prefect.work_pool` and this process exits
  (`--register-only`, which the stack runs); `prefect worker start --pool ...` processes, here or on other
  machines, take the runs (`ops/workers.py`, docs/scale-out.md).
Where a run's code and files come from is `prefect.code_source`:
- `checkout` (default): this checkout (`working_dir`), with the params file by its absolute path: one machine, or
  the same path on every machine.
- `git`: nothing shared but services. Each run clones `versioning.git_remote` at the commit this checkout is at
  (Prefect's own `git_clone` pull step, into the run's temporary working directory), reads `params.yaml` there,
  pulls what its stages need from the DVC remote and pushes what they made; the registry is
  `versioning.registry_remote`. Registering refuses a commit the git remote lacks, or uncommitted params or code
  (the runs would not see them).
A user pauses, edits or triggers the deployments in the Prefect UI; the next registration re-applies what
`params.yaml` says (the repo is the source of truth).

Deployment names equal flow names (`training/training`, `monitoring/monitoring`, `retraining/retraining`,
`acknowledge/acknowledge`, which an operator runs from the UI with parameters to accept a data-quality alarm): the
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
    "acknowledge": ("flows.monitoring", "acknowledge_flow"),
}
DESCRIPTIONS = {
    "training": "The training DAG (collect -> validate -> preprocess -> train -> evaluate -> gate) on the "
                "window in params.yaml, each a DVC stage (as dvc repro). On deployments.training.cron; trigger it "
                "from the UI with Run -> Quick run.",
    "monitoring": "Compares the latest window of logged predictions (and outcomes) with the reference data "
                  "in Evidently; past the drift/decay thresholds it emits flightops.drift.detected (the "
                  "Automation 'flightops: retrain on drift' runs retraining). Every "
                  "deployments.monitoring.interval_minutes.",
    "retraining": "The training DAG on a newer window as a DVC experiment (dvc exp run --temp), "
                  "behind the same promotion gate. No schedule: run by "
                  "the Automation 'flightops: retrain on drift' on the monitoring flow's drift event; one at a "
                  "time (its own concurrency limit).",
    "acknowledge": "Accept a data-quality alarm as the new normal (a unit change, a new category): Run -> Custom "
                   "run with its kind, columns, first window (since), who you are and why. It stops blocking "
                   "retraining from the next monitoring run and shows on the Evidently dashboard; revoke an "
                   "acceptance with its id. No schedule.",
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


# In a run's own clone (code_source: git): params.yaml at the commit, relative to the clone, where the run works.
CLONED_PARAMS = io.PARAMS_FILE
CLONE_DIRECTORY = "flightops"  # the clone's folder inside the run's temporary working directory


def deployment_parameters(name: str, params_file: Path, code_source: str = "checkout") -> dict[str, Any]:
    """Default parameters of each deployment: the absolute params file, so runs read the same config (in a run's
    own clone: its params.yaml, committed at the deployment's commit)."""
    parameters: dict[str, Any] = {"params_file": CLONED_PARAMS if code_source == "git"
                                  else str(params_file.resolve())}
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
    heartbeat period, and dependencies left alone (the worker's environment is already `uv sync --frozen`).

    In a run's own clone (code_source: git) the params file is the clone's, and the import path is the clone, which
    Prefect's worker puts first itself: nothing names a path of this machine."""
    quiet = {**QUIET_ENV, HEARTBEAT_ENV: str(params.prefect.heartbeat_s),
             "PREFECT_RUNNER_AUTO_INSTALL_DEPENDENCIES": "false"}
    if params.prefect.code_source == "git":
        return {**quiet, PARAMS_ENV: CLONED_PARAMS}
    return {**quiet, PARAMS_ENV: str(Path(params_file).resolve()), "PYTHONPATH": str(REPO_ROOT)}


def job_variables(params: Params, params_file: Path) -> dict[str, Any]:
    """The deployments' job variables on the process pool: run in this checkout, with `run_environment`; in their
    own temporary working directory (the worker's) when each run clones its code."""
    if params.prefect.code_source == "git":
        return {"env": run_environment(params, params_file)}
    return {"working_dir": str(REPO_ROOT), "env": run_environment(params, params_file)}


class SourceError(RuntimeError):
    """The runs could not get the code this checkout is at (code_source: git): the message says what to push."""


# What a run's clone must hold exactly as this checkout has it: its params and the code and files its stages read.
CLONED_INPUTS = (io.PARAMS_FILE, io.DVC_FILE, io.PACKAGE_LOCK, io.PROJECT_FILE, io.DVC_CONFIG, "pipelines", "flows",
                 "expectations")


def git_source(params: Params, root: Path) -> Any:
    """Prefect's `GitRepository` storage at this checkout's commit, on `versioning.git_remote`'s URL: the pull step
    every run of the deployments makes (`git_clone` with `commit_sha`). Refuses a commit the remote lacks and
    params or code that differ from it, which the runs would silently not see."""
    import subprocess

    from prefect.runner.storage import GitRepository

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise SourceError(f"git {' '.join(args)} failed in {root}: {done.stderr.strip()}")
        return done.stdout.strip()

    remote = params.versioning.git_remote
    url = git("remote", "get-url", remote)
    if "://" not in url and not url.startswith("git@") and not Path(url).is_absolute():
        url = str((root / url).resolve())  # a relative path remote, as every run's clone must find it
    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", *CLONED_INPUTS)
    if changed:
        raise SourceError(f"prefect.code_source is git: the runs clone commit {commit[:12]}, but these files differ "
                          f"from it here:\n{changed}\ncommit and push them (git push {remote}), then register again")
    git("fetch", "--quiet", remote)
    if not git("for-each-ref", "--contains", commit, f"refs/remotes/{remote}"):
        raise SourceError(f"prefect.code_source is git: commit {commit[:12]} is not on {remote} ({url}), so no run "
                          f"could clone it: git push {remote} HEAD, then register again")
    return GitRepository(url=url, commit_sha=commit, name=CLONE_DIRECTORY, pull_interval=None)


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
    source = git_source(params, params_file.resolve().parent) if params.prefect.code_source == "git" else None
    deployments = []
    for name in FLOWS:
        flow = load_flow(name)
        deployment = flow.to_deployment(
            name=name,
            parameters=deployment_parameters(name, params_file, params.prefect.code_source),
            description=DESCRIPTIONS[name],
            tags=[*params.deployments.tags, name],
            # Loaded by module path, so a run finds the flow from any working directory of this checkout.
            entrypoint_type=EntrypointType.MODULE_PATH,
            **schedule_for(name, params, kept.get(name)),
            **concurrency_for(name, params),
            **on_pool,
        )
        if source is not None:
            deployment.storage = source  # each run: git_clone at the commit, then the module from the clone
        deployments.append(deployment)
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

"""The Prefect deployments, declared in the repo and served by one process: `python -m flows.deployments`.

Why `prefect.serve` rather than `prefect.yaml` + a work pool + a worker: one long-running process both registers
the deployments (schedules, parameters, tags, descriptions from `params.yaml`) and runs their flow runs as
subprocesses in this checkout, so there is no pool to create, no worker to keep in step with the code, and
nothing to copy. A user pauses, edits or triggers the deployments in the Prefect UI; the next start of this
process re-applies what `params.yaml` says (the repo is the source of truth).

Deployment names equal flow names (`training/training`, `monitoring/monitoring`, `retraining/retraining`): the
monitoring flow starts retraining with `run_deployment("retraining/retraining")`.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from pipelines.config import Params, load_params

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
                  "in Evidently; starts retraining past the drift/decay thresholds. Hourly.",
    "retraining": "The training DAG on a newer window as a DVC experiment (dvc exp run --temp), behind the "
                  "same promotion gate. No schedule: started by the monitoring flow.",
}


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


def schedule_for(name: str, params: Params) -> dict[str, Any]:
    """`to_deployment` keyword arguments for the schedule of `name` (none for retraining)."""
    from prefect.schedules import Cron, Interval

    section = params.deployments
    if name == "training":
        return {"schedules": [Cron(section.training.cron, timezone=section.timezone)],
                "paused": section.training.paused}
    if name == "monitoring":
        return {"schedules": [Interval(timedelta(minutes=section.monitoring.interval_minutes),
                                       timezone=section.timezone)],
                "paused": section.monitoring.paused}
    return {}


def build_deployments(params_file: Path | str) -> list[Any]:
    """The RunnerDeployments of every flow present in this checkout, configured by `params_file`."""
    from prefect.deployments.runner import EntrypointType

    params_file = Path(params_file)
    params = load_params(params_file)
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
            **schedule_for(name, params),
        ))
    return deployments


def serve_deployments(params_file: Path | str) -> None:
    """Register the deployments and run their flow runs until SIGTERM/Ctrl-C (blocks)."""
    from prefect import serve

    params = load_params(params_file)
    deployments = build_deployments(params_file)
    # Schedules stay as the user left them on shutdown: the server keeps them, the next start re-applies params.
    serve(*deployments, limit=params.deployments.limit, pause_on_shutdown=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.deployments", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    serve_deployments(args.params)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

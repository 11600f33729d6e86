"""The `training` flow: the DVC DAG's stages as Prefect tasks, for schedules, retries, logs and the UI.

Each task runs its `dvc.yaml` stage through DVC's Python API (`pipelines.release.versioning.run_stage`, what `dvc repro`
does per stage), so a flow run leaves the repository exactly as `dvc repro` would: dvc.lock truthful, outputs in
DVC's cache, `dvc status` clean, an unchanged stage skipped. When the gate stage ran (a model was registered), the
run is saved as a DVC experiment and pushed, so the registry entry's ref holds its dvc.lock (docs/versioning.md).
With `prefect.code_source: git` the run works in its own fresh clone (docs/scale-out.md): each stage first pulls
its outputs from the DVC remote when only their absence would make it run (`dvc repro --pull`), and everything the
run made is pushed at the end, since the clone goes with the run's working directory.
The flow only wires; what a stage does lives in `pipelines/`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.reports import publish_reports
from pipelines import io
from pipelines.config import Params, load_params
from pipelines.model.gate import decision_markdown
from pipelines.release import versioning
from pipelines.release.lineage import BASELINE_ENV
from pipelines.release.reporting import training_summary_markdown


@task(name="dvc-stage", cache_policy=NO_CACHE, task_run_name="{stage}")
def dvc_stage(root: Path, stage: str, env: dict[str, str], pull: bool = False) -> versioning.StageRun:
    """One stage through DVC: it runs only if its deps, params or outs changed (else DVC skips it, or with `pull`
    restores outputs that are only missing from the DVC remote)."""
    done = versioning.run_stage(root, stage, env, pull=pull)
    logger = get_run_logger()
    if done.ran:
        logger.info("%s", done.output)
    logger.info("%s: %s in %.1f s", stage, "ran" if done.ran else "up to date, skipped", done.seconds)
    return done


# Reading the source is the step that meets the outside world (a file share, a bucket): it retries.
collect_stage = dvc_stage.with_options(name="collect", retries=2, retry_delay_seconds=10)


@task(name="save-experiment", cache_policy=NO_CACHE, task_run_name="save {name}")
def save_experiment(root: Path, name: str) -> versioning.Experiment:
    return versioning.save_experiment(root, name)


# Pushing meets the network (git remote, DVC remote): it retries.
@task(name="push-experiment", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def push_experiment(root: Path, experiment: versioning.Experiment, params: Params) -> dict[str, Any]:
    return versioning.push_experiment(root, experiment, params.versioning.git_remote)


# Pushing meets the network (the DVC remote): it retries.
@task(name="push-outputs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def push_outputs(root: Path) -> dict[str, Any]:
    return versioning.push_outputs(root)


@task(name="report", cache_policy=NO_CACHE)
def report(params: Params, root: Path, stages: list[versioning.StageRun],
           experiment: dict[str, Any] | None) -> dict[str, Any]:
    """The run's summary and gate decision as artifacts, read back from the stages' output files."""
    summary = versioning.read_run_summary(params, root)
    summary["stages"] = {run.stage: "ran" if run.ran else "skipped" for run in stages}
    summary["experiment"] = experiment
    if summary["evaluate"]:
        create_markdown_artifact(key="training-summary", markdown=training_summary_markdown(summary),
                                 description="Test-split metrics of the trained model beside the naive baselines")
    if summary["gate"]:
        create_markdown_artifact(key="gate-decision", markdown=decision_markdown(summary["gate"]),
                                 description="Challenger vs champion on the current test split: every check")
    return json.loads(json.dumps(summary, default=str))


@flow(name="training", log_prints=True, flow_run_name="training {params_file}")
def training(params_file: str = io.PARAMS_FILE) -> dict[str, Any]:
    """collect -> validate -> preprocess -> train (search on Dask) -> evaluate -> variant -> gate -> reference,
    each a DVC stage.

    A challenger the gate refuses leaves the champion as it was and the flow completes (the gate-decision artifact
    says why); with gate.fail_on_refusal the gate stage fails, and so does the flow.
    """
    params = load_params(params_file)
    root = versioning.project_root(params_file)
    name = versioning.experiment_name("train")
    env = versioning.workspace_run_env(root, name)
    cloned = params.prefect.code_source == "git"  # this run's own clone: pull what is missing, push what it made
    get_run_logger().info("working in %s at commit %s", root, env[BASELINE_ENV])
    # --- data ---------------------------------------------------------------------------------------------------
    runs = [collect_stage(root, "collect", env, cloned)]
    runs.append(dvc_stage(root, "validate", env, cloned))  # fails on failed expectations: nothing below runs
    runs.append(dvc_stage(root, "preprocess", env, cloned))
    # --- model --------------------------------------------------------------------------------------------------
    runs.append(dvc_stage(root, "train", env, cloned))
    runs.append(dvc_stage(root, "evaluate", env, cloned))
    runs.append(dvc_stage(root, "variant", env, cloned))  # the variant serve.artifact names (full: none), gated next
    # --- gate and promotion -------------------------------------------------------------------------------------
    gate = dvc_stage(root, "gate", env)
    runs.append(gate)
    # --- the monitoring reference and calibration, attached to the registered model ---------------------------
    reference = dvc_stage(root, "reference", env)
    runs.append(reference)
    # --- version: a registered model's dvc.lock is held by an experiment ref, pushed to the remotes -------------
    experiment = None
    if gate.ran or reference.ran:
        saved = save_experiment(root, name)
        experiment = versioning.experiment_record(saved, push_experiment(root, saved, params))
    if cloned:
        push_outputs(root)
    # --- report -------------------------------------------------------------------------------------------------
    summary = report(params, root, runs, experiment)
    # model card + links to Data Docs and drift reports, from the project's files
    summary["reports"] = publish_reports(versioning.rooted(params, root))
    return summary


if __name__ == "__main__":
    training()

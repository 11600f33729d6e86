"""The `training` flow: the DVC DAG's stages as Prefect tasks, for schedules, retries, logs and the UI.

Each task calls the same `pipelines.stages` function as the matching `dvc.yaml` stage, so both write the same
artifacts to the same paths. The flow only wires; what a stage does lives in `pipelines/`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.reports import publish_reports
from pipelines import stages
from pipelines.config import Params, load_params
from pipelines.reporting import training_summary_markdown


# Reading the source is the step that meets the outside world (a file share, a bucket): it retries.
@task(name="collect", retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE,
      task_run_name="collect {params.collect.start:%Y-%m-%d}..{params.collect.end:%Y-%m-%d}")
def collect(params: Params) -> dict[str, Any]:
    return stages.run_collect(params)


@task(name="validate", cache_policy=NO_CACHE)
def validate(params: Params) -> dict[str, Any]:
    return stages.run_validate(params)


@task(name="preprocess", cache_policy=NO_CACHE)
def preprocess(params: Params) -> dict[str, Any]:
    return stages.run_preprocess(params)


@task(name="train", cache_policy=NO_CACHE)
def train(params: Params) -> dict[str, Any]:
    return stages.run_train(params)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(params: Params) -> dict[str, Any]:
    return stages.run_evaluate(params)


@flow(name="training", log_prints=True, flow_run_name="training {params_file}")
def training(params_file: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """collect -> validate -> preprocess -> train -> evaluate, configured by params.yaml (+ overrides)."""
    params = load_params(params_file, overrides)
    # --- data ---------------------------------------------------------------------------------------------------
    collected = collect(params)
    validation = validate(params)  # raises on failed expectations: nothing below runs on bad data
    splits = preprocess(params)
    # --- model --------------------------------------------------------------------------------------------------
    trained = train(params)
    metrics = evaluate(params)
    # --- report -------------------------------------------------------------------------------------------------
    summary = {"collect": collected, "validate": validation, "splits": splits, "train": trained,
               "evaluate": metrics}
    create_markdown_artifact(key="training-summary", markdown=training_summary_markdown(summary),
                             description="Test-split metrics of the trained model beside the naive baselines")
    summary["reports"] = publish_reports(params)  # model card + links to Data Docs and drift reports
    return summary


if __name__ == "__main__":
    training()

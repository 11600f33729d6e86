"""The `training` flow: the DVC DAG's stages as Prefect tasks, for schedules, retries, logs and the UI.

Each task calls the same `pipelines.stages` function as the matching `dvc.yaml` stage, so both write the same
artifacts to the same paths. The flow only wires; what a stage does lives in `pipelines/`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.reports import publish_reports
from pipelines import stages
from pipelines.config import Params, load_params
from pipelines.gate import decision_markdown, enforce
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


@task(name="plan-search", cache_policy=NO_CACHE)
def plan_search(params: Params) -> list[Any]:
    return stages.plan_search(params)


@task(name="candidate", cache_policy=NO_CACHE, task_run_name="candidate {index}")
def candidate(params: Params, index: int, candidate_params: Any) -> Any:
    return stages.run_candidate(params, index, candidate_params)


@flow(name="search", log_prints=True)
def search(params: Params, candidates: list[Any]) -> list[Any]:
    """Fan the candidates out on this flow's task runner (a DaskTaskRunner, see `_search_runner`)."""
    futures = candidate.map(unmapped(params), list(range(len(candidates))), candidates)
    return [future.result() for future in futures]


@task(name="select", cache_policy=NO_CACHE)
def select(params: Params, results: list[Any]) -> dict[str, Any]:
    return stages.finish_search(params, results)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(params: Params) -> dict[str, Any]:
    return stages.run_evaluate(params)


@task(name="gate", cache_policy=NO_CACHE)
def gate(params: Params) -> dict[str, Any]:
    # A refusal is a result, not a failure: the decision and its reasons come back and go into the report.
    return stages.run_gate(params)


@task(name="promote", cache_policy=NO_CACHE)
def promote(params: Params, decision: dict[str, Any]) -> dict[str, Any]:
    return stages.run_promote(params, decision)


@task(name="report-gate", cache_policy=NO_CACHE)
def report_gate(params: Params, decision: dict[str, Any], promotion: dict[str, Any]) -> None:
    """The gate decision as an artifact; in blocking mode (gate.fail_on_refusal) a refusal then fails the run."""
    report = {**decision, "registered_tag": promotion["tag"],
              "promoted_tag": promotion["tag"] if promotion["promoted"] else None}
    create_markdown_artifact(key="gate-decision", markdown=decision_markdown(report),
                             description="Challenger vs champion on the current test split: every check")
    enforce(report, params.gate)


def _search_runner(params: Params) -> Any:
    """A Dask task runner from params: search.dask_address, or a local cluster of search.n_workers processes.

    Local workers get this run's Prefect API URL: without it, each worker process would boot its own ephemeral
    Prefect server when the flow itself runs on one. Workers of an external cluster need PREFECT_API_URL set.
    """
    from prefect.client.orchestration import get_client
    from prefect_dask import DaskTaskRunner

    from pipelines.search import dask_cluster_kwargs

    if params.search.dask_address:
        return DaskTaskRunner(address=params.search.dask_address)
    # The configured API, or the temporary server this process started (its URL is only known to the client).
    api_url = str(get_client(sync_client=True).api_url)
    return DaskTaskRunner(cluster_kwargs={**dask_cluster_kwargs(params.search), "env": {"PREFECT_API_URL": api_url}})


@flow(name="training", log_prints=True, flow_run_name="training {params_file}")
def training(params_file: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """collect -> validate -> preprocess -> search (candidates on Dask) -> evaluate -> gate -> promote.

    Configured by params.yaml (+ overrides). A challenger the gate refuses leaves the champion as it was and the
    flow completes (the gate-decision artifact says why); with gate.fail_on_refusal it fails instead.
    """
    params = load_params(params_file, overrides)
    # --- data ---------------------------------------------------------------------------------------------------
    collected = collect(params)
    validation = validate(params)  # raises on failed expectations: nothing below runs on bad data
    splits = preprocess(params)
    # --- model --------------------------------------------------------------------------------------------------
    candidates = plan_search(params)
    results = search.with_options(task_runner=_search_runner(params))(params, candidates)
    trained = select(params, results)
    metrics = evaluate(params)
    # --- gate and promotion -------------------------------------------------------------------------------------
    decision = gate(params)
    promotion = promote(params, decision)
    # --- report -------------------------------------------------------------------------------------------------
    summary = {"collect": collected, "validate": validation, "splits": splits, "train": trained,
               "evaluate": metrics, "gate": decision, "promotion": promotion}
    create_markdown_artifact(key="training-summary", markdown=training_summary_markdown(summary),
                             description="Test-split metrics of the trained model beside the naive baselines")
    report_gate(params, decision, promotion)
    summary["reports"] = publish_reports(params)  # model card + links to Data Docs and drift reports
    return summary


if __name__ == "__main__":
    training()

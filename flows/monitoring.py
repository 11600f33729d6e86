"""The `monitoring` flow: each new window of logged traffic against the champion's training data, and the trigger.

Per ready window: Evidently report (HTML + JSON + workspace snapshot), a Prefect markdown artifact that says
plainly whether it drifted, and — past the thresholds in `params.yaml` `monitor:` — a run of the retraining
deployment via `run_deployment`. Why `run_deployment` and not an event + automation: the guards that stop retrain
storms (cooldown, "one already running", one per window) need the Prefect API and the monitoring state at the
moment of the decision, and they belong in reviewed, tested code next to the decision; `run_deployment` returns
the flow run id we record, and a test can assert "exactly one run" synchronously. An automation would move the
guard into server-side configuration, evaluated asynchronously. See docs/monitoring.md.

Its deployment, and the retraining one it starts, are served by `python -m flows.deployments` (or the stack).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipelines import io, monitoring, monitoring_store
from pipelines.config import Params, load_params

IN_FLIGHT_STATES = ("SCHEDULED", "PENDING", "RUNNING")


# --- tasks: thin wrappers over pipelines/ -------------------------------------------------------------------------

@task(name="read-prediction-log", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def read_log(params: Params) -> tuple[pd.DataFrame, dict[str, int], pd.DataFrame]:
    parsed = monitoring_store.read_predictions(params)
    outcomes, _ = monitoring_store.read_outcomes(params)
    return parsed.frame, dict(parsed.skipped), outcomes


@task(name="load-reference", cache_policy=NO_CACHE)
def load_reference(params: Params) -> tuple[pd.DataFrame, dict[str, float] | None]:
    """The champion's training sample with its probabilities, and the champion's test figures.

    Both come from the champion in the registry (stored with it at promotion), so after a retrain the windows
    are compared with the data the *new* champion saw. With no champion yet (a bare workspace), the current
    candidate and prepared train split stand in.
    """
    from pipelines import registry
    from pipelines.train import TrainedModel

    tag = registry.champion_tag(params.paths.registry_dir)
    stored = registry.model_path(tag) / io.REFERENCE_FILE if tag else None
    if stored is not None and stored.exists():
        model = registry.load_model(tag)
        reference = pd.read_parquet(stored)
        test_metrics = (registry.model_metadata(tag).get("metrics") or {}).get("test")
    else:
        model = registry.load_model(tag) if tag else TrainedModel.load(params.paths.model_dir)
        train = io.read_parquet(io.prepared_path(params.paths, "train"), "preprocess")
        reference = monitoring.sample_reference(train, params.features, params.source.time_column, params.monitor)
        evaluation = params.paths.metrics_dir / io.EVALUATE_FILE
        test_metrics = json.loads(evaluation.read_text())["model"] if evaluation.exists() else None
    return reference.assign(**{monitoring.PROBABILITY: model.predict_proba(reference)}), test_metrics


@task(name="analyse-window", cache_policy=NO_CACHE, task_run_name="analyse {start:%Y-%m-%d}")
def analyse(params: Params, start: pd.Timestamp, end: pd.Timestamp, frame: pd.DataFrame,
            reference: pd.DataFrame, outcomes: pd.DataFrame, expected: dict[str, float] | None,
            skipped: dict[str, int]) -> tuple[dict[str, Any], dict[str, str]]:
    current = monitoring.window_rows(frame, params.source.time_column, start, end)
    result = monitoring.analyse_window(current, reference, params.features, params.source.time_column,
                                       params.monitor, outcomes=outcomes, expected=expected,
                                       name=monitoring_store.window_id(start))
    result.summary.update(window_start=start.isoformat(), window_end=end.isoformat(), log_skipped=skipped)
    paths = monitoring_store.save_window(params, start, result)
    paths["snapshot"] = monitoring_store.add_to_workspace(params, result)
    return result.summary, paths


@task(name="retrain-in-flight", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def retrain_in_flight(deployment_name: str) -> bool:
    """Whether the retraining deployment has a run scheduled, pending or running (asked of the Prefect API)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(deployment_name)
        except ObjectNotFound:
            raise RuntimeError(f"deployment {deployment_name!r} (monitor.retraining_deployment) not found on the "
                               "Prefect server: serve it with `python -m flows.deployments` "
                               "(or `python -m flows.stack up`)"
                               ) from None
        states = FlowRunFilterStateType(any_=[StateType[name] for name in IN_FLIGHT_STATES])
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=states)), limit=1)
    return bool(runs)


@task(name="start-retraining", cache_policy=NO_CACHE)
def start_retraining(deployment_name: str, params_file: str, data_end: str, reason: str) -> str:
    """Create one run of the retraining deployment and return at once (timeout=0); the window is its key."""
    from prefect.deployments import run_deployment

    run = run_deployment(name=deployment_name, timeout=0, idempotency_key=f"retrain-until-{data_end}",
                         parameters={"params_file": params_file, "data_end": data_end, "reason": reason[:500]})
    return str(run.id)


@task(name="save-state", cache_policy=NO_CACHE)
def save_state(params: Params, state: dict[str, Any]) -> None:
    monitoring_store.save_state(params, state)


def _artifact_markdown(summary: dict[str, Any], paths: dict[str, str], retrain: dict[str, Any]) -> str:
    verdict = "**DRIFT: yes**" if summary["drift"] else "**Drift: no**"
    lines = [f"# Monitoring window {summary['window_start'][:10]} .. {summary['window_end'][:10]}", "",
             f"{verdict} — {summary['rows']} predictions, "
             f"{len(summary['drifted_columns'])} of {len(summary['columns'])} feature columns drifted "
             f"({summary['drift_share']:.0%}); prediction drift {summary['prediction_drift']['score']:.3f} "
             f"({summary['prediction_drift']['method']}).", ""]
    lines += [f"- {reason}" for reason in summary["reasons"]] or ["- no threshold passed"]
    if summary["drifted_columns"]:
        lines += ["", "| column | method | score | threshold |", "|---|---|---|---|"]
        for column in summary["drifted_columns"]:
            c = summary["columns"][column]
            lines.append(f"| {column} | {c['method']} | {c['score']:.3f} | {c['threshold']} |")
    quality = summary.get("quality") or {}
    if quality.get("metrics"):
        q = quality["metrics"]
        expected = (quality.get("expected") or {}).get("roc_auc")
        lines += ["", f"Live quality on {quality['labelled']} labelled flights: ROC AUC {q['roc_auc']:.3f}"
                  + (f" (champion's test AUC {expected:.3f})" if expected else "")
                  + f", log loss {q['log_loss']:.3f}, Brier {q['brier']:.3f}."]
    elif quality:
        lines += ["", f"Live quality: waiting for outcomes ({quality['labelled_share']:.0%} arrived)."]
    lines += ["", f"Retraining: {'started, flow run ' + retrain['flow_run_id'] if retrain['started'] else 'no'}"
              f" ({retrain['reason']}).", "", f"Evidently report: [{paths['html']}](file://{paths['html']})",
              f"Summary JSON: `{paths['json']}`"]
    if summary.get("log_skipped"):
        lines.append(f"\nSkipped bad log lines so far: {summary['log_skipped']}")
    return "\n".join(lines)


# --- the flows ----------------------------------------------------------------------------------------------------

@flow(name="monitoring", log_prints=True)
def monitoring_flow(params_file: str = "params.yaml", overrides: dict[str, Any] | None = None,
                    trigger: bool = True) -> list[dict[str, Any]]:
    """Analyse every ready window of the prediction log; past the thresholds, start the retraining deployment."""
    logger = get_run_logger()
    params = load_params(params_file, overrides)
    monitor = params.monitor
    # --- inputs ---------------------------------------------------------------------------------------------------
    frame, skipped, outcomes = read_log(params)
    state = monitoring_store.load_state(params)
    plans = monitoring.plan_windows(frame, params.source.time_column, monitor, done=state["windows"])
    ready = [plan for plan in plans if plan.ready]
    for plan in plans:
        if not plan.ready and plan.reason != "already analysed":
            logger.info("window %s (%d rows) waits: %s", plan.start.date(), plan.rows, plan.reason)
    if not ready:
        return []
    reference, expected = load_reference(params)
    # --- per window: report, decision, trigger --------------------------------------------------------------------
    results = []
    for plan in ready:
        summary, paths = analyse(params, plan.start, plan.end, frame, reference, outcomes, expected, skipped)
        in_flight = trigger and summary["drift"] and retrain_in_flight(monitor.retraining_deployment)
        decision = monitoring.decide_retrain(summary, plan.end.to_pydatetime(),
                                             monitoring_store.last_retrain_window_end(state), in_flight, monitor)
        retrain: dict[str, Any] = {"started": False, "reason": decision.reason}
        if decision.retrain and not trigger:
            retrain["reason"] = f"would retrain, trigger disabled: {decision.reason}"
        elif decision.retrain:
            data_end = plan.end.isoformat()
            retrain.update(started=True, data_end=data_end,
                           flow_run_id=start_retraining(monitor.retraining_deployment, params_file, data_end,
                                                        decision.reason))
            state["retrains"].append({"window_end": data_end, "flow_run_id": retrain["flow_run_id"],
                                      "reason": decision.reason})
        summary["retrain"] = retrain
        io.write_json(params.paths.monitoring_dir / f"{monitoring_store.window_id(plan.start)}.json", summary)
        state["windows"][plan.start.isoformat()] = {"drift": summary["drift"], "retrain": retrain["started"]}
        save_state(params, state)
        create_markdown_artifact(key=f"monitoring-{plan.start:%Y%m%d}",
                                 markdown=_artifact_markdown(summary, paths, retrain),
                                 description=f"drift {'yes' if summary['drift'] else 'no'}, window "
                                             f"{plan.start:%Y-%m-%d}")
        results.append(summary)
    return results


if __name__ == "__main__":
    monitoring_flow()

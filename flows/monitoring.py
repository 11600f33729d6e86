"""The `monitoring` flow: each new window of logged traffic against the champion's training data, and its events.

Per ready window: Evidently report (HTML with a summary line on top + JSON + a workspace snapshot stamped with the
window's start), a Prefect markdown artifact that says plainly whether it drifted, the event
`flightops.window.analysed`, and — when the decision (thresholds in `params.yaml` `monitor:`, cooldown in traffic
time, one per window: `pipelines.monitor.bookkeeping`) asks for a retrain — `flightops.drift.detected`. The
Automation "flightops: retrain on drift" (`flows/automations.py`) turns that event into a run of the retraining
deployment, whose own concurrency limit keeps retrains one at a time. The flow only wires. See docs/monitoring.md.

Its deployment, the retraining one and the Automation are applied by `python -m flows.deployments` (or the stack).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipelines import contracts, io
from pipelines.config import Params, load_params
from pipelines.contracts import (
    PROBABILITY,
    Acknowledgement,
    EvaluationReport,
    MonitorState,
    RetrainRequest,
    WindowRecord,
    WindowSummary,
)
from pipelines.monitor import acknowledge, bookkeeping, dashboard
from pipelines.monitor import store as monitoring_store
from pipelines.monitor.calibration import Calibration
from pipelines.monitor.drift import analyse_window
from pipelines.monitor.reference import build_reference
from pipelines.monitor.windows import calibrated_windows, plan_windows, window_rows

# --- tasks: thin wrappers over pipelines/ -------------------------------------------------------------------------

@task(name="read-prediction-log", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def read_log(params: Params) -> tuple[pd.DataFrame, dict[str, int], pd.DataFrame, pd.DataFrame]:
    """The served predictions, the skipped lines by reason, the outcomes, and the rows the service refused."""
    parsed = monitoring_store.read_predictions(params)
    outcomes, _ = monitoring_store.read_outcomes(params)
    refused, unplaced = monitoring_store.read_refusals(params)
    skipped = dict(parsed.skipped)
    if unplaced:  # refused rows whose scheduled time could not be read: in no window, counted with the log's skips
        skipped["refused_without_time"] = unplaced
    return parsed.frame, skipped, outcomes, refused


@task(name="load-reference", cache_policy=NO_CACHE)
def load_reference(params: Params) -> tuple[pd.DataFrame, Calibration, dict[str, float] | None, Any, str | None]:
    """The champion's reference sample with its probabilities, its drift calibration, and its test figures.

    All come from the champion in the registry (stored with it at registration), so after a retrain the windows
    are compared with the data the *new* champion saw, by the thresholds learned from it. A champion registered
    before calibration existed, or no champion yet (a bare workspace: the current candidate), gets both built here
    from the prepared splits, as registration would.
    """
    from pipelines.model.catalog import load_model
    from pipelines.release import registry

    store = registry.open_registry(params)
    tag = registry.champion_tag(store)
    model = registry.load_model(tag, store) if tag else load_model(params.paths.model_dir)
    stored = registry.model_path(tag, store) if tag else None
    if stored is not None and (stored / io.REFERENCE_FILE).exists() and (stored / io.CALIBRATION_FILE).exists():
        reference = pd.read_parquet(stored / io.REFERENCE_FILE)
        calibration = Calibration.model_validate(io.read_json(stored / io.CALIBRATION_FILE))
    else:
        # Built from the prepared splits only where they are the champion's (or there is none): a champion from
        # an experiment whose `reference` stage has not attached its reference yet must not be judged by another
        # model's data.
        workspace_md5 = io.file_md5(contracts.model_file(params.paths.model_dir))
        if tag and registry.model_entry(tag, store).model_md5 != workspace_md5:
            raise RuntimeError(f"the champion {tag} has no monitoring reference yet (the `reference` stage attaches "
                               "it after the gate) and the workspace's splits are another model's: run `dvc repro "
                               "reference` where it was trained, or wait for its retrain to finish")
        splits = {split: io.read_parquet(io.prepared_path(params.paths, split), "preprocess")
                  for split in ("train", "valid", "test") if io.prepared_path(params.paths, split).exists()}
        reference, calibration = build_reference([splits["train"], splits["valid"]], model, params.features,
                                                 params.source.time_column, params.monitor,
                                                 labelled=[splits[s] for s in ("valid", "test") if s in splits])
    if tag:
        scores = registry.model_entry(tag, store).metrics.test
        test_metrics = None if scores is None else io.without_nulls(scores.to_json_dict())
    else:
        evaluation = EvaluationReport.load(params.paths.metrics_dir)
        test_metrics = None if evaluation is None else evaluation.model.to_json_dict()
    if PROBABILITY not in reference:  # a reference stored before the scores were stored with it
        reference = reference.assign(**{PROBABILITY: model.predict_proba(reference)})
    return reference, calibration, test_metrics, model, tag


@task(name="analyse-window", cache_policy=NO_CACHE, task_run_name="analyse {start:%Y-%m-%d}")
def analyse(params: Params, start: pd.Timestamp, end: pd.Timestamp, frame: pd.DataFrame,
            reference: pd.DataFrame, calibration: Calibration, outcomes: pd.DataFrame,
            expected: dict[str, float] | None, champion: Any = None,
            champion_tag: str | None = None, refused: pd.DataFrame | None = None,
            acknowledgements: list[Acknowledgement] | None = None) -> tuple[WindowSummary, Any, Any]:
    """The window's verdict (the operators' acknowledgements applied), its Evidently drift snapshot and the small
    quality snapshot (rows, live AUC)."""
    current = window_rows(frame, params.source.time_column, start, end)
    window_refused = None if refused is None else window_rows(refused, params.source.time_column, start, end)
    result = analyse_window(current, reference, params.features, params.source.time_column, params.monitor,
                            calibration, outcomes=outcomes, expected=expected, name=io.window_id(start),
                            champion=champion if champion_tag else None, champion_tag=champion_tag,
                            refused=window_refused)
    summary = acknowledge.apply(result.report, acknowledgements or [], start.isoformat())
    quality = dashboard.quality_report(current, outcomes, params.monitor.min_labelled_share)
    return summary, result.snapshot, quality


@task(name="publish-window", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE,
      task_run_name="publish {start:%Y-%m-%d}")
def publish(params: Params, start: pd.Timestamp, record: WindowRecord, drift: Any, quality: Any,
            retrain: RetrainRequest) -> dict[str, str]:
    """HTML report (summary line on top) + the window's record (JSON) + workspace snapshot stamped with the
    window's start."""
    snapshot = dashboard.review_snapshot(drift, quality, record, retrain, bookkeeping.served_model_tag(record),
                                         start.to_pydatetime(), params.project.entity_plural)
    paths = monitoring_store.save_window(params, record, snapshot)
    paths["snapshot"] = monitoring_store.add_to_workspace(params, snapshot)
    return paths


@task(name="emit-events", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def emit(specs: list[bookkeeping.EventSpec]) -> list[str]:
    """Send the window's events to the Prefect API; returns their ids (the Automation reacts to the drift one)."""
    from prefect.events import emit_event

    ids = []
    for spec in specs:
        event = emit_event(event=spec.event, resource=spec.resource, related=spec.related, payload=spec.payload)
        ids.append(str(event.id) if event is not None else "")
    return ids


@task(name="retrain-outcomes", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def retrain_outcomes(params: Params, window_ends: list[str]) -> dict[str, str | None]:
    """The state type of the retraining run started for each pending request (by its `data_end` parameter), from
    the Prefect API; None where no run exists yet or it has not finished."""
    if not window_ends:
        return {}
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.exceptions import ObjectNotFound

    found: dict[str, str | None] = dict.fromkeys(window_ends)
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(params.monitor.retraining_deployment)
        except ObjectNotFound:  # not deployed here (a dry run, a test): nothing ran, nothing to settle
            return found
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                                     limit=200)
    for run in runs:
        end = run.parameters.get("data_end")
        if end in found and run.state is not None and run.state.is_final():
            found[end] = run.state.type.value
    return found


@task(name="retrain-route", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def retrain_route(params: Params) -> bookkeeping.RetrainRoute:
    """Whether a retrain this run asks for would be run: the drift Automation and the retraining deployment on the
    Prefect API this run talks to. A run by hand on Prefect's temporary server (no `PREFECT_API_URL`) has neither:
    that server stops with the run."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    from flows.automations import RETRAIN_ON_DRIFT

    deployment = params.monitor.retraining_deployment
    if not PREFECT_API_URL.value():
        return bookkeeping.RetrainRoute(False, "this run's Prefect server is a temporary one (PREFECT_API_URL is "
                                        "not set, e.g. `python -m flows.monitoring` by hand), so no Automation or "
                                        f"deployment will run it; set PREFECT_API_URL to the stack's server for "
                                        f"the drift Automation to run {deployment}")
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return bookkeeping.RetrainRoute(False, f"no deployment {deployment} on the Prefect server "
                                            f"{PREFECT_API_URL.value()} (`python -m flows.deployments` registers "
                                            "it), so nothing will run it")
        automations = client.read_automations_by_name(RETRAIN_ON_DRIFT)
    if not automations:
        return bookkeeping.RetrainRoute(False, f"no Automation {RETRAIN_ON_DRIFT!r} on the Prefect server "
                                        f"{PREFECT_API_URL.value()} (`python -m flows.deployments` applies it), so "
                                        "nothing will run it")
    if not any(automation.enabled for automation in automations):
        return bookkeeping.RetrainRoute(True, f"the Automation {RETRAIN_ON_DRIFT!r} is paused: nothing runs it "
                                        "until it is resumed (Prefect UI -> Automations)", paused=True)
    return bookkeeping.RetrainRoute(True, f"the Automation {RETRAIN_ON_DRIFT!r} runs {deployment} on it")


def _say_retrain(record: WindowRecord, retrain: RetrainRequest, route: bookkeeping.RetrainRoute | None) -> None:
    """One line per window that asks for a retrain: booked and who runs it, or not booked and the command."""
    if retrain.started and route is not None:
        by_hand = f"; or by hand: {bookkeeping.RETRAIN_COMMAND.format(data_end=retrain.data_end)}" \
            if route.paused else ""
        get_run_logger().info("window %s: retrain booked (event %s, data up to %s): %s%s", record.window_start[:10],
                              retrain.event, retrain.data_end, route.note, by_hand)
    elif retrain.reason.startswith(bookkeeping.NOT_BOOKED):
        get_run_logger().warning("window %s: %s", record.window_start[:10], retrain.reason)


@task(name="save-state", cache_policy=NO_CACHE)
def save_state(params: Params, state: MonitorState) -> None:
    monitoring_store.save_state(params, state)


@task(name="ensure-dashboard", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def ensure_dashboard(params: Params, champion: str | None = None) -> bool:
    return monitoring_store.ensure_dashboard(params, champion)


def _artifact_markdown(record: WindowRecord, paths: dict[str, str], retrain: RetrainRequest,
                       entity_plural: str) -> str:
    verdict = "**DRIFT: yes**" if record.drift else "**Drift: no**"
    lines = [f"# Monitoring window {record.window_start[:10]} .. {record.window_end[:10]}", "",
             f"{verdict} — {record.rows} predictions, "
             f"{len(record.drifted_columns)} of {len(record.columns)} feature columns beyond their "
             f"calibrated threshold; importance-weighted drift index {record.drift_index:.2f} (calibrated "
             f"threshold {record.drift_index_threshold:.2f}); prediction drift "
             f"{record.prediction_drift.score:.3f} ({record.prediction_drift.method}).", ""]
    lines += [f"- {reason.text}" for reason in record.reasons] or ["- no threshold passed"]
    if record.drifted_columns:
        lines += ["", "| column | method | score | threshold |", "|---|---|---|---|"]
        for column in record.drifted_columns:
            c = record.columns[column]
            lines.append(f"| {column} | {c.method} | {c.score:.3f} | {c.threshold} |")
    quality = record.quality
    if quality is not None and quality.metrics:
        q = quality.metrics
        expected = (quality.expected or {}).get("roc_auc")
        lines += ["", f"Live quality on {quality.labelled} labelled {entity_plural}: ROC AUC {q['roc_auc']:.3f}"
                  + (f" (champion's test AUC {expected:.3f})" if expected else "")
                  + f", log loss {q['log_loss']:.3f}, Brier {q['brier']:.3f}."]
    elif quality is not None:
        lines += ["", f"Live quality: waiting for outcomes ({quality.labelled_share:.0%} arrived)."]
    lines += ["", f"Retraining: {'requested (event flightops.drift.detected)' if retrain.started else 'no'}"
              f" ({retrain.reason}).", "", f"Evidently report: [{paths['html']}](file://{paths['html']})",
              f"Window record (JSON): `{paths['json']}`"]
    if record.log_skipped:
        lines.append(f"\nSkipped bad log lines so far: {record.log_skipped}")
    return "\n".join(lines)


# --- the flows ----------------------------------------------------------------------------------------------------

def _utc(time: str) -> pd.Timestamp:
    """An ISO time as UTC (one without an offset is read as UTC, as the table's times are)."""
    stamp = pd.Timestamp(time)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@flow(name="monitoring", log_prints=True)
def monitoring_flow(params_file: str = io.PARAMS_FILE, overrides: dict[str, Any] | None = None,
                    trigger: bool = True, clock: str | None = None) -> list[dict[str, Any]]:
    """Analyse every ready window of the prediction log; past the thresholds, emit `flightops.drift.detected`.

    `clock` (ISO time) replaces the monitor's clock for readiness (a backfill, a test): windows are judged as of it.
    """
    logger = get_run_logger()
    params = load_params(params_file, overrides)
    # --- inputs ---------------------------------------------------------------------------------------------------
    frame, skipped, outcomes, refused = read_log(params)
    state = monitoring_store.load_state(params)
    acknowledgements = monitoring_store.read_acknowledgements(params)
    settled = False
    if trigger:  # what became of the retrains asked for before (a cancelled one is retried while its cause persists)
        pending = bookkeeping.pending_retrains(state)
        if pending:
            state = bookkeeping.settle_retrains(state, retrain_outcomes(params, pending),
                                                monitoring_store.read_retrain_outcomes(params))
            save_state(params, state)
            for record in monitoring_store.write_back_outcomes(params, state):
                settled = True
                logger.info("window %s: its retrain %s (%s)", record.window_start[:10], record.retrain.outcome,
                            record.retrain.gate or "no gate figures")
    loaded = None
    if not frame.empty and "auto" in (params.monitor.window_days, params.monitor.min_window_rows):
        # Windows sized from the champion's reference period (`auto`): cut live as its thresholds were learned.
        loaded = load_reference(params)
        params = params.model_copy(update={"monitor": calibrated_windows(params.monitor, loaded[1])})
        logger.info("windows: %s (the champion's calibration: %s)", f"{params.monitor.window_days} days, "
                    f"{params.monitor.min_window_rows}+ rows", loaded[1].sizing or "set in params")
    done = {start: entry.rows for start, entry in state.windows.items()}
    plans = plan_windows(frame, params.source.time_column, params.monitor, done=done,
                         clock=_utc(clock) if clock else None)
    for plan in plans:
        if plan.skipped:
            logger.info("window %s (%d rows): %s", plan.start.date(), plan.rows, plan.reason)
        elif not plan.ready and plan.reason != "already analysed":
            logger.info("window %s (%d rows) waits: %s", plan.start.date(), plan.rows, plan.reason)
    ready = [plan for plan in plans if plan.ready]
    route = retrain_route(params) if trigger else None
    if route is not None and not route.automated:
        logger.warning("a retrain asked for by this run is not booked: %s", route.note)
    if not ready:
        judged = _reconsider_acknowledged(params, state, acknowledgements, trigger, route)
        _retry_suppressed(params, judged, trigger and (route is None or route.automated))
        if settled or judged is not state:  # the dashboard's outcome and acknowledgement panels changed
            ensure_dashboard(params)
        return []
    for plan in plans:
        if plan.late_rows and not plan.reanalysis:
            logger.info("window %s: %d late rows since analysed (under monitor.late_rows_share)", plan.start.date(),
                        plan.late_rows)
    state = _reconsider_acknowledged(params, state, acknowledgements, trigger, route)
    reference, calibration, expected, champion, champion_tag = loaded or load_reference(params)
    ensure_dashboard(params, champion_tag)
    # --- per window: analyse, book (decide + remember), publish, tell -------------------------------------------
    results = []
    for plan in ready:
        summary, drift, quality = analyse(params, plan.start, plan.end, frame, reference, calibration, outcomes,
                                          expected, champion, champion_tag, refused, acknowledgements)
        booked = bookkeeping.book_window(state, plan.start.to_pydatetime(), plan.end.to_pydatetime(), summary,
                                         params.monitor, trigger=trigger, route=route or bookkeeping.AUTOMATED)
        record = WindowRecord.of(summary, window_start=plan.start.isoformat(), window_end=plan.end.isoformat(),
                                 log_skipped=skipped, late_rows=plan.late_rows, reanalysis=plan.reanalysis,
                                 retrain=booked.retrain)
        paths = publish(params, plan.start, record, drift, quality, booked.retrain)
        emit(bookkeeping.window_events(record, plan.start.to_pydatetime(), plan.end.to_pydatetime(), booked.retrain))
        state = booked.state
        save_state(params, state)
        create_markdown_artifact(key=f"monitoring-{plan.start:%Y%m%d}",
                                 markdown=_artifact_markdown(record, paths, booked.retrain,
                                                                     params.project.entity_plural),
                                 description=f"drift {'yes' if record.drift else 'no'}, window "
                                             f"{plan.start:%Y-%m-%d}")
        _say_retrain(record, booked.retrain, route)
        results.append(record.to_json_dict())
    _retry_suppressed(params, state, trigger and (route is None or route.automated))
    ensure_dashboard(params, champion_tag)  # the acknowledgements and retrain outcomes panels, as of this run
    return results


def _reconsider_acknowledged(params: Params, state: MonitorState, acknowledgements: list[Acknowledgement],
                             trigger: bool, route: bookkeeping.RetrainRoute | None = None) -> MonitorState:
    """The latest window judged again when an acknowledgement made since covers every data-quality reason that
    blocked its retrain: its record rewritten (the reasons marked), a retrain asked for if the decision now says so.
    Returns the state after it."""
    analysed = sorted(state.windows)
    if not analysed or not acknowledgements:
        return state
    latest = next((s for s in monitoring_store.read_summaries(params) if s.window_start == analysed[-1]), None)
    if latest is None:
        return state
    judged = bookkeeping.reconsider(state, latest, acknowledgements, params.monitor, trigger=trigger,
                                    route=route or bookkeeping.AUTOMATED)
    if judged is None:
        return state
    record, booked = judged
    get_run_logger().info("window %s judged again after an acknowledgement: %s", record.window_start[:10],
                          booked.decision.reason)
    record.save(params.paths.monitoring_dir)
    _say_retrain(record, booked.retrain, route)
    start, end = pd.Timestamp(record.window_start), pd.Timestamp(record.window_end)
    emit(bookkeeping.window_events(record, start.to_pydatetime(), end.to_pydatetime(), booked.retrain))
    save_state(params, booked.state)
    return booked.state


@flow(name="acknowledge", log_prints=True)
def acknowledge_flow(kind: str, why: str, columns: list[str] | None = None, since: str | None = None,
                     by: str = "", params_file: str = io.PARAMS_FILE, revoke: str | None = None) -> dict[str, Any]:
    """Accept a data-quality alarm as the new normal (or withdraw an acceptance: `revoke` its id), from the Prefect
    UI: the `acknowledge` deployment, Run -> Custom run. `kind` is the alarm's kind (new_category, mean_outside,
    relation_broken, missing_surge, ...), `columns` the columns it names (none: every column), `since` the first
    window it covers (YYYY-MM-DD; none: every window), `by` who you are, `why` the reason (kept for audit). The next
    monitoring run applies it: the alarm stops blocking retraining and the dashboard lists it."""
    params = load_params(params_file)
    directory = params.paths.monitoring_dir
    if revoke:
        record = acknowledge.revoke(directory, revoke, why, by=by or None)
    else:
        record = acknowledge.acknowledge(directory, kind, why, columns or [], since, by=by or None,
                                         known_columns=params.features.raw_columns)
    print(f"{'revoked ' + record.revokes if record.revokes else 'acknowledged'}: {record.sentence()}")
    # The dashboard's panel of acknowledgements, at once (a plain call, not the task: one local write, and the
    # flow's function stays callable without a Prefect server).
    monitoring_store.ensure_dashboard(params)
    return record.to_json_dict()


def _retry_suppressed(params: Params, state: MonitorState, trigger: bool) -> None:
    """A retrain cancelled because one was running is asked for again while the latest window still calls for it."""
    analysed = sorted(state.windows)
    if not analysed:
        return
    latest = next((s for s in monitoring_store.read_summaries(params) if s.window_start == analysed[-1]), None)
    start = pd.Timestamp(analysed[-1])
    end = start + pd.Timedelta(days=params.monitor.window_days)
    retried = bookkeeping.retry_suppressed(state, latest, start.to_pydatetime(), end.to_pydatetime(),
                                           params.monitor, trigger=trigger)
    if retried is None:
        return
    get_run_logger().info("suppressed retrain: %s", retried.retrain.reason)
    if retried.retrain.started:
        emit(bookkeeping.window_events(latest, start.to_pydatetime(), end.to_pydatetime(), retried.retrain)[1:])
    save_state(params, retried.state)


def main(argv: list[str] | None = None) -> None:
    """`python -m flows.monitoring [--params FILE] [--clock ISO]`: one run of the flow, here; `--clock` judges the
    windows as of that time (a backfill, or the last window of a replay that has ended: the waiting message says
    the time to give)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows.monitoring", description=main.__doc__.splitlines()[0])
    parser.add_argument("--params", default=io.PARAMS_FILE, help=f"params file (default: {io.PARAMS_FILE})")
    parser.add_argument("--clock", help="judge windows as of this UTC time, e.g. 2016-02-22T06:00")
    args = parser.parse_args(argv)
    monitoring_flow(params_file=args.params, clock=args.clock)


if __name__ == "__main__":
    main()

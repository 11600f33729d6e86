"""The closed loop, the second half of the main job: serve the champion, replay the later months as live traffic,
watch each week in Evidently, retrain when the monitor says so, promote through the gate, serve the new champion.

`python -m ops.loop` brings the local stack up (Prefect server, the deployments process, the Bento service,
the Evidently UI), then, one monitoring window of traffic at a time (a week by default):

1. replays the window's rows (the flights, by default) against the running service (`pipelines.monitor.replay`),
   outcomes delivered after;
2. runs the `monitoring` deployment on the stack's Prefect server (as its schedule would), which analyses every
   window that is ready and, past the thresholds, emits `flightops.drift.detected`; the Automation
   "flightops: retrain on drift" runs the `retraining` deployment on it;
3. finds that retraining run, waits for it to finish and for the service to serve whatever the gate decided.

Waiting for the retrain keeps the story readable (the weeks after a promotion are scored by the new model); in
production traffic would not wait, and nothing here depends on it. At the end it writes the summary
(`<monitoring_dir>/loop/`): one row per window (drift share, live AUC, the model serving it, retrain points), the
plot, and what the loop gained: each window's live AUC beside the AUC the first champion would have had on the
same logged flights, and the Evidently dashboard's address (one snapshot per window, dated in the replayed months).
The stack stays up for browsing unless `--down`.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines import io
from pipelines.config import Params, load_params

if TYPE_CHECKING:
    from pipelines.contracts import LoopRetrain, LoopSummary, ReproduceCommand, RetrainBooking

log = logging.getLogger("pipelines.loop")
TERMINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def window_chunks(start: pd.Timestamp, end: pd.Timestamp,
                  window_days: int) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """[start, end) cut at the monitoring windows' boundaries (Mondays 00:00 UTC for 7-day windows): one window's
    traffic per chunk, so each monitoring run has a new window to judge (cut weekly, 203-day windows took 53
    monitoring runs for 2 windows)."""
    from pipelines.monitor.windows import window_starts

    width = pd.Timedelta(days=window_days)
    first = window_starts(pd.Series([start]), window_days).iloc[0]
    cuts = [start, *pd.date_range(first + width, end, freq=width, inclusive="left"), end]
    return [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def wait_for_flow_run(flow_run_id: str, timeout_s: float, poll_s: float = 3.0) -> str:
    """Block until the flow run is in a terminal state; return that state's name."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.type.value in TERMINAL_STATES:
                return state.name
            if time.monotonic() > deadline:
                raise TimeoutError(f"retraining run {flow_run_id} not finished after {timeout_s:.0f}s "
                                   f"(last state {state.name if state else 'unknown'})")
            time.sleep(poll_s)


def find_triggered_run(deployment_name: str, data_end: str, timeout_s: float, poll_s: float = 1.0) -> str:
    """The id of the retraining run the Automation created for the drift event of the window ending `data_end`.

    The event is handled asynchronously by the Prefect server (triggers, then actions), so this polls.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        while True:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=50)
            found = [run for run in runs if run.parameters.get("data_end") == data_end]
            if found:
                return str(found[-1].id)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no run of {deployment_name} with data_end={data_end} after {timeout_s:.0f}s: is "
                                   "the Automation 'flightops: retrain on drift' paused (Prefect UI, Automations)?")
            time.sleep(poll_s)


def wait_for_serving(url: str, tag: str, timeout_s: float, confirmations: int = 8,
                     headers: dict[str, str] | None = None) -> None:
    """Ask the service to check the champion pointer now, then wait until it answers with `tag`.

    /reload reaches one worker; the others follow on their next pointer check (serve.reload_check_seconds).
    Each /metadata call opens a new connection, which the kernel hands to any worker, so `confirmations`
    answers in a row naming `tag` means every worker has swapped (with high probability for a few workers).
    Both are admin routes: `headers` carries the admin token.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    httpx.post(f"{url}/reload", timeout=30, headers=headers).raise_for_status()
    streak = 0
    while streak < confirmations:
        served = httpx.get(f"{url}/metadata", timeout=10, headers=headers).json().get("model_tag")
        streak = streak + 1 if served == tag else 0
        if streak == 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the service at {url} still serves {served}, not the champion {tag}, after "
                                   f"{timeout_s:.0f}s (stack.start_timeout_s)")
            time.sleep(0.25)


def gains(params: Params, baseline_tag: str) -> pd.DataFrame:
    """Per window: live ROC AUC of what was served vs the first champion's AUC on the same labelled flights."""
    from sklearn.metrics import roc_auc_score

    from pipelines.contracts import ACTUAL, PROBABILITY, REQUEST_ID
    from pipelines.monitor import store
    from pipelines.monitor.windows import window_starts
    from pipelines.release import registry

    predictions = store.read_predictions(params).frame
    outcomes, _ = store.read_outcomes(params)
    labelled = predictions.merge(outcomes, on=REQUEST_ID, how="inner")
    if labelled.empty:
        return pd.DataFrame(columns=["window_start", "served_auc", "first_champion_auc", "gain"])
    time_column = params.source.time_column
    baseline_model = registry.load_model(baseline_tag, registry.open_registry(params))
    labelled["first_champion"] = baseline_model.predict_proba(labelled)
    labelled["window_start"] = window_starts(labelled[time_column], params.monitor.window_days)
    rows = []
    for start, window in labelled.groupby("window_start"):
        if window[ACTUAL].nunique() < 2:
            continue
        served = roc_auc_score(window[ACTUAL], window[PROBABILITY])
        first = roc_auc_score(window[ACTUAL], window["first_champion"])
        rows.append({"window_start": start, "served_auc": served, "first_champion_auc": first,
                     "gain": served - first, "served_by": ",".join(sorted(window["model_tag"].unique()))})
    return pd.DataFrame(rows)


def unjudged_windows(params: Params) -> list[str]:
    """The logged traffic's windows that no monitoring run judged, each with why (`plan_windows`' reason, which
    says what judges it): without them a loop over traffic that ends mid-window reports fewer windows than it
    replayed and says nothing of the rest. `params`: with the monitoring windows sized (`_sized_windows`)."""
    from pipelines.monitor import store
    from pipelines.monitor.windows import plan_windows

    frame = store.read_predictions(params).frame
    done = {start: entry.rows for start, entry in store.load_state(params).windows.items()}
    return [f"{plan.start:%Y-%m-%d} ({_count(plan.rows, 'row')}): {plan.reason}"
            for plan in plan_windows(frame, params.source.time_column, params.monitor, done=done)
            if plan.start.isoformat() not in done]


def write_summary(params: Params, baseline_tag: str, retrains: list[LoopRetrain]) -> LoopSummary:
    """The loop's evidence: history table (CSV + markdown), the plot, the gain per window, a JSON summary."""
    from pipelines.contracts import LoopSummary
    from pipelines.monitor import store
    from pipelines.monitor.history import plot_history, summarise_history

    out = params.paths.monitoring_dir / io.LOOP_DIR
    out.mkdir(parents=True, exist_ok=True)
    history = summarise_history(store.read_summaries(params))
    gained = gains(params, baseline_tag)
    table = history.merge(gained[["window_start", "first_champion_auc", "gain"]], on="window_start", how="left") \
        if not gained.empty else history
    table.to_csv(out / io.LOOP_HISTORY_CSV, index=False)
    figure = plot_history(history, params.monitor)
    figure.savefig(out / io.LOOP_HISTORY_PLOT, dpi=120)
    after = gained[gained["served_by"] != baseline_tag] if not gained.empty else gained
    # Only the analysed windows: a partial last week (under monitor.min_window_rows) is not judged, not counted.
    after = after[after["window_start"].isin(history["window_start"])] if len(history) else after.iloc[:0]
    promoted = [r.champion_after for r in retrains if r.champion_after != r.champion_before]
    summary = LoopSummary(
        windows=len(history), alarms=int(history["alarm"].sum()) if len(history) else 0,
        retrains=retrains, first_champion=baseline_tag, promoted=promoted,
        windows_served_by_a_retrained_model=len(after),
        mean_auc_gain_on_those_windows=float(after["gain"].mean()) if len(after) else None,
        history_csv=str(out / io.LOOP_HISTORY_CSV), plot=str(out / io.LOOP_HISTORY_PLOT),
        evidently_dashboard=store.dashboard_url(params), reproduce=reproduce_commands([baseline_tag, *promoted]),
        window_days=params.monitor.window_days if isinstance(params.monitor.window_days, int) else None,
        unjudged=unjudged_windows(params))
    summary.save(out)
    io.write_text(out / io.LOOP_SUMMARY_MD, _markdown(table, summary, params.project.entity_plural))
    return summary


def reproduce_commands(tags: list[str]) -> dict[str, ReproduceCommand]:
    """Per champion: the command that rebuilds it and the ref holding its dvc.lock (from its registry lineage)."""
    from pipelines.contracts import ReproduceCommand
    from pipelines.release import registry

    commands = {}
    for tag in dict.fromkeys(tags):
        try:
            recorded = registry.model_entry(tag).lineage
        except registry.RegistryError:
            recorded = None
        commands[tag] = ReproduceCommand(command=f"python -m pipelines reproduce {tag} --check",
                                         ref=recorded.ref if recorded else None,
                                         commit=recorded.git_commit if recorded else None)
    return commands


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _windows(number: int, days: int | None) -> str:
    """`number` monitoring windows in words that say their length: weekly windows only when they are weeks."""
    if days == 7:
        return _count(number, "weekly window")
    return _count(number, "window") + (f" of {days} days" if days else "")


def _markdown(table: pd.DataFrame, summary: LoopSummary, entity_plural: str) -> str:
    lines = ["# The closed loop: replayed traffic, drift, retraining", "",
             f"{_windows(summary.windows, summary.window_days)} analysed, {_count(summary.alarms, 'alarm')}, "
             f"{_count(len(summary.retrains), 'retraining run')}, {len(summary.promoted)} promoted.", "",
             f"Evidently dashboard (one snapshot per window): {summary.evidently_dashboard}", ""]
    lines += [f"- not judged: window {window}" for window in summary.unjudged] + ([""] if summary.unjudged else [])
    for retrain in summary.retrains:
        lines.append(f"- retrain on traffic up to {retrain.data_end[:10]}: run {retrain.state}, champion "
                     f"{retrain.champion_before} -> {retrain.champion_after} ({retrain.reason[:160]})")
    lines += ["", "Every champion of this loop, and the command that rebuilds it from its registry entry "
                  "(docs/versioning.md):", ""]
    for tag, how in summary.reproduce.items():
        lines.append(f"- `{tag}` (ref `{how.ref or 'none'}`, commit `{(how.commit or 'unknown')[:12]}`): "
                     f"`{how.command}`")
    if summary.mean_auc_gain_on_those_windows is not None:
        lines += ["", f"On the {summary.windows_served_by_a_retrained_model} windows served by a retrained model, "
                      f"live ROC AUC was {summary.mean_auc_gain_on_those_windows:+.4f} on average vs the first "
                      f"champion scoring the same {entity_plural}."]
    lines += ["", "| window | rows | drift index (calibrated threshold) | pred. drift | live AUC | first champion AUC "
                  "| alarm: calibrated reasons | retrain |", "|---|---|---|---|---|---|---|---|"]
    for row in table.to_dict("records"):
        first = row.get("first_champion_auc", float("nan"))
        lines.append(f"| {row['window_start']:%Y-%m-%d} | {row['rows']} | {row['drift_index']:.2f} "
                     f"({row['drift_index_threshold']:.2f}) | {row['prediction_drift']:.3f} | {row['live_auc']:.3f} | "
                     f"{first:.3f} | {row['reasons'] if row['alarm'] else ''} | "
                     f"{'started' if row['retrained'] else ''} |")
    lines += ["", f"![drift index and live AUC per window]({io.LOOP_HISTORY_PLOT})", ""]
    return "\n".join(lines)


def start_fresh(params_file: Path) -> str:
    """Stop the stack, move the last loop's traffic and monitoring aside, and make the `dvc repro` model champion.

    Nothing is deleted: logs, outcomes and window reports go to `<loop_archive_dir>/<time>/`, and the
    champion change is a journalled registry event like any rollback.
    """
    import shutil
    from datetime import UTC, datetime

    from ops import stack
    from pipelines.contracts import GateReceipt, model_file
    from pipelines.io import file_md5
    from pipelines.release import lineage, registry

    params = load_params(params_file)
    stack.down(params_file)
    archive = params.paths.loop_archive_dir / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for folder in (params.paths.prediction_log_dir, params.paths.outcomes_dir, params.paths.monitoring_dir):
        if folder.exists() and any(folder.iterdir()):
            archive.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), str(archive / folder.name))
    # The version the workspace's gate stage registered (its receipt), else one whose lineage holds here or is
    # this workspace's own (a dvc.lock not committed yet).
    model_md5 = file_md5(model_file(params.paths.model_dir))
    receipt = GateReceipt.load(params.paths.registry_dir)
    tag = receipt.tag if receipt is not None and receipt.model_md5 == model_md5 else None
    store = registry.open_registry(params)
    if tag is None or not registry.has_model(tag, store):
        tag = registry.find_by_model_hash(model_md5, name=params.project.model_name, root=Path.cwd(),
                                         current=lineage.capture(Path.cwd(), registry.dag_outputs(params.paths)),
                                         registry=store)
    if tag is None:
        raise RuntimeError(f"the model in {params.paths.model_dir} is not in the registry: run `dvc repro` first")
    if registry.champion_tag(store) != tag:
        registry.set_champion(store, tag, reason="loop starts from the dvc repro model",
                              event="rollback")
    log.info("fresh loop: champion %s, previous traffic archived in %s", tag, archive)
    return tag


def run_loop(params_file: Path, weeks: int | None = None, retrain_timeout_s: float = 1800) -> LoopSummary:
    """Replay `replay.start..end` window by window (weeks by default) through the stack, monitoring and
    retraining as it goes; `weeks`: only the first that many windows."""
    from prefect.settings import temporary_settings
    from rich.progress import Progress

    from ops import stack
    from pipelines.monitor.replay import collect_replay, replay
    from pipelines.release import registry

    params = load_params(params_file)
    first_champion = registry.require_champion(registry.open_registry(params))
    params = _sized_windows(params)
    stack.up(params_file)
    url = f"http://{params.serve.host}:{params.serve.port}"
    traffic = collect_replay(params)
    time_column = params.source.time_column
    window_days = params.monitor.window_days if isinstance(params.monitor.window_days, int) else 7
    chunks = window_chunks(pd.Timestamp(params.replay.start), pd.Timestamp(params.replay.end), window_days)[:weeks]
    retrains: list[LoopRetrain] = []
    # The stack's Prefect server takes its basic-auth string; the loop is one more of its clients.
    with temporary_settings(updates=stack.prefect_client_settings(params)), Progress() as progress:
        task = progress.add_task("replaying windows", total=len(chunks))
        for start, end in chunks:
            week = traffic[(traffic[time_column] >= start) & (traffic[time_column] < end)]
            progress.update(task, description=f"window from {start:%Y-%m-%d}: {len(week)} "
                                              f"{params.project.entity_plural}")
            if len(week):
                replay(week, params, url)
            champion = registry.require_champion(registry.open_registry(params))
            for started in monitor_once(params, params_file):
                retrains.append(_follow_retrain(params, started, champion, url, retrain_timeout_s, progress))
            progress.advance(task)
    summary = write_summary(params, first_champion, retrains)
    log.debug("loop done: %s", summary)
    return summary


def closing_lines(summary: LoopSummary, params: Params, stack_up: bool = True) -> list[str]:
    """What the loop prints at the end, for people: what happened, which model serves, where to look next (the
    stack's pages only while it is up: after `--down`, how to bring them back)."""
    promoted = summary.promoted
    gain = summary.mean_auc_gain_on_those_windows
    browse = [
        f"  {summary.evidently_dashboard}   the Evidently dashboard (one line per champion)",
        f"  http://{params.stack.host}:{params.stack.prefect_port}   the Prefect UI: flow runs, deployments, "
        "the drift Automation",
        "  python -m ops.stack down   stops the stack",
    ] if stack_up else [
        "  python -m ops.stack up   brings back the Prefect UI (flow runs, deployments, the drift Automation) and "
        "the Evidently dashboard: the stack was stopped (--down)",
    ]
    return [
        f"loop: {_windows(summary.windows, summary.window_days)} monitored, {summary.alarms} alarms, "
        f"{len(summary.retrains)} retrains, {len(promoted)} promoted"
        + (f"; {_windows(summary.windows_served_by_a_retrained_model, summary.window_days)} served by a retrained "
           "model, live ROC AUC "
           f"{gain:+.4f} on them vs the first champion" if gain is not None else ""),
        *(f"not judged: window {window}" for window in summary.unjudged),
        f"champion: {promoted[-1] if promoted else summary.first_champion}"
        + ("" if promoted else " (the first one: no retrain passed the gate)"),
        "next:",
        f"  {Path(summary.history_csv).with_name(io.LOOP_SUMMARY_MD)}   the windows, alarms and retrains; "
        f"{Path(summary.plot).name} beside it",
        *browse,
    ]


def _sized_windows(params: Params) -> Params:
    """`params` with the monitoring windows the champion was calibrated on (monitor.window_days / min_window_rows
    `auto`), said once at the loop's start."""
    from pipelines.monitor import store
    from pipelines.monitor.calibration import calibration_warning
    from pipelines.monitor.windows import calibrated_windows

    calibration = store.champion_calibration(params)
    if calibration is None:
        log.info("monitoring windows: monitor.window_days=%s, monitor.min_window_rows=%s (no calibration stored "
                 "with the champion yet)", params.monitor.window_days, params.monitor.min_window_rows)
        return params
    monitor = calibrated_windows(params.monitor, calibration)
    log.info("monitoring windows: %d days, %d+ rows (%s; calibrated on %d reference windows)", monitor.window_days,
             monitor.min_window_rows, calibration.sizing or "set in params", calibration.windows)
    noisy = calibration_warning(calibration)
    if noisy:
        log.warning("%s", noisy)
    return params.model_copy(update={"monitor": monitor})


def monitor_once(params: Params, params_file: Path, timeout_s: float = 900) -> list[RetrainBooking]:
    """One run of the monitoring *deployment* (as its schedule would start it); the retrains it started."""
    from prefect.deployments import run_deployment

    from pipelines.monitor import store

    known = len(store.load_state(params).retrains)
    run = run_deployment("monitoring/monitoring", parameters={"params_file": str(Path(params_file).resolve())},
                         timeout=timeout_s, tags=["loop"])
    if run.state is None or not run.state.is_completed():
        raise RuntimeError(f"monitoring run {run.id} ended {run.state.name if run.state else 'without a state'}: "
                           f"see it in the Prefect UI")
    return store.load_state(params).retrains[known:]


def _follow_retrain(params: Params, started: RetrainBooking, before: str, url: str, timeout_s: float,
                    progress: Any) -> LoopRetrain:
    from pipelines.contracts import LoopRetrain
    from pipelines.release import registry

    flow_run_id = find_triggered_run(params.monitor.retraining_deployment, started.window_end, timeout_s=120)
    progress.console.print(f"[bold]retraining[/] on traffic up to {started.window_end[:10]} "
                           f"(flow run {flow_run_id}, started by the drift Automation): {started.reason[:120]}")
    state = wait_for_flow_run(flow_run_id, timeout_s)
    after = registry.require_champion(registry.open_registry(params))
    from pipelines.credentials import admin_token, bearer

    wait_for_serving(url, after, params.stack.start_timeout_s, headers=bearer(admin_token(params)))
    progress.console.print(f"retraining {state}: champion {before} -> {after}"
                           + (" (promoted, now served)" if after != before else " (gate refused; unchanged)"))
    return LoopRetrain(data_end=started.window_end, flow_run_id=flow_run_id, state=state, reason=started.reason,
                       champion_before=before, champion_after=after)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.loop", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path(io.PARAMS_FILE),
                        help=f"params file (default: {io.PARAMS_FILE})")
    parser.add_argument("--weeks", type=int, help="replay only the first N monitoring windows of "
                        "replay.start..end (weeks at monitor.window_days=7)")
    parser.add_argument("--fresh", action="store_true",
                        help="start over: archive the previous traffic and reports, serve the dvc repro model")
    parser.add_argument("--down", action="store_true", help="stop the stack at the end")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API poll otherwise
    if args.fresh:
        start_fresh(args.params)
    try:
        summary = run_loop(args.params, args.weeks)
    finally:
        if args.down:
            from ops import stack

            stack.down(args.params)
    print("\n".join(closing_lines(summary, load_params(args.params), stack_up=not args.down)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

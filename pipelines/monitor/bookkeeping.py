"""What the monitoring flow remembers between runs, and the events it tells the world.

Pure functions: the state and a window's summary in, the next state, the retrain decision and the event specs out.
The flow only wires them (load state, book each window, emit the events, save the state).

Why the retrain decision stays here and not in a Prefect Automation: cooldown is counted in *traffic* time and a
window is booked once, both facts of the monitoring state, not of the event stream (docs/monitoring.md). What the
Automation owns is the reaction: `flightops.drift.detected` -> a run of the retraining deployment, whose own
concurrency limit keeps two retrains from running at once. Pausing the Automation in the UI stops retraining and
nothing else: windows are still analysed, booked and reported.

The event names and payload keys are a contract with `flows/automations.py` (which templates the retraining run's
parameters from the payload) and with any user notification hung on the same events: change them together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipelines.config import MonitorParams
from pipelines.contracts import (
    Acknowledgement,
    MonitorState,
    RetrainBooking,
    RetrainOutcome,
    RetrainRequest,
    WindowBooking,
    WindowRecord,
    WindowSummary,
    reason_texts,
)
from pipelines.monitor import acknowledge
from pipelines.monitor.decision import RetrainDecision, decide_retrain

WINDOW_ANALYSED = "flightops.window.analysed"
DRIFT_DETECTED = "flightops.drift.detected"
# Every monitoring window is a resource `flightops.monitoring.window.<YYYYMMDD>`; the Automation matches on this.
WINDOW_RESOURCE_PREFIX = "flightops.monitoring.window."
MODEL_RESOURCE_PREFIX = "flightops.model."
# Prefect keeps an event's resource labels as strings; a reason list is capped so the event stays small.
MAX_REASON_CHARS = 500
# What a person runs to retrain on a window by hand (flows/retraining.py's CLI; its `--data-end` is the flow's
# `data_end`, what the Automation passes).
RETRAIN_COMMAND = "python -m flows.retraining --data-end {data_end}"


def retrain_command(window_end: datetime) -> str:
    return RETRAIN_COMMAND.format(data_end=window_end.isoformat())


@dataclass(frozen=True)
class RetrainRoute:
    """Whether anything will run a retrain the monitor asks for, found on the Prefect API the run talks to.

    `automated`: the drift Automation and the retraining deployment are there, so a request is booked (its cooldown
    starts) and its event sent; a paused Automation still counts (resuming it must not replay a backlog), and
    `note` says it is paused. Not automated (a hand run of `python -m flows.monitoring` on Prefect's temporary
    server, a server without the stack's deployments): nothing would ever run the request, so it is not booked —
    a booking would start a cooldown for a retrain that never happens and stay pending forever — and the window's
    record says why and the command that retrains on it."""

    automated: bool
    note: str
    paused: bool = False  # the Automation is there but paused: booked, run when it is resumed (or by hand)


AUTOMATED = RetrainRoute(True, "the Automation runs the retraining deployment on it")
NOT_BOOKED = "would retrain, not booked"


def served_model_tag(summary: WindowSummary) -> str | None:
    """The model that served the window (the latest tag when a promotion happened inside it)."""
    return summary.model_tags[-1] if summary.model_tags else None


def empty_state() -> MonitorState:
    return MonitorState()


def last_retrain_window_end(state: MonitorState) -> str | None:
    """The window end of the last retrain the monitor asked for that was not suppressed (the cooldown counts from
    it: a request the retraining deployment cancelled never trained anything)."""
    retrains = [r for r in state.retrains if r.outcome != SUPPRESSED]
    return retrains[-1].window_end if retrains else None


# A requested retrain whose run the retraining deployment's concurrency limit cancelled (one was running).
SUPPRESSED = "suppressed"
_OUTCOMES = {"CANCELLED": SUPPRESSED, "COMPLETED": "completed", "FAILED": "failed", "CRASHED": "failed"}


def pending_retrains(state: MonitorState) -> list[str]:
    """Window ends of requested retrains whose run's end is not known yet."""
    return [r.window_end for r in state.retrains if r.outcome is None]


def settle_retrains(state: MonitorState, run_states: Mapping[str, str | None],
                    outcomes: Mapping[str, RetrainOutcome] | None = None) -> MonitorState:
    """The state with each pending retrain's outcome: what its retraining run decided (`outcomes`, by data end:
    promoted, refused by the gate, or invalid data, with the gate's figures in `gate`), else its run's state type
    (by window end; None: no run yet, e.g. the Automation is paused, or not finished)."""
    outcomes = outcomes or {}

    def settled(retrain: RetrainBooking) -> RetrainBooking:
        if retrain.outcome is not None:
            return retrain
        decided = outcomes.get(retrain.window_end)
        if decided is not None:
            return retrain.model_copy(update={"outcome": decided.outcome, "gate": decided.sentence()})
        outcome = _OUTCOMES.get(run_states.get(retrain.window_end) or "")
        return retrain.model_copy(update={"outcome": outcome}) if outcome else retrain

    return state.model_copy(update={"retrains": [settled(retrain) for retrain in state.retrains]})


def refusals_in_a_row(state: MonitorState, kinds: list[str]) -> tuple[int, str | None]:
    """How many of the latest retrains the gate refused in a row for alarms of these kinds (newest first, up to a
    promotion or a refusal for other kinds; cancelled, failed and unfinished runs are passed over), and the last
    refusal in words. What a back-off counts: decay that retraining does not fix."""
    count, last = 0, None
    for retrain in reversed(state.retrains):
        if retrain.outcome == "promoted":
            break
        if retrain.outcome != "refused":
            continue
        if kinds and retrain.kinds and not set(kinds) & set(retrain.kinds):
            break
        count += 1
        last = last or retrain.gate
    return count, last


def _asked(state: MonitorState, window_start: datetime, booking: WindowBooking,
           retrain: RetrainBooking | None) -> MonitorState:
    """The state with the window booked (replacing its entry) and the retrain asked for appended, if any."""
    return state.model_copy(update={
        "windows": {**state.windows, window_start.isoformat(): booking},
        "retrains": [*state.retrains, *([retrain] if retrain is not None else [])]})


def retry_suppressed(state: MonitorState, latest: WindowSummary | None, window_start: datetime,
                     window_end: datetime, monitor: MonitorParams, trigger: bool = True) -> BookedWindow | None:
    """Ask again for a retrain that was suppressed (its run cancelled because one was running) while its cause
    persists: the latest analysed window (`latest`, its summary) still asks for a retrain (`decide_retrain`, with
    the cooldown counted from the last retrain that was not suppressed). Each suppressed request is retried once;
    a retry that is suppressed again is retried again on a later run. None when there is nothing to retry."""
    waiting = [r for r in state.retrains if r.outcome == SUPPRESSED and not r.retried]
    if not waiting or latest is None:
        return None
    new_state = state.model_copy(update={"retrains": [
        r.model_copy(update={"retried": True}) if r.outcome == SUPPRESSED else r for r in state.retrains]})
    kinds = [reason.kind for reason in latest.retrain_reasons]
    refusals, refused_gate = refusals_in_a_row(new_state, kinds)
    decision = decide_retrain(latest, window_end, last_retrain_window_end(new_state), monitor, refusals,
                              refused_gate)
    if not (decision.retrain and trigger):
        return BookedWindow(decision=decision, retrain=RetrainRequest(
            started=False, reason=f"suppressed retrain not retried: {decision.reason}"), state=new_state)
    reason = (f"retry of the retrain up to {waiting[-1].window_end[:10]} (cancelled: one was running); the "
              f"cause persists: {decision.reason}")
    retrain = RetrainRequest(started=True, reason=reason, data_end=window_end.isoformat(), event=DRIFT_DETECTED,
                             kinds=kinds)
    booking = new_state.windows.get(window_start.isoformat()) or WindowBooking()
    new_state = _asked(new_state, window_start, booking.model_copy(update={"retrain": True}),
                       RetrainBooking(window_end=window_end.isoformat(), reason=reason, retry=True, kinds=kinds))
    return BookedWindow(decision=decision, retrain=retrain, state=new_state)


@dataclass(frozen=True)
class BookedWindow:
    """One window booked: the decision, what the summary says about retraining, and the state after it."""

    decision: RetrainDecision
    retrain: RetrainRequest
    state: MonitorState


def book_window(state: MonitorState, window_start: datetime, window_end: datetime,
                summary: WindowSummary, monitor: MonitorParams, trigger: bool = True,
                route: RetrainRoute = AUTOMATED) -> BookedWindow:
    """Decide whether the window asks for a retrain and return the state with the window (and retrain) recorded.

    A requested retrain is recorded at once (its window end starts the cooldown) whether or not the Automation
    then runs it: the monitor asked, and asking again every window while the Automation is paused or a retrain
    is running would be a storm of identical requests. `trigger=False` decides and books without requesting
    (the window is done, no retrain is recorded), for dry runs; so does a `route` that is not automated (nothing
    would run the request), and the reason says so with the command that retrains on the window by hand.
    """
    kinds = [reason.kind for reason in summary.retrain_reasons]
    refusals, refused_gate = refusals_in_a_row(state, kinds)
    decision = decide_retrain(summary, window_end, last_retrain_window_end(state), monitor, refusals, refused_gate)
    requested = decision.retrain and trigger and route.automated
    if requested:
        retrain = RetrainRequest(started=True, reason=decision.reason, data_end=window_end.isoformat(),
                                 event=DRIFT_DETECTED, kinds=kinds)
    elif decision.retrain and trigger:
        retrain = RetrainRequest(started=False, reason=unrouted_reason(decision.reason, window_end, route),
                                 kinds=kinds)
    else:
        retrain = RetrainRequest(started=False, reason=f"would retrain, trigger disabled: {decision.reason}"
                                 if decision.retrain else decision.reason, kinds=kinds)
    # `rows` is what the window held when analysed: later rows are counted against it (plan_windows re-analyses
    # past monitor.late_rows_share). A re-analysis replaces the entry; a retrain already asked for stays asked.
    previous = state.windows.get(window_start.isoformat()) or WindowBooking()
    booking = WindowBooking(drift=summary.drift, retrain=requested or previous.retrain, rows=summary.rows,
                            analyses=previous.analyses + 1)
    asked = RetrainBooking(window_end=window_end.isoformat(), reason=decision.reason, kinds=kinds) if requested \
        else None
    return BookedWindow(decision=decision, retrain=retrain, state=_asked(state, window_start, booking, asked))


def unrouted_reason(reason: str, window_end: datetime, route: RetrainRoute) -> str:
    """A retrain the window asks for that nothing would run: not booked, and how to run it by hand."""
    return (f"{NOT_BOOKED}: {route.note}; to retrain on this window by hand: "
            f"{retrain_command(window_end)} ({reason})")


def reconsider(state: MonitorState, record: WindowRecord, acknowledgements: list[Acknowledgement],
               monitor: MonitorParams, trigger: bool = True,
               route: RetrainRoute = AUTOMATED) -> tuple[WindowRecord, BookedWindow] | None:
    """The latest analysed window judged again when acknowledgements made since now cover every data-quality
    reason that blocked its retrain: the record with those reasons marked, and the window booked again (a retrain
    asked for if the decision now says so). None when nothing changed for it."""
    if not acknowledge.newly_unblocked(record, acknowledgements, record.window_start):
        return None
    marked = acknowledge.apply(record, acknowledgements, record.window_start)
    start, end = datetime.fromisoformat(record.window_start), datetime.fromisoformat(record.window_end)
    booked = book_window(state, start, end, marked, monitor, trigger=trigger, route=route)
    updated = WindowRecord.model_validate({**marked.model_dump(exclude={"drift"}), "retrain": booked.retrain})
    return updated, booked


# --- events -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventSpec:
    """What `prefect.events.emit_event` needs; built here so the contract is tested without a server."""

    event: str
    resource: dict[str, str]
    related: list[dict[str, str]]
    payload: dict[str, Any]


def _window_resource(window_start: datetime, window_end: datetime, model_tag: str | None) -> dict[str, str]:
    return {"prefect.resource.id": f"{WINDOW_RESOURCE_PREFIX}{window_start:%Y%m%d}",
            "prefect.resource.name": f"monitoring window {window_start:%Y-%m-%d}",
            "flightops.window.start": window_start.isoformat(), "flightops.window.end": window_end.isoformat(),
            "flightops.model.tag": model_tag or ""}


def _related(model_tag: str | None) -> list[dict[str, str]]:
    if not model_tag:
        return []
    return [{"prefect.resource.id": f"{MODEL_RESOURCE_PREFIX}{model_tag}", "prefect.resource.role": "model",
             "prefect.resource.name": model_tag}]


def window_event(record: WindowRecord, window_start: datetime, window_end: datetime,
                 model_tag: str | None, retrain: RetrainRequest) -> EventSpec:
    """`flightops.window.analysed`: every window, alarm or not, with the headline figures of its record.

    `reasons` are the sentences, `alarm_kinds` their kinds (in the same order), `quality_reasons` the sentences
    of the data-quality faults."""
    quality = (record.quality.metrics if record.quality else None) or {}
    payload = {"window_start": window_start.isoformat(), "window_end": window_end.isoformat(),
               "model_tag": model_tag, "rows": record.rows, "alarm": record.drift,
               "reasons": [reason.text for reason in record.reasons],
               "alarm_kinds": [reason.kind for reason in record.reasons], "drift_share": record.drift_share,
               "drift_index": record.drift_index,
               "quality_reasons": [reason.text for reason in record.quality_reasons],
               "drifted_columns": list(record.drifted_columns),
               "prediction_drift": record.prediction_drift.score, "live_roc_auc": quality.get("roc_auc"),
               "log_skipped": dict(record.log_skipped), "retrain_requested": retrain.started,
               "retrain_reason": retrain.reason}
    return EventSpec(WINDOW_ANALYSED, _window_resource(window_start, window_end, model_tag), _related(model_tag),
                     payload)


def drift_event(summary: WindowSummary, window_start: datetime, window_end: datetime,
                model_tag: str | None) -> EventSpec:
    """`flightops.drift.detected`: the monitor asks for a retrain on data up to `window_end`."""
    payload = {"window_start": window_start.isoformat(), "window_end": window_end.isoformat(),
               "model_tag": model_tag, "reasons": [reason.text for reason in summary.reasons],
               "alarm_kinds": [reason.kind for reason in summary.reasons],
               "reason": reason_texts(summary.reasons)[:MAX_REASON_CHARS], "rows": summary.rows,
               "drift_share": summary.drift_share}
    return EventSpec(DRIFT_DETECTED, _window_resource(window_start, window_end, model_tag), _related(model_tag),
                     payload)


def window_events(record: WindowRecord, window_start: datetime, window_end: datetime,
                  retrain: RetrainRequest) -> list[EventSpec]:
    """The events of one booked window: always `flightops.window.analysed`, then the drift event if requested."""
    model_tag = served_model_tag(record)
    specs = [window_event(record, window_start, window_end, model_tag, retrain)]
    if retrain.started:
        specs.append(drift_event(record, window_start, window_end, model_tag))
    return specs

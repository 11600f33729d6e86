"""What a retrain came to goes back to the monitor: the retraining run's gate verdict (or its validation refusal) is
journalled, settled onto the retrain the monitor asked for, written back onto the window's stored record and listed
on the dashboard; retrains the gate keeps refusing for the same alarm back off instead of retraining every
cooldown. Pure functions and files in a temp folder, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipelines import io as catalog
from pipelines.contracts import MonitorState, Reason, RetrainBooking, RetrainOutcome, RetrainRequest
from pipelines.monitor import bookkeeping as book
from pipelines.monitor import store
from pipelines.monitor.decision import cooldown_days, decide_retrain
from support.monitoring import window_record

START = datetime(2013, 9, 9, tzinfo=UTC)
WEEK = timedelta(days=7)
DECAY = Reason(kind="performance_decay", text="performance decay: ROC AUC 0.08 below the champion's test AUC")


@pytest.fixture
def params(make_params):
    return make_params()


def _decayed(start: datetime = START):
    """A week whose only alarm is a drop of the live AUC: the alarm retraining answers, unless it cannot."""
    return window_record(False, start, reasons=[DECAY])


def _refused(end: datetime, kinds: tuple[str, ...] = ("performance_decay",), outcome: str = "refused",
             gate: str = "refused by the gate: roc_auc +0.0016 < min_improvement 0.005") -> RetrainBooking:
    return RetrainBooking(window_end=end.isoformat(), reason="x", kinds=list(kinds), outcome=outcome, gate=gate)


# --- the back-off ---------------------------------------------------------------------------------------------

def test_the_cooldown_doubles_per_refusal_in_a_row_up_to_its_cap(params):
    monitor = params.monitor  # cooldown 28 days, back-off x2, at most 112 days
    assert [cooldown_days(monitor, n) for n in range(5)] == [28, 56, 112, 112, 112]
    flat = monitor.model_copy(update={"retrain_backoff": 1.0})
    assert cooldown_days(flat, 3) == monitor.cooldown_days  # a back-off of 1 switches it off
    capped = monitor.model_copy(update={"retrain_backoff_max_days": 7})
    assert cooldown_days(capped, 2) == monitor.cooldown_days  # never below the plain cooldown


def test_refusals_are_counted_in_a_row_per_kind_up_to_a_promotion(params):
    week = [START + WEEK * i for i in range(6)]
    state = MonitorState(retrains=[
        _refused(week[0]),
        _refused(week[1], outcome="promoted", gate="promoted m:2 by the gate"),
        _refused(week[2]),
        _refused(week[3], outcome="suppressed"),   # cancelled: one was running; passed over
        RetrainBooking(window_end=week[4].isoformat(), reason="x", kinds=["performance_decay"]),  # not finished
        _refused(week[5]),
    ])
    count, last = book.refusals_in_a_row(state, ["performance_decay"])
    assert (count, last) == (2, state.retrains[-1].gate)  # the promotion ends the run of refusals
    state = MonitorState(retrains=[*state.retrains, _refused(START + WEEK * 7, kinds=("data_drift",))])
    assert book.refusals_in_a_row(state, ["performance_decay"]) == (0, None)  # refused for another alarm
    assert book.refusals_in_a_row(state, ["data_drift"])[0] == 1
    assert book.refusals_in_a_row(book.empty_state(), ["performance_decay"]) == (0, None)


def test_repeated_refusals_back_off_and_the_decision_says_why(params):
    last = START - WEEK  # the last retrain's data ended a week before this window
    state = MonitorState(retrains=[_refused(last - 8 * WEEK), _refused(last)])
    # 5 weeks after the last retrain: past the plain 28-day cooldown, inside the backed-off 112 days.
    window = START + 4 * WEEK
    booked = book.book_window(state, window, window + WEEK, _decayed(window), params.monitor)
    assert booked.retrain.started is False and booked.state.retrains == state.retrains
    assert booked.retrain.reason.startswith("backing off: the last 2 retrain(s) for this alarm were refused")
    assert "roc_auc +0.0016" in booked.retrain.reason
    assert f"not before {last + timedelta(days=112):%Y-%m-%d}" in booked.retrain.reason
    # Without the refusals the same window retrains (the plain cooldown has passed).
    plain = MonitorState(retrains=[_refused(last, outcome="promoted")])
    assert book.book_window(plain, window, window + WEEK, _decayed(window), params.monitor).retrain.started
    # Once the backed-off cooldown has passed it is tried again, and the request says it was backed off.
    later = last + timedelta(days=112)
    again = book.book_window(state, later, later + WEEK, _decayed(later), params.monitor)
    assert again.retrain.started is True and again.retrain.kinds == ["performance_decay"]
    assert "after 2 retrain(s) the gate refused for it: tried again after 112 days" in again.retrain.reason
    assert again.state.retrains[-1].kinds == ["performance_decay"]


def test_a_refusal_for_another_alarm_does_not_back_this_one_off(params):
    last = START - WEEK
    state = MonitorState(retrains=[_refused(last, kinds=("data_drift",)), _refused(last - WEEK, kinds=("data_drift",))])
    window = START + 4 * WEEK
    decision = decide_retrain(_decayed(window), window + WEEK, last.isoformat(), params.monitor,
                              *book.refusals_in_a_row(state, ["performance_decay"]))
    assert decision.retrain is True and "after" not in decision.reason


# --- the write-back ---------------------------------------------------------------------------------------------

def test_outcomes_are_journalled_and_read_back_by_data_end_the_latest_winning(params):
    end = (START + WEEK).isoformat()
    directory = params.paths.monitoring_dir
    first = RetrainOutcome(data_end=end, experiment="retrain-1", promoted=False, failed=["roc_auc: +0.001 < 0.005"],
                           at="2026-12-03T10:00:00+00:00")
    path = store.record_retrain_outcome(directory, first)
    assert path == directory / catalog.RETRAIN_OUTCOMES_FILE
    with path.open("a") as journal:
        journal.write('{"torn": \n')  # a torn or foreign line is skipped, not fatal
    second = first.model_copy(update={"experiment": "retrain-2", "promoted": True, "tag": "flight-delay:ccc",
                                      "failed": []})
    store.record_retrain_outcome(directory, second)
    store.record_retrain_outcome(directory, first.model_copy(update={"data_end": None}))  # a manual run: no window
    assert store.read_retrain_outcomes(params) == {end: second}
    assert (first.outcome, second.outcome) == ("refused", "promoted")
    assert first.sentence() == "refused by the gate: roc_auc: +0.001 < 0.005"
    invalid = first.model_copy(update={"stage": "validation", "failed": ["suite failed: 3 checks"]})
    assert invalid.outcome == "invalid"
    assert invalid.sentence() == "refused before training: the data failed validation: suite failed: 3 checks"


def test_the_gate_verdict_settles_the_retrain_and_a_run_state_only_where_there_is_none(params):
    ends = [(START + WEEK * i).isoformat() for i in (1, 2, 3, 4)]
    state = MonitorState(retrains=[RetrainBooking(window_end=end, reason="x") for end in ends])
    refused = RetrainOutcome(data_end=ends[0], promoted=False, failed=["roc_auc: +0.001 < 0.005"], at="t")
    settled = book.settle_retrains(state, {ends[0]: "COMPLETED", ends[1]: "CANCELLED", ends[2]: "COMPLETED"},
                                   {ends[0]: refused})
    assert [r.outcome for r in settled.retrains] == ["refused", book.SUPPRESSED, "completed", None]
    assert settled.retrains[0].gate == refused.sentence()
    assert book.pending_retrains(settled) == [ends[3]]
    assert state.retrains[0].outcome is None  # the input state is kept
    # A settled retrain is not settled again by a later journal line.
    again = book.settle_retrains(settled, {}, {ends[0]: refused.model_copy(update={"promoted": True})})
    assert again.retrains[0].outcome == "refused"


def test_the_outcome_is_written_back_onto_the_window_that_asked_once(params):
    asked = window_record(True, START, retrain=RetrainRequest(started=True, reason="data drift",
                                                              data_end=(START + WEEK).isoformat(),
                                                              kinds=["data_drift"]))
    calm = window_record(False, START + WEEK, retrain=RetrainRequest(started=False, reason="no alarm"))
    for record in (asked, calm):
        record.save(params.paths.monitoring_dir)
    state = MonitorState(retrains=[RetrainBooking(window_end=asked.window_end, reason="data drift")])
    assert store.write_back_outcomes(params, state) == []  # not settled yet: nothing to write
    outcome = RetrainOutcome(data_end=asked.window_end, promoted=False, failed=["roc_auc: +0.001 < 0.005"], at="t")
    state = book.settle_retrains(state, {}, {asked.window_end: outcome})
    written = store.write_back_outcomes(params, state)
    assert [record.window_start for record in written] == [asked.window_start]
    stored = {record.window_start: record for record in store.read_summaries(params)}
    assert stored[asked.window_start].retrain.outcome == "refused"
    assert stored[asked.window_start].retrain.gate == "refused by the gate: roc_auc: +0.001 < 0.005"
    assert stored[asked.window_start].retrain.reason == "data drift"  # the rest of the record is kept
    assert stored[calm.window_start].retrain.outcome is None
    assert store.write_back_outcomes(params, state) == []  # written once
    # ... and the dashboard's retrain panel lists it, the latest first.
    state = MonitorState(retrains=[*state.retrains, RetrainBooking(window_end=(START + 3 * WEEK).isoformat(),
                                                                   reason="x")])
    store.save_state(params, state)
    assert store.load_state(params) == state
    _, retrains = store.dashboard_notes(params)
    assert retrains == [f"traffic up to {(START + 3 * WEEK):%Y-%m-%d}: pending",
                        f"traffic up to {(START + WEEK):%Y-%m-%d}: refused (refused by the gate: roc_auc: +0.001 "
                        f"< 0.005)"]

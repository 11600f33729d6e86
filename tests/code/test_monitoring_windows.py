"""Windows are judged on complete data: the monitor's clock (wall clock, held back by the traffic clock) past the
window's end plus the grace; late rows counted and, past a share, the window analysed again."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from pipelines.config import parse_params
from pipelines.contracts import WindowBooking
from pipelines.monitor import bookkeeping as book
from pipelines.monitor.windows import plan_windows, traffic_clock
from support.monitoring import window_record
from support.params import params_dict

WEEK = pd.Timestamp("2013-09-02", tz="UTC")
END = WEEK + pd.Timedelta(days=7)
NOW = pd.Timestamp("2030-01-01", tz="UTC")  # a replay: the wall clock is far past every window


@pytest.fixture
def params(tmp_path):
    return parse_params(params_dict(tmp_path, {"monitor.min_window_rows": 100, "monitor.window_grace_hours": 6,
                                               "monitor.late_rows_share": 0.05}))


def _traffic(*spans: tuple[pd.Timestamp, int]) -> pd.DataFrame:
    """`rows` scheduled times spread over the hour(s) starting at each timestamp."""
    stamps = []
    for start, rows in spans:
        stamps += [start + pd.Timedelta(minutes=i % 60) for i in range(rows)]
    return pd.DataFrame({"time_hour": pd.to_datetime(stamps, utc=True)})


def _plan(frame, params, **kwargs):
    return {p.start: p for p in plan_windows(frame, "time_hour", params.monitor, **kwargs)}


def test_one_request_for_a_flight_weeks_ahead_does_not_make_a_week_ready(params):
    frame = _traffic((WEEK + pd.Timedelta(days=3), 500), (END + pd.Timedelta(days=14), 1))
    assert traffic_clock(frame["time_hour"], params.monitor) < END
    plan = _plan(frame, params, now=NOW)[WEEK]
    assert not plan.ready and plan.reason.startswith("still filling")


def test_a_week_is_ready_once_a_windows_worth_of_traffic_is_past_its_end_plus_the_grace(params):
    inside_grace = _traffic((WEEK + pd.Timedelta(days=3), 500), (END + pd.Timedelta(hours=2), 200))
    assert not _plan(inside_grace, params, now=NOW)[WEEK].ready
    after_grace = _traffic((WEEK + pd.Timedelta(days=3), 500), (END + pd.Timedelta(hours=7), 200))
    assert _plan(after_grace, params, now=NOW)[WEEK].ready


def test_the_wall_clock_holds_back_traffic_scheduled_ahead(params):
    """In production requests come before the flights: the traffic clock runs ahead, the wall clock decides."""
    frame = _traffic((WEEK + pd.Timedelta(days=3), 500), (END + pd.Timedelta(days=2), 500))
    assert not _plan(frame, params, now=END + pd.Timedelta(hours=1))[WEEK].ready
    assert _plan(frame, params, now=END + pd.Timedelta(hours=6))[WEEK].ready


def test_late_rows_are_counted_and_past_the_share_the_window_is_analysed_again(params):
    frame = _traffic((WEEK + pd.Timedelta(days=3), 1030), (END + pd.Timedelta(days=1), 200))
    few = _plan(frame, params, done={WEEK.isoformat(): 1000}, now=NOW)[WEEK]
    assert not few.ready and few.reason == "already analysed" and few.late_rows == 30
    frame = _traffic((WEEK + pd.Timedelta(days=3), 1100), (END + pd.Timedelta(days=1), 200))
    many = _plan(frame, params, done={WEEK.isoformat(): 1000}, now=NOW)[WEEK]
    assert many.ready and many.reanalysis and many.late_rows == 100
    assert "100 late rows since analysed on 1000" in many.reason
    # A window analysed before rows were recorded (an older state) is never re-analysed.
    assert not _plan(frame, params, done=[WEEK.isoformat()], now=NOW)[WEEK].ready


def test_the_booking_records_the_rows_analysed_and_keeps_a_requested_retrain(params):
    start, end = WEEK.to_pydatetime(), END.to_pydatetime()
    drifted = window_record(True, start, rows=1000)
    first = book.book_window(book.empty_state(), start, end, drifted, params.monitor)
    assert first.state.windows[WEEK.isoformat()] == WindowBooking(drift=True, retrain=True, rows=1000, analyses=1)
    again = book.book_window(first.state, start, end, drifted.model_copy(update={"rows": 1100}), params.monitor)
    assert again.decision.retrain is False and "cooldown" in again.decision.reason
    assert again.state.windows[WEEK.isoformat()] == WindowBooking(drift=True, retrain=True, rows=1100, analyses=2)
    assert len(again.state.retrains) == 1
    assert datetime.fromisoformat(again.state.retrains[0].window_end) == END.to_pydatetime().astimezone(UTC)


def _alarmed(rows: int = 5000):
    return window_record(True, WEEK.to_pydatetime(), rows=rows)


def test_a_retrain_cancelled_because_one_was_running_is_retried_while_its_cause_persists(params):
    start, end = WEEK.to_pydatetime(), END.to_pydatetime()
    asked = book.book_window(book.empty_state(), start, end, _alarmed(), params.monitor).state
    assert book.pending_retrains(asked) == [END.isoformat()]
    # Nothing known yet: nothing to retry, the request still counts for the cooldown.
    unknown = book.settle_retrains(asked, {END.isoformat(): None})
    assert book.pending_retrains(unknown) == [END.isoformat()]
    assert book.retry_suppressed(unknown, _alarmed(), start, end, params.monitor) is None
    # Its run was cancelled by the deployment's concurrency limit: suppressed, and no longer a cooldown start.
    cancelled = book.settle_retrains(asked, {END.isoformat(): "CANCELLED"})
    assert cancelled.retrains[0].outcome == book.SUPPRESSED and asked.retrains[0].outcome is None
    assert book.last_retrain_window_end(cancelled) is None
    later_start, later_end = (WEEK + pd.Timedelta(days=7)).to_pydatetime(), (END + pd.Timedelta(days=7)).to_pydatetime()
    # The cause is gone (the latest window is clean): not retried, and not asked about again.
    calm = book.retry_suppressed(cancelled, window_record(False, rows=5000), later_start, later_end, params.monitor)
    assert calm.retrain.started is False and calm.state.retrains[0].retried is True
    assert book.retry_suppressed(calm.state, _alarmed(), later_start, later_end, params.monitor) is None
    # The cause persists: asked again, on the latest window.
    retried = book.retry_suppressed(cancelled, _alarmed(), later_start, later_end, params.monitor)
    assert retried.retrain.started is True and retried.retrain.data_end == later_end.isoformat()
    assert "retry of the retrain up to 2013-09-09" in retried.retrain.reason
    assert [r.window_end for r in retried.state.retrains] == [END.isoformat(), later_end.isoformat()]
    assert retried.state.retrains[-1].retry is True and retried.state.windows[later_start.isoformat()].retrain
    # A completed retrain is settled as such and keeps counting for the cooldown.
    done = book.settle_retrains(asked, {END.isoformat(): "COMPLETED"})
    assert done.retrains[0].outcome == "completed" and book.last_retrain_window_end(done) == END.isoformat()
    assert book.retry_suppressed(done, _alarmed(), later_start, later_end, params.monitor) is None


def test_an_explicit_clock_judges_as_of_that_time(params):
    """A backfill (the flow's `clock` parameter) judges the log as of a time, traffic or not."""
    frame = _traffic((WEEK + pd.Timedelta(days=3), 500))
    assert not _plan(frame, params, now=NOW)[WEEK].ready  # nothing past the week: the traffic clock holds it
    assert _plan(frame, params, clock=END + pd.Timedelta(hours=6))[WEEK].ready
    assert not _plan(frame, params, clock=END + pd.Timedelta(hours=5))[WEEK].ready


def test_a_partial_first_window_too_small_is_skipped_once_the_next_window_has_started(params):
    """Traffic that starts on a Sunday: its Monday-aligned first window holds one day and never enough rows. Once
    the next window has started it is reported as partial and skipped, not left waiting; the next one is judged."""
    sunday = WEEK - pd.Timedelta(days=1)
    frame = _traffic((sunday + pd.Timedelta(hours=6), 40), (WEEK + pd.Timedelta(days=3), 300),
                     (END + pd.Timedelta(days=1), 200))
    plans = _plan(frame, params, now=NOW)
    first = plans[WEEK - pd.Timedelta(days=7)]
    assert first.skipped and not first.ready
    assert first.reason.startswith("partial first window, skipped: the traffic starts 2013-09-01 06:00")
    assert "0.8 of its 7 days; 40 rows < monitor.min_window_rows=100" in first.reason
    assert plans[WEEK].ready and not plans[WEEK].skipped
    # Before its end (+ grace) has passed it is still filling, like any window.
    early = _plan(frame, params, clock=WEEK + pd.Timedelta(hours=2))[WEEK - pd.Timedelta(days=7)]
    assert not early.skipped and early.reason.startswith("still filling")


def test_a_partial_first_window_with_enough_rows_is_judged(params):
    frame = _traffic((WEEK - pd.Timedelta(days=1), 150), (WEEK + pd.Timedelta(days=3), 300))
    first = _plan(frame, params, now=NOW)[WEEK - pd.Timedelta(days=7)]
    assert first.ready and not first.skipped


def test_a_small_window_later_in_the_traffic_still_waits_for_late_rows(params):
    """Only the first window can be partial: a quiet week later on may still receive late rows."""
    frame = _traffic((WEEK, 300), (END + pd.Timedelta(days=1), 50), (END + pd.Timedelta(days=8), 300))
    quiet = _plan(frame, params, now=NOW)[END]
    assert not quiet.ready and not quiet.skipped and quiet.reason == "50 rows < monitor.min_window_rows=100"


def test_a_window_held_back_by_the_traffic_clock_says_so_and_how_to_judge_it(params):
    """The last window of a replay that has ended (Seattle's daily weather: 151 rows of a 203-day window, the replay
    over) waited on "the clock (2015-09-21)" with no word of which clock or what to do: it names the traffic clock,
    the time it is judged from, and the command that judges it now."""
    frame = _traffic((WEEK + pd.Timedelta(days=1), 500), (WEEK + pd.Timedelta(days=4), 500))
    plan = _plan(frame, params, now=NOW)[WEEK]
    due = END + pd.Timedelta(hours=params.monitor.window_grace_hours)
    assert not plan.ready and plan.reason.startswith("still filling")
    assert "the traffic has reached" in plan.reason and "the traffic clock" in plan.reason
    assert f"judged from {due:%Y-%m-%d %H:%M} UTC" in plan.reason
    assert f"python -m flows.monitoring --clock {due:%Y-%m-%dT%H:%M}" in plan.reason
    judged = _plan(frame, params, clock=due)[WEEK]
    assert judged.ready  # what that command does: the window judged on the rows it has


def test_a_window_held_back_by_the_wall_clock_says_the_traffic_is_ahead_of_real_time(params):
    frame = _traffic((WEEK + pd.Timedelta(days=3), 500), (END + pd.Timedelta(days=2), 500))
    plan = _plan(frame, params, now=END + pd.Timedelta(hours=1))[WEEK]
    assert "the traffic is stamped ahead of real time" in plan.reason and "--clock" in plan.reason
    given = _plan(frame, params, clock=END)[WEEK]
    assert "the clock given to the flow" in given.reason


def test_the_flow_s_clock_without_an_offset_is_utc():
    from flows.monitoring import _utc

    assert _utc("2016-02-22T06:00") == pd.Timestamp("2016-02-22 06:00", tz="UTC")
    assert _utc("2016-02-22T07:00+01:00") == pd.Timestamp("2016-02-22 06:00", tz="UTC")

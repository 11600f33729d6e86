"""The loop's and the retraining flow's pure helpers: weekly cuts aligned with the monitoring windows, and a
retrain's experiment name and overrides."""

from __future__ import annotations

import pandas as pd


def test_weekly_chunks_cut_at_the_monitoring_windows_boundaries() -> None:
    from ops.loop import weekly_chunks
    from pipelines.monitor.windows import window_starts

    start, end = pd.Timestamp("2013-09-01", tz="UTC"), pd.Timestamp("2013-10-01", tz="UTC")
    chunks = weekly_chunks(start, end)
    assert chunks[0] == (start, pd.Timestamp("2013-09-02", tz="UTC"))  # Sunday, then Monday-aligned weeks
    assert chunks[-1][1] == end
    assert all(a < b for a, b in chunks) and all(b == c for (_, b), (c, _) in zip(chunks, chunks[1:], strict=False))
    # Every chunk lies inside one monitoring window (7-day windows from a Monday origin).
    for a, b in chunks:
        stamps = pd.Series([a, b - pd.Timedelta(seconds=1)])
        assert window_starts(stamps, 7).nunique() == 1


def test_a_retrain_is_an_experiment_that_only_moves_the_window_end() -> None:
    from flows.retraining import retraining_overrides
    from pipelines.release.versioning import experiment_name

    assert retraining_overrides("2013-06-17T00:00:00+00:00") == {"collect.end": "2013-06-17T00:00:00+00:00"}
    assert retraining_overrides(None) == {}
    # monitor.retrain_window_days: the start slides with the end.
    assert retraining_overrides("2013-10-07T00:00:00+00:00", 243) == {
        "collect.end": "2013-10-07T00:00:00+00:00", "collect.start": "2013-02-06T00:00:00+00:00"}
    assert retraining_overrides(None, 243) == {}
    name = experiment_name("retrain", data_end="2013-06-17T00:00:00+00:00")
    assert name.startswith("retrain-until-20130617-")
    # A git ref name: no spaces, colons or other characters git refuses in refs/exps/<baseline>/<name>.
    assert not set(name) & set(" :~^?*[\\")

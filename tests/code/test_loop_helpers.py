"""The loop's and the retraining flow's pure helpers: weekly cuts aligned with the monitoring windows, and the
overrides that keep a retrain's outputs away from the DVC-tracked ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from pipelines.config import Params


def test_weekly_chunks_cut_at_the_monitoring_windows_boundaries() -> None:
    from flows.loop import weekly_chunks
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


def test_retraining_moves_every_dag_output_and_extends_the_window(make_params: Callable[..., Params],
                                                                  tmp_path: Path) -> None:
    from flows.retraining import RELOCATED_PATHS, retraining_overrides
    from pipelines.config import parse_params
    from tests.conftest import SMALL_WINDOW, params_dict

    params = make_params()
    overrides = retraining_overrides(params, "2013-06-17T00:00:00+00:00")
    moved = parse_params(params_dict(tmp_path, {**SMALL_WINDOW, **overrides}))
    assert moved.collect.end == pd.Timestamp("2013-06-17", tz="UTC")
    for key in RELOCATED_PATHS:
        new, old = getattr(moved.paths, key), getattr(params.paths, key)
        assert new != old and params.paths.retraining_dir in new.parents, key
        assert "until-2013-06-17T0000" in str(new)
    # What a retrain shares with the champion stays put.
    for key in ("registry_dir", "prediction_log_dir", "monitoring_dir", "model_card"):
        assert getattr(moved.paths, key) == getattr(params.paths, key)

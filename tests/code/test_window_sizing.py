"""monitor.window_days / min_window_rows `auto`: monitoring windows sized from the champion's reference period so that
a window holds enough rows for the calibrated tests, kept in its calibration and used to cut live windows; a table
too small for any window is told so with its numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.monitor.calibration import WindowSizeError, size_windows, sizing_text
from pipelines.monitor.windows import calibrated_windows


def _period(rows_per_week: int, weeks: int, positive_rate: float) -> tuple[pd.Series, pd.Series]:
    """Daily dates (no time of day) from a Monday, `rows_per_week` a week, the label positive at `positive_rate`."""
    days = pd.date_range("2016-07-04", periods=weeks * 7, freq="D", tz="UTC")
    stamps = pd.Series(np.repeat(days, rows_per_week // 7 + 1)[:rows_per_week * weeks])
    labels = pd.Series((np.random.default_rng(0).random(len(stamps)) < positive_rate).astype("int8"))
    return stamps, labels


def _auto(make_params):
    return make_params({"monitor.window_days": "auto", "monitor.min_window_rows": "auto"}).monitor


def test_weeks_of_250_rows_are_weekly_windows_with_a_minimum_of_half_a_week(make_params) -> None:
    stamps, labels = _period(250, 40, 0.06)  # the hotel bookings' shape: ~250 a week, 6 % repeat guests
    sized = size_windows(stamps, _auto(make_params), labels)
    assert (sized.window_days, sized.min_window_rows) == (7, 126)  # 252 rows a week (whole days), half of it
    assert sizing_text(("auto", "auto"), 7, 126) == "monitor.window_days=7 (auto), monitor.min_window_rows=126 (auto)"


def test_a_sparser_table_gets_longer_windows(make_params) -> None:
    stamps, labels = _period(60, 60, 0.08)  # 60 a week: a week has too few rows, four weeks enough
    sized = size_windows(stamps, _auto(make_params), labels)
    assert sized.window_days == 28 and sized.min_window_rows == 126


def test_a_rare_label_widens_the_window(make_params) -> None:
    stamps, labels = _period(300, 40, 0.02)  # 300 rows but ~6 positives a week: two weeks hold ~12
    assert size_windows(stamps, _auto(make_params), labels).window_days == 14


def test_explicit_values_are_kept(make_params) -> None:
    stamps, labels = _period(250, 40, 0.06)
    monitor = make_params({"monitor.window_days": 14, "monitor.min_window_rows": 300}).monitor
    sized = size_windows(stamps, monitor, labels)
    assert (sized.window_days, sized.min_window_rows) == (14, 300)


def test_a_table_too_small_for_any_window_is_told_so_with_numbers(make_params) -> None:
    stamps, labels = _period(20, 5, 0.1)
    with pytest.raises(WindowSizeError, match=r"the reference period \(100 rows over 33 days, .*\) is too small for "
                                              r"monitoring windows: 7 days: 5 windows, median 21 rows.*28 days: "
                                              r".*set monitor.window_days and monitor.min_window_rows by hand"):
        size_windows(stamps, _auto(make_params), labels)


def test_live_windows_are_cut_as_the_champions_calibration_says(make_params) -> None:
    from types import SimpleNamespace

    calibration = SimpleNamespace(window_days=14, min_window_rows=230)
    live = calibrated_windows(_auto(make_params), calibration)
    assert (live.window_days, live.min_window_rows) == (14, 230)
    fixed = make_params({"monitor.window_days": 7, "monitor.min_window_rows": 500}).monitor
    assert calibrated_windows(fixed, calibration) == fixed  # numbers in params are the user's, kept
    old = SimpleNamespace(window_days=7, min_window_rows=None)  # a calibration made before auto sizing
    assert calibrated_windows(_auto(make_params), old).min_window_rows == 1000


def test_auto_is_a_documented_value(make_params) -> None:
    from pipelines.config import ParamsError, explain

    assert "auto" in explain("monitor.window_days")["description"]
    with pytest.raises(ParamsError, match="monitor.window_days"):
        make_params({"monitor.window_days": "weekly"})


def test_a_long_sparse_period_is_told_the_window_that_fits(make_params) -> None:
    """Years of a few rows a day (openintro's bird strikes: ~6 a day over 8 years): no auto window holds 200 rows,
    but the period holds many longer ones; the error gives the values to set, not only "collect a longer window"."""
    stamps, labels = _period(40, 100, 0.2)  # 4,000 rows over ~670 days
    with pytest.raises(WindowSizeError, match=r"by hand \(this period is long but sparse: windows of 35 days would "
                                              r"hold ~2\d\d rows, 19 of them: monitor.window_days: 35, "
                                              r"monitor.min_window_rows: 1\d\d\)$") as raised:
        size_windows(stamps, _auto(make_params), labels)
    settings = str(raised.value).rsplit("monitor.window_days: ", 1)[1].rstrip(")")
    days, rows = int(settings.split(",")[0]), int(settings.rsplit(" ", 1)[1])
    sized = size_windows(stamps, _auto(make_params).model_copy(update={"window_days": days, "min_window_rows": rows}),
                         labels)
    assert (sized.window_days, sized.min_window_rows) == (days, rows)


def test_a_long_sparse_period_with_few_windows_is_told_its_thresholds_would_be_noisy(make_params) -> None:
    """Seattle's daily weather (1 row a day, 3 years: windows of 203 days, 5 of them) in small: 2 rows a day over a
    year and a half; the suggestion says that so few windows give noisy thresholds and what gives more."""
    stamps, labels = _period(7, 156, 0.4)
    with pytest.raises(WindowSizeError, match=r"windows of 105 days would hold ~\d+ rows, 5 of them: .*only 5 "
                                              r"windows: the thresholds would be noisy \(fewer than 10\), a longer "
                                              r"reference period gives more\)$"):
        size_windows(stamps, _auto(make_params), labels)


def _calibration(windows: int, window_days: int, min_window_rows: int | None, auc_windows: int = 8,
                 auc_drop: float | None = 0.04, labels: object = "calibrated"):
    from types import SimpleNamespace

    return SimpleNamespace(windows=windows, window_days=window_days, min_window_rows=min_window_rows,
                           auc_windows=auc_windows, auc_drop=auc_drop, labels=labels)


def test_a_calibration_on_few_or_small_windows_is_a_warning_naming_numbers_and_params() -> None:
    from pipelines.monitor.calibration import calibration_warning

    few = calibration_warning(_calibration(5, 203, 102))
    assert few is not None and "5 reference windows (fewer than 10" in few
    assert "monitor.window_days=203" in few and "collect.start" in few and "monitor.min_window_rows" in few
    small = calibration_warning(_calibration(30, 7, 40))
    assert small is not None and "windows of 40+ rows (under 100" in small and "5 reference" not in small
    assert calibration_warning(_calibration(34, 7, 500)) is None  # the flights default: 34 weeks of 500+ rows
    assert calibration_warning(_calibration(12, 7, None)) is None  # a calibration made before auto sizing
    assert calibration_warning(_calibration(34, 7, 500, auc_windows=0, auc_drop=None)) is None  # no held-out


def test_held_out_splits_of_one_window_are_a_warning() -> None:
    """Seattle: 31 + 31 held-out days inside one 203-day window: the calibrated AUC drop is that window against
    itself (0.0), and no label limits were learned."""
    from pipelines.monitor.calibration import calibration_warning

    one = calibration_warning(_calibration(5, 203, 102, auc_windows=1, auc_drop=0.0, labels=None))
    assert "held-out splits (split.valid_days, split.test_days) that hold 1 window (the performance-decay limit " \
           "is monitor.auc_drop alone, the label checks uncalibrated)" in one
    assert "longer held-out splits" in one


def _noisy_calibration():
    from types import SimpleNamespace

    return SimpleNamespace(windows=5, window_days=203, min_window_rows=102, sizing="monitor.window_days=203, "
                           "monitor.min_window_rows=102", resamples=8, period=["2012-01-01", "2014-12-31"],
                           drift_index=1.0, prediction=0.1, auc_drop=None, auc_windows=0, labels=None)


def test_the_loop_start_warns_of_a_noisy_calibration(make_params, monkeypatch, caplog) -> None:
    import logging

    from ops import loop
    from pipelines.monitor import store

    monkeypatch.setattr(store, "champion_calibration", lambda params: _noisy_calibration())
    with caplog.at_level(logging.WARNING, logger=loop.log.name):
        loop._sized_windows(make_params({"monitor.window_days": 203, "monitor.min_window_rows": 102}))
    assert any("noisy calibration: 5 reference windows" in record.getMessage() for record in caplog.records)


def test_monitor_calibration_says_the_warning(make_params, monkeypatch, tmp_path) -> None:
    import argparse

    from pipelines import cli
    from pipelines import io as catalog
    from pipelines.monitor import calibration as calibration_module
    from pipelines.release import registry

    (tmp_path / catalog.CALIBRATION_FILE).write_text("{}")
    monkeypatch.setattr(cli, "_load", lambda args: make_params())
    monkeypatch.setattr(registry, "open_registry", lambda params: None)
    monkeypatch.setattr(registry, "model_path", lambda tag, store: tmp_path)
    monkeypatch.setattr(calibration_module.Calibration, "model_validate", lambda data: _noisy_calibration())
    monkeypatch.setattr(calibration_module, "leave_one_out", lambda calibration, monitor: None)
    shown = cli._monitor_calibration(argparse.Namespace(tag="m:1"))
    assert shown["warning"].startswith("noisy calibration: 5 reference windows")

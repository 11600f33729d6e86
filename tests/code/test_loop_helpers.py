"""The loop's and the retraining flow's pure helpers: weekly cuts aligned with the monitoring windows, a
retrain's experiment name and overrides, and the loop's summary (its record, its page and its closing lines)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines import io


@pytest.mark.parametrize("window_days", [7, 30, 203])
def test_chunks_cut_at_the_monitoring_windows_boundaries(window_days: int) -> None:
    from ops.loop import window_chunks
    from pipelines.monitor.windows import window_starts

    start, end = pd.Timestamp("2013-09-01", tz="UTC"), pd.Timestamp("2014-09-01", tz="UTC")
    chunks = window_chunks(start, end, window_days)
    if window_days == 7:
        assert chunks[0] == (start, pd.Timestamp("2013-09-02", tz="UTC"))  # Sunday, then Monday-aligned weeks
    assert chunks[0][0] == start and chunks[-1][1] == end
    assert all(a < b for a, b in chunks) and all(b == c for (_, b), (c, _) in zip(chunks, chunks[1:], strict=False))
    # Every chunk is one monitoring window's traffic (or the clipped first and last): one per window, no more.
    starts = [window_starts(pd.Series([a, b - pd.Timedelta(seconds=1)]), window_days) for a, b in chunks]
    assert all(pair.nunique() == 1 for pair in starts)
    spanned = window_starts(pd.Series(pd.date_range(start, end, freq="h", inclusive="left")), window_days).nunique()
    assert len(chunks) == spanned


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


def test_the_retraining_cli_moves_the_data_end_and_refuses_what_it_cannot_read(capsys) -> None:
    """`python -m flows.retraining --through 2013-10-31` retrains on data through that day: the flow's data_end (and
    so the experiment's `-S collect.end`) is the next midnight; `--data-end` is passed as given. An argument it does
    not know is an error, never ignored."""
    from flows.retraining import cli_parameters

    assert cli_parameters(["--through", "2013-10-31"]) == {
        "params_file": io.PARAMS_FILE, "data_end": "2013-11-01", "reason": ""}
    assert cli_parameters(["--data-end", "2013-10-07T00:00:00+00:00", "--reason", "replayed autumn"])[
        "data_end"] == "2013-10-07T00:00:00+00:00"
    assert cli_parameters([])["data_end"] is None  # params.yaml's collect.end
    for wrong in (["2013-10-31"], ["--through", "2013-10-32"], ["--data-end", "yesterday"],
                  ["--through", "2013-10-31", "--data-end", "2013-11-01"]):
        with pytest.raises(SystemExit):
            cli_parameters(wrong)
    assert "'2013-10-32' is not a day (YYYY-MM-DD)" in capsys.readouterr().err


def test_a_retrain_window_is_checked_like_params_yaml_before_anything_runs(tmp_path: Path) -> None:
    from flows.retraining import RetrainRefused, retrain_window
    from pipelines.config import parse_params
    from support.params import params_dict

    params = parse_params(params_dict(tmp_path, {"collect.start": "2013-01-01", "collect.end": "2013-09-01"}))
    window = retrain_window(params, "2013-11-01")
    assert (window.start.isoformat(), window.end.isoformat()) == ("2013-01-01T00:00:00+00:00",
                                                                  "2013-11-01T00:00:00+00:00")
    assert retrain_window(params, None) == params.collect
    with pytest.raises(RetrainRefused, match=r"collect.end \(2012-11-01\) must be after collect.start \(2013-01-01\)"):
        retrain_window(params, "2012-11-01")
    sliding = params.model_copy(update={"monitor": params.monitor.model_copy(update={"retrain_window_days": 30})})
    assert retrain_window(sliding, "2013-11-01").start.isoformat() == "2013-10-02T00:00:00+00:00"
    with pytest.raises(RetrainRefused, match="not a date"):
        retrain_window(sliding, "soon")


def _summary(out: Path, gain: float | None):
    from pipelines.contracts import LoopRetrain, LoopSummary, ReproduceCommand

    retrain = LoopRetrain(data_end="2013-06-17T00:00:00+00:00", flow_run_id="0b1c", state="Completed",
                          reason="data drift", champion_before="m:first", champion_after="m:second")
    return LoopSummary(windows=4, alarms=1, retrains=[retrain], first_champion="m:first", promoted=["m:second"],
                       windows_served_by_a_retrained_model=1 if gain is not None else 0,
                       mean_auc_gain_on_those_windows=gain, history_csv=str(out / "history.csv"),
                       plot=str(out / "history.png"), evidently_dashboard="http://127.0.0.1:8000/projects/x",
                       reproduce={"m:second": ReproduceCommand(command="python -m pipelines reproduce m:second --check",
                                                               ref="refs/exps/ab/retrain", commit=None)})


def test_the_loop_summary_round_trips_reads_an_older_file_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    """summary.json (`LoopSummary`) reads back what the loop saved; a summary from before `reproduce` was recorded
    still loads (no commands); a file that is not a summary is refused naming it."""
    from pipelines.contracts import LoopSummary, MalformedRecord

    assert LoopSummary.load(tmp_path) is None  # no loop has finished here
    summary = _summary(tmp_path, 0.0123)
    path = summary.save(tmp_path)
    assert path == tmp_path / io.LOOP_SUMMARY_JSON and LoopSummary.load(tmp_path) == summary
    older = {key: value for key, value in json.loads(path.read_text()).items() if key != "reproduce"}
    path.write_text(json.dumps(older))
    assert LoopSummary.load(tmp_path) == summary.model_copy(update={"reproduce": {}})
    path.write_text(json.dumps({**older, "retrains": [{"data_end": "2013-06-17"}]}))
    with pytest.raises(MalformedRecord, match=rf"{path} is not a valid LoopSummary record \(retrains\.0\."):
        LoopSummary.load(tmp_path)


@pytest.mark.parametrize("gain", [0.0123, None])
def test_the_loop_s_page_and_closing_lines_say_what_the_summary_holds(gain: float | None, tmp_path: Path) -> None:
    from ops.loop import _markdown, closing_lines
    from pipelines.config import parse_params
    from support.params import params_dict

    summary = _summary(tmp_path, gain).model_copy(update={"window_days": 7})
    page = _markdown(pd.DataFrame(columns=["window_start"]), summary, "flights")
    assert "4 weekly windows analysed, 1 alarm, 1 retraining run, 1 promoted." in page
    assert "- retrain on traffic up to 2013-06-17: run Completed, champion m:first -> m:second (data drift)" in page
    assert "- `m:second` (ref `refs/exps/ab/retrain`, commit `unknown`): `python -m pipelines reproduce" in page
    assert ("live ROC AUC was +0.0123" in page) == (gain is not None)
    lines = closing_lines(summary, parse_params(params_dict(tmp_path)))
    assert lines[0].startswith("loop: 4 weekly windows monitored, 1 alarms, 1 retrains, 1 promoted")
    assert ("live ROC AUC +0.0123 on them" in lines[0]) == (gain is not None)
    assert lines[1] == "champion: m:second" and lines[3].strip().startswith(str(tmp_path / io.LOOP_SUMMARY_MD))
    assert lines[-1].strip() == "python -m ops.stack down   stops the stack"
    # After --down the stack's pages are gone: the lines say how to bring them back, not a dead URL.
    stopped = closing_lines(summary, parse_params(params_dict(tmp_path)), stack_up=False)
    assert not any("http://" in line or "ops.stack down" in line for line in stopped)
    assert stopped[-1].strip().startswith("python -m ops.stack up") and stopped[:4] == lines[:4]


def test_the_loop_s_words_say_the_window_length_and_the_table_s_rows(tmp_path: Path) -> None:
    """Windows of 203 days (a daily table) are not "weeks", and the rows are the table's (project.entity_plural)."""
    from ops.loop import _markdown, closing_lines
    from pipelines.config import parse_params
    from support.params import params_dict

    summary = _summary(tmp_path, 0.0123).model_copy(update={"window_days": 203})
    page = _markdown(pd.DataFrame(columns=["window_start"]), summary, "days")
    assert "4 windows of 203 days analysed" in page and "scoring the same days." in page
    assert "week" not in page and "flight" not in page
    lines = closing_lines(summary, parse_params(params_dict(tmp_path)))
    assert lines[0].startswith("loop: 4 windows of 203 days monitored") and "1 window of 203 days served" in lines[0]
    assert not any("week" in line for line in lines)


def test_windows_the_loop_left_unjudged_are_said_with_what_judges_them(make_params, monkeypatch, tmp_path) -> None:
    """Seattle's 2015 replayed day by day into windows of 203 days: the loop judged the window of 2015-01-12 and
    said "1 window monitored"; the clipped first one and the last (151 days of traffic, 2015-08-03 .. 2016-02-22,
    which a replay ending 2016-01-01 never fills) were left unjudged without a word. Now each is said, with why
    (the first as a partial first window, skipped)."""
    from types import SimpleNamespace

    from ops.loop import _markdown, closing_lines, unjudged_windows
    from pipelines.config import parse_params
    from pipelines.monitor import store
    from support.params import params_dict

    params = make_params({"monitor.window_days": 203, "monitor.min_window_rows": 102})
    days = pd.DataFrame({params.source.time_column: pd.date_range("2015-01-01", "2015-12-31", freq="D", tz="UTC")})
    judged = SimpleNamespace(windows={"2015-01-12T00:00:00+00:00": SimpleNamespace(rows=203)})
    monkeypatch.setattr(store, "read_predictions", lambda p: SimpleNamespace(frame=days))
    monkeypatch.setattr(store, "load_state", lambda p: judged)
    first, last = unjudged_windows(params)
    assert first.startswith("2014-06-23 (11 rows): partial first window, skipped: the traffic starts 2015-01-01")
    assert last.startswith("2015-08-03 (151 rows): still filling: the window 2015-08-03 .. 2016-02-22")
    assert last.endswith("python -m flows.monitoring --clock 2016-02-22T06:00")
    summary = _summary(tmp_path, None).model_copy(update={"window_days": 203, "unjudged": [first, last]})
    assert f"- not judged: window {last}" in _markdown(pd.DataFrame(columns=["window_start"]), summary, "days")
    lines = closing_lines(summary, parse_params(params_dict(tmp_path)))
    assert lines[1:3] == [f"not judged: window {first}", f"not judged: window {last}"]

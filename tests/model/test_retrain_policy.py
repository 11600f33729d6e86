"""The retraining-policy replay (benchmarks/retrain_policy.py) on a small real window: each policy does what it
says, from the same first champion, through the project's own train, gate and monitor steps."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from benchmarks.retrain_policy import replay, replay_weeks, retrain_start, summarise, train_champion
from pipelines.config import parse_params
from support.params import SMALL_WINDOW, params_dict

TRAIN_END = pd.Timestamp("2013-05-13", tz="UTC")   # a Monday: the replayed windows follow it
REPLAY_END = pd.Timestamp("2013-05-27", tz="UTC")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from pipelines.data.collect import collect
    from pipelines.features import make_label

    root = tmp_path_factory.mktemp("policy")
    params = parse_params(params_dict(root, {**SMALL_WINDOW, "collect.end": TRAIN_END.isoformat(),
                                             "monitor.reference_rows": 15000}))
    table = collect(params.source, params.collect.model_copy(update={"end": REPLAY_END}))
    table = table.assign(label=make_label(table, params.source, check=False))
    first, timings = train_champion(table, params, pd.Timestamp(params.collect.start), TRAIN_END, "first", None,
                                    with_reference=True)
    assert first is not None, timings["gate"]
    weeks = replay_weeks(TRAIN_END, REPLAY_END, params.monitor.window_days)
    return {"params": params, "table": table, "first": first, "weeks": weeks,
            "span": TRAIN_END - pd.Timestamp(params.collect.start)}


def _run(setup: dict[str, Any], policy: str, window: str = "growing") -> Any:
    return replay(setup["table"], setup["params"], setup["first"], policy, window, setup["weeks"], setup["span"],
                  log=lambda line: None)


def test_the_replayed_windows_are_the_monitors_complete_weeks(setup: dict[str, Any]) -> None:
    assert [(a.strftime("%Y-%m-%d"), b.strftime("%Y-%m-%d")) for a, b in setup["weeks"]] == [
        ("2013-05-13", "2013-05-20"), ("2013-05-20", "2013-05-27")]
    # A start mid-week skips to the next window start; a last window cut by the end is left out.
    assert replay_weeks(TRAIN_END + pd.Timedelta(days=2), REPLAY_END + pd.Timedelta(days=3), 7) == [
        (pd.Timestamp("2013-05-20", tz="UTC"), pd.Timestamp("2013-05-27", tz="UTC"))]


def test_never_serves_the_first_champion_throughout(setup: dict[str, Any]) -> None:
    run = _run(setup, "never")
    assert run.retrains == 0 and {week["model"] for week in run.weeks} == {"first"}
    assert all(0.5 < week["roc_auc"] <= 1 and week["rows"] > 1000 for week in run.weeks)


def test_weekly_retrains_after_every_window_and_the_gate_decides_what_serves(setup: dict[str, Any]) -> None:
    never, weekly = _run(setup, "never"), _run(setup, "weekly")
    assert weekly.retrains == len(setup["weeks"]) and weekly.retrain_s > 0
    assert weekly.weeks[0]["model"] == "first"  # the first window is served before any retrain
    promoted_after_first = weekly.weeks[0]["retrain"] == "promoted"
    assert (weekly.weeks[1]["model"] != "first") == promoted_after_first
    assert weekly.promoted == sum(week["retrain"] == "promoted" for week in weekly.weeks)
    table = summarise([never, weekly]).set_index("policy")
    assert table.loc["never", "auc_vs_never"] == 0 and table.loc["weekly", "retrains"] == len(setup["weeks"])
    # Same first window, same model: the paired difference comes only from the windows a retrained model served.
    assert weekly.weeks[0]["roc_auc"] == never.weeks[0]["roc_auc"]


def test_drift_acts_only_on_the_monitors_decision(setup: dict[str, Any]) -> None:
    run = _run(setup, "drift")
    assert run.monitor_s > 0
    asked = [week for week in run.weeks if week["retrain"]]
    assert run.retrains == len(asked) and all(week["alarm"] for week in asked)


def test_a_sliding_retrain_keeps_the_first_champions_span() -> None:
    end, span = pd.Timestamp("2013-10-07", tz="UTC"), pd.Timedelta(days=243)
    assert retrain_start("sliding", "2013-01-01T00:00:00+00:00", end, span) == end - span
    assert retrain_start("growing", "2013-01-01T00:00:00+00:00", end, span) == pd.Timestamp("2013-01-01", tz="UTC")


def test_an_unknown_policy_is_refused(setup: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="policy must be one of"):
        _run(setup, "monthly")

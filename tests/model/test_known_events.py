"""The drift-scenarios benchmark's known real events (benchmarks/known_events.py): the evidence is measured from the
flights, and only an outcome alarm on an untouched week of the event is reported as the event, never an input alarm
or an injected change."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from benchmarks.drift_scenarios import Scenario, _explained, _grade, totals
from benchmarks.known_events import KnownEvent, event_for, evidence
from pipelines.config import parse_params
from support.params import params_dict


@pytest.fixture(scope="module")
def april(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    from pipelines.data.collect import collect
    from pipelines.features import make_label

    params = parse_params(params_dict(tmp_path_factory.mktemp("events"), {"collect.start": "2013-04-01",
                                                                        "collect.end": "2013-05-14"}))
    table = collect(params.source, params.collect)
    return table.assign(label=make_label(table, params.source, check=False))


def test_the_furlough_week_shows_in_the_flights_not_in_the_weather(april: pd.DataFrame) -> None:
    found = evidence(april, event_for("2013-04-22"))
    event, around = found["event"], found["around"]
    assert event["late_rate"] > 1.5 * around["late_rate"]                  # twice as many flights late
    assert event["airborne_delay_min"] > 0 > around["airborne_delay_min"]   # time lost in the air, not at the gate
    assert event["bad_weather_share"] < around["bad_weather_share"]         # in clearer weather at the origins
    assert all(now > before for now, before in found["late_rate_by_origin"].values())
    up, of = found["destinations_up"].split(" of ")
    assert int(of) >= 20 and int(up) == int(of)
    assert sorted(found["daily_late_rate"]) == [f"2013-04-{day}" for day in range(22, 27)]


def test_a_week_without_a_known_event_shows_nothing_like_it(april: pd.DataFrame) -> None:
    calm = evidence(april, KnownEvent(week="2013-05-06", first="2013-05-06", last="2013-05-10",
                                                      what="none", record="none"))
    assert calm["event"]["airborne_delay_min"] < 0
    assert calm["event"]["late_rate"] < 1.5 * calm["around"]["late_rate"]


def _result(scenario: Scenario, kinds: list[str]) -> dict[str, Any]:
    return {"group": scenario.group, "alarm": bool(kinds), "known_event": _explained(scenario, kinds),
            "input_alarm": any(kind not in ("label_shift", "performance_decay", "calibration_decay")
                               for kind in kinds), "expect_alarm": False, "counted": False, "retrain": False,
            "quality": False, "kind": scenario.kind, "seconds": 1.0}


def test_only_an_outcome_alarm_on_the_untouched_event_week_is_reported_as_the_event() -> None:
    week = Scenario("control 2013-04-22", "control", 0.0, "2013-04-22", expect_alarm=False)
    other = Scenario("control 2013-05-06", "control", 0.0, "2013-05-06", expect_alarm=False)
    flipped = Scenario("flip", "label flip", 0.2, "2013-04-22", labels=lambda y: y)
    assert _grade(_result(week, ["label_shift"])) == "known event"
    assert _grade(_result(week, ["label_shift", "data_drift"])) == "FALSE ALARM"   # the event leaves inputs alone
    assert _grade(_result(other, ["label_shift"])) == "FALSE ALARM"
    assert flipped.event is None
    results = [_result(week, ["label_shift"]), _result(other, []), _result(other, ["beyond_range"])]
    total = totals(results)
    assert (total["false_alarms"], total["false_alarms_with_events"], total["known_event_alarms"]) == (1, 2, 1)
    assert total["known_event_weeks"] == ["2013-04-22"]

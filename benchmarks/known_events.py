"""Known real events in the benchmark's weeks: an alarm on an untouched week that a dated, documented event explains
is a true detection, not a false alarm. The drift-scenarios benchmark reports such controls separately, with the
evidence measured here from the data itself, and states its false-alarm count with and without them; nothing is
excluded silently, and an alarm of another kind on the same week (the inputs: the event does not touch them) stays
a false alarm.

An event enters this list only with a public, dated record of what happened and evidence in the flights
themselves that the week differs from the weeks around it in the way the event would make it differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

# The alarm kinds an outcome-only event can explain: the outcomes moved, the inputs did not.
OUTCOME_EVENT_KINDS = ("label_shift", "performance_decay", "calibration_decay")


@dataclass(frozen=True)
class KnownEvent:
    week: str         # the Monday of the week it falls in (the benchmark's window start)
    first: str        # its first and last local days (the flights' scheduled dates)
    last: str
    what: str
    record: str       # the public record of it


KNOWN_EVENTS = (
    KnownEvent(
        week="2013-04-22", first="2013-04-22", last="2013-04-26",
        what="FAA sequestration furloughs of air-traffic controllers (from Sunday 21 April 2013): nationwide "
             "arrival delays in clear weather",
        record="the FAA began furloughing air-traffic controllers under the 2013 sequester on Sunday 21 April "
               "2013; the Reducing Flight Delays Act of 2013 passed the Senate by unanimous consent (S. 853) on 25 "
               "April and the House took up its companion (H.R. 1765) on 26 April; it became Public Law 113-9 "
               "(govinfo.gov BILLS-113s853cps; the House floor summary of H.R. 1765)"),
)


def event_for(week: str) -> KnownEvent | None:
    """The known event of a benchmark week (its Monday), if any."""
    return next((event for event in KNOWN_EVENTS if event.week == week), None)


def evidence(year: pd.DataFrame, event: KnownEvent, label: str = "label", around_weeks: int = 2) -> dict[str, Any]:
    """What the flights show on the event's days against the same weekdays of the `around_weeks` weeks before and
    after it: the late rate (the label), the mean airborne delay (arrival minus departure delay, minutes: time lost
    in the air and on approach, where controllers' capacity shows; a weather delay at the origin delays the
    departure instead), the share of flights that left in precipitation or under 5 miles' visibility (the origin's
    weather, which the model sees), and how widely the late rate rose (by origin, by destination with >= 50
    flights on the event's days)."""
    local = pd.to_datetime(year[["year", "month", "day"]])
    first, last = pd.Timestamp(event.first), pd.Timestamp(event.last)
    on_event = (local >= first) & (local <= last)
    around = pd.Series(False, index=year.index)
    for weeks in [*range(-around_weeks, 0), *range(1, around_weeks + 1)]:
        shift = pd.Timedelta(days=7 * weeks)
        around |= (local >= first + shift) & (local <= last + shift)
    rows = year[label].notna()
    flights = year.assign(airborne=year["arr_delay"] - year["dep_delay"],
                          bad_weather=(year["precip"].fillna(0) > 0) | (year["visib"] < 5))

    def figures(mask: pd.Series) -> dict[str, float]:
        part = flights[mask & rows]
        return {"flights": len(part), "late_rate": round(float(part[label].mean()), 3),
                "airborne_delay_min": round(float(part["airborne"].mean()), 1),
                "bad_weather_share": round(float(part["bad_weather"].mean()), 3)}

    def rates(mask: pd.Series, by: str) -> pd.Series:
        part = flights[mask & rows]
        counts = part.groupby(by)[label].agg(["mean", "size"])
        return counts["mean"].where(counts["size"] >= 50).dropna()

    daily = flights[on_event & rows].groupby(local[on_event & rows].dt.strftime("%Y-%m-%d"))
    destinations = pd.concat({"event": rates(on_event, "dest"), "around": rates(around, "dest")}, axis=1).dropna()
    return {"event": figures(on_event), "around": figures(around),
            "daily_late_rate": {day: round(float(v), 3) for day, v in daily[label].mean().items()},
            "daily_airborne_delay_min": {day: round(float(v), 1) for day, v in daily["airborne"].mean().items()},
            "late_rate_by_origin": {origin: [round(float(rates(on_event, "origin")[origin]), 3),
                                             round(float(rates(around, "origin")[origin]), 3)]
                                    for origin in sorted(rates(on_event, "origin").index)},
            "destinations_up": f"{int((destinations['event'] > destinations['around']).sum())} of "
                               f"{len(destinations)}"}


def evidence_words(event: KnownEvent, found: dict[str, Any]) -> str:
    """One paragraph: the event, its record, and the evidence measured."""
    e, a = found["event"], found["around"]
    origins = ", ".join(f"{o} {v[0]:.2f} ({v[1]:.2f})" for o, v in found["late_rate_by_origin"].items())
    return (f"{event.week}: {event.what}. Record: {event.record}. In the flights, {event.first}..{event.last} "
            f"against the same weekdays of the two weeks before and after: late rate "
            f"{e['late_rate']:.2f} vs {a['late_rate']:.2f}; mean airborne delay {e['airborne_delay_min']:+.1f} vs "
            f"{a['airborne_delay_min']:+.1f} min; flights leaving in precipitation or visibility < 5 mi "
            f"{e['bad_weather_share']:.1%} vs {a['bad_weather_share']:.1%}; late rate by origin {origins}; "
            f"destinations (>= 50 flights) with a higher late rate: {found['destinations_up']}; daily late rate "
            f"{found['daily_late_rate']}")

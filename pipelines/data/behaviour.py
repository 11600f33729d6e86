"""The data contract's learned behaviour: what the reference does period by period and segment by segment, judged
against its own period-to-period spread.

Why: the suite's hard constraints (types, keys, physically impossible values) and whole-period bounds pass any fault
that keeps each column's marginal plausible: one airport's temperature in another unit for a month, one carrier's
distances in kilometres, a time axis shifted by a few hours, labels flipped on part of a month. What such a fault
cannot keep is the reference's behaviour at a finer grain: a segment's statistics beside the rest of its period, the
relations between columns, the keys that determine other columns, a timestamp's agreement with its own hour column,
the label's relation to the other columns.

`draft_behaviour` learns it from a reference table (the `draft-suite` command writes it beside the suite, reviewed
like code: `Behaviour`, a bounded JSON file); `judge` measures a new table the same way and returns the judged
statistics and the failures. The judgement is the monitor's calibration, shared, not copied
(`pipelines.monitor.calibration`: `beyond_band`, `spread_width`, `range_band`; `pipelines.monitor.consistency`: the
column-relation and label models): a statistic fails where it lies beyond the lowest and highest reference period's
value by more than `margin` times the reference periods' spread (widened for a period with fewer rows than the
reference's, as sampling noise grows), never less than the floors.

Statistics, per period (`validate.period`, and per week when that is a month) and per segment (the top values of
each `validate.segments` column, the rest pooled), computed in one pass of histograms (numpy `bincount`), not one
check per period x column x segment:
- each numeric column's mean, 10th/50th/90th percentiles (a segment's: mean and median, `TAILS`), missing share,
  and the share outside its observed range (the reference's [min, max] widened by `margin` column sds: observed
  ranges are never hard limits);
- each categorical column's share of its commonest values (and of the rest: a new category) and missing share;
- the label rate, and the label model's ROC AUC (labels flipped at random lose it);
- each column-relation model's mean residual (per segment: a unit change at one airport breaks it there);
- the hour-of-day profile's distance from the reference's;
and per row, each functional dependency (`pipelines.data.dependencies`) and timestamp part
(`pipelines.data.timeparts`). A segment's location and share statistics are judged as contrasts with its whole
period (the segment's value minus the period's): the seasons move every airport together, a fault at one does not.
Pure: frames in, records out; no Great Expectations (`pipelines.data.validate` hands the judged table to GX).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipelines.data.dependencies import Dependency, dependency_violations, draft_dependencies
from pipelines.data.timeparts import TimePart, draft_time_parts, local_hours, profile_zone, time_part_violations
from pipelines.monitor.calibration import MIN_RESIDUAL, range_band, spread_width
from pipelines.monitor.consistency import (
    ColumnSet,
    Consistency,
    LabelModel,
    fit_consistency,
    fit_label_model,
    label_scores,
    row_residuals,
)

BEHAVIOUR_VERSION = 1
ALL = "*"              # the segment of all rows
OTHER = "(other)"      # the pooled values of a segment or categorical column
FINER = {"month": "week"}
GRAIN_NAMES = {"month": "month", "week": "week", "day": "day"}
QUANTILES = (0.1, 0.5, 0.9)
HISTOGRAM_BINS = 32    # quantile bins per numeric column, and as many past its commonest value (`_edges`)
SCORE_BINS = 64        # label-score bins (the ROC AUC is read from them)
MIN_ROWS = 30          # a (period, segment) with fewer rows is not judged (nor learned from)
MIN_CLASS_ROWS = 10    # ... nor its ROC AUC with fewer rows of either class
MAX_CATEGORIES = 50    # a text column with more distinct values is an id, not a category (no shares)
TOP_CATEGORIES = 10    # shares are kept for a categorical column's commonest values, the rest pooled
SAMPLE_ROWS = 50_000   # the relation and label models are fitted on at most this many reference rows ...
MODEL_ROWS = 100_000   # ... and evaluated on at most this many rows of a table (`modelled_rows`)
# A segment's location statistic (mean, percentile) is judged as a contrast with its period; its width is never
# below this share of the column's standard deviation: a contrast that barely moved in the reference would otherwise
# refuse the next season's ordinary change.
CONTRAST_FLOOR = 0.25
NOISE_SIGMAS = 3.0  # a statistic may always move this many of its own standard errors (`_standard_error`)
MOSTLY = 0.8  # broken rows are named by a segment value when at least this share of them hold it
DOMINANCE = 4.0  # a segment's failure is its own, not another's echo, within this factor of the worst excess
CONTRASTED = ("mean", "q50", "missing", "share", "rate")
# A segment's tails are not judged, only its mean and median: its 10th/90th percentile contrast moves with the few
# days that make a period eventful (a stormy half-June put one carrier's 90th percentile of delays and of
# precipitation 1.3-1.5 bands beyond every reference month's), while a unit change in a segment moves its mean and
# median as much. A period's own tails are judged (by the column's spread, not the contrasts').
TAILS = ("q10", "q90")
# A segment's statistic may lie this many times its allowed width beyond its band. Why: a table's segments judged
# per period are most of its statistics (~19,000 for ten months of hotel bookings), so the per-statistic false
# alarms add up; real summer months of small hotel segments (74-402 rows) lay 0.13-0.44 widths beyond, every
# corruption class of the flights tests 3.7-221 widths (tests/data/test_corruptions.py).
SEGMENT_TOLERANCE = 2.0
ONE_SIDED_LOW = ("auc",)             # only a drop fails
ONE_SIDED_HIGH = ("outside", "hours")  # only a rise fails


class LabelSpec(BaseModel):
    """How the label is made from the target (as `source.*` says): `pipelines.features.make_label` reads it."""

    model_config = ConfigDict(extra="forbid")

    target: str
    positive_above: float | None = None
    positive_class: str | None = None


class Floors(BaseModel):
    """The smallest widths, as shares of rows (defaults: the monitor's surges, params' `monitor.*`)."""

    model_config = ConfigDict(extra="forbid")

    missing: float = Field(description="monitor.missing_surge: a missing share's smallest width")
    share: float = Field(description="monitor.new_category_surge: a category share's or the label rate's")
    outside: float = Field(description="monitor.out_of_range_surge: the share outside a column's observed range")
    auc: float = 0.02
    hours: float = 0.01
    violations: float = Field(0.0005, description="rows breaking a dependency or a timestamp part, per period")


class Behaviour(BaseModel):
    """The drafted calibration file (`validate.calibration`), committed beside the suite. `bands` is a table: one
    row `[grain, segment, statistic, low, high, width, rows]` per learned statistic: the lowest and highest value
    over the reference periods (None: that side is not judged), the width beyond them that still passes, and the
    reference periods' median rows (a period with fewer rows gets a wider width)."""

    model_config = ConfigDict(extra="forbid")

    version: int = BEHAVIOUR_VERSION
    notes: str = ""
    # The suite it was drafted beside (its name): validation refuses to judge a table with the learned behaviour of
    # another suite's table (validate.suite changed, validate.calibration left at the flights default).
    suite: str | None = None
    drafted_from: dict[str, Any]
    time_column: str
    period: str
    grains: list[str]
    margin: float
    floors: Floors
    label: LabelSpec | None = None
    key_columns: list[str] = []
    numeric: list[str]
    categories: dict[str, list[str]]
    segments: dict[str, list[str]]
    observed: dict[str, list[float]]  # per numeric column: [min, max, band low, band high] of the reference
    spreads: dict[str, float] = {}    # per numeric column: its standard deviation over the reference rows
    edges: dict[str, list[float]]     # per numeric column: its histogram's bin edges (reference quantiles)
    relations: Consistency | None = None
    label_model: LabelModel | None = None
    score_edges: list[float] = []
    dependencies: list[Dependency] = []
    time_parts: list[TimePart] = []
    hour_zone: str | None = None
    hour_profiles: dict[str, list[float]] = {}
    # Per row-level rule (a dependency or a timestamp part): the largest share of a reference period's rows that
    # broke it (a route with two recorded distances flown in some months only).
    row_limits: dict[str, float] = {}
    bands: list[list[Any]] = []

    def band_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.bands, columns=["grain", "segment", "statistic", "low", "high", "width", "ref_rows"])


def read_behaviour(path: Path) -> Behaviour:
    """The drafted calibration file, with an error naming it (and the command that drafts it)."""
    from pipelines.data.suite import SuiteError

    try:
        return Behaviour.model_validate_json(Path(path).read_text())
    except FileNotFoundError:
        raise SuiteError(f"the learned behaviour {path} (validate.calibration) is not there: draft it beside the "
                         f"suite with python -m pipelines draft-suite, or set validate.calibration: null") from None
    except ValueError as error:
        raise SuiteError(f"the learned behaviour {path} (validate.calibration) cannot be read: "
                         f"{' '.join(str(error).split())[:400]}") from None


def write_behaviour(behaviour: Behaviour, path: Path) -> Path:
    """Reviewable JSON: one line per band (a table), the rest indented."""
    import json

    data = behaviour.model_dump(mode="json")
    bands = data.pop("bands")
    text = json.dumps(data, indent=1)
    rows = ",\n  ".join(json.dumps(row) for row in bands)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text[:-2] + f',\n "bands": [\n  {rows}\n ]\n}}\n')
    return path


def grains_for(period: str) -> list[str]:
    return [period, *([FINER[period]] if period in FINER else [])]


# --- units of time ------------------------------------------------------------------------------------------------

def unit_codes(stamps: pd.Series, grain: str) -> tuple[np.ndarray, list[str]]:
    """Each row's period of `grain` (month, Monday-based week or day, in UTC, as `split_periods` cuts them) as a code
    into the returned labels (-1 without a time): "2013-04", "2013-04-08..2013-04-14", "2013-04-09"."""
    utc = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    naive = utc.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    missing = np.isnat(naive)
    days = naive.astype("datetime64[D]")
    if grain == "month":
        keys = days.astype("datetime64[M]")
    elif grain == "week":
        weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday: Monday is 0
        keys = days - weekday.astype("timedelta64[D]")
    else:
        keys = days
    codes, uniques = pd.factorize(pd.Series(keys).where(~missing), sort=True)
    labels = [_unit_label(pd.Timestamp(value), grain) for value in uniques]
    return codes.astype(np.int64), labels


def _unit_label(start: pd.Timestamp, grain: str) -> str:
    if grain == "month":
        return f"{start:%Y-%m}"
    if grain == "week":
        return f"{start:%Y-%m-%d}..{start + pd.Timedelta(days=6):%Y-%m-%d}"
    return f"{start:%Y-%m-%d}"


# --- the statistics -----------------------------------------------------------------------------------------------

@dataclass
class _Prepared:
    """What every statistic reads, computed once per table: per-row codes and values."""

    frame: pd.DataFrame
    segment_codes: dict[str, np.ndarray]   # segment column -> per row index into its values + OTHER
    numbers: dict[str, np.ndarray]         # numeric column -> values (NaN missing)
    bins: dict[str, np.ndarray]            # numeric column -> histogram bin (`_bin_edges`; -1 missing)
    category_codes: dict[str, np.ndarray]  # categorical column -> index into its kept values + OTHER (-1 missing)
    label: np.ndarray | None               # 0/1/NaN
    modelled: np.ndarray                   # the rows the relation and label models are evaluated on
    scores: np.ndarray | None              # label model score bins (-1 unknown or not modelled)
    residuals: pd.DataFrame | None         # per modelled row (`modelled`)
    hours: np.ndarray | None               # local hour of day, -1 unknown


def _category_codes(values: pd.Series, kept: Sequence[str]) -> np.ndarray:
    """Each row's index into `kept` (its text), len(kept) for any other value, -1 when missing."""
    from pipelines.features import category_texts

    text = category_texts(values)
    codes = pd.Categorical(text, categories=list(kept)).codes.astype(np.int64)
    return np.where(text.isna().to_numpy(), -1, np.where(codes < 0, len(kept), codes))


def make_label(frame: pd.DataFrame, spec: LabelSpec) -> np.ndarray:
    from pipelines.features import make_label as label_of

    return label_of(frame, spec, check=False).to_numpy(dtype=float)  # type: ignore[arg-type]


def modelled_rows(rows: int, seed: int = 0) -> np.ndarray:
    """The rows the relation and label models are evaluated on: all of a table up to `MODEL_ROWS`, else a seeded
    uniform share of them (their statistics are averages: a share keeps them, at a cost bounded by the cap, and
    the judgement widens for the fewer rows)."""
    if rows <= MODEL_ROWS:
        return np.ones(rows, dtype=bool)
    return np.random.default_rng(seed).random(rows) < MODEL_ROWS / rows


def _bin_edges(behaviour: Behaviour, name: str) -> np.ndarray:
    """A numeric column's histogram edges: below its observed band, the band's low end, the reference quantile
    edges, the band's high end, above it (the first and last bins count what lies outside the observed range)."""
    low, high = behaviour.observed[name][2], behaviour.observed[name][3]
    inner = [edge for edge in behaviour.edges.get(name) or [] if low < edge < high]
    return np.asarray([low, *inner, high])


def _prepare(frame: pd.DataFrame, behaviour: Behaviour) -> _Prepared:
    segment_codes = {name: np.where(codes < 0, len(values), codes)
                     for name, values in behaviour.segments.items() if name in frame.columns
                     for codes in [_category_codes(frame[name], values)]}
    modelled = modelled_rows(len(frame))
    subset = frame if modelled.all() else frame.loc[modelled]
    label = scores = None
    if behaviour.label is not None and behaviour.label.target in frame.columns:
        label = make_label(frame, behaviour.label)
        model = behaviour.label_model
        if model is not None and behaviour.relations is not None and behaviour.score_edges and \
                _has_columns(frame, [*model.predictors, *model.categories]):
            raw = label_scores(subset, model, behaviour.relations)
            scores = np.full(len(frame), -1, dtype=np.int64)
            scores[modelled] = np.clip(np.searchsorted(behaviour.score_edges, raw, side="right") - 1, 0,
                                       len(behaviour.score_edges) - 2)
    residuals = None
    if behaviour.relations is not None and behaviour.relations.values:
        present = {name: model for name, model in behaviour.relations.values.items()
                   if _has_columns(frame, [name, *model.predictors])}
        if present:
            residuals = row_residuals(subset, behaviour.relations.model_copy(update={"values": present}))
    hours = None
    if behaviour.hour_zone is not None and behaviour.hour_profiles:
        hours = local_hours(frame[behaviour.time_column], behaviour.hour_zone)
    numbers = {name: _numbers(frame[name]) for name in behaviour.numeric if name in frame.columns}
    bins = {}
    for name, values in numbers.items():
        edges = _bin_edges(behaviour, name)
        inside = np.clip(np.searchsorted(edges, values, side="right"), 0, len(edges))  # 0 below .. len above
        inside = np.where(values == edges[-2], inside - 1, inside) if len(edges) > 2 else inside  # the maximum
        bins[name] = np.where(np.isnan(values), -1, inside)
    categories = {name: _category_codes(frame[name], kept) for name, kept in behaviour.categories.items()
                  if name in frame.columns}
    return _Prepared(frame=frame, segment_codes=segment_codes, numbers=numbers, bins=bins,
                     category_codes=categories, label=label, modelled=modelled, scores=scores, residuals=residuals,
                     hours=hours)


def _has_columns(frame: pd.DataFrame, columns: Iterable[str]) -> bool:
    return all(name in frame.columns for name in columns)


def _numbers(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _quantile_from_histogram(counts: np.ndarray, edges: np.ndarray, q: float) -> np.ndarray:
    """Per row of `counts` (histogram over `edges`), the `q` quantile by linear interpolation inside its bin."""
    total = counts.sum(axis=1)
    cumulative = np.cumsum(counts, axis=1)
    target = q * total
    index = np.minimum((cumulative < target[:, None]).sum(axis=1), counts.shape[1] - 1)
    before = np.where(index > 0, np.take_along_axis(cumulative, np.maximum(index - 1, 0)[:, None], 1)[:, 0], 0.0)
    inside = np.take_along_axis(counts, index[:, None], 1)[:, 0]
    fraction = np.where(inside > 0, (target - before) / np.where(inside > 0, inside, 1), 0.5)
    value = edges[index] + np.clip(fraction, 0, 1) * (edges[index + 1] - edges[index])
    return np.where(total > 0, value, np.nan)


def _auc_from_histograms(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """ROC AUC per row from score histograms of the two classes (ties within a bin count one half)."""
    below = np.cumsum(negative, axis=1) - negative
    wins = (positive * (below + 0.5 * negative)).sum(axis=1)
    pairs = positive.sum(axis=1) * negative.sum(axis=1)
    return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1), np.nan)


def _js_distance(counts: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2) of each row's distribution from the same row of `reference`."""
    total = counts.sum(axis=1, keepdims=True)
    p = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    m = 0.5 * (p + reference)

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        safe = np.where(a > 0, a / np.where(b > 0, b, 1), 1.0)
        return (a * np.log2(safe)).sum(axis=1)

    value = np.sqrt(np.clip(0.5 * kl(p, m) + 0.5 * kl(reference, m), 0, None))
    return np.where(total[:, 0] > 0, value, np.nan)


class _Sums:
    """Rows grouped by (piece of time, segment value): counts and histograms by `np.bincount`, once per table and
    segmentation; `per_unit` adds the pieces up into each grain's units (a piece is a week's part in one month)."""

    def __init__(self, pieces: np.ndarray, n_pieces: int, segment: np.ndarray | None, n_segments: int) -> None:
        self.n_pieces, self.n_segments = n_pieces, n_segments
        self.size = n_pieces * n_segments
        seg = np.zeros_like(pieces) if segment is None else segment
        self.codes = np.where(pieces < 0, -1, pieces * n_segments + seg)
        self.valid = self.codes >= 0

    def histogram(self, bins: np.ndarray, n_bins: int, mask: np.ndarray | None = None) -> np.ndarray:
        take = self.valid & (bins >= 0) if mask is None else self.valid & (bins >= 0) & mask
        flat = np.bincount(self.codes[take] * n_bins + bins[take], minlength=self.size * n_bins)
        return flat.reshape(self.size, n_bins).astype(float)

    def total(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        take = self.valid & ~np.isnan(values) if mask is None else self.valid & ~np.isnan(values) & mask
        return np.bincount(self.codes[take], weights=values[take], minlength=self.size)[:, None]

    def per_unit(self, array: np.ndarray, piece_units: np.ndarray, n_units: int) -> np.ndarray:
        """(pieces x segments, k) -> (units x segments, k)."""
        shaped = array.reshape(self.n_pieces, self.n_segments, -1)
        out = np.zeros((n_units, self.n_segments, shaped.shape[2]))
        np.add.at(out, piece_units, shaped)
        return out.reshape(n_units * self.n_segments, -1)


def _accumulate(prepared: _Prepared, behaviour: Behaviour, sums: _Sums) -> dict[str, np.ndarray]:
    """Every sum the statistics are read from, per (piece, segment)."""
    acc: dict[str, np.ndarray] = {"rows": sums.histogram(np.zeros(len(prepared.frame), dtype=np.int64), 1)}
    for name, bins in prepared.bins.items():
        acc[f"hist:{name}"] = sums.histogram(bins, len(_bin_edges(behaviour, name)) + 1)
        acc[f"sum:{name}"] = sums.total(np.where(bins >= 0, prepared.numbers[name], np.nan))
    for name, codes in prepared.category_codes.items():
        acc[f"cat:{name}"] = sums.histogram(codes, len(behaviour.categories[name]) + 1)
    if prepared.label is not None:
        known = ~np.isnan(prepared.label)
        acc["label"] = sums.histogram(np.where(known, prepared.label, -1).astype(np.int64), 2)
        if prepared.scores is not None:
            n_bins = len(behaviour.score_edges) - 1
            acc["scores:1"] = sums.histogram(prepared.scores, n_bins, known & (prepared.label == 1))
            acc["scores:0"] = sums.histogram(prepared.scores, n_bins, known & (prepared.label == 0))
    if prepared.residuals is not None:
        for name in prepared.residuals.columns:
            values = np.full(len(prepared.frame), np.nan)
            values[prepared.modelled] = prepared.residuals[name].to_numpy(dtype=float)
            present = np.where(np.isnan(values), -1, 0)
            acc[f"res:{name}"] = np.column_stack([sums.total(values)[:, 0], sums.histogram(present, 1)[:, 0]])
    if prepared.hours is not None:
        acc["hours"] = sums.histogram(prepared.hours, 24)
    return acc


def _derive(acc: Mapping[str, np.ndarray], behaviour: Behaviour, names: list[str],
            n_units: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """statistic -> (value, rows) per (unit, segment), from the sums of `_accumulate` added up per unit."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows = acc["rows"][:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        for name in behaviour.numeric:
            if f"hist:{name}" not in acc:
                continue
            histogram, edges = acc[f"hist:{name}"], _bin_edges(behaviour, name)
            count = histogram.sum(axis=1)
            out[f"{name}.mean"] = (acc[f"sum:{name}"][:, 0] / count, count)
            out[f"{name}.missing"] = (1 - count / rows, rows)
            out[f"{name}.outside"] = ((histogram[:, 0] + histogram[:, -1]) / count, count)
            inner = histogram[:, 1:-1].copy()  # values outside the band sit at its ends for the percentiles
            inner[:, 0] += histogram[:, 0]
            inner[:, -1] += histogram[:, -1]
            for q in QUANTILES:
                out[f"{name}.q{round(q * 100)}"] = (_quantile_from_histogram(inner, edges, q), count)
        for name, kept in behaviour.categories.items():
            if f"cat:{name}" not in acc:
                continue
            histogram = acc[f"cat:{name}"]
            known = histogram.sum(axis=1)
            for index, value in enumerate([*kept, OTHER]):
                out[f"{name}[{value}].share"] = (histogram[:, index] / known, known)
            out[f"{name}.missing"] = (1 - known / rows, rows)
        if "label" in acc and behaviour.label is not None:
            target = behaviour.label.target
            labelled = acc["label"].sum(axis=1)
            out[f"{target}.rate"] = (acc["label"][:, 1] / labelled, labelled)
            if "scores:1" in acc:
                positive, negative = acc["scores:1"], acc["scores:0"]
                enough = (positive.sum(axis=1) >= MIN_CLASS_ROWS) & (negative.sum(axis=1) >= MIN_CLASS_ROWS)
                modelled = positive.sum(axis=1) + negative.sum(axis=1)
                out[f"{target}.auc"] = (np.where(enough, _auc_from_histograms(positive, negative), np.nan), modelled)
        for key, array in acc.items():
            if key.startswith("res:"):
                out[f"{key[4:]}.residual"] = (array[:, 0] / array[:, 1], array[:, 1])
        if "hours" in acc:
            histogram = acc["hours"]
            fallback = behaviour.hour_profiles.get(ALL, [1 / 24] * 24)
            reference = np.asarray([behaviour.hour_profiles.get(names[index % len(names)], fallback)
                                    for index in range(len(histogram))])
            out[f"{behaviour.time_column}.hours"] = (_js_distance(histogram, reference), histogram.sum(axis=1))
    return out


Units = dict[str, tuple[np.ndarray, list[str]]]


def _pieces(stamps: pd.Series, grains: Sequence[str]) -> tuple[np.ndarray, int, Units]:
    """Each row's piece of time (the intersection of its units of every grain), and per grain the unit of each
    piece with the units' labels."""
    coded = {grain: unit_codes(stamps, grain) for grain in grains}
    combined = np.zeros(len(stamps), dtype=np.int64)
    missing = np.zeros(len(stamps), dtype=bool)
    for codes, labels in coded.values():
        missing |= codes < 0
        combined = combined * (len(labels) + 1) + codes + 1
    pieces = np.full(len(stamps), -1, dtype=np.int64)
    codes_present, uniques = pd.factorize(combined[~missing], sort=True)
    pieces[~missing] = codes_present
    n_pieces = len(uniques)
    per_grain = {}
    for grain, (codes, labels) in coded.items():
        unit_of_piece = np.zeros(n_pieces, dtype=np.int64)
        unit_of_piece[pieces[~missing]] = codes[~missing]
        per_grain[grain] = (unit_of_piece, labels)
    return pieces, n_pieces, per_grain


def statistics(frame: pd.DataFrame, behaviour: Behaviour) -> pd.DataFrame:
    """Every statistic of every (grain, unit, segment) of `frame`, long: grain, unit, segment, statistic, value,
    rows (the rows it was computed on). A segment's contrasted statistics are already its contrast with the same
    unit's median segment (of the same column). Units or segments with fewer than `MIN_ROWS` rows are left out."""
    prepared = _prepare(frame, behaviour)
    pieces, n_pieces, per_grain = _pieces(frame[behaviour.time_column], behaviour.grains)
    segmentations: list[tuple[str | None, list[str]]] = [(None, [ALL])] + [
        (column, [f"{column}={value}" for value in behaviour.segments[column]] + [f"{column}={OTHER}"])
        for column in prepared.segment_codes]
    accumulated = []
    for column, names in segmentations:
        sums = _Sums(pieces, n_pieces, None if column is None else prepared.segment_codes[column], len(names))
        accumulated.append((names, sums, _accumulate(prepared, behaviour, sums)))
    days, _ = unit_codes(frame[behaviour.time_column], "day")
    parts = []
    for grain in behaviour.grains:
        unit_of_piece, labels = per_grain[grain]
        covered = _covered(frame[behaviour.time_column], grain, days, labels)
        level = pd.Series(dtype=float)
        for names, sums, acc in accumulated:
            if names != [ALL] and grain != behaviour.period:
                continue  # segments are judged per period; weeks of all rows say where inside a month
            per_unit = {key: sums.per_unit(array, unit_of_piece, len(labels)) for key, array in acc.items()}
            table = _table(_derive(per_unit, behaviour, names, len(labels)), per_unit["rows"][:, 0], labels, names,
                           grain, covered)
            if names == [ALL]:
                level = table.set_index(["unit", "statistic"])["value"]
            else:
                # A segment is compared with the median segment of its period, not with all rows: a fault in one
                # carrier moves the all-rows value, and so every other carrier's contrast with it; not the median.
                # With fewer than three segments judged in the period (a partial one), with all rows.
                kinds = _kinds(table["statistic"])
                keep = ~table["statistic"].isin(_degenerate(behaviour, names[0].split("=", 1)[0])) & \
                    ~kinds.isin(TAILS)
                table, kinds = table[keep].copy(), kinds[keep]
                contrasted = kinds.isin(CONTRASTED).to_numpy()
                grouped = table.groupby(["unit", "statistic"], sort=False)["value"]
                median, count = grouped.transform("median"), grouped.transform("size")
                whole = level.reindex(pd.MultiIndex.from_arrays([table["unit"], table["statistic"]])).to_numpy()
                base = np.where(contrasted, np.where(count.to_numpy() >= 3, median.to_numpy(), whole), 0.0)
                table["base"] = base  # what the contrast was taken from: the finding says the absolute values
                table["value"] = table["value"].to_numpy() - base
            parts.append(table)
    result = pd.concat(parts, ignore_index=True)
    result["base"] = result["base"].fillna(0.0) if "base" in result else 0.0
    return result[result["value"].notna()].reset_index(drop=True)


def _kind(statistic: str) -> str:
    return statistic.rsplit(".", 1)[-1]


def statistic_column(statistic: str, behaviour: Behaviour) -> str:
    """The column a statistic is of: `{column}.{kind}` or `{column}[{value}].share`, resolved against the learned
    column names (a name may itself hold "[", "." or spaces: "lat [deg]", "fare.usd"), never by splitting at "["."""
    base = statistic.rsplit(".", 1)[0]
    if base in behaviour.spreads or base in behaviour.numeric or base in behaviour.categories:
        return base
    if base.endswith("]"):
        owners = [name for name in behaviour.categories if base.startswith(f"{name}[")]
        if owners:
            return max(owners, key=len)
    return base


def _columns_of(statistics: pd.Series, behaviour: Behaviour) -> pd.Series:
    """`statistic_column` of each statistic name, computed once per distinct name."""
    return _per_name(statistics, lambda name: statistic_column(name, behaviour))


def _per_name(statistics: pd.Series, function: Any) -> pd.Series:
    """`function` of each statistic name, computed once per distinct name (a judged table repeats each name per
    period and segment)."""
    names = pd.unique(statistics)
    return statistics.map({name: function(name) for name in names})


def _degenerate(behaviour: Behaviour, segment: str) -> set[str]:
    """The statistics a segment says nothing about: the shares of its own column, and of the columns it determines
    (a shop's region), which are 0 or 1 in every segment by construction."""
    fixed = {segment} | {column for dependency in behaviour.dependencies if dependency.key == [segment]
                         for column in dependency.columns}
    return {f"{column}[{value}].share" for column in fixed for value in [*behaviour.categories.get(column, []), OTHER]}


def _kinds(statistics: pd.Series) -> pd.Series:
    """`_kind` of each statistic name, computed once per distinct name."""
    return _per_name(statistics, _kind)


def _covered(stamps: pd.Series, grain: str, days: np.ndarray, labels: list[str]) -> np.ndarray:
    """Per unit of `grain`, whether its rows cover at least half of its days: a period cut short by the window's
    edge (two days of a week) has its own statistics, neither learned from nor judged; the row-level checks and the
    suite's per-period checks still see it."""
    units, _ = unit_codes(stamps, grain)
    present = (units >= 0) & (days >= 0)
    pairs = pd.DataFrame({"unit": units[present], "day": days[present]}).drop_duplicates()
    counted = pairs.groupby("unit").size().reindex(range(len(labels)), fill_value=0).to_numpy()
    nominal = np.asarray([pd.Period(label, "M").days_in_month if grain == "month" else 7 if grain == "week" else 1
                          for label in labels])
    return counted * 2 >= nominal


def _table(out: Mapping[str, tuple[np.ndarray, np.ndarray]], rows: np.ndarray, labels: list[str], names: list[str],
           grain: str, covered: np.ndarray) -> pd.DataFrame:
    size = len(labels) * len(names)
    statistic_names = list(out)
    if not statistic_names:
        return pd.DataFrame(columns=["grain", "unit", "segment", "statistic", "value", "rows"])
    values = np.concatenate([out[name][0] for name in statistic_names])
    counts = np.concatenate([out[name][1] for name in statistic_names])
    which = np.repeat(np.arange(len(statistic_names)), size)
    position = np.tile(np.arange(size), len(statistic_names))
    keep = (rows[position] >= MIN_ROWS) & (counts >= MIN_ROWS) & ~np.isnan(values) & \
        covered[position // len(names)]
    position = position[keep]
    return pd.DataFrame({
        "grain": grain, "unit": np.asarray(labels, dtype=object)[position // len(names)],
        "segment": np.asarray(names, dtype=object)[position % len(names)],
        "statistic": np.asarray(statistic_names, dtype=object)[which[keep]],
        "value": values[keep], "rows": counts[keep].astype(np.int64)})


# --- drafting -----------------------------------------------------------------------------------------------------

def draft_behaviour(frame: pd.DataFrame, *, time_column: str, period: str, label: LabelSpec | None,
                    key_columns: Sequence[str] = (), segments: Sequence[str] = (), max_segments: int = 10,
                    margin: float, floors: Floors, relation_r2: float, seed: int = 0,
                    suite: str | None = None) -> Behaviour:
    """Learn the reference's behaviour (see the module docstring): what `judge` holds a new table to."""
    if frame.empty:
        raise ValueError("cannot draft learned behaviour from an empty table")
    if time_column not in frame.columns or not pd.api.types.is_datetime64_any_dtype(frame[time_column]):
        raise ValueError(f"the time column {time_column!r} (source.time_column) is not a datetime column of the table")
    target = label.target if label is not None and label.target in frame.columns else None
    parts = draft_time_parts(frame, time_column, exclude=[*key_columns, *([target] if target else [])])
    time_part_columns = {part.column for part in parts}
    skip = {time_column, *key_columns, *time_part_columns}
    numeric = [str(name) for name in frame.columns if name not in skip and _is_number(frame[name])
               and frame[name].notna().any()]
    categories = {}
    for name in frame.columns:
        if name in skip or name == target or _is_number(frame[name]):
            continue
        counts = _texts(frame[name]).value_counts()
        if 1 < len(counts) <= MAX_CATEGORIES:
            categories[str(name)] = [str(value) for value in counts.index[:TOP_CATEGORIES]]
    missing_segments = [name for name in segments if name not in frame.columns]
    if missing_segments:
        raise ValueError(f"validate.segments {missing_segments} are not columns of the table")
    # A part of the time (a month column) is no segment of a period: every period holds one value of it.
    segment_values = {str(name): [str(value) for value in _texts(frame[name]).value_counts().index[:max_segments]]
                      for name in segments if name not in time_part_columns and name != time_column}
    sample = frame.sample(SAMPLE_ROWS, random_state=seed) if len(frame) > SAMPLE_ROWS else frame
    relations = fit_consistency(sample, ColumnSet(numeric=[n for n in numeric if n != target], raw_columns=[]),
                                relation_r2, max_predictors=4, missing=False, time=sample[time_column])
    label_model, score_edges = None, []
    if target is not None:
        label_model = fit_label_model(sample, pd.Series(make_label(sample, label), index=sample.index),
                                      [n for n in numeric if n != target], segment_values, relations)
        if label_model is not None:
            raw = label_scores(frame, label_model, relations)
            score_edges = _edges(raw, SCORE_BINS)
    zone = profile_zone(parts) if parts else "UTC"
    observed, spreads = {}, {}
    for name in numeric:
        values = pd.to_numeric(frame[name], errors="coerce").dropna()
        low, high = range_band(values, margin)
        observed[name] = [_short(values.min()), _short(values.max()), _short(low), _short(high)]
        spreads[name] = _short(values.std()) if len(values) > 1 else 0.0
    behaviour = Behaviour(
        suite=suite, drafted_from={"rows": len(frame), "first": str(frame[time_column].min()),
                      "last": str(frame[time_column].max())},
        time_column=time_column, period=period, grains=grains_for(period), margin=margin, floors=floors,
        label=label if target is not None else None, key_columns=list(key_columns), numeric=numeric,
        categories=categories, segments=segment_values, observed=observed, spreads=spreads,
        edges={name: _edges(_numbers(frame[name]), HISTOGRAM_BINS, past_ties=True) for name in numeric},
        relations=relations, label_model=label_model, score_edges=score_edges,
        dependencies=draft_dependencies(frame, time_column=time_column,
                                        exclude=[*key_columns, *time_part_columns]),
        time_parts=parts, hour_zone=zone)
    hours = local_hours(frame[time_column], zone)
    if len(np.unique(hours[hours >= 0])) > 1:  # a table of dates has no hour-of-day profile
        behaviour.hour_profiles = _hour_profiles(frame, hours, segment_values)
    else:
        behaviour.hour_zone = None
    learned = statistics(frame, behaviour)
    periods, labels = unit_codes(frame[time_column], period)
    total = np.bincount(periods[periods >= 0], minlength=len(labels)).astype(float)
    for rule in _row_rules(frame, behaviour):
        shares = np.bincount(periods[rule.broken & (periods >= 0)], minlength=len(labels)) / np.maximum(total, 1)
        behaviour.row_limits[rule.rule] = _short(float(shares.max(initial=0.0)))
    behaviour.bands = _bands(learned, behaviour)
    behaviour.drafted_from["periods"] = {grain: int(learned.loc[learned["grain"] == grain, "unit"].nunique())
                                         for grain in behaviour.grains}
    behaviour.notes = (f"Drafted by pipelines.data.behaviour.draft_behaviour from {len(frame):,} rows. Each band: the "
                       f"lowest and highest value over the reference {period}s, and how far beyond them a new one may "
                       f"lie ({margin:g} x their spread, never less than the floors). Review before committing.")
    return behaviour


def _is_number(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _texts(series: pd.Series) -> pd.Series:
    from pipelines.features import category_texts

    return category_texts(series).dropna()


def _short(value: float) -> float:
    return float(f"{float(value):.8g}")


def _short_outward(value: float, side: int) -> float:
    """`_short`, rounded away from the band's inside (`side` -1: down, +1: up): a reference period's own value is
    never outside its band by the rounding of the file (a zero-width band on a constant statistic)."""
    short = _short(value)
    if (short - value) * side >= 0 or value == 0:
        return short
    step = 10.0 ** (math.floor(math.log10(abs(value))) - 7)  # the 8th significant digit
    return _short(short + side * step)


def _edges(values: np.ndarray, bins: int, past_ties: bool = False) -> list[float]:
    """Histogram edges: the values' `bins`-quantiles (ties merged) and, with `past_ties`, as many quantiles of the
    values other than the commonest one. Why: a zero-inflated, long-tailed column (hourly precipitation: 0 on 90% of
    rows, up to 1.2 in) has its quantile edges merged at 0, one bin over its whole tail, and a percentile read from
    that bin by interpolation is off by a quarter of the range (a rainy half-June's 90th percentile read as 0.27 in,
    not 0.07). The second set puts edges through the tail; for a continuous column it only doubles the resolution,
    and an integer column keeps integer edges."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    edges = np.quantile(finite, np.linspace(0, 1, bins + 1))
    if past_ties:
        distinct, counts = np.unique(finite, return_counts=True)
        rest = finite[finite != distinct[np.argmax(counts)]]
        if rest.size:
            edges = np.concatenate([edges, np.quantile(rest, np.linspace(0, 1, bins + 1))])
    edges = np.unique(np.asarray([_short(edge) for edge in edges]))
    return [float(edge) for edge in edges] if edges.size >= 2 else [float(edges[0]), float(edges[0]) + 1.0]


def _hour_profiles(frame: pd.DataFrame, hours: np.ndarray, segments: Mapping[str, list[str]]) -> dict[str, list[float]]:
    def shares(mask: np.ndarray) -> list[float]:
        counts = np.bincount(hours[mask & (hours >= 0)], minlength=24).astype(float)
        total = counts.sum()
        return [round(float(value), 6) for value in (counts / total if total else counts)]

    profiles = {ALL: shares(np.ones(len(frame), dtype=bool))}
    for column, values in segments.items():
        codes = _category_codes(frame[column], values)
        codes = np.where(codes < 0, len(values), codes)
        for index, value in enumerate([*values, OTHER]):
            profiles[f"{column}={value}"] = shares(codes == index)
    return profiles


def _bands(learned: pd.DataFrame, behaviour: Behaviour) -> list[list[Any]]:
    spreads = behaviour.spreads
    rows = []
    for (grain, segment, statistic), group in learned.groupby(["grain", "segment", "statistic"], sort=True):
        values = group["value"].to_numpy(dtype=float)
        kind = _kind(statistic)
        column = statistic_column(statistic, behaviour)
        width = _width(kind, values, behaviour, spreads.get(column, float("nan")), segment != ALL)
        low = None if kind in ONE_SIDED_HIGH else _short_outward(values.min(), -1)
        high = None if kind in ONE_SIDED_LOW else _short_outward(values.max(), +1)
        rows.append([grain, segment, statistic, low, high, _short(width), int(np.median(group["rows"]))])
    return rows


def _width(kind: str, values: np.ndarray, behaviour: Behaviour, column_sd: float, contrast: bool) -> float:
    margin, floors = behaviour.margin, behaviour.floors
    if kind in ("mean", "q10", "q50", "q90"):
        sd = 0.0 if math.isnan(column_sd) else column_sd
        if not contrast:
            return margin * sd  # the monitor's unit-change rule: beyond every reference period by margin column sds
        return spread_width(values, margin, CONTRAST_FLOOR * sd)
    floor = {"missing": floors.missing, "share": floors.share, "rate": floors.share, "auc": floors.auc,
             "outside": floors.outside, "hours": floors.hours, "residual": margin * MIN_RESIDUAL}.get(kind, 0.0)
    if kind == "outside":
        return floor
    return spread_width(values, margin, floor)


# --- judging ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """One failed learned-behaviour check at its finest grain: what `pipelines.data.validate` reports."""

    check: str            # calibrated_statistic | column_relation | label_relation | hour_profile | observed_range |
                          # functional_dependency | time_consistency
    column: str | None
    unit: str
    grain: str
    segment: str | None
    expected: str
    observed: str
    rows: int
    examples: list[str]


CHECKS = {"residual": "column_relation", "auc": "label_relation", "hours": "hour_profile", "outside": "observed_range"}


def judge(frame: pd.DataFrame, behaviour: Behaviour) -> tuple[pd.DataFrame, list[Finding]]:
    """The table's statistics against the drafted bands, and the row-level checks: (every judged statistic as a
    table, with its band and `excess`: how far beyond it, in widths, 0 within; the failures at their finest grain)."""
    measured = statistics(frame, behaviour)
    bands = behaviour.band_table()
    judged = measured.merge(bands, on=["grain", "segment", "statistic"], how="inner")
    scale = np.sqrt(np.maximum(1.0, judged["ref_rows"].to_numpy(dtype=float) /
                               np.maximum(judged["rows"].to_numpy(dtype=float), 1.0)))
    judged["allowed"] = np.maximum(judged["width"].to_numpy(dtype=float) * scale,
                                   NOISE_SIGMAS * _standard_error(judged, behaviour)) * \
        np.where(judged["segment"].to_numpy() == ALL, 1.0, SEGMENT_TOLERANCE)
    judged["excess"] = _excess(judged["value"].to_numpy(dtype=float),
                               pd.to_numeric(judged["low"], errors="coerce").to_numpy(dtype=float),
                               pd.to_numeric(judged["high"], errors="coerce").to_numpy(dtype=float),
                               judged["allowed"].to_numpy(dtype=float))
    judged["check"] = _kinds(judged["statistic"]).map(lambda kind: CHECKS.get(kind, "calibrated_statistic"))
    findings = _statistic_findings(judged[judged["excess"] > 0], judged, measured, behaviour)
    rows, row_findings = _row_checks(frame, behaviour)
    judged = pd.concat([judged, rows], ignore_index=True) if len(rows) else judged
    return judged, [*findings, *row_findings]


def _standard_error(judged: pd.DataFrame, behaviour: Behaviour) -> np.ndarray:
    """Each judged statistic's sampling noise at the rows it was computed on: a share's binomial error, a mean's
    sd / sqrt(rows) (percentiles 1.5x that), a mean residual's 1 / sqrt(rows) (in residual sds), a ROC AUC's about
    1.5 / sqrt(rows). A small segment or a short period is never held tighter than its own noise."""
    rows = np.maximum(judged["rows"].to_numpy(dtype=float), 1.0)
    kinds = _kinds(judged["statistic"]).to_numpy()
    columns = _columns_of(judged["statistic"], behaviour)
    spread = columns.map(behaviour.spreads).astype(float).fillna(0.0).to_numpy()
    share = np.clip(judged["value"].to_numpy(dtype=float) + judged["base"].to_numpy(dtype=float), 0.01, 0.99)
    binomial = np.sqrt(share * (1 - share) / rows)
    error = np.select(
        [np.isin(kinds, ["rate", "share", "missing", "outside"]), kinds == "mean",
         np.isin(kinds, ["q10", "q50", "q90"]), kinds == "residual", kinds == "auc"],
        [binomial, spread / np.sqrt(rows), 1.5 * spread / np.sqrt(rows), 1 / np.sqrt(rows), 1.5 / np.sqrt(rows)], 0.0)
    return error


def _excess(value: np.ndarray, low: np.ndarray, high: np.ndarray, width: np.ndarray) -> np.ndarray:
    """How far each value lies beyond [low - width, high + width], in widths (0 within; NaN sides are open): the
    vectorised form of `pipelines.monitor.calibration.beyond_band`, which `test_behaviour` holds it to."""
    with np.errstate(invalid="ignore", divide="ignore"):
        below = np.where(np.isnan(low), 0.0, np.maximum(low - width - value, 0.0))
        above = np.where(np.isnan(high), 0.0, np.maximum(value - high - width, 0.0))
        distance = np.maximum(below, above)
        return np.where(distance > 0, np.where(width > 0, distance / np.where(width > 0, width, 1), np.inf), 0.0)


def _statistic_findings(failed: pd.DataFrame, judged: pd.DataFrame, measured: pd.DataFrame,
                        behaviour: Behaviour) -> list[Finding]:
    """Failed statistics at their finest grain: weeks rather than their month unless every week of it failed; the
    segments a fault dominates rather than all rows (`_finest_segments`); the worst first."""
    if failed.empty:
        return []
    kept = _finest_units(_finest_segments(_with_columns(failed, behaviour), judged), judged, behaviour)
    kept = kept.assign(order=kept.groupby(["grain", "unit", "segment", "column"])["excess"].transform("max"))
    kept = kept.sort_values(["order", "unit"], ascending=[False, True], kind="stable")
    findings = []
    for (grain, unit, segment, check, column), group in kept.groupby(
            ["grain", "unit", "segment", "check", "column"], sort=False):
        expected, observed = [], []
        for row in group.itertuples():
            base = float(row.base)
            name = _statistic_words(row.statistic, column, behaviour)
            low = None if row.low is None or pd.isna(row.low) else row.low - row.allowed + base
            high = None if row.high is None or pd.isna(row.high) else row.high + row.allowed + base
            expected.append(f"{name} {_range_words(low, high)}")
            observed.append(f"{name} {_number(row.value + base)}")
        findings.append(Finding(check=check, column=column, unit=unit, grain=grain,
                                segment=None if segment == ALL else segment, expected="; ".join(expected),
                                observed="; ".join(observed) + f" on {int(group['rows'].max()):,} rows",
                                rows=int(group["rows"].max()), examples=[]))
    return findings


def _with_columns(failed: pd.DataFrame, behaviour: Behaviour) -> pd.DataFrame:
    return failed.assign(column=_columns_of(failed["statistic"], behaviour))


def _finest_units(failed: pd.DataFrame, judged: pd.DataFrame, behaviour: Behaviour) -> pd.DataFrame:
    """Per statistic and month: when only some of its weeks fail, the fault sits in them (the weeks say it, and the
    month's rows go, of all rows and segments alike); when every week fails, the month says it (its segments, where
    the fault is confined to some)."""
    if len(behaviour.grains) < 2:
        return failed
    coarse, fine = behaviour.grains
    weeks_judged = judged[(judged["grain"] == fine) & (judged["segment"] == ALL)]
    drop: list[Any] = []
    for statistic, group in failed.groupby("statistic", sort=False):
        months = group[group["grain"] == coarse]
        weeks = group[(group["grain"] == fine) & (group["segment"] == ALL)]
        possible_weeks = weeks_judged.loc[weeks_judged["statistic"] == statistic, "unit"]
        for month in months["unit"].unique():
            inside = [unit for unit in weeks["unit"] if _week_in_month(unit, month)]
            # The month's own weeks (a week across its first or last day may hold only part of the fault).
            whole = [unit for unit in possible_weeks if _week_in_month(unit, month, whole=True)]
            if inside and set(whole) - set(inside):
                drop.extend(months.index[months["unit"] == month])  # confined to some weeks: they say which
            elif inside:
                drop.extend(weeks.index[weeks["unit"].isin(inside)])  # every week: the month says it
    return failed.drop(index=sorted(set(drop)))


def _week_in_month(week: str, month: str, whole: bool = False) -> bool:
    start, end = week.split("..")
    return (start[:7] == month and end[:7] == month) if whole else (start[:7] == month or end[:7] == month)


def _finest_segments(failed: pd.DataFrame, judged: pd.DataFrame) -> pd.DataFrame:
    """Per period and column, where the fault sits. When all rows fail and no segment column confines it (names it
    with fewer than half of its segments), it is everywhere: all rows say it. Otherwise the segments say it, of the
    segment column that names it with the fewest segments (one airport's unit change also shows in the carriers
    flying from it, spread over several), each within `DOMINANCE` of that column's worst excess."""
    keep: list[Any] = []
    counts = judged[judged["segment"] != ALL].assign(
        by=judged["segment"].str.split("=", n=1).str[0]).groupby(["grain", "unit", "statistic", "by"]).size()
    for (grain, unit, _), group in failed.groupby(["grain", "unit", "column"], sort=False):
        segments = group[group["segment"] != ALL].assign(by=lambda rows: rows["segment"].str.split("=", n=1).str[0])
        # Confined: some segment column names it with fewer than half of its segments.
        confined = any(len(members["segment"].unique()) * 2 < counts.get((grain, unit, statistic, by), 1)
                       for (statistic, by), members in segments.groupby(["statistic", "by"]))
        everywhere = (group["segment"] == ALL).any() and not confined
        if everywhere or segments.empty:
            keep.extend(group.index[group["segment"] == ALL])
            continue
        choices = []
        for by, members in segments.groupby("by"):
            worst = members.groupby("segment")["excess"].max()
            chosen = worst.index[worst * DOMINANCE >= worst.max()]
            choices.append((len(chosen), -float(worst.max()), by, list(chosen)))
        chosen = min(choices)[3]
        keep.extend(group.index[group["segment"].isin(chosen)])
    return failed.loc[keep]


def _statistic_words(statistic: str, column: str, behaviour: Behaviour) -> str:
    kind = _kind(statistic)
    if kind == "residual" and behaviour.relations is not None and column in behaviour.relations.values:
        predictors = ", ".join(behaviour.relations.values[column].predictors)
        return f"mean residual (sds) of the relation {column} ~ {predictors}"
    if kind == "share":
        return f"share of {statistic.rsplit('.', 1)[0].split('[', 1)[1].rstrip(']')!r}"
    return {"mean": "mean", "q10": "10th percentile", "q50": "median", "q90": "90th percentile",
            "missing": "missing share", "rate": "label rate", "auc": "label model ROC AUC",
            "residual": "mean residual (sds) from its relation", "outside": "share outside the observed range",
            "hours": "hour-of-day profile distance"}.get(kind, kind)


def _range_words(low: float | None, high: float | None) -> str:
    if low is None:
        return f"<= {_number(high)}"
    if high is None:
        return f">= {_number(low)}"
    return f"{_number(low)}..{_number(high)}"


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


# --- row-level checks ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _RowRule:
    check: str
    column: str
    rule: str
    broken: np.ndarray
    examples: dict[str, str]


def _row_rules(frame: pd.DataFrame, behaviour: Behaviour) -> list[_RowRule]:
    rules = []
    for dependency in behaviour.dependencies:
        broken, columns, examples = dependency_violations(frame, dependency)
        rules.append(_RowRule("functional_dependency", ", ".join(columns or dependency.columns),
                              dependency.describe(), broken, examples))
    for part in behaviour.time_parts:
        broken = time_part_violations(frame, behaviour.time_column, part)
        rules.append(_RowRule("time_consistency", part.column, _part_rule(part, behaviour.time_column), broken,
                              _time_examples(frame, behaviour.time_column, part, broken)))
    return rules


def _row_checks(frame: pd.DataFrame, behaviour: Behaviour) -> tuple[pd.DataFrame, list[Finding]]:
    """Functional dependencies and timestamp parts, row by row; judged per period (`behaviour.period`): a period
    fails when the share of its rows breaking a rule passes twice the largest share of a reference period
    (`row_limits`), and never less than the floor."""
    periods, labels = unit_codes(frame[behaviour.time_column], behaviour.period)
    total = np.bincount(periods[periods >= 0], minlength=len(labels)).astype(float)
    tables, findings = [], []
    for rule in _row_rules(frame, behaviour):
        counts = np.bincount(periods[rule.broken & (periods >= 0)], minlength=len(labels)).astype(float)
        reference = behaviour.row_limits.get(rule.rule, 0.0)
        limit = max(2 * reference, behaviour.floors.violations)
        share = np.where(total > 0, counts / np.maximum(total, 1), 0.0)
        tables.append(pd.DataFrame({"grain": behaviour.period, "unit": labels, "segment": ALL,
                                    "statistic": f"{rule.rule} (share of rows breaking it)", "value": share,
                                    "rows": total.astype(np.int64), "low": np.nan, "high": reference,
                                    "width": limit - reference, "ref_rows": 0, "allowed": limit - reference,
                                    "excess": np.where(share > limit, (share - limit) / max(limit, 1e-9), 0.0),
                                    "check": rule.check}))
        failing = share > limit
        if failing.any():
            findings.append(_row_finding(frame, behaviour, rule, failing, labels, periods, limit))
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()), findings


def _part_rule(part: TimePart, time_column: str) -> str:
    if part.part == "hhmm_hour":
        return f"the hour of {part.column} (an HHMM time) == the hour of {time_column} in {part.zone}"
    return f"{part.column} == the {part.part.replace('_', ' ')} of {time_column} in {part.zone}"


def _time_examples(frame: pd.DataFrame, time_column: str, part: TimePart, broken: np.ndarray) -> dict[str, str]:
    from pipelines.data.timeparts import part_values

    rows = frame.loc[broken].head(3)
    expected = part_values(rows[time_column], part.part, part.zone) if len(rows) else []
    what = "hour" if part.part == "hhmm_hour" else part.part.replace("_", " ")
    return {str(stamp): f"{part.column} {value!r}, the timestamp's {what} {int(want)}"
            for stamp, value, want in zip(rows[time_column], rows[part.column], expected, strict=True)}


def _row_finding(frame: pd.DataFrame, behaviour: Behaviour, rule: _RowRule, failing: np.ndarray,
                 labels: list[str], periods: np.ndarray, limit: float) -> Finding:
    """Where the broken rows of the failing periods lie: one day, one week, or the periods; one segment value if
    they all share it."""
    inside = rule.broken & np.isin(periods, np.flatnonzero(failing))
    grain, unit = behaviour.period, ", ".join(label for label, bad in zip(labels, failing, strict=True) if bad)
    for finer in ("day", "week"):
        codes, finer_labels = unit_codes(frame.loc[inside, behaviour.time_column], finer)
        counts = np.bincount(codes[codes >= 0], minlength=len(finer_labels))
        if counts.size and counts.max() >= MOSTLY * counts.sum():  # (a shifted day spills into the next)
            grain, unit = finer, finer_labels[int(counts.argmax())]
            break
    segment = None
    for name in behaviour.segments:
        if name not in frame.columns:
            continue
        held = _texts(frame.loc[inside, name]).value_counts(normalize=True)
        if len(held) and held.iloc[0] >= MOSTLY:
            share = "" if held.iloc[0] >= 0.995 else f" ({held.iloc[0]:.0%} of them)"
            segment = f"{name}={held.index[0]}{share}"
            break
    count = int(inside.sum())
    shown = [f"{key}: {text}" for key, text in list(rule.examples.items())[:3]]
    return Finding(check=rule.check, column=rule.column, unit=unit, grain=grain, segment=segment,
                   expected=f"{rule.rule} on all but {limit:.2%} of a {behaviour.period}'s rows",
                   observed=f"{count:,} rows break it", rows=count, examples=shown)

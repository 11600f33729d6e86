"""validate: check the collected table against a reviewed Great Expectations suite before anything learns.

The suite is a JSON file under `expectations/`, reviewed like code. It holds whole-table expectations and a
`per_period` section checked on each period of the window (`validate.period`: month or week), so a constant label,
a missing week or a column gone null in one period fails even when the whole table looks fine. Its expectations are
measured on every period in pandas and judged by GX as one table (`pipelines.data.fold`); a period where one fails
runs the section on its own GX batch, so the failure lines are GX's.

Three modules share the work: this one runs the suite and is the gate (`run_validation` returns results and
writes nothing; `write_reports` is the shell that writes `result.json`, `summary.json` and GX's Data Docs;
`enforce` raises `DataValidationError` naming every failed check, or only warns with `validate.fail_on_error:
false`); `pipelines.data.explain` turns GX results into lines a person can act on; `pipelines.data.draft`
drafts a suite from a reference table.

The summary records the MD5 of the validated table file (DVC's hash of it) and whether it passed:
`require_validated` is the guard every later stage calls, so nothing downstream runs on a table that did not pass.

`great_expectations` takes seconds to import, so it is imported inside the functions that need it: the CLI
and the flows import this module for free.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines import io
from pipelines.data.explain import explain_failure, parse_failures
from pipelines.data.suite import (
    PERIODS,
    FailedExpectation,
    NotValidatedError,
    SuiteError,
    ValidationSummary,
    read_suite,
)
from pipelines.io import to_jsonable

log = logging.getLogger(__name__)

# Run-time parameters a suite may reference as {"$PARAMETER": name}; their values come from params.yaml and the
# period being checked, so a threshold has one home.
DUPLICATES_PARAMETER = "min_distinct_row_share"  # 1 - validate.max_duplicate_share
PERIOD_MIN_ROWS = "period_min_rows"  # per_period.rows_per_day.min_value x the days the period covers
PERIOD_MAX_ROWS = "period_max_rows"
_SITE_NAME = "flightops_validation"
_DEFAULT_SITE = "local_site"  # the ephemeral context's own site, which builds into a fresh temp dir
# BASIC: counts, percentages and up to 20 unexpected values per check, what a reader of the report acts on. SUMMARY
# adds value counts and index lists, at twice the time of a run.
RESULT_FORMAT = "BASIC"

__all__ = ["DataValidationError", "NotValidatedError", "SuiteError", "ValidationRun", "ValidationSummary", "enforce",
           "run_validation", "split_periods", "validate_table", "write_reports"]


class DataValidationError(ValueError):
    """The table failed its suite; the message names every failed check and the HTML report."""


@dataclass(frozen=True)
class Period:
    """One period of the window: [start, end) clipped to the window, and the rows in it."""

    label: str
    start: pd.Timestamp
    end: pd.Timestamp
    frame: pd.DataFrame

    @property
    def days(self) -> float:
        return (self.end - self.start) / pd.Timedelta(days=1)

    @property
    def rows(self) -> int:
        return len(self.frame)


@dataclass
class ValidationRun:
    """The core's answer: the summary (without file paths yet) and GX's results, for the shell to write."""

    summary: ValidationSummary
    # (period label or None for the whole table, GX suite result); a period only where GX ran on its batch
    results: list[tuple[str | None, Any]]
    context: Any = None
    behaviour: Any = None  # GX's result on the table of judged learned-behaviour statistics (pipelines.data.behaviour)
    per_period: Any = None  # GX's result on the table of folded per-period metrics (pipelines.data.fold)


# --- periods ------------------------------------------------------------------------------------------------

def split_periods(frame: pd.DataFrame, time_column: str, period: str,
                  window: tuple[datetime, datetime] | None = None) -> list[Period]:
    """The window cut into calendar months or Monday-based weeks (UTC), each clipped to the window.

    Without `window`, the table's own first and last day bound it. A period of the window with no rows is
    kept (with an empty frame): a missing period is exactly what the row-count check must see.
    """
    if period not in PERIODS:
        raise ValueError(f"validate.period must be one of {list(PERIODS)}, got {period!r}")
    stamps = frame[time_column]
    if window is None:
        if stamps.dropna().empty:
            return []
        start = stamps.min().floor("D")
        end = stamps.max().floor("D") + pd.Timedelta(days=1)
    else:
        start, end = (pd.Timestamp(value) for value in window)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    naive = start.tz_localize(None)
    if period == "month":
        first = naive.to_period("M").start_time
    else:
        first = naive.normalize() - pd.Timedelta(days=naive.dayofweek)
    step = pd.DateOffset(months=1) if period == "month" else pd.Timedelta(days=7)
    rows_between = _time_index(frame, stamps)
    periods = []
    bound = first.tz_localize("UTC")
    while bound < end:
        following = bound + step
        lo, hi = max(bound, start), min(following, end)
        label = f"{bound:%Y-%m}" if period == "month" else f"{bound:%Y-%m-%d}"
        periods.append(Period(label=label, start=lo, end=hi, frame=rows_between(lo, hi)))
        bound = following
    return periods


def _time_index(frame: pd.DataFrame, stamps: pd.Series) -> Callable[[pd.Timestamp, pd.Timestamp], pd.DataFrame]:
    """The rows with lo <= time < hi, in the frame's order, found by binary search, not a pass per period.

    A time-sorted frame (what collect writes) gives row slices (views); otherwise positions sorted by time once.
    """
    from pipelines.features import time_order

    ticks, positions, _ = time_order(stamps)

    def rows(lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
        start, stop = np.searchsorted(ticks, lo.value), np.searchsorted(ticks, hi.value)
        return frame.iloc[start:stop] if positions is None else frame.take(np.sort(positions[start:stop]))
    return rows


# --- running GX ---------------------------------------------------------------------------------------------

def _import_gx() -> Any:
    # GX 1.24 ships no telemetry client; the variable is set for older or future versions that do.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # At INFO, GX logs ~170 lines while importing (its docs decorators) and more per context; keep its
    # warnings unless the caller configured the "great_expectations" logger itself.
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def _build_suite(gx: Any, name: str, items: Sequence[Mapping[str, Any]], origin: Path, where: str = "",
                 meta: Mapping[str, Any] | None = None, notes: Any = None) -> Any:
    # ExpectationSuite(expectations=[dict, ...]) logs and DROPS an expectation it cannot build: a typo would
    # silently weaken the gate. Each one is built here instead, and a bad one stops the run.
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = []
    for number, item in enumerate(items, start=1):
        try:
            config = ExpectationConfiguration(type=item["type"], kwargs=dict(item.get("kwargs") or {}),
                                              meta=item.get("meta"), notes=item.get("notes"))
            expectations.append(config.to_domain_obj())
        except Exception as error:  # GX raises pydantic, KeyError or its own errors for a bad expectation
            raise SuiteError(f"expectation #{number}{where} in {origin} ({item['type']}) is invalid: "
                             f"{' '.join(str(error).split())}") from None
    return gx.ExpectationSuite(name=name, expectations=expectations, meta=dict(meta or {}), notes=notes)


def _quiet_context(gx: Any) -> Any:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # tqdm "Calculating Metrics" bars on stderr for every run, unless switched off in the context.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _parameters(section: Mapping[str, Any] | None, days: float, max_duplicate_share: float) -> dict[str, Any]:
    values: dict[str, Any] = {DUPLICATES_PARAMETER: round(1.0 - max_duplicate_share, 9)}
    rows = (section or {}).get("rows_per_day")
    if rows:
        values[PERIOD_MIN_ROWS] = int(math.floor(float(rows["min_value"]) * days))
        values[PERIOD_MAX_ROWS] = int(math.ceil(float(rows["max_value"]) * days))
    else:  # no per-day bounds drafted: any row count
        values[PERIOD_MIN_ROWS], values[PERIOD_MAX_ROWS] = 0, None
    return values


def _gx_batch(frame: pd.DataFrame, chunk_rows: int | None) -> pd.DataFrame:
    """The rows GX checks, as a copy that holds each dtype in one 2-D block, when it is at most `chunk_rows` long.

    GX's pandas engine filters the whole batch frame (every column) for each column check, e.g. to drop nulls;
    on the frame Arrow hands over (one block per column) each filter is a take per column. A consolidated copy
    takes each dtype in one call: the flights' suite runs in about 0.7x the time. The copy is bounded like GX's own
    (`validate.chunk_rows`): a longer batch (a table that cannot be chunked) is passed as it is.
    """
    if chunk_rows is not None and len(frame) > chunk_rows:
        return frame
    return frame.copy(deep=True)


def run_validation(frame: pd.DataFrame, suite: Mapping[str, Any], *, origin: Path = Path("suite"),
                   time_column: str | None = None, period: str | None = None,
                   window: tuple[datetime, datetime] | None = None, max_duplicate_share: float = 0.0,
                   parse_errors: Mapping[str, Any] | None = None, fail_on_error: bool = True,
                   chunk_rows: int | None = None, behaviour: Any = None) -> ValidationRun:
    """Run the suite on the whole frame and its `per_period` section on each period (folded: `_run_per_period`).

    Pure in effect: nothing is written (the ephemeral GX context lives in memory) and the frame is not changed.
    With `chunk_rows`, a bigger frame's whole-table checks run on chunks of that many rows and are added up
    (`pipelines.data.chunks`: the same verdicts, GX's copies bounded by a chunk).
    `period` must match the period the section was drafted for (its row-count bounds are per day, but its
    other bounds were measured on periods of that length). `parse_errors` (from collect) are failures too.
    `behaviour` (`pipelines.data.behaviour.Behaviour`, the drafted calibration) adds the learned-behaviour checks:
    judged in pandas, their table of statistics validated by GX with one expectation per kind of check.
    """
    section = suite.get("per_period")
    if section is not None:
        drafted = section["period"]
        if period is not None and period != drafted:
            raise SuiteError(f"the suite's per_period section in {origin} was drafted per {drafted}, but "
                             f"validate.period is {period!r}: redraft it (python -m pipelines draft-suite) "
                             f"or set validate.period: {drafted}")
        period = drafted
        time_column = time_column or section.get("time_column")
    gx = _import_gx()
    context = _quiet_context(gx)
    whole = context.suites.add(_build_suite(gx, str(suite["name"]), suite["expectations"], origin,
                                            meta=suite.get("meta"), notes=suite.get("notes")))
    batch = context.data_sources.add_pandas("table").add_dataframe_asset("frame").add_batch_definition_whole_dataframe(
        "batch")
    result = _run_whole_table(gx, context, batch, whole, suite, origin, frame, time_column, chunk_rows,
                              _parameters(None, 0, max_duplicate_share))
    results: list[tuple[str | None, Any]] = [(None, result)]
    failures = [explain_failure(item, frame) for item in result.results if not item.success]
    periods: list[dict[str, Any]] = []
    folded: Any = None
    per_period_evaluated = 0

    if section is not None and section.get("expectations"):
        if time_column is None or time_column not in frame.columns or not pd.api.types.is_datetime64_any_dtype(
                frame[time_column]):
            failures.append(FailedExpectation(
                expectation="per_period_checks", column=time_column, kwargs={"period": period},
                expected=f"a datetime time column to cut the table into {period}s",
                observed="the time column is missing or not datetimes: no per-period check could run"))
        else:
            parts = split_periods(frame, time_column, period, window)
            checked, folded = _run_per_period(gx, context, batch, str(whole.name), section, period, origin, parts,
                                              [_parameters(section, part.days, max_duplicate_share)
                                               for part in parts], chunk_rows)
            for part in parts:
                outcome = checked.get(part.label)
                failed = [] if outcome is None else [explain_failure(item, part.frame, period=part.label)
                                                     for item in outcome.results if not item.success]
                if outcome is not None:
                    results.append((part.label, outcome))
                failures.extend(failed)
                periods.append({"period": part.label, "rows": part.rows, "days": round(part.days, 4),
                                "failed": len(failed)})
            # Each period's expectations count as evaluated, whether GX ran them on its batch or judged them folded.
            per_period_evaluated = len(section["expectations"]) * len(parts)
    failures.extend(parse_failures(parse_errors or {}))
    # GX returns results in no fixed order: whole-table first (table-level, then by column), then each period.
    failures.sort(key=lambda f: (f.period or "", f.column is not None, f.column or "", f.expectation))
    learned = None
    if behaviour is not None:  # after the suite's failures, in the judge's order (the worst first)
        learned = _run_behaviour(gx, context, batch, frame, behaviour, str(suite["name"]), period, origin)
        failures.extend(learned.failures)
    evaluated = len(result.results) + per_period_evaluated + len(parse_errors or {}) + (
        len(learned.results) if learned is not None else 0)
    success = not failures and all(bool(outcome.success) for _, outcome in results) and (
        learned is None or bool(learned.outcome.success)) and (folded is None or bool(folded.success))
    summary = ValidationSummary(
        success=success, suite=str(suite["name"]), rows=len(frame), evaluated=evaluated, failed=len(failures),
        failures=failures, period=period if section is not None else None, periods=periods,
        parse_errors=dict(to_jsonable(parse_errors or {})), fail_on_error=fail_on_error,
        accepted=success or not fail_on_error)
    return ValidationRun(summary=summary, results=results, context=context,
                         behaviour=None if learned is None else learned.outcome, per_period=folded)


def _run_per_period(gx: Any, context: Any, batch: Any, name: str, section: Mapping[str, Any], period: str,
                    origin: Path, parts: Sequence[Period], parameters: Sequence[Mapping[str, Any]],
                    chunk_rows: int | None) -> tuple[dict[str, Any], Any]:
    """The per_period section on `parts`: GX's results of the periods it ran on their own batch, and its result on
    the folded table (None when nothing folds).

    The expectations `pipelines.data.fold` folds are measured on every period in pandas and validated by GX as one
    table, one expectation per type: ~5 ms of GX per expectation type instead of per expectation and period. A
    period where one of them fails (or cannot be measured) runs the whole section on its batch as before, so its
    failures are GX's own results, explained as ever; the expectations not folded run per period as before.
    """
    from pipelines.data.fold import FOLDED, fold

    items = section["expectations"]
    folded = fold(items, [(part.label, part.frame) for part in parts], parameters.__getitem__)
    outcome = None
    if folded.kinds:
        outcome = _judge_table(gx, context, batch, folded.table, f"{name} per {period} (folded)",
                               {kind: f"{FOLDED[kind][0]}: how far beyond it (0: within)" for kind in folded.kinds},
                               origin, " of the folded per_period section")
    definitions: dict[str, Any] = {}

    def definition(label: str, chosen: Sequence[Mapping[str, Any]], where: str) -> Any:
        if label not in definitions:
            suite = context.suites.add(_build_suite(gx, label, chosen, origin, where, meta=section.get("meta")))
            definitions[label] = context.validation_definitions.add(
                gx.ValidationDefinition(name=label, data=batch, suite=suite))
        return definitions[label]

    checked = {}
    for part, values in zip(parts, parameters, strict=True):
        if part.label in folded.unsettled:
            run = definition(f"{name} per {period}", items, " of per_period")
        elif folded.rest:
            run = definition(f"{name} per {period} (not folded)", [items[number] for number in folded.rest],
                             " of per_period")
        else:
            continue
        checked[part.label] = run.run(batch_parameters={"dataframe": _gx_batch(part.frame, chunk_rows)},
                                      expectation_parameters=dict(values), result_format=RESULT_FORMAT)
    return checked, outcome


def _judge_table(gx: Any, context: Any, batch: Any, table: pd.DataFrame, name: str, columns: Mapping[str, str],
                 origin: Path, where: str) -> Any:
    """GX's result on a table of measured excesses: one `expect_column_values_to_be_between(max_value=0)` per
    column of `columns` (column -> its note), so the Data Docs and result.json hold the checks judged in pandas."""
    items = [{"type": "expect_column_values_to_be_between", "kwargs": {"column": column, "max_value": 0.0},
              "meta": {"notes": note}} for column, note in columns.items()]
    suite = context.suites.add(_build_suite(gx, name, items, origin, where))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    return definition.run(batch_parameters={"dataframe": table}, result_format=RESULT_FORMAT)


@dataclass
class _Learned:
    outcome: Any
    results: list[Any]
    failures: list[FailedExpectation]


def _run_behaviour(gx: Any, context: Any, batch: Any, frame: pd.DataFrame, behaviour: Any, name: str,
                   period: str | None, origin: Path) -> _Learned:
    """The learned-behaviour checks: `behaviour.judge` measures every statistic and row-level rule in pandas; GX
    validates the judged table with one expectation per kind of check (`excess` 0: within its band), so the Data
    Docs and result.json hold them beside the suite's own; the failures are the judge's, at their finest grain."""
    from pipelines.data.behaviour import judge

    if period is not None and behaviour.period != period:
        raise SuiteError(f"the learned behaviour beside {origin} (validate.calibration) was drafted per "
                         f"{behaviour.period}, but validate.period is {period!r}: redraft it (python -m pipelines "
                         f"draft-suite) or set validate.period: {behaviour.period}")
    if behaviour.suite is not None and behaviour.suite != name:
        raise SuiteError(f"the learned behaviour in validate.calibration was drafted beside the suite "
                         f"{behaviour.suite!r}, but validate.suite ({origin}) is {name!r}: set validate.calibration "
                         f"to the file draft-suite wrote beside {origin.name} "
                         f"({origin.stem + io.BEHAVIOUR_SUFFIX}), or null to run the suite's "
                         f"checks only")
    judged, findings = judge(frame, behaviour)
    table = judged[["check", "grain", "unit", "segment", "statistic", "value", "low", "high", "allowed",
                    "excess"]].astype({"low": float, "high": float})
    checks = [check for check in BEHAVIOUR_CHECKS if (table["check"] == check).any()]
    # One column of excesses per kind of check (null on the other kinds' rows, which GX counts as missing): one
    # expectation each, no row condition.
    table = table.assign(**{check: table["excess"].where(table["check"] == check) for check in checks})
    outcome = _judge_table(gx, context, batch, table, f"{name} learned behaviour",
                           {check: f"{BEHAVIOUR_CHECKS[check]}: how far beyond its band, in widths (0: within)"
                            for check in checks}, origin, " of the learned behaviour")
    failures = [FailedExpectation(
        expectation=finding.check, column=finding.column, kwargs={"grain": finding.grain},
        expected=finding.expected, observed=finding.observed, offending_values=list(finding.examples),
        unexpected_count=finding.rows, period=finding.unit, segment=finding.segment,
        notes=BEHAVIOUR_CHECKS.get(finding.check)) for finding in findings]
    return _Learned(outcome=outcome, results=list(outcome.results), failures=failures)


# The kinds of learned-behaviour check, as the Data Docs and the failure lines name them, and what each judges.
BEHAVIOUR_CHECKS = {
    "calibrated_statistic": "a period's or segment's mean, percentiles, missing share, category shares or label "
                            "rate against the reference periods' spread",
    "observed_range": "the share of values outside the column's observed range (widened by monitor.unit_margin sds)",
    "column_relation": "a column the others determine: its mean residual from the reference's relation",
    "label_relation": "the label model's ROC AUC: labels flipped at random lose it",
    "hour_profile": "the hour-of-day profile's distance from the reference's",
    "functional_dependency": "a key whose value never varies in the reference (a route's distance, a tail "
                             "number's plane)",
    "time_consistency": "the timestamp agrees with its own parts (hour, day, month columns)",
}


def _run_whole_table(gx: Any, context: Any, batch: Any, whole: Any, suite: Mapping[str, Any], origin: Path,
                     frame: pd.DataFrame, time_column: str | None, chunk_rows: int | None,
                     parameters: Mapping[str, Any]) -> Any:
    """The whole-table suite's GX result: one batch, or chunks of rows added up (stored as one result either way)."""
    from pipelines.data.chunks import chunkable, merge_suite_results, time_chunks

    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{whole.name} on the table", data=batch, suite=whole))
    timed = time_column is not None and time_column in frame.columns and pd.api.types.is_datetime64_any_dtype(
        frame[time_column])
    items = list(suite["expectations"])
    if chunk_rows is None or len(frame) <= chunk_rows or not timed or not any(
            chunkable(item, time_column) for item in items):
        return definition.run(batch_parameters={"dataframe": _gx_batch(frame, chunk_rows)},
                              expectation_parameters=dict(parameters),
                              result_format=RESULT_FORMAT)
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    added = [item for item in items if chunkable(item, time_column)]
    rest = [item for item in items if not chunkable(item, time_column)]
    store = context.validation_results_store
    before = set(store.list_keys())
    run_id = RunIdentifier(run_time=datetime.now(UTC))
    helpers = []

    def helper(name: str, chosen: list[Mapping[str, Any]]) -> Any:
        if len(chosen) == len(items):
            return definition
        helpers.append(context.suites.add(_build_suite(gx, f"{whole.name} ({name})", chosen, origin)))
        return context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{whole.name} ({name})", data=batch, suite=helpers[-1]))

    chunked = helper("added up over chunks", added)
    parts = [chunked.run(batch_parameters={"dataframe": _gx_batch(chunk, chunk_rows)},
                         expectation_parameters=dict(parameters), result_format=RESULT_FORMAT, run_id=run_id)
             for chunk in time_chunks(frame, time_column, chunk_rows)]
    extra = []
    if rest:
        extra = helper("on the whole table", rest).run(
            batch_parameters={"dataframe": frame}, expectation_parameters=dict(parameters),
            result_format=RESULT_FORMAT, run_id=run_id).results
    result = merge_suite_results(parts, whole.name, extra=extra)
    for key in set(store.list_keys()) - before:
        store.remove_key(key)
    for made in helpers:
        context.suites.delete(made.name)
    store.store_validation_results(
        suite_validation_result=result,
        suite_validation_result_identifier=ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=whole.name), run_id=run_id,
            batch_identifier=result.batch_id))
    log.info("whole-table checks on %d rows ran on %d chunks of <= %d rows (validate.chunk_rows)", len(frame),
             len(parts), chunk_rows)
    return result


def write_reports(run: ValidationRun, report_dir: Path, *, table: Path | None = None,
                  table_md5: str | None = None, collected: Mapping[str, int] | None = None) -> ValidationSummary:
    """The shell: write the GX results (`result.json`), GX's Data Docs and `summary.json` (last, atomically).

    A table that later stages may read (it passed, or validate.fail_on_error is false) gets them in `report_dir`,
    the validate stage's DVC outputs. A refused one gets them in its `failed` folder (`io.VALIDATION_FAILED_DIR`),
    and the outputs of the last validation that passed stay as they were: the workspace is as before the run
    (`dvc status` says only that validate must run again), and the guard finds the failure there by the table's hash.
    summary.json is written last, so a crash before it leaves the previous summary, whose hash no longer matches a
    new table: the guard still refuses that table.
    """
    report_dir = Path(report_dir)
    failed_dir = report_dir / io.VALIDATION_FAILED_DIR
    if not run.summary.accepted:
        report_dir = failed_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    docs_dir = (report_dir / io.DATA_DOCS_DIR).resolve()
    (whole_label, whole), *per_period = run.results
    result = {**_same_bytes(to_jsonable(whole.to_json_dict())),
              "per_period": [{"period": label, **_same_bytes(to_jsonable(outcome.to_json_dict()))}
                             for label, outcome in per_period]}
    if run.per_period is not None:
        result["per_period_folded"] = _same_bytes(to_jsonable(run.per_period.to_json_dict()))
    if run.behaviour is not None:
        result["learned_behaviour"] = _same_bytes(to_jsonable(run.behaviour.to_json_dict()))
    result_path = report_dir / io.VALIDATION_RESULT_FILE
    _write_text(result_path, json.dumps(result, indent=2, allow_nan=False) + "\n")
    if run.context is not None:
        _build_docs(run.context, docs_dir)
    summary = replace(run.summary, report=str(io.data_docs_index(report_dir)),
                      result_path=str(result_path), table=str(table) if table is not None else None,
                      table_md5=table_md5, collected=dict(collected or {}))
    _write_text(report_dir / io.VALIDATION_SUMMARY_FILE,
                json.dumps(summary.to_dict(), indent=2, allow_nan=False) + "\n")
    if summary.accepted and failed_dir.exists():
        shutil.rmtree(failed_dir)  # an older refusal, of another table
    return summary


# What makes GX's result differ between two runs on the same table and suite: ids and clocks, not verdicts.
_RUN_FACTS = ("validation_id", "run_id", "validation_time")


def _same_bytes(result: dict[str, Any]) -> dict[str, Any]:
    """A GX result without its run's ids and times: result.json is a DVC out, so the same table and suite must
    write the same bytes, or a fresh clone's `dvc pull` finds no cached copy of the committed dvc.lock's hash.
    (The Data Docs keep their times: they are a report, not a DVC out.)"""
    meta = {key: value for key, value in (result.get("meta") or {}).items() if key not in _RUN_FACTS}
    if isinstance(meta.get("batch_markers"), dict):
        meta["batch_markers"] = {key: value for key, value in meta["batch_markers"].items() if key != "ge_load_time"}
    results = [{**item, "expectation_config": {key: value for key, value in item["expectation_config"].items()
                                               if key != "id"}}
               if isinstance(item.get("expectation_config"), dict) else item for item in result.get("results") or []]
    return {**result, "meta": meta, "results": results}


def _build_docs(context: Any, docs_dir: Path) -> None:
    if _DEFAULT_SITE in context.list_data_docs_sites():
        context.delete_data_docs_site(_DEFAULT_SITE)
    if docs_dir.exists():
        shutil.rmtree(docs_dir)  # one run per site: no stale pages from earlier runs
    context.add_data_docs_site(_SITE_NAME, {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    context.build_data_docs(site_names=[_SITE_NAME])


def _write_text(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def enforce(summary: ValidationSummary, fail_on_error: bool = True) -> ValidationSummary:
    """The gate: raise `DataValidationError` with every failed check, or (fail_on_error false) only warn."""
    if summary.success:
        left_out = summary.collected.get("outside_window")
        log.info("validated %d rows against suite %r: all %d checks passed (report: %s)%s",
                 summary.rows, summary.suite, summary.evaluated, summary.report,
                 f"; {left_out:,} of the source's rows were outside the collect window" if left_out else "")
        return summary
    if fail_on_error:
        raise DataValidationError(summary.message())
    log.warning("%s\n(validate.fail_on_error is false: continuing; no model trained on this table will be "
                "registered)", summary.message())
    return summary


def validate_table(frame: pd.DataFrame, suite_path: Path, report_dir: Path, fail_on_error: bool = True, *,
                   time_column: str | None = None, period: str | None = None,
                   window: tuple[datetime, datetime] | None = None, max_duplicate_share: float = 0.0,
                   parse_errors: Mapping[str, Any] | None = None, table: Path | None = None,
                   table_md5: str | None = None, chunk_rows: int | None = None,
                   collected: Mapping[str, int] | None = None, behaviour: Any = None) -> ValidationSummary:
    """Validate `frame` against the suite at `suite_path`; write `result.json`, `summary.json` and Data Docs.

    Raises `DataValidationError` when a check fails and `fail_on_error` (the message lists each failure:
    check, period, column, what was expected, what was observed, a few offending values, and the HTML report);
    otherwise logs a warning and returns the summary. Raises `SuiteError` for a missing or malformed suite.
    """
    suite_path = Path(suite_path)
    suite = read_suite(suite_path)
    run = run_validation(frame, suite, origin=suite_path, time_column=time_column, period=period, window=window,
                         max_duplicate_share=max_duplicate_share, parse_errors=parse_errors,
                         fail_on_error=fail_on_error, chunk_rows=chunk_rows, behaviour=behaviour)
    summary = write_reports(run, Path(report_dir), table=table, table_md5=table_md5, collected=collected)
    return enforce(summary, fail_on_error)

"""The suite contract and the validation guard: what every stage after `validate` needs, without Great Expectations.

A suite is a JSON file under `expectations/`, reviewed like code. This module reads and writes it, derives what
collect and the service take from it (column kinds, hard value ranges), and holds the record validation leaves
behind (`ValidationSummary`, in `summary.json`) with the guard every later stage calls first (`require_validated`):
nothing downstream runs on a table that did not pass. It imports neither GX nor the runner (`pipelines.data.validate`),
so rewording a validation message re-runs no stage after validate (dvc.yaml's deps).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pipelines import io
from pipelines.io import to_jsonable

log = logging.getLogger(__name__)

PERIODS = ("month", "week")
# Expectations GX 1.24 cannot run through a ValidationDefinition: their result holds a NumPy bool that the
# validation-results store fails to serialise ("Object of type bool is not JSON serializable"), which
# aborts the whole run. Rejected when the suite is read, with the alternative.
_UNSUPPORTED = {
    "expect_column_quantile_values_to_be_between": (
        "GX 1.24 crashes storing its result (a NumPy bool in `success`); bound a share of values with "
        "expect_column_values_to_be_between and `mostly` instead (see label_rate_expectations)"
    ),
}
_TYPE_EXPECTATIONS = ("expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type",
                      "expect_column_type_to_be")
# Numeric columns may be ints or floats: an integer column that gains one null becomes float64 in pandas.
NUMERIC_TYPES = ["int64", "int32", "float64", "float32"]
# Offending infinities, kept as text: strict JSON has no inf (`to_jsonable` would make them null, "e.g. None").
INFINITE = ("inf", "-inf")


class SuiteError(ValueError):
    """The suite file cannot be used (missing, not JSON, or an expectation GX cannot build)."""


class NotValidatedError(RuntimeError):
    """A stage was asked to read a table that has not passed validation."""


@dataclass(frozen=True)
class ValidationSummary:
    """What a caller (the DAG, the CLI, a flow, the guard) needs to know; the full GX result is in `result.json`.

    `table_md5` is the MD5 of the validated table file, the hash DVC records for it. `accepted` says whether
    later stages may read the table: it passed, or `validate.fail_on_error` was false (then only the registry
    refuses it: a model trained on failed data is never registered). `collected` is collect's count of the
    source's rows and of those outside `collect.start .. collect.end`, left out before validation saw the table.
    """

    success: bool
    suite: str
    rows: int
    evaluated: int
    failed: int
    failures: list[FailedExpectation]
    report: str = ""
    result_path: str = ""
    table: str | None = None
    table_md5: str | None = None
    period: str | None = None
    periods: list[dict[str, Any]] = field(default_factory=list)
    parse_errors: dict[str, Any] = field(default_factory=dict)
    fail_on_error: bool = True
    accepted: bool = False
    collected: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationSummary:
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        known["failures"] = [FailedExpectation.from_dict(item) for item in data.get("failures") or []]
        return cls(**known)

    @classmethod
    def read(cls, path: Path) -> ValidationSummary:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def message(self) -> str:
        """The error text: one line per failed check, then where the HTML report is."""
        head = (f"data validation failed: {self.failed} of {self.evaluated} checks in suite "
                f"{self.suite!r} failed on {self.rows:,} rows")
        lines = [head, *(f"  - {failure.describe()}" for failure in self.failures)]
        if self.report:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)


@dataclass(frozen=True)
class FailedExpectation:
    """One failed check: a GX expectation (read from its result by type and column) or a parse failure.

    `period` is the period label (e.g. "2013-03", a week "2013-04-08..2013-04-14" or a day "2013-04-09") for a
    check of one period, else None; `segment` ("origin=LGA") for a check of one segment of the rows.
    """

    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    expected: str
    observed: str
    offending_values: list[Any] = field(default_factory=list)
    unexpected_count: int | None = None
    notes: str | None = None
    period: str | None = None
    segment: str | None = None

    def describe(self) -> str:
        where_rows = ", ".join(part for part in (self.period, self.segment) if part)
        when = f"[period {where_rows}] " if self.period else f"[{self.segment}] " if self.segment else ""
        where = f" on column {self.column!r}" if self.column else ""
        line = f"{when}{self.expectation}{where}: expected {self.expected}; {self.observed}"
        if self.offending_values:
            line += "; e.g. " + ", ".join(value if value in INFINITE else repr(value)
                                          for value in self.offending_values)
        if self.notes:
            line += f" (why: {self.notes})"
        return line

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FailedExpectation:
        return cls(**{key: data.get(key) for key in cls.__dataclass_fields__ if key in data})


# --- the suite file -----------------------------------------------------------------------------------------

def _check_expectations(items: Any, path: Path, where: str) -> None:
    if not isinstance(items, list):
        raise SuiteError(f"expectation suite {path} must be a JSON object with an 'expectations' list{where}")
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or "type" not in item:
            hint = " (GX 0.x suites used 'expectation_type': rename it to 'type')" if (
                isinstance(item, dict) and "expectation_type" in item) else ""
            raise SuiteError(f"expectation #{number}{where} in {path} has no 'type'{hint}")
        if item["type"] in _UNSUPPORTED:
            why = _UNSUPPORTED[item["type"]]
            raise SuiteError(f"expectation #{number}{where} in {path} ({item['type']}): {why}")


def read_suite(path: Path) -> dict[str, Any]:
    """The suite JSON as a dict, with an error naming the file when it is missing or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SuiteError(f"expectation suite not found: {path} (validate.suite)") from None
    except json.JSONDecodeError as error:
        raise SuiteError(f"expectation suite {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"expectation suite {path} must be a JSON object with an 'expectations' list")
    _check_expectations(data.get("expectations"), path, "")
    section = data.get("per_period")
    if section is not None:
        if not isinstance(section, dict) or section.get("period") not in PERIODS:
            raise SuiteError(f"per_period in {path} must be an object whose 'period' is one of {list(PERIODS)}")
        _check_expectations(section.get("expectations"), path, " of per_period")
        rows = section.get("rows_per_day")
        if rows is not None and not (isinstance(rows, dict) and {"min_value", "max_value"} <= set(rows)):
            raise SuiteError(f"per_period.rows_per_day in {path} must be {{'min_value': ..., 'max_value': ...}}")
    data.setdefault("name", path.stem)
    return data


@dataclass(frozen=True)
class ColumnBounds:
    """A column's whole-table value range from the suite; `None` is an open side. Strict sides exclude the bound."""

    column: str
    min_value: float | None = None
    max_value: float | None = None
    strict_min: bool = False
    strict_max: bool = False


_BETWEEN = "expect_column_values_to_be_between"


HARD, OBSERVED = "hard", "observed"  # an expectation's meta.constraint


def is_hard(item: Mapping[str, Any]) -> bool:
    """Whether a suite item is a hard constraint (meta.constraint "hard", or untagged: a hand-written suite's
    bounds are the reviewer's limits) rather than an observed range (meta.constraint "observed")."""
    return ((item.get("meta") or {}).get("constraint") or HARD) == HARD


def column_bounds(suite: Mapping[str, Any], columns: Iterable[str]) -> dict[str, ColumnBounds]:
    """Each column's hard range from the suite's `expect_column_values_to_be_between` expectations.

    The service refuses request values outside a hard range only: a physically impossible value (a negative
    distance, humidity above 100 %), never one beyond what the training data happened to hold (an observed range,
    meta.constraint "observed": served, and counted by monitoring). Only expectations every value must meet count:
    one with `mostly` below 1 (a share, e.g. a label rate) or a `row_condition` (a subset, e.g. one period) is not
    a bound on a single value. Several hard ranges for one column intersect. Found by type and column, never by
    position.
    """
    wanted = set(columns)
    found: dict[str, ColumnBounds] = {}
    for item in suite.get("expectations", []):
        kwargs = item.get("kwargs") or {}
        column = kwargs.get("column")
        if item.get("type") != _BETWEEN or column not in wanted:
            continue
        if kwargs.get("mostly", 1) < 1 or kwargs.get("row_condition") or not is_hard(item):
            continue
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        current = found.get(column, ColumnBounds(column))
        if lo is not None and (current.min_value is None or lo > current.min_value
                               or (lo == current.min_value and kwargs.get("strict_min"))):
            current = replace(current, min_value=float(lo), strict_min=bool(kwargs.get("strict_min")))
        if hi is not None and (current.max_value is None or hi < current.max_value
                               or (hi == current.max_value and kwargs.get("strict_max"))):
            current = replace(current, max_value=float(hi), strict_max=bool(kwargs.get("strict_max")))
        found[column] = current
    return found


def write_suite(suite: Mapping[str, Any], path: Path) -> Path:
    """Write a suite dict as reviewable JSON (indented, keys in the order drafted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(suite), indent=2) + "\n")
    return path


DATE_ONLY = "date_only"  # meta of the time column's type expectation: every value a date, no time of day


def suite_date_only(suite: Mapping[str, Any], column: str) -> bool:
    """Whether the suite says `column` holds dates without a time of day (drafted so from a table of midnights):
    the service then takes a date-only value (2016-07-02) for it, as the table held."""
    return any(item.get("type") in _TYPE_EXPECTATIONS and (item.get("kwargs") or {}).get("column") == column
               and (item.get("meta") or {}).get(DATE_ONLY) is True for item in suite.get("expectations") or [])


BOOLEAN_KINDS = ("bool", "boolean")  # suite_column_types' kinds of a boolean column: its dtype


def suite_column_types(suite: Mapping[str, Any]) -> dict[str, str]:
    """Each column's declared kind from the suite's type expectations: "numeric", "str", "datetime", or for a
    boolean column its dtype: "bool" (no gaps) or "boolean" (pandas' nullable booleans: a column with gaps).

    `collect` reads a user's file with these types, so a cell that does not parse is counted, not a crash.
    """
    kinds: dict[str, str] = {}
    for item in suite.get("expectations") or []:
        if item.get("type") not in _TYPE_EXPECTATIONS:
            continue
        kwargs = item.get("kwargs") or {}
        column, wanted = kwargs.get("column"), kwargs.get("type_list") or [kwargs.get("type_")]
        wanted = [str(value) for value in wanted if value]
        if column is None or not wanted:
            continue
        if all(value in NUMERIC_TYPES or value.startswith(("int", "float")) for value in wanted):
            kinds[column] = "numeric"
        elif all(value.startswith("datetime64") for value in wanted):
            kinds[column] = "datetime"
        elif wanted == ["str"]:
            kinds[column] = "str"
        elif len(wanted) == 1 and wanted[0] in BOOLEAN_KINDS:
            kinds[column] = wanted[0]
    return kinds


# --- the guard every later stage calls ----------------------------------------------------------------------


def require_validated(table: Path, validation_dir: Path, stage: str, *, strict: bool = False,
                      derived: Path | None = None, warn_only: bool = False) -> ValidationSummary:
    """Stop `stage` unless the table file at `table` is the one validation passed (same MD5, success).

    A table that failed is let through only while the params in force say `validate.fail_on_error: false`
    (`warn_only`), with a warning naming its failed checks; once they say true again it is refused, whatever it was
    accepted under. With `strict` (registering a model) it is refused either way. `derived` is the prepared folder
    whose splits the stage reads: their lineage (`SplitLineage`, written by preprocess) must name this table.
    Raises `NotValidatedError`: "table <hash> has not passed validation (<summary> says ...)". A validation that
    failed left its summary in the `failed` folder (`io.VALIDATION_FAILED_DIR`), which the message quotes.
    """
    table, summary_path = Path(table), Path(validation_dir) / io.VALIDATION_SUMMARY_FILE
    failed_path = Path(validation_dir) / io.VALIDATION_FAILED_DIR / io.VALIDATION_SUMMARY_FILE
    if not table.exists():
        raise NotValidatedError(f"{stage}: {table} not found: run the collect and validate stages first "
                                f"(dvc repro validate)")
    digest = io.file_md5(table)

    def refuse(says: str, path: Path = summary_path) -> NotValidatedError:
        return NotValidatedError(f"{stage}: table {digest} has not passed validation ({path} says {says}); "
                                 f"run the validate stage (dvc repro validate) and fix what it reports")

    def failures_of(summary: ValidationSummary) -> str:
        first = summary.failures[0].describe() if summary.failures else "no failure recorded"
        return f"success: false, {summary.failed} failed check(s), first: {first}"

    failed = _read_summary(failed_path)
    if failed is not None and failed.table_md5 == digest:
        raise refuse(failures_of(failed), failed_path)
    if not summary_path.exists():
        raise NotValidatedError(f"{stage}: table {digest} has not passed validation ({summary_path} is missing); "
                                f"run the validate stage first (dvc repro validate)")
    try:
        summary = ValidationSummary.read(summary_path)
    except (ValueError, TypeError, KeyError) as error:
        raise refuse(f"nothing readable: {error}") from None
    if summary.table_md5 != digest:
        raise refuse(f"it validated table {summary.table_md5}, not this one")
    if not summary.success:
        if strict or not warn_only:
            why = (" (it was accepted under validate.fail_on_error: false, which the params no longer say)"
                   if summary.accepted and not strict else "")
            raise refuse(failures_of(summary) + why)
        log.warning("%s: table %s failed validation and is read only because validate.fail_on_error is false; no "
                    "model trained on it will be registered. Failed checks:\n%s", stage, digest,
                    "\n".join(f"  - {failure.describe()}" for failure in summary.failures))
    if derived is not None:
        from pipelines.contracts import SplitLineage

        lineage_file = Path(derived) / io.LINEAGE_FILE
        try:
            lineage = SplitLineage.load(Path(derived))
        except (OSError, ValueError) as error:
            raise NotValidatedError(f"{stage}: {lineage_file} cannot be read ({error}): run the preprocess stage "
                                    f"on the validated table {digest} (dvc repro preprocess)") from None
        if lineage is None:
            raise NotValidatedError(f"{stage}: {lineage_file} cannot be read (it is missing): run the preprocess "
                                    f"stage on the validated table {digest} (dvc repro preprocess)")
        if lineage.raw_table_md5 != digest:
            raise NotValidatedError(f"{stage}: the prepared data was made from table {lineage.raw_table_md5}, not "
                                    f"from table {digest}, which validation passed ({lineage_file}); run the "
                                    f"preprocess stage again (dvc repro preprocess)")
    return summary


def _read_summary(path: Path) -> ValidationSummary | None:
    try:
        return ValidationSummary.read(path)
    except (OSError, ValueError, TypeError, KeyError):
        return None

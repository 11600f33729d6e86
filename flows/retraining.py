"""The `retraining` flow: the same training DAG (and the same gate, inside it) as a DVC experiment on a window that
now reaches the latest labelled traffic.

Started on drift (a Prefect Automation on the monitor's event passes the window end as `data_end`), from the UI or
the CLI. The data it would learn from goes through the validation suite first: a window that fails it is refused
with the suite's message, before any experiment starts. The DAG runs as
`dvc exp run --temp -S collect.end=<data_end>` in DVC's own copy of the repo: the workspace's tracked outputs are
never rewritten, two retrains cannot corrupt each other, and the experiment's commit holds its params, metrics and
dvc.lock (`dvc exp show` lists it beside the baseline). Its data and model go to the DVC remote and its ref to
`versioning.git_remote` (`dvc exp push`), so the model it registers can be rebuilt from its registry entry (`python
-m pipelines reproduce <tag>`, docs/versioning.md).

By hand: `python -m flows.retraining --data-end 2013-11-01` (exclusive, like `collect.end`) or `--through
2013-10-31` (that day included): the same experiment, versioned the same way. Without either, params.yaml's
`collect.end`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.reports import publish_reports
from pipelines import io
from pipelines.config import Params, load_params
from pipelines.config.pipeline import CollectParams
from pipelines.contracts import GateReport, RetrainOutcome
from pipelines.model.gate import decision_markdown
from pipelines.release import versioning


def retraining_overrides(data_end: str | None, window_days: int | None = None) -> dict[str, Any]:
    """The experiment's `-S` overrides: the window's end moves to `data_end` (params.yaml's when None); with
    `monitor.retrain_window_days` its start follows, that many days before the end (a sliding window)."""
    if not data_end:
        return {}
    overrides: dict[str, Any] = {"collect.end": data_end}
    if window_days is not None:
        import pandas as pd

        overrides["collect.start"] = (pd.Timestamp(data_end) - pd.Timedelta(days=window_days)).isoformat()
    return overrides


class RetrainRefused(RuntimeError):
    """The data a retrain would learn from fails the validation suite: nothing is trained, the suite says why."""


def retrain_window(params: Params, data_end: str | None) -> CollectParams:
    """The collect window the experiment will train on (params.yaml's, moved by `retraining_overrides`), checked as
    params.yaml's own is: an end that is not a date, or not after the start, is refused here, before anything is
    set up, instead of failing inside `dvc exp run`."""
    from pydantic import ValidationError

    try:
        moved = {key.split(".")[1]: value
                 for key, value in retraining_overrides(data_end, params.monitor.retrain_window_days).items()}
        return CollectParams.model_validate({**params.collect.model_dump(), **moved})
    except ValidationError as error:
        problems = "; ".join(str(problem["msg"]).removeprefix("Value error, ") for problem in error.errors())
        raise RetrainRefused(f"retrain on data up to {data_end} refused: {problems}") from error
    except ValueError as error:  # pandas, on an end it cannot read (a sliding window's start is computed from it)
        raise RetrainRefused(f"retrain on data up to {data_end} refused: not a date ({error})") from error


@task(name="validate-retrain-data", cache_policy=NO_CACHE, task_run_name="validate data up to {data_end}")
def validate_retrain_data(params: Params, root: Path, data_end: str | None) -> dict[str, Any]:
    """The table the experiment would train on (collect.start .. data_end), through the project's validation suite
    before any experiment starts: a retrain asked for on corrupted data is refused here with the suite's own
    message (the DAG's validate stage would stop it too, but only after an experiment was set up, and deep in a
    DVC log). Nothing is written."""
    import pandas as pd

    from pipelines.data.behaviour import read_behaviour
    from pipelines.data.collect import PARSE_ERRORS, collect
    from pipelines.data.suite import read_suite, suite_column_types
    from pipelines.data.validate import enforce, run_validation

    def rooted(path: Path) -> Path:
        return path if path.is_absolute() else root / path

    found = retrain_window(params, data_end)
    window = found.model_copy(update={"start": pd.Timestamp(found.start), "end": pd.Timestamp(found.end)})
    source = params.source.model_copy(update={"path": rooted(params.source.path)})
    suite_path = rooted(params.validate_.suite)
    suite = read_suite(suite_path)
    calibration = params.validate_.calibration
    behaviour = read_behaviour(rooted(calibration)) if calibration else None
    table = collect(source, window, suite_column_types(suite))
    run = run_validation(table, suite, origin=suite_path, time_column=params.source.time_column,
                         period=params.validate_.period, window=(window.start, window.end),
                         max_duplicate_share=params.validate_.max_duplicate_share,
                         chunk_rows=params.validate_.chunk_rows, parse_errors=table.attrs.get(PARSE_ERRORS) or {},
                         fail_on_error=True, behaviour=behaviour)
    try:
        enforce(run.summary, fail_on_error=True)
    except ValueError as error:
        raise RetrainRefused(f"retrain on data up to {data_end or window.end.date()} refused: {error}") from error
    return {"rows": run.summary.rows, "checks": run.summary.evaluated}


@task(name="experiment", cache_policy=NO_CACHE, task_run_name="dvc exp run {name}")
def run_experiment(root: Path, name: str, overrides: dict[str, Any]) -> versioning.Experiment:
    return versioning.run_experiment(root, name, overrides, echo=get_run_logger().info)


# Pushing meets the network (git remote, DVC remote): it retries.
@task(name="push-experiment", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def push_experiment(root: Path, experiment: versioning.Experiment, params: Params) -> dict[str, Any]:
    return versioning.push_experiment(root, experiment, params.versioning.git_remote)


@task(name="report-gate", cache_policy=NO_CACHE)
def report_gate(params: Params, root: Path, experiment: versioning.Experiment) -> dict[str, Any]:
    """The experiment's gate decision (its committed metrics/gate.json) as an artifact."""
    text = versioning.show_file(root, experiment.commit, params.paths.metrics_dir / io.GATE_FILE)
    if not text:
        return {}
    gate = GateReport.model_validate_json(text)
    create_markdown_artifact(key="gate-decision", markdown=decision_markdown(gate),
                             description=f"Retrain {experiment.name}: challenger vs champion, every check")
    return gate.to_json_dict()


@flow(name="retraining", log_prints=True, flow_run_name="retraining up to {data_end}")
def retraining(params_file: str = io.PARAMS_FILE, data_end: str | None = None, reason: str = "") -> dict[str, Any]:
    """The training DAG as a DVC experiment with `collect.end = data_end` (the end of the latest labelled window)."""
    params = load_params(params_file)
    root = versioning.project_root(params_file)
    window = retrain_window(params, data_end)  # an unreadable or too early end: refused before anything is set up
    name = versioning.experiment_name("retrain", data_end=data_end)
    print(f"retraining on data {window.start:%Y-%m-%d %H:%M} .. {window.end:%Y-%m-%d %H:%M} (end exclusive; "
          f"{'collect.end=' + data_end if data_end else 'params.yaml collect.end'}) as experiment {name}: "
          f"{reason or 'manual'}")
    print(f"working in {root} at commit {versioning.git(root, 'rev-parse', 'HEAD')}")
    # --- refuse an unversioned table or corrupted data before anything is set up -------------------------------
    if params.source.kind == "file":
        print(f"source table: versioned by {versioning.require_versioned_source(root, params.source.path)}")
    try:
        validate_retrain_data(params, root, data_end)
    except RetrainRefused as error:
        record_outcome(params, root, RetrainOutcome(data_end=data_end, experiment=name, promoted=False,
                                                    failed=[str(error)], stage="validation", at=_now()))
        raise
    # --- the DAG, gate included, as a DVC experiment ------------------------------------------------------------
    experiment = run_experiment(root, name, retraining_overrides(data_end, params.monitor.retrain_window_days))
    # --- version: data and model to the DVC remote, the ref to the git remote ---------------------------------
    pushed = push_experiment(root, experiment, params)
    # --- report, and tell the monitor what the gate decided ------------------------------------------------------
    gate = report_gate(params, root, experiment)
    if gate:
        report = GateReport.model_validate(gate)
        record_outcome(params, root, RetrainOutcome(data_end=data_end, experiment=experiment.name,
                                                    promoted=report.promote, tag=report.promoted_tag,
                                                    failed=report.failed, at=_now()))
    return {"experiment": versioning.experiment_record(experiment, pushed), "gate": gate,
            "reports": publish_reports(versioning.rooted(params, root))}


@task(name="record-outcome", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def record_outcome(params: Params, root: Path, outcome: RetrainOutcome) -> str:
    """What the retrain came to, for the monitor (`retrain-outcomes.jsonl` in the monitoring folder): it writes the
    gate's verdict back onto the window that asked, and backs off after refusals (`monitor.retrain_backoff`)."""
    from pipelines.monitor.store import record_retrain_outcome

    directory = params.paths.monitoring_dir
    return str(record_retrain_outcome(directory if directory.is_absolute() else root / directory, outcome))


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def data_end_of(data_end: str | None, through: date | None) -> str | None:
    """The flow's `data_end` (exclusive, as `collect.end`) from the CLI's `--data-end` or `--through` (a day
    included: the end is the next midnight)."""
    return (through + timedelta(days=1)).isoformat() if through is not None else data_end


def cli_parameters(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The flow's parameters from `python -m flows.retraining`'s arguments (an unknown argument is an error, never
    ignored)."""
    parser = argparse.ArgumentParser(prog="python -m flows.retraining",
                                     description="Retrain: the training DAG and its gate as a DVC experiment on "
                                                 "data up to a date (collect.end moved to it).")
    parser.add_argument("--params", default=io.PARAMS_FILE, help=f"params file (default: {io.PARAMS_FILE})")
    end = parser.add_mutually_exclusive_group()
    end.add_argument("--data-end", type=_iso_datetime, metavar="WHEN",
                     help="train on data before this date or ISO time (exclusive, as collect.end; the flow's "
                          "data_end, what the drift Automation passes: a window's end). Default: params.yaml's")
    end.add_argument("--through", type=_iso_day, metavar="YYYY-MM-DD",
                     help="train on data up to and including this day (--data-end the next day)")
    parser.add_argument("--reason", default="", help="why, kept with the run (default: manual)")
    args = parser.parse_args(argv)
    return {"params_file": args.params, "data_end": data_end_of(args.data_end, args.through), "reason": args.reason}


def _iso_datetime(text: str) -> str:
    """The text as given, once it reads as an ISO date or time."""
    try:
        datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or time (YYYY-MM-DD[THH:MM])") from error
    return text


def _iso_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from error


def main(argv: Sequence[str] | None = None) -> int:
    retraining(**cli_parameters(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The I/O shell of monitoring: read the prediction log and outcomes, keep state, write reports and snapshots.

Everything written is written atomically (temp file + rename), so a monitoring run killed at any point leaves the
previous state or the new one, never half of a JSON file that the next run would choke on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines import io
from pipelines.config import Params
from pipelines.contracts import Acknowledgement, MonitorState, RetrainOutcome, WindowRecord
from pipelines.io import write_atomic
from pipelines.monitor import prediction_log
from pipelines.monitor.columnar import read_predictions_columnar
from pipelines.monitor.log import PredictionFrame, outcomes_frame

log = logging.getLogger(__name__)

PROJECT_NAME = "flightops monitoring"


def champion_calibration(params: Params) -> Any:
    """The champion's drift calibration as stored with it (`Calibration`), or None: no champion yet, or one whose
    reference the `reference` stage has not attached yet."""
    from pipelines.io import CALIBRATION_FILE, read_json
    from pipelines.monitor.calibration import Calibration
    from pipelines.release import registry

    store = registry.open_registry(params)
    tag = registry.champion_tag(store)
    stored = registry.model_path(tag, store) / CALIBRATION_FILE if tag and registry.has_model(tag, store) else None
    return Calibration.model_validate(read_json(stored)) if stored is not None and stored.exists() else None


def read_predictions(params: Params) -> PredictionFrame:
    """Every good prediction in the log directory; bad lines counted by reason (and logged), never raised."""
    # Column-wise (Arrow, with a Parquet sidecar per closed file): the line reader's answer at millions of rows.
    parsed = read_predictions_columnar(params.paths.prediction_log_dir, params.features, params.source.time_column)
    if parsed.skipped:
        log.warning("prediction log: skipped %d bad line(s): %s; e.g. %s", parsed.skipped_total,
                    dict(parsed.skipped), parsed.examples[:3])
    dropped = prediction_log.read_dropped(params.paths.prediction_log_dir)
    if dropped:  # the size cap deleted whole files: windows over their span hold less traffic than was served
        log.warning("prediction log: %d file(s) with %d row(s) served %s to %s were dropped by "
                    "serve.prediction_log.max_total_bytes (listed in %s)", len(dropped),
                    sum(entry.rows for entry in dropped), dropped[0].first_ts, dropped[-1].last_ts,
                    io.DROPPED_LOG_FILE)
    return parsed


def read_refusals(params: Params) -> tuple[pd.DataFrame, int]:
    """The rows the service refused (`prediction_log.RefusalLog`): their scheduled time (`source.time_column`, UTC)
    and the fields at fault, one row per refused row; and how many could not be placed in a window (a scheduled
    time missing or unreadable: counted, reported, in no window)."""
    read = prediction_log.read_refusals(params.paths.prediction_log_dir)
    if read.skipped:
        log.warning("refusal log: skipped %d bad line(s): %s", read.skipped_total, dict(read.skipped))
    time_column = params.source.time_column
    if not read.records:
        return pd.DataFrame({time_column: pd.Series([], dtype="datetime64[ns, UTC]"), "fields": []}), 0
    # Parsed as the prediction frame parses the time column (`log.type_rows`): ISO 8601, UTC.
    stamps = pd.to_datetime(pd.Series([record.scheduled for record in read.records], dtype=object), utc=True,
                            errors="coerce", format="ISO8601")
    frame = pd.DataFrame({time_column: stamps, "fields": [list(record.fields) for record in read.records]})
    placed = frame[time_column].notna()
    return frame.loc[placed].reset_index(drop=True), int((~placed).sum())


def read_outcomes(params: Params) -> tuple[pd.DataFrame, prediction_log.LogRead]:
    raw = prediction_log.read_outcomes(params.paths.outcomes_dir)
    if raw.skipped:
        log.warning("outcomes: skipped %d bad line(s): %s", raw.skipped_total, dict(raw.skipped))
    return outcomes_frame(raw), raw


def load_state(params: Params) -> MonitorState:
    """Windows analysed, retrains started. A missing file is a fresh start; a damaged one is an error to fix
    (`MalformedRecord` names it; deleting it re-analyses every window)."""
    return MonitorState.load(params.paths.monitoring_dir)


def save_state(params: Params, state: MonitorState) -> Path:
    return state.save(params.paths.monitoring_dir)


def save_window(params: Params, record: WindowRecord, snapshot: Any) -> dict[str, str]:
    """The window's Evidently HTML report and its record (JSON) under monitoring_dir; returns their paths."""
    directory = params.paths.monitoring_dir
    start = pd.Timestamp(record.window_start)
    html = write_atomic(io.window_report_path(directory, start), lambda temp: snapshot.save_html(str(temp)))
    written = record.save(directory)
    return {"html": str(html.resolve()), "json": str(written.resolve())}


def _project(workspace: Any) -> Any:
    projects = workspace.search_project(PROJECT_NAME)
    return projects[0] if projects else workspace.create_project(
        PROJECT_NAME, description="Per-window drift of live traffic vs the champion's training data")


def add_to_workspace(params: Params, snapshot: Any) -> str:
    """Add the window's snapshot to the local Evidently workspace (`evidently ui --workspace <dir>`).

    A running `evidently ui` watches the workspace folder and loads the new snapshot; a browser reload shows it.
    """
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(params.paths.evidently_workspace))
    ref = workspace.add_run(_project(workspace).id, snapshot)
    return str(ref.id)


def ensure_dashboard(params: Params, champion: str | None = None) -> bool:
    """Write the project's dashboard (panels in code, `pipelines.monitor.dashboard`) when it differs.

    Idempotent: panel ids are fixed, so a second call finds the same dashboard and writes nothing; a changed
    `monitor.key_features`, or a model serving for the first time, replaces the panels. The models are those that
    served the windows analysed so far, then `champion` (the one about to be judged). Returns whether it wrote.
    """
    from evidently.ui.workspace import Workspace

    from pipelines.monitor.bookkeeping import served_model_tag
    from pipelines.monitor.dashboard import dashboard

    workspace = Workspace(str(params.paths.evidently_workspace))
    project = _project(workspace)
    models = [served_model_tag(summary) for summary in read_summaries(params)] + [champion]
    wanted = dashboard(params.monitor.key_features, params.features.raw_columns,
                       [tag for tag in dict.fromkeys(models) if tag], *dashboard_notes(params))
    if workspace.get_dashboard(project.id).dict() == wanted.dict():
        return False
    workspace.save_dashboard(project.id, wanted)
    return True


# The retrain outcomes the dashboard lists (the latest first): enough to see a back-off building up.
DASHBOARD_RETRAINS = 8


def dashboard_notes(params: Params) -> tuple[list[str], list[str]]:
    """The dashboard's two text panels: the acknowledgements in force, and the latest retrains' outcomes."""
    acknowledged = [f"{ack.kind} on {', '.join(ack.columns) or 'every column'} from "
                    f"{ack.since[:10] if ack.since else 'the first window'}: {ack.sentence()}"
                    for ack in read_acknowledgements(params)]
    retrains = [f"traffic up to {retrain.window_end[:10]}: {retrain.outcome or 'pending'}"
                + (f" ({retrain.gate})" if retrain.gate else "")
                for retrain in reversed(load_state(params).retrains[-DASHBOARD_RETRAINS:])]
    return acknowledged, retrains


def dashboard_url(params: Params) -> str:
    """Where the stack's Evidently UI shows the project's dashboard."""
    from evidently.ui.workspace import Workspace

    project = _project(Workspace(str(params.paths.evidently_workspace)))
    return f"http://{params.stack.host}:{params.stack.evidently_port}/projects/{project.id}"


def read_summaries(params: Params) -> list[WindowRecord]:
    """Every window record written so far, oldest first (for the history table and plot, and the retry)."""
    return WindowRecord.read_all(params.paths.monitoring_dir)


def read_acknowledgements(params: Params) -> list[Acknowledgement]:
    """The operators' acknowledgements in force (`pipelines.monitor.acknowledge`)."""
    from pipelines.monitor import acknowledge

    return acknowledge.active(params.paths.monitoring_dir)


def record_retrain_outcome(monitoring_dir: Path, outcome: RetrainOutcome) -> Path:
    """Append what a retraining run decided to the monitoring folder's journal (the retraining flow calls this)."""
    return io.append_line(Path(monitoring_dir) / io.RETRAIN_OUTCOMES_FILE, outcome.model_dump_json())


def read_retrain_outcomes(params: Params) -> dict[str, RetrainOutcome]:
    """Each retraining run's decision by the data end it trained up to (the latest when one ran twice)."""
    from pydantic import ValidationError

    found: dict[str, RetrainOutcome] = {}
    for line in io.read_lines(params.paths.monitoring_dir / io.RETRAIN_OUTCOMES_FILE):
        try:
            outcome = RetrainOutcome.model_validate_json(line)
        except ValidationError:
            continue
        if outcome.data_end:
            found[outcome.data_end] = outcome
    return found


def write_back_outcomes(params: Params, state: MonitorState) -> list[WindowRecord]:
    """Each settled retrain's outcome onto the record of the window that asked for it (`retrain.outcome`, `gate`),
    where the record does not hold it yet; returns the records rewritten."""
    settled = {retrain.window_end: retrain for retrain in state.retrains if retrain.outcome is not None}
    written = []
    for record in read_summaries(params):
        retrain = settled.get(record.window_end)
        if retrain is None or record.retrain is None or not record.retrain.started:
            continue
        if record.retrain.outcome == retrain.outcome and record.retrain.gate == retrain.gate:
            continue
        updated = record.model_copy(update={"retrain": record.retrain.model_copy(
            update={"outcome": retrain.outcome, "gate": retrain.gate})})
        updated.save(params.paths.monitoring_dir)
        written.append(updated)
    return written

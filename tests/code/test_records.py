"""The records the stages, the monitor and the stack write (pipelines/contracts.py): each read and written through
its contract, a malformed file refused with its path named, and the DVC outputs' bytes unchanged by the contracts
(a committed metrics file read and written again is the same file, so `dvc repro` outputs do not move)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines import io
from pipelines.contracts import (
    CandidatesReport,
    DroppedFile,
    DroppedLog,
    EvaluationReport,
    MalformedRecord,
    ModelMeta,
    MonitorState,
    ReferenceReceipt,
    RetrainBooking,
    SliceReport,
    SplitLineage,
    StackComponent,
    StackState,
    WindowBooking,
)
from support.params import REPO_ROOT

COMMITTED_METRICS = REPO_ROOT / "metrics"
# The evaluate and train stages' committed outputs (git holds them: dvc.yaml's `cache: false` metrics).
DVC_METRICS = {io.EVALUATE_FILE: EvaluationReport, io.SLICES_FILE: SliceReport, io.CANDIDATES_FILE: CandidatesReport}


@pytest.mark.parametrize("name", sorted(DVC_METRICS))
def test_a_committed_metrics_file_read_and_written_again_is_byte_identical(name: str, tmp_path: Path) -> None:
    committed = COMMITTED_METRICS / name
    assert committed.exists(), f"{committed} is committed with the DAG's outputs"
    record = DVC_METRICS[name].load(COMMITTED_METRICS)
    record.save(tmp_path)
    assert (tmp_path / name).read_bytes() == committed.read_bytes()


def test_the_evaluation_keeps_its_optional_note_out_of_the_file_unless_there_is_one(tmp_path: Path) -> None:
    """The committed run has an hour-of-day baseline (no note): the key is absent, not null; a date-only table's
    note is written and read back."""
    report = EvaluationReport.load(COMMITTED_METRICS)
    assert report.baseline_note is None and "baseline_note" not in json.loads(
        (COMMITTED_METRICS / io.EVALUATE_FILE).read_text())
    noted = report.model_copy(update={"baseline_note": "no time of day"})
    noted.save(tmp_path)
    assert EvaluationReport.load(tmp_path) == noted
    assert list(json.loads((tmp_path / io.EVALUATE_FILE).read_text()))[:4] == [
        "model", "threshold", "baselines", "baseline_note"]


def test_a_slice_row_starts_with_its_value_and_a_one_class_slice_reads_back_without_ranking_metrics(
        tmp_path: Path) -> None:
    slices = SliceReport.load(COMMITTED_METRICS)
    row = next(iter(slices.columns.values()))[0]
    assert next(iter(row.to_json_dict())) == "value"
    one_class = row.model_copy(update={"roc_auc": float("nan"), "skipped": "one class only", "compared": False})
    SliceReport(columns={"origin": [one_class]}).save(tmp_path)
    back = SliceReport.load(tmp_path).columns["origin"][0]
    assert back.roc_auc is None and back.compared is False and back.metric("roc_auc") != back.metric("roc_auc")


def test_the_split_lineage_round_trips_in_preprocess_s_key_order(tmp_path: Path) -> None:
    lineage = SplitLineage(raw_table_md5="0" * 32, validation_success=True, suite="expectations/x.json", rows=12)
    written = lineage.save(tmp_path)
    assert written == tmp_path / io.LINEAGE_FILE
    assert list(json.loads(written.read_text())) == ["raw_table_md5", "validation_success", "suite", "rows"]
    assert SplitLineage.load(tmp_path) == lineage
    assert SplitLineage.load(tmp_path / "elsewhere") is None  # preprocess has not run there


@pytest.mark.parametrize(("record", "name", "damage"), [
    (EvaluationReport, io.EVALUATE_FILE, lambda data: {**data, "model": {**data["model"], "rows": "many"}}),
    (SliceReport, io.SLICES_FILE, lambda data: {"carrier": [{"value": "AA"}]}),
    (CandidatesReport, io.CANDIDATES_FILE, lambda data: {key: v for key, v in data.items() if key != "winner"}),
])
def test_a_malformed_record_is_refused_naming_its_file_and_the_fault(record, name, damage, tmp_path: Path) -> None:
    shutil.copy(COMMITTED_METRICS / name, tmp_path / name)
    path = tmp_path / name
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    with pytest.raises(MalformedRecord, match=rf"{path} is not a valid {record.__name__} record \(.*"):
        record.load(tmp_path)
    path.write_text("{not json")
    with pytest.raises(MalformedRecord, match=rf"{path} is not valid JSON"):
        record.load(tmp_path)


def test_the_search_report_is_built_as_the_committed_one_is_shaped(tmp_path: Path) -> None:
    """`pipelines.model.search.search_report` (what the train stage saves) on candidates rebuilt from the committed
    file gives back that file's record: the same candidates, winner and families; a candidate that came back without
    its model has no `train_rows`."""
    from pipelines.model.search import CandidateResult, search_report

    committed = CandidatesReport.load(COMMITTED_METRICS)
    results = [CandidateResult(candidate.model_copy(update={"train_rows": None}))
               for candidate in committed.candidates]
    winner = next(result for result in results if result.record.index == committed.winner)
    report = search_report(results, winner, committed.metric, search_rows=committed.search_rows,
                           train_rows=committed.train_rows)
    assert report.model_dump(exclude={"candidates"}) == committed.model_dump(exclude={"candidates"})
    assert [c.index for c in report.candidates] == [c.index for c in committed.candidates]
    assert all(c.train_rows is None and "train_rows" not in c.to_json_dict() for c in report.candidates)
    report.save(tmp_path)
    assert CandidatesReport.load(tmp_path) == report


def test_the_dropped_files_manifest_round_trips_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    assert DroppedLog.load(tmp_path) == DroppedLog()  # the cap has dropped nothing here
    manifest = DroppedLog(files=[DroppedFile(file="predictions-20130901T12-1.jsonl", bytes=10, rows=0,
                                             first_ts=None, last_ts=None, dropped_at="2013-09-01T15:00:00+00:00")])
    path = manifest.save(tmp_path)
    assert path == tmp_path / io.DROPPED_LOG_FILE and isinstance(json.loads(path.read_text()), list)
    assert DroppedLog.load(tmp_path) == manifest
    path.write_text(json.dumps([{"file": "x.jsonl", "rows": 3}]))
    with pytest.raises(MalformedRecord, match=rf"{path} is not a valid DroppedLog record \(0\.bytes: Field required"):
        DroppedLog.load(tmp_path)


def _component(**changes) -> dict:
    return {"name": "prefect", "argv": ["prefect", "server", "start"], "health_url": "http://127.0.0.1:4200/api/health",
            "url": "http://127.0.0.1:4200", "env": {"PREFECT_HOME": "/tmp/prefect"}, "pid": 41, **changes}


def test_the_stack_state_round_trips_and_its_path_is_the_one_up_and_down_name(tmp_path: Path) -> None:
    state = StackState(params_file="/p/params.yaml", updated="2026-01-01T00:00:00+00:00",
                       components=[StackComponent.model_validate(_component(log_pid=42))])
    assert state.save(tmp_path) == StackState.path(tmp_path) == tmp_path / io.STACK_STATE_FILE
    assert StackState.load(tmp_path) == state and state.components[0].pids == [41, 42]
    assert StackState.load(tmp_path / "down") is None


@pytest.mark.parametrize("secret", [
    {"secret_env": {"PREFECT_SERVER_API_AUTH_STRING": "admin:hunter2"}},
    {"env": {"PREFECT_API_AUTH_STRING": "admin:hunter2"}},
    {"env": {"PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://prefect:hunter2@127.0.0.1/prefect"}},
    {"env": {"DB_PASSWORD": "hunter2"}},
])
def test_the_stack_state_refuses_a_secret_whoever_builds_it(secret: dict, tmp_path: Path) -> None:
    """stack.json (0644, outlives the processes) never holds a secret: a component carrying one is refused, not
    written, and a state file someone edited to hold one is refused when read, naming the file."""
    with pytest.raises(ValueError, match="secret"):
        StackComponent.model_validate(_component(**secret))
    path = StackState.path(tmp_path)
    path.write_text(json.dumps({"params_file": "p", "updated": "u", "components": [_component(**secret)]}))
    with pytest.raises(MalformedRecord, match=rf"{path} is not a valid StackState record \(components\.0"):
        StackState.load(tmp_path)


def test_the_monitor_state_reads_what_earlier_versions_wrote_and_round_trips(tmp_path: Path) -> None:
    """A state.json of the dict-building bookkeeping (a window from before rows were recorded, a retrain with no
    outcome yet beside a settled retry) reads as the typed state; what it saves reads back equal."""
    path = tmp_path / io.MONITOR_STATE_FILE
    assert MonitorState.load(tmp_path) == MonitorState()  # no file: a fresh start
    path.write_text(json.dumps({
        "windows": {"2013-09-02T00:00:00+00:00": {"drift": False, "retrain": False},
                    "2013-09-09T00:00:00+00:00": {"drift": True, "retrain": True, "rows": 6512, "analyses": 2}},
        "retrains": [{"window_end": "2013-09-16T00:00:00+00:00", "reason": "data drift", "kinds": ["data_drift"],
                      "outcome": "suppressed", "retried": True},
                     {"window_end": "2013-09-23T00:00:00+00:00", "reason": "retry", "retry": True}]}))
    state = MonitorState.load(tmp_path)
    assert state.windows["2013-09-02T00:00:00+00:00"] == WindowBooking(rows=None, analyses=0)
    assert state.windows["2013-09-09T00:00:00+00:00"].rows == 6512
    assert state.retrains[0].outcome == "suppressed" and state.retrains[1] == RetrainBooking(
        window_end="2013-09-23T00:00:00+00:00", reason="retry", retry=True)
    state.save(tmp_path)
    assert MonitorState.load(tmp_path) == state
    path.write_text(json.dumps({"windows": {}, "retrains": [{"reason": "no window end"}]}))
    with pytest.raises(MalformedRecord, match=rf"{path} is not a valid MonitorState record \(retrains\.0\.window_end"):
        MonitorState.load(tmp_path)


def test_the_reference_receipt_writes_the_bytes_the_stage_always_wrote(tmp_path: Path) -> None:
    """dvc-reference.json is the reference stage's DVC out: the receipt saves the dict the stage used to write (same
    keys, order, numbers) byte for byte, reads back equal, and a damaged one is refused naming the file."""
    legacy = {"tag": "flight-delay-classifier:abc", "model_md5": "0" * 32, "reference_rows": 20000,
              "window_days": 7, "min_window_rows": 250, "calibration_windows": 12, "sizing": "monitor.window_days=7"}
    expected = tmp_path / "legacy.json"
    io.write_json(expected, legacy)
    receipt = ReferenceReceipt.model_validate(legacy)
    assert receipt.save(tmp_path) == tmp_path / io.DVC_REFERENCE_RECEIPT
    assert (tmp_path / io.DVC_REFERENCE_RECEIPT).read_bytes() == expected.read_bytes()
    assert ReferenceReceipt.load(tmp_path) == receipt and ReferenceReceipt.load(tmp_path / "none") is None
    (tmp_path / io.DVC_REFERENCE_RECEIPT).write_text(json.dumps({**legacy, "reference_rows": "many"}))
    with pytest.raises(MalformedRecord, match=rf"{tmp_path / io.DVC_REFERENCE_RECEIPT} is not a valid "
                                              r"ReferenceReceipt record \(reference_rows"):
        ReferenceReceipt.load(tmp_path)


def _trained_meta(**first: object) -> dict:
    """A meta as `finish_training` builds it (after the family's own keys `first`), then the train stage's `data` and
    `search`, then the seam's threshold: the order model.json has always had."""
    return {**first, "family": "lightgbm", "best_iteration": 106,
            "valid_metrics": {"auc": 0.757620182435316, "binary_logloss": 0.5294689133032598},
            "train_rows": 160590, "valid_rows": 28280,
            "params": {"family": "lightgbm", "seed": 42, "recency_half_life_days": None,
                       "lightgbm": {"learning_rate": 0.05, "lambda_l2": 1.0}},
            "engine": {"engine": "local"},
            "probe": {"matrix": [[3.0, None, 46.0, 0.05], [7.0, 2.0, float("nan"), 1e-07]],
                      "proba": [0.2880311, 0.10000000000000002]},
            "data": {"raw_table_md5": "0" * 32, "window": ["2013-01-01T00:00:00+00:00", "2013-04-01T00:00:00+00:00"]},
            "search": {"candidate": 0, "family": "lightgbm", "candidates": 4, "refit": False},
            "threshold": 0.287938541762359}


@pytest.mark.parametrize("first", [{}, {"importance": {"weight": [0.5, 0.0, 1.25, 3e-05]}, "converged": True}])
def test_model_json_is_written_as_the_meta_dict_was_and_reads_back_equal(first: dict, tmp_path: Path) -> None:
    """model.json is the train stage's DVC out: the record writes the bytes the dict did (keys, order, numbers; a
    missing value as null; a family's own keys, the logistic model's, first), and reads back to the same JSON."""
    meta = _trained_meta(**first)
    io.write_json(tmp_path / "dict.json", meta)
    record = ModelMeta.model_validate(meta)
    assert record.save(tmp_path) == tmp_path / io.META_FILE
    assert (tmp_path / io.META_FILE).read_bytes() == (tmp_path / "dict.json").read_bytes()
    loaded = ModelMeta.load(tmp_path)  # the NaN probe value, stored as null, reads back as missing
    assert loaded.to_json_dict() == json.loads((tmp_path / "dict.json").read_text())
    assert loaded.probe.matrix[1][2] is None
    assert loaded.model_copy(update={"probe": record.probe}) == record.model_copy(update={"probe": record.probe})


def test_a_model_json_of_an_early_version_loads_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    """A model saved before families, probes, the engine, data and search were recorded reads as LightGBM's with
    those keys absent, and saving it again writes none of them; one without a threshold is refused naming it."""
    early = {"threshold": 0.31, "best_iteration": 40, "train_rows": 5000, "valid_rows": 1000,
             "valid_metrics": {"auc": 0.7}, "params": {"num_leaves": 31}}
    path = tmp_path / io.META_FILE
    path.write_text(json.dumps(early))
    record = ModelMeta.load(tmp_path)
    assert record.family == "lightgbm" and record.probe is None and record.data is None and record.search is None
    record.save(tmp_path)
    assert json.loads(path.read_text()) == {**early, "family": "lightgbm"}
    path.write_text(json.dumps({key: value for key, value in early.items() if key != "threshold"}))
    with pytest.raises(MalformedRecord, match=rf"{path} is not a valid ModelMeta record \(threshold: Field required"):
        ModelMeta.load(tmp_path)

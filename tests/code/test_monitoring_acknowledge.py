"""An operator accepts a data-quality alarm as the new normal, from the CLI and from the Prefect deployment's flow:
recorded with who, when and why; it stops blocking retraining (the latest blocked window is judged again), shows
on the dashboard and in the window's record, and can be revoked."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from pipelines import cli
from pipelines import io as catalog
from pipelines.contracts import NewCategories, Reason, WindowRecord
from pipelines.monitor import acknowledge, store
from pipelines.monitor import bookkeeping as book
from pipelines.monitor import dashboard as board
from pipelines.monitor.decision import decide_retrain
from support.monitoring import window_record

START = datetime(2013, 9, 9, tzinfo=UTC)
END = START + timedelta(days=7)
NEW_CARRIER = Reason(kind="new_category", columns=["carrier"],
                     text="data quality: categories outside the champion's vocabulary in carrier 5.0% of rows")


@pytest.fixture
def params(make_params):
    return make_params()


def _blocked(start: datetime = START, reasons: tuple[Reason, ...] = (NEW_CARRIER,), **more) -> WindowRecord:
    """A window whose only alarm is a new carrier: data quality, so its retrain was refused."""
    return window_record(False, start, reasons=list(reasons), new_categories={"carrier": NewCategories(
        share=0.05, examples=["ZZ"], surge=True, threshold=0.02)}, **more)


@pytest.fixture
def params_file(params, tmp_path):
    """The params as a file the CLI reads (its paths absolute, under tmp_path)."""
    import yaml

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    return path


def test_the_cli_records_who_when_and_why_and_lists_and_revokes(params, params_file, capsys, monkeypatch):
    monkeypatch.setenv("FLIGHTOPS_OPERATOR", "alice")
    argv = ["--params", str(params_file)]
    assert cli.main(["monitor", "ack", *argv, "--kind", "new_category", "--column", "carrier", "--since",
                     "2013-09-09", "--why", "ZZ is a new airline"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["by"] == "alice" and record["why"] == "ZZ is a new airline" and record["columns"] == ["carrier"]
    assert record["since"].startswith("2013-09-09T00:00:00") and datetime.fromisoformat(record["at"]).tzinfo
    assert cli.main(["monitor", "acks", *argv]) == 0
    assert [item["id"] for item in json.loads(capsys.readouterr().out)] == [record["id"]]
    # The journal is the audit trail: one JSON line per acknowledgement.
    lines = (params.paths.monitoring_dir / catalog.ACKNOWLEDGEMENTS_FILE).read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [record["id"]]
    assert cli.main(["monitor", "revoke", *argv, record["id"], "--why", "it was a test feed after all"]) == 0
    revocation = json.loads(capsys.readouterr().out)
    assert revocation["revokes"] == record["id"] and revocation["by"] == "alice"
    assert acknowledge.active(params.paths.monitoring_dir) == []
    assert len(acknowledge.read_all(params.paths.monitoring_dir)) == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "data_drift", "why": "x"}, "cannot be acknowledged (it does not block retraining"),
    ({"kind": "new_category", "why": "x", "columns": ["carriers"]}, "unknown column(s) ['carriers']"),
    ({"kind": "new_category", "why": "  "}, "needs a reason"),
    ({"kind": "new_category", "why": "x", "since": "next monday"}, "is not a date"),
])
def test_an_acknowledgement_that_cannot_mean_anything_is_refused_by_name(params, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        acknowledge.acknowledge(params.paths.monitoring_dir, known_columns=params.features.raw_columns, **kwargs)
    assert acknowledge.read_all(params.paths.monitoring_dir) == []


def test_an_acknowledged_fault_stops_blocking_and_counts_as_a_change_to_learn(params):
    window = _blocked()
    assert decide_retrain(window, END, None, params.monitor).reason.startswith("data quality fault")
    ack = acknowledge.acknowledge(params.paths.monitoring_dir, "new_category", "a new airline", ["carrier"],
                                  by="bob")
    marked = acknowledge.apply(window, [ack], window.window_start)
    assert marked.quality_reasons == [] and [r.kind for r in marked.acknowledged_reasons] == ["new_category"]
    assert marked.reasons[0].acknowledged.startswith("acknowledged by bob at ") and "a new airline" in \
        marked.reasons[0].acknowledged
    assert marked.reasons[0].label == "data quality (new category) (acknowledged)"
    decision = decide_retrain(marked, END, None, params.monitor)
    assert decision.retrain is True and "carrier" in decision.reason
    # The stored record reads back the same (the acknowledgement is part of the window's record).
    assert WindowRecord.model_validate(marked.to_json_dict()).quality_reasons == []


def test_an_acknowledgement_covers_only_its_columns_and_windows(params):
    two_columns = Reason(kind="new_category", columns=["carrier", "dest"], text="data quality: carrier, dest")
    ack = acknowledge.acknowledge(params.paths.monitoring_dir, "new_category", "new airline", ["carrier"],
                                  since="2013-09-16")
    assert not ack.covers(NEW_CARRIER, START.isoformat())                        # a week before `since`
    assert ack.covers(NEW_CARRIER, (START + timedelta(days=7)).isoformat())
    assert not ack.covers(two_columns, (START + timedelta(days=7)).isoformat())  # dest is not accepted
    every = acknowledge.acknowledge(params.paths.monitoring_dir, "new_category", "all of them")
    assert every.covers(two_columns, START.isoformat())
    assert not every.covers(Reason(kind="mean_outside", columns=["carrier"], text="x"), START.isoformat())


def test_the_latest_blocked_window_is_judged_again_and_asks_for_its_retrain(params):
    state = book.book_window(book.empty_state(), START, END, _blocked(), params.monitor).state
    assert state.retrains == [] and state.windows[START.isoformat()].retrain is False
    assert book.reconsider(state, _blocked(), [], params.monitor) is None  # nothing accepted: nothing changes
    ack = acknowledge.acknowledge(params.paths.monitoring_dir, "new_category", "a new airline", ["carrier"])
    record, booked = book.reconsider(state, _blocked(), [ack], params.monitor)
    assert booked.retrain.started is True and booked.retrain.data_end == END.isoformat()
    assert booked.state.retrains[0].kinds == ["new_category"]
    assert record.retrain.started and record.acknowledged_reasons[0].acknowledged == ack.sentence()
    # Judged once: the rewritten record no longer has a blocking reason, so a later run leaves it alone.
    assert book.reconsider(booked.state, record, [ack], params.monitor) is None


def test_the_deployments_flow_records_it_and_the_dashboard_lists_it(params, params_file):
    from flows.monitoring import acknowledge_flow

    result = acknowledge_flow.fn(kind="relation_broken", why="the +1 F offset is the new sensor", columns=["temp"],
                                 by="carol", params_file=str(params_file))
    assert result["by"] == "carol" and result["kind"] == "relation_broken"
    acknowledged, _ = store.dashboard_notes(params)
    assert acknowledged == [f"relation_broken on temp from the first window: "
                            f"{acknowledge.active(params.paths.monitoring_dir)[0].sentence()}"]
    panels = {panel.title: panel for panel in board.dashboard(["temp"], ["temp"], acknowledged=acknowledged).panels}
    assert "by carol" in panels["Acknowledged data-quality alarms"].subtitle
    revoked = acknowledge_flow.fn(kind="relation_broken", why="wrong sensor", revoke=result["id"], by="carol",
                                  params_file=str(params_file))
    assert revoked["revokes"] == result["id"] and store.dashboard_notes(params)[0] == []


def test_an_acknowledged_window_is_tagged_and_says_so_in_its_summary_line(params):
    ack = acknowledge.acknowledge(params.paths.monitoring_dir, "new_category", "a new airline", ["carrier"], by="dan")
    record = acknowledge.apply(_blocked(), [ack], START.isoformat())
    retrain = book.book_window(book.empty_state(), START, END, record, params.monitor).retrain
    assert board.TAG_ACKNOWLEDGED in board.snapshot_tags(record, retrain, "m:1")
    line = board.summary_line(record, retrain, "m:1", "flights")
    assert "Accepted as the new normal: data quality (new category) (acknowledged) acknowledged by dan" in line
    assert board.snapshot_metadata(record, retrain, "m:1")["acknowledged"].startswith("new_category: acknowledged")

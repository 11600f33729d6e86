"""The replay client's real HTTP code against a tiny stand-in server: time order, batches, client ids, outcomes only
after their predictions and under the id the service logged, rows the service refuses counted without losing their
batch, a busy service waited for, clear errors on 4xx and no service."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipelines.config import parse_params
from pipelines.monitor.replay import ReplayError, replay
from support.params import SMALL_WINDOW, params_dict

pytestmark = pytest.mark.integration


class _StandIn(BaseHTTPRequestHandler):
    """Answers as the service does: rows whose distance is above `refuse_above` are refused by index and field
    (issue 36's per-row contract), the caller named; `busy` first answers are 503 with a Retry-After."""

    batches: list = []
    status = 200
    refuse_above = float("inf")
    caller = ""
    busy = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        stand_in = type(self)
        retry = stand_in.busy > 0
        if retry:
            stand_in.busy -= 1
            answer, status = {"error": "busy"}, 503
        elif stand_in.status != 200:
            stand_in.batches.append((self.path, body["flights"]))
            answer, status = {"error": "flights[0].distance: must be a number"}, stand_in.status
        else:
            stand_in.batches.append((self.path, body["flights"]))
            rows = list(enumerate(body["flights"]))
            answer, status = {
                "model_tag": "m:1",
                "predictions": [{"index": i, "request_id": f["request_id"], "probability": 0.2, "label": 0}
                                for i, f in rows if f["distance"] <= stand_in.refuse_above],
                "rejected": [{"index": i, "request_id": f["request_id"], "error_count": 1,
                              "errors": [{"field": "distance", "type": "less_than_equal", "msg": "too far"}]}
                             for i, f in rows if f["distance"] > stand_in.refuse_above],
                "rejected_count": sum(f["distance"] > stand_in.refuse_above for _, f in rows)}, 200
            if stand_in.caller:
                answer["caller"] = stand_in.caller
        data = json.dumps(answer).encode()
        self.send_response(status)
        if retry:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    _StandIn.batches, _StandIn.status, _StandIn.refuse_above, _StandIn.caller, _StandIn.busy = (
        [], 200, float("inf"), "", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_replay_sends_in_time_order_then_delivers_outcomes(tmp_path, small_table, stand_in):
    params = parse_params(params_dict(tmp_path, {**SMALL_WINDOW, "replay.batch_size": 100, "replay.rate": 1e6}))
    frame = small_table.iloc[:1000].sample(frac=1.0, random_state=0)  # shuffled: replay must re-order
    result = replay(frame, params, stand_in)
    sent = [f for path, batch in _StandIn.batches for f in batch]
    assert {path for path, _ in _StandIn.batches} == {"/predict_batch"} and len(_StandIn.batches) == 10
    assert [f["time_hour"] for f in sent] == sorted(f["time_hour"] for f in sent)
    assert set(sent[0]) == {*params.features.raw_columns, "time_hour", "request_id"}
    cancelled = int(frame["arr_delay"].isna().sum())
    assert result.outcomes == 1000 - cancelled and result.no_outcome == cancelled
    lines = [json.loads(line) for line in Path(result.outcomes_file).read_text().splitlines()]
    assert {line["request_id"] for line in lines} <= {f["request_id"] for f in sent}
    by_id = dict(zip(frame.sort_values("time_hour", kind="stable").index, [f["request_id"] for f in sent], strict=True))
    expected = {by_id[i]: int(d > 15) for i, d in frame["arr_delay"].items() if d == d}
    assert {line["request_id"]: line["actual"] for line in lines} == expected


def test_replay_names_a_refused_request_and_an_absent_service(tmp_path, small_table, stand_in):
    params = parse_params(params_dict(tmp_path, SMALL_WINDOW))
    _StandIn.status = 422
    with pytest.raises(ReplayError, match=r"rejected the request: HTTP 422: .*flights\[0\]\.distance"):
        replay(small_table.iloc[:10], params, stand_in)
    with pytest.raises(ReplayError, match="unreachable"):
        replay(small_table.iloc[:10], params, "http://127.0.0.1:9")


def test_a_refused_row_costs_only_itself_and_outcomes_join_the_logged_ids(tmp_path, small_table, stand_in):
    """The service refuses the longest flights: every other row of their batches is still predicted, the refused
    ones are counted and named, get no outcome, and nothing stops; outcomes carry the caller's namespace."""
    params = parse_params(params_dict(tmp_path, {**SMALL_WINDOW, "replay.batch_size": 100, "replay.rate": 1e6}))
    frame = small_table.iloc[:500]
    _StandIn.refuse_above, _StandIn.caller, _StandIn.busy = 2000, "peer:127.0.0.1", 2
    waits = []
    result = replay(frame, params, stand_in, sleep=waits.append)
    far = frame["distance"] > 2000
    assert far.any() and result.rejected == int(far.sum()) and result.predicted == 500 - result.rejected
    assert len(_StandIn.batches) == 5 and waits.count(1.0) == 2  # two 503s, each waited for its Retry-After
    assert result.rejected_examples and "distance too far" in result.rejected_examples[0]
    lines = [json.loads(line) for line in Path(result.outcomes_file).read_text().splitlines()]
    sent = {f["request_id"]: f for _, batch in _StandIn.batches for f in batch}
    assert all(line["request_id"].startswith("peer:127.0.0.1/") for line in lines)
    delivered = {line["request_id"].split("/", 1)[1] for line in lines}
    assert delivered and all(sent[key]["distance"] <= 2000 for key in delivered)
    outcomes = frame.loc[~far, "arr_delay"].notna().sum()
    assert result.outcomes == len(lines) == outcomes

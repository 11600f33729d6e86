"""The replay client's real HTTP code against a tiny stand-in server (the Bento service is built in parallel):
time order, batches, client ids, outcomes only after their predictions, clear errors on 4xx and no service."""

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
    batches: list = []
    status = 200

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).batches.append((self.path, body["flights"]))
        if type(self).status != 200:
            answer = {"error": "flights[0].distance: must be a number"}
        else:
            answer = {"model_tag": "m:1", "predictions": [{"request_id": f["request_id"], "probability": 0.2,
                                                           "label": 0} for f in body["flights"]]}
        data = json.dumps(answer).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    _StandIn.batches, _StandIn.status = [], 200
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

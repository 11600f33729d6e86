"""README "What is refused, early and by name": each row of the table, made on the own-data walkthrough's project
(params from the README's own YAML block, the MplsStops table) and refused by the command a user runs, with the
message the row promises. tests/code/test_docs.py checks that every row of the table has a case here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import docs
from support.project_copy import commit, copy_project, run, set_params

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Mistake:
    row: str  # the start of the README table row it backs
    params: dict[str, Any]
    command: str
    expect: list[str]  # what the output (stdout and stderr) must hold
    refused: bool = True  # the command fails (a non-zero exit: 1 from ours, 255 from dvc); False: warned only


MISTAKES = [
    # Every key that names columns, misspelled at once: `dvc repro` stops in collect with each key and its match.
    Mistake("a column named in `source.time_column`", {
        "source.time_column": "dat", "source.target": "personSerch", "source.key_columns": ["idNm"],
        "features.categorical": ["problem", "policePrecint", "neighborhood"], "features.numeric": ["lat", "lng"],
        "features.forbidden": ["citationIssued", "vehicleSerch"], "evaluate.slices": ["problm"],
        "monitor.key_features": ["problem", "lat"]}, "dvc repro collect", [
        "source.time_column: 'dat' is not a column of the table (did you mean 'date'?)",
        "source.target: 'personSerch' is not a column of the table (did you mean 'personSearch'?)",
        "source.key_columns: 'idNm' is not a column of the table (did you mean 'idNum'?)",
        "features.categorical: 'policePrecint' is not a column of the table (did you mean 'policePrecinct'?)",
        "features.numeric: 'lng' is not a column of the table (did you mean 'long'?)",
        "features.forbidden: 'vehicleSerch' is not a column of the table (did you mean 'vehicleSearch'?)",
        "evaluate.slices: 'problm' is not a column of the table (did you mean 'problem'?)"]),
    Mistake("`positive_above` and `positive_class` both set", {"source.positive_above": 0.5},
            "python -m pipelines collect", ["source.positive_above", "source.positive_class"]),
    Mistake("`positive_above` and `positive_class` both set; `positive_class: YES` unquoted",
            {"source.positive_class": True}, "python -m pipelines collect", ["source.positive_class", "quote"]),
    Mistake("a target with more than two classes", {"source.target": "race", "source.positive_class": None},
            "dvc repro preprocess", ["target 'race' (source.target) has", "multi-class targets are not supported",
                                     "'White'"]),
    Mistake("`positive_class` not among the target's values", {"source.positive_class": "MAYBE"},
            "dvc repro preprocess", ["source.positive_class 'MAYBE' is not a value of target 'personSearch'",
                                     "values seen", "'YES'"]),
    Mistake("`positive_class` not among the target's values; a text target without `positive_class`",
            {"source.positive_class": None}, "dvc repro preprocess",
            ["target 'personSearch' (source.target) is not 0/1 or boolean", "'NO', 'YES'",
             "set source.positive_class"]),
    Mistake("a time column that does not parse", {"source.time_column": "MDC"}, "python -m pipelines collect",
            ["time column 'MDC' (source.time_column)", "do not parse as dates, e.g. 'MDC', 'other'"]),
    Mistake("a time column that does not parse (or holds numbers", {"source.time_column": "rownames"},
            "python -m pipelines collect", ["time column 'rownames' (source.time_column) holds numbers, not dates"]),
    Mistake("a window with no rows", {"collect.start": "2030-01-01", "collect.end": "2031-01-01"},
            "python -m pipelines collect", ["(collect.start .. collect.end) holds no rows", "'date' spans 2017-01"]),
    Mistake("a feature constant on the train split", {"features.numeric": ["lat", "long", "constant"]},
            "dvc repro preprocess", ["dropping feature", '"dropped_features"', '"constant"'], refused=False),
    Mistake("a feature, the time column or a slice named `label`", {"features.numeric": ["lat", "long", "label"]},
            "python -m pipelines collect", ["features.numeric names the column 'label'",
                                            "rename that column in your table"]),
    Mistake("`monitor.key_features` naming a column that is not a feature", {"monitor.key_features": ["dep_delay"]},
            "python -m pipelines collect", ["monitor.key_features ['dep_delay'] are not raw feature columns",
                                            "features.categorical"]),
    Mistake("a `train:` key the search sets", {}, "python -m pipelines train --set train.lightgbm.num_leaves=31",
            ["train.lightgbm.num_leaves=31 changes nothing: search.strategy is grid and "
             "search.grid.lightgbm.num_leaves",
             "-S search.strategy=none"]),
    Mistake("an unknown key in `params.yaml` or `--set`", {"train.lightgbm.num_leavs": 3},
            "python -m pipelines collect",
            ["train.lightgbm.num_leavs: unknown key (did you mean 'num_leaves'?)"]),
    Mistake("an unknown key in `params.yaml` or `--set`", {}, "python -m pipelines collect --set trian.seed=3",
            ["'trian' is not a section of params (did you mean 'train'?)"]),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The walkthrough's project (README steps 1-3), plus a constant column for the dropped-feature row."""
    import pandas as pd

    repo = copy_project(tmp_path_factory.mktemp("mistakes"))
    (repo / "data").mkdir(exist_ok=True)
    run(repo, "bash", "-c", docs.commands(docs.block("own-data-table"))[0])
    table = pd.read_csv(repo / "data" / "mpls_stops.csv")
    table["constant"] = 1.0
    table.to_csv(repo / "data" / "mpls_stops.csv", index=False)
    set_params(repo, docs.flat_params(docs.block("own-data-params").text))
    run(repo, "bash", "-c", docs.commands(docs.block("own-data-draft"))[0])
    commit(repo, "own data")
    return repo


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: f"{m.row[:40]}|{m.command[:30]}")
def test_the_mistake_is_refused_by_the_users_command_with_the_promised_message(project: Path,
                                                                             mistake: Mistake) -> None:
    run(project, "git", "checkout", "--", "params.yaml")
    if mistake.params:
        set_params(project, mistake.params)
    done = run(project, "bash", "-c", mistake.command, check=False)
    output = " ".join((done.stdout + done.stderr).split())  # rich wraps long log lines
    assert (done.returncode != 0) == mistake.refused, output[-4000:]
    missing = [text for text in mistake.expect if text not in output]
    assert not missing, f"{missing} not in the output of {mistake.command!r}:\n{output[-4000:]}"


def test_the_constant_feature_is_in_the_commands_json_output(project: Path) -> None:
    """The row says "listed in the command's output": the preprocess command prints it in its JSON result."""
    run(project, "git", "checkout", "--", "params.yaml")
    set_params(project, {"features.numeric": ["lat", "long", "constant"]})
    run(project, "dvc", "repro", "validate")
    done = run(project, "python", "-m", "pipelines", "preprocess")
    result = json.loads(done.stdout)
    assert list(result["dropped_features"]) == ["constant"] and "constant" in result["dropped_features"]["constant"]

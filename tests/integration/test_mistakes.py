"""README "What is refused, early and by name": each row of the table, made on the own-data walkthrough's project
(params from the README's own YAML block, the MplsStops table, or the user's own copy of it written the way the row
says: dates day first, `;`-delimited, cp1252, ...) and refused by the command a user runs, with the message the row
promises; where the message names a key that fixes it, the same command with that key passes. tests/code/test_docs.py
checks that every row of the table has a case here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support import docs
from support.project_copy import commit, copy_project, run, set_params

pytestmark = pytest.mark.integration

TABLE = Path("data") / "mpls_stops.csv"  # the walkthrough's table (README step 1)
DRAFT = "python -m pipelines draft-suite --out expectations/draft.json"  # README step 3, to a file of its own


# --- the user's own copies of the table, written as the rows say (each to data/<function name>.csv) -------------------

def day_first(table: Any, path: Path) -> None:
    """Dates written day first with a two-digit year (`02/07/17 14:05`), the first twelve days of each month: every
    value reads as a date either way round (a later day, 13 or more, would prove the order)."""
    import pandas as pd

    days = pd.to_datetime(table["date"], utc=True)
    early = days.dt.day <= 12
    table[early].assign(date=days[early].dt.strftime("%d/%m/%y %H:%M")).to_csv(path, index=False)


def four_rows_of_another_export(table: Any, path: Path) -> None:
    """Four rows written `15/07/2017 23:09` among ISO stamps (`2017-07-15T23:09:00Z`, what source.time_format says)."""
    import pandas as pd

    rows = table.index[[100, 20_000, 30_000, 40_000]]
    table = table.copy()
    table.loc[rows, "date"] = pd.to_datetime(table.loc[rows, "date"], utc=True).dt.strftime("%d/%m/%Y %H:%M")
    table.to_csv(path, index=False)


def semicolons(table: Any, path: Path) -> None:
    """A European spreadsheet's export: `;` between fields, a decimal comma."""
    table.to_csv(path, index=False, sep=";", decimal=",")


def two_exports_concatenated(table: Any, path: Path) -> None:
    """The second half's header row kept inside the data (line 25,002)."""
    lines = table.to_csv(index=False).splitlines(keepends=True)
    path.write_text("".join([*lines[:25_001], lines[0], *lines[25_001:]]))


def cp1252(table: Any, path: Path) -> None:
    """Written by a Windows tool in cp1252, with an en dash (byte 0x96) in a neighborhood's name."""
    renamed = table["neighborhood"].replace({"Cedar Riverside": "Cedar\u2013Riverside"})
    table.assign(neighborhood=renamed).to_csv(path, index=False, encoding="cp1252")


def untracked_copy(table: Any, path: Path) -> None:
    """The table as it is, in a file neither git nor DVC tracks."""
    table.to_csv(path, index=False)


def one_row_in_fifty(table: Any, path: Path) -> None:
    """~1,000 stops over the year (~20 a week): a training period too sparse for any monitoring window."""
    table.iloc[::50].to_csv(path, index=False)


@dataclass(frozen=True)
class Mistake:
    row: str  # the start of the README table row it backs
    params: dict[str, Any]
    command: str
    expect: list[str]  # what the output (stdout and stderr) must hold
    refused: bool = True  # the command fails (a non-zero exit: 1 from ours, 255 from dvc); False: warned only
    table: Callable[[Any, Path], None] | None = None  # the user's own copy of the table: source.path points at it
    fixed: dict[str, Any] = field(default_factory=dict)  # the key(s) the message names: with them the command passes


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
    # A text target of eight classes: preprocess and draft-suite name them and the key (one-vs-rest: a test below).
    Mistake("a text target of several classes without `positive_class`",
            {"source.target": "race", "source.positive_class": None}, "dvc repro preprocess",
            ["target 'race' (source.target) is not 0/1 or boolean, 8 values seen: ['Asian', 'Black', 'East African',",
             "'White']; set source.positive_class", "one-vs-rest"]),
    Mistake("a text target of several classes without `positive_class`",
            {"source.target": "race", "source.positive_class": None}, DRAFT,
            ["label column 'race' (source.target) is not 0/1 but has 8 values ('Asian', 'Black',", "'White'",
             "set source.positive_class", "one-vs-rest"]),
    # Dates day first, every one valid either way round: refused with three values, both readings and both keys.
    Mistake("numeric dates valid day first and month first", {}, "python -m pipelines collect",
            ["time column 'date' holds numeric dates whose day and month could be either way round, e.g. "
             "'02/01/17 00:07', '02/01/17 00:27', '02/01/17 00:52'",
             "(day first: 2 January; month first: 1 February)", "set source.dayfirst", "source.time_format"],
            table=day_first, fixed={"source.dayfirst": True}),
    Mistake("numeric dates valid day first and month first", {}, DRAFT,
            ["time column 'date' holds numeric dates whose day and month could be either way round",
             "(day first: 2 January; month first: 1 February)", "set source.dayfirst", "source.time_format"],
            table=day_first),
    Mistake("a value against `source.time_format`", {"source.time_format": "%Y-%m-%dT%H:%M:%SZ"},
            "python -m pipelines collect",
            ["time column 'date' (source.time_column) has 4 of 51,920 values that do not parse as dates, e.g. "
             "'02/01/2017 09:17', '08/05/2017 16:05', '15/07/2017 23:09'"], table=four_rows_of_another_export),
    # Reading a file: the separator found, the repeated header's line, the byte; each with its source.read key.
    Mistake("a `;`-delimited CSV read with `,`", {}, "python -m pipelines collect",
            ["source file data/semicolons.csv reads as one column 'rownames;idNum;date;",
             "with source.read.delimiter ',', but its header is ';'-delimited (16 columns:",
             "set source.read.delimiter: ';' (and source.read.decimal: ','"],
            table=semicolons, fixed={"source.read.delimiter": ";", "source.read.decimal": ","}),
    Mistake("a `;`-delimited CSV read with `,`", {}, DRAFT,
            ["reads as one column", "';'-delimited", "set source.read.delimiter: ';'"], table=semicolons),
    Mistake("a `;`-delimited CSV read with `,`; a header row repeated", {}, "python -m pipelines collect",
            ["source file data/two_exports_concatenated.csv repeats its header row 1 time(s) inside the data "
             "(line(s) 25002: ['rownames', 'idNum', 'date', 'problem'] ...)", "remove the repeated header lines"],
            table=two_exports_concatenated),
    Mistake("a `;`-delimited CSV read with `,`; a header row repeated", {}, DRAFT,
            ["repeats its header row 1 time(s) inside the data (line(s) 25002"], table=two_exports_concatenated),
    Mistake("a `;`-delimited CSV read with `,`; a header row repeated inside the data; a file not in", {},
            "python -m pipelines collect",
            ["cannot read source file data/cp1252.csv as utf-8 (source.read.encoding): byte b'\\x96'",
             "set source.read.encoding to the file's encoding"], table=cp1252,
            fixed={"source.read.encoding": "cp1252"}),
    # The retraining flow, started from the CLI: an untracked table is refused with the commands that track it
    # (a table changed since `dvc add`: a test below, which also runs those commands).
    Mistake("a retrain of a table git or DVC does not hold", {}, "python -m flows.retraining",
            ["the source table data/untracked_copy.csv (source.path) is tracked by neither git nor DVC",
             "Track it with DVC: dvc add data/untracked_copy.csv && git add data/untracked_copy.csv.dvc "
             "data/.gitignore && git commit -m 'track data/untracked_copy.csv with DVC'"], table=untracked_copy),
    # A sparse table through the walkthrough (draft its suite, `dvc repro`): the reference stage says why.
    Mistake("a training period too small for two monitoring windows",
            {"validate.suite": "expectations/one_row_in_fifty.json",
             "validate.calibration": "expectations/one_row_in_fifty.calibration.json"},
            "python -m pipelines draft-suite --out expectations/one_row_in_fifty.json && dvc repro reference",
            ["Running stage 'reference'", "error: reference failed: the reference period (",
             "rows over 333 days", "is too small for monitoring windows: 7 days:", "; 14 days:", "; 28 days:",
             "set monitor.window_days and monitor.min_window_rows by hand"], table=one_row_in_fifty),
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
    Mistake("a window wider than the table", {"collect.start": "2016-10-01", "collect.end": "2018-01-01"}, DRAFT,
            ["collect.start .. collect.end (2016-10-01 .. 2018-01-01) is wider than the table",
             "2016-10 (0 rows, at least", 'set collect.start: "2017-01-01" and collect.end: "2018-01-01"'],
            fixed={"collect.start": "2017-01-01"}),
    Mistake("a feature constant on the train split", {"features.numeric": ["lat", "long", "constant"]},
            "dvc repro preprocess", ["dropping feature", '"dropped_features"', '"constant"'], refused=False),
    Mistake("a valid or test split too thin for its ROC AUC", {"split.test_days": 2}, "dvc repro preprocess",
            ["the test split is thin:", "its ROC AUC is known to about ±", "would hold enough",
             '"split_warnings"'], refused=False),
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
    table = pd.read_csv(repo / TABLE)
    table["constant"] = 1.0
    table.to_csv(repo / TABLE, index=False)
    set_params(repo, docs.flat_params(docs.block("own-data-params").text))
    run(repo, "bash", "-c", docs.commands(docs.block("own-data-draft"))[0])
    commit(repo, "own data")
    return repo


def _env(project: Path) -> dict[str, str]:
    """The retraining flow's ephemeral Prefect server keeps its database in the project, not in ~/.prefect."""
    home = project / "var" / "prefect"
    home.mkdir(parents=True, exist_ok=True)  # Prefect makes its database file, not the folder
    return {"PREFECT_HOME": str(home)}


def _user_copy(project: Path, write: Callable[[Any, Path], None]) -> str:
    """The user's own copy of the walkthrough's table, written by `write` to data/<its name>.csv (untracked)."""
    import pandas as pd

    path = TABLE.parent / f"{write.__name__}.csv"
    if not (project / path).exists():
        write(pd.read_csv(project / TABLE), project / path)
    return str(path)


def _output(done: Any) -> str:
    return " ".join((done.stdout + done.stderr).split())  # rich wraps long log lines


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: f"{m.row[:40]}|{m.command[:30]}")
def test_the_mistake_is_refused_by_the_users_command_with_the_promised_message(project: Path,
                                                                             mistake: Mistake) -> None:
    run(project, "git", "checkout", "--", "params.yaml")
    source = {"source.path": _user_copy(project, mistake.table)} if mistake.table else {}
    if mistake.params or source:
        set_params(project, {**mistake.params, **source})
    done = run(project, "bash", "-c", mistake.command, check=False, env=_env(project))
    output = _output(done)
    assert (done.returncode != 0) == mistake.refused, output[-4000:]
    missing = [text for text in mistake.expect if text not in output]
    assert not missing, f"{missing} not in the output of {mistake.command!r}:\n{output[-4000:]}"
    if mistake.fixed:  # the key the message names, set as it says: the same command passes
        set_params(project, mistake.fixed)
        done = run(project, "bash", "-c", mistake.command, check=False, env=_env(project))
        assert done.returncode == 0, _output(done)[-4000:]


def test_the_constant_feature_is_in_the_commands_json_output(project: Path) -> None:
    """The row says "listed in the command's output": the preprocess command prints it in its JSON result."""
    run(project, "git", "checkout", "--", "params.yaml")
    set_params(project, {"features.numeric": ["lat", "long", "constant"]})
    run(project, "dvc", "repro", "validate")
    done = run(project, "python", "-m", "pipelines", "preprocess")
    result = json.loads(done.stdout)
    assert list(result["dropped_features"]) == ["constant"] and "constant" in result["dropped_features"]["constant"]


def test_a_text_target_of_several_classes_with_positive_class_is_one_vs_rest(project: Path) -> None:
    """The row's "(with it: one-vs-rest)": `race` (8 classes) with positive_class White through `dvc repro
    preprocess`: every kept row's label is (race == 'White'), the rows without a race dropped."""
    import pandas as pd

    run(project, "git", "checkout", "--", "params.yaml")
    set_params(project, {"source.target": "race", "source.positive_class": "White"})
    run(project, "dvc", "repro", "preprocess")
    from pipelines.config import load_params

    params = load_params(project / "params.yaml")
    raw = pd.read_parquet(project / params.paths.raw_table)
    labels = pd.concat([pd.read_parquet(project / params.paths.prepared_dir / f"{split}.parquet")["label"]
                        for split in ("train", "valid", "test")])
    assert raw["race"].nunique() == 8
    assert len(labels) == raw["race"].notna().sum()
    assert int(labels.sum()) == int((raw["race"] == "White").sum()) > 0
    assert 0.2 < labels.mean() < 0.35  # White against the seven other classes, not any one of them


def test_a_table_changed_since_dvc_add_is_refused_by_the_retraining_flow_and_the_named_commands_fix_it(
        project: Path) -> None:
    """The row's other half: the commands an untracked table's refusal names, run as written, track it; rows added
    afterwards (not `dvc add`-ed again) are refused by the retraining flow with the `dvc add` that records them."""
    from pipelines.release.versioning import SourceNotVersioned, require_versioned_source

    run(project, "git", "checkout", "--", "params.yaml")
    path = TABLE.parent / "tracked_copy.csv"
    (project / path).write_bytes((project / TABLE).read_bytes())
    with pytest.raises(SourceNotVersioned) as untracked:
        require_versioned_source(project, path)
    track = re.search(r"Track it with DVC: (dvc add .*)$", str(untracked.value)).group(1)
    run(project, "bash", "-c", track)
    assert require_versioned_source(project, path) == "dvc"
    with (project / path).open("a") as handle:  # the new rows of the day, appended after `dvc add`
        handle.write((project / TABLE).read_text().splitlines()[-1] + "\n")
    set_params(project, {"source.path": str(path)})
    done = run(project, "bash", "-c", "python -m flows.retraining", check=False, env=_env(project))
    output = _output(done)
    assert done.returncode != 0, output[-4000:]
    assert f"the source table {path} changed since DVC recorded it in {path}.dvc" in output, output[-4000:]
    record = re.search(r"(dvc add \S+ && git add \S+\.dvc && git commit -m '[^']*')", output)
    assert record is not None and record.group(1).startswith(f"dvc add {path} "), output[-4000:]
    run(project, "bash", "-c", record.group(1))
    assert require_versioned_source(project, path) == "dvc"

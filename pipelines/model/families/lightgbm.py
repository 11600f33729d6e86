"""The LightGBM family (the default): gradient-boosted trees with native categorical splits, early stopping on the
validation split, `deterministic` so the same data and params give the same `model.txt` byte for byte.

Its learner file is LightGBM's text format cut at the best iteration (`pipelines.io.MODEL_FILE`). The service
compiles it to machine code (services/compiled.py, checked against the booster on probe rows); training on a Dask
cluster is `pipelines/model/distributed.py`, a GPU check `pipelines/model/gpu.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipelines.config import TrainParams
from pipelines.features import LABEL, FeatureSchema, encode_frame
from pipelines.model.learning import METRICS, OBJECTIVE, train_weights
from pipelines.model.seam import Fitted, TrainedModel

FAMILY = "lightgbm"
# LightGBM reads any |x| <= 1e-35f as zero before a split (its kZeroThreshold, a float32; a split "at zero" has
# that threshold): what another runtime of the same trees (lleaves, ONNX) must reproduce or avoid.
LIGHTGBM_ZERO = float(np.float32(1e-35))


def on_and_beside(thresholds: np.ndarray) -> np.ndarray:
    """Each split threshold and the next double either side of it: the values where another runtime of the same
    trees (lleaves, ONNX's float32 operator) could decide a split differently. What every parity probe feeds."""
    return np.concatenate([thresholds, np.nextafter(thresholds, np.inf), np.nextafter(thresholds, -np.inf)])


@dataclass(kw_only=True)
class LightGBMModel(TrainedModel):
    """A booster with everything needed to score raw rows the way training did."""

    family: ClassVar[str] = FAMILY
    importance_kinds: ClassVar[tuple[str, ...]] = ("gain", "split")

    booster: Any  # lightgbm.Booster; typed loosely to keep the import out of module load

    def predict_matrix(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        return self.booster.predict(matrix, num_threads=threads)

    def _importance(self, kind: str) -> np.ndarray:
        return self.booster.feature_importance(importance_type="split" if kind == "split" else "gain")

    def _write_learner(self, path: Path) -> None:
        self.booster.save_model(str(path))

    @classmethod
    def _read_learner(cls, path: Path) -> dict[str, Any]:
        import lightgbm as lgb

        return {"booster": lgb.Booster(model_file=str(path))}

    def model_text(self) -> str:
        """The model file's text (what `model.txt` holds)."""
        return self.booster.model_to_string()

    @property
    def trees(self) -> int:
        """Boosting rounds the model holds (one tree per round: a binary objective)."""
        return int(self.booster.num_trees())

    @property
    def leaves(self) -> int:
        """Leaves in all the trees: what the forest's compiled code (one branch per split) grows with."""
        return sum(int(tree["num_leaves"]) for tree in self.booster.dump_model()["tree_info"])

    def _splits(self) -> Iterator[dict[str, Any]]:
        """Every split node of every tree (LightGBM's own dump)."""
        def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if "split_index" in node:
                yield node
                yield from walk(node["left_child"])
                yield from walk(node["right_child"])

        for tree in self.booster.dump_model()["tree_info"]:
            yield from walk(tree["tree_structure"])

    @property
    def categorical_splits(self) -> int:
        """Splits on a set of categories (LightGBM's `==` decision) in all the trees: what runtimes that take only
        numeric thresholds (Hummingbird, ONNX's TreeEnsemble without set membership) refuse."""
        return sum(node["decision_type"] == "==" for node in self._splits())

    @property
    def missing_types(self) -> set[str]:
        """The missing types of the splits (LightGBM's None, Zero, NaN). Only None everywhere (`use_missing: false`)
        means a NaN is read as 0.0 at every split: then the matrix with NaN replaced by 0 gives the same answers,
        which is what a runtime that sends every NaN one fixed way (Hummingbird) must be given."""
        return {str(node["missing_type"]) for node in self._splits()}

    def staged_raw_scores(self, matrix: np.ndarray) -> Iterator[np.ndarray]:
        """Each row's log-odds after the first 1, 2, ... trees, one array per prefix, from one tree at a time
        (LightGBM's own `start_iteration`/`num_iteration`): ranking every prefix of the forest costs one prediction
        of the whole forest instead of one per prefix, and holds one running sum, not trees x rows."""
        total = np.zeros(len(matrix))
        for tree in range(self.trees):
            total = total + self.booster.predict(matrix, raw_score=True, start_iteration=tree, num_iteration=1)
            yield total

    def first_trees(self, count: int) -> LightGBMModel:
        """This model cut to its first `count` trees, by LightGBM's own `num_iteration` (what early stopping does);
        the threshold and meta are the caller's to set."""
        import lightgbm as lgb

        if not 1 <= count <= self.trees:
            raise ValueError(f"cannot keep {count} trees of a model of {self.trees}")
        booster = lgb.Booster(model_str=self.booster.model_to_string(num_iteration=count))
        return LightGBMModel(booster=booster, schema=self.schema, threshold=self.threshold, meta=dict(self.meta))


MODEL_CLASS = LightGBMModel


def lightgbm_params(params: TrainParams) -> dict[str, Any]:
    """LightGBM's own parameter dict; `deterministic` makes the same data and params give the same file."""
    own = params.lightgbm
    return {
        "objective": OBJECTIVE,
        "metric": METRICS,
        "learning_rate": own.learning_rate,
        "num_leaves": own.num_leaves,
        "min_data_in_leaf": own.min_data_in_leaf,
        "feature_fraction": own.feature_fraction,
        "bagging_fraction": own.bagging_fraction,
        "bagging_freq": own.bagging_freq,
        "lambda_l2": own.lambda_l2,
        "use_missing": own.use_missing,
        "num_threads": params.num_threads,
        "device_type": params.device_type,
        "seed": params.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


def dataset_naming(schema: FeatureSchema, params: TrainParams) -> dict[str, list[str]]:
    """`feature_name` and `categorical_feature` for LightGBM's Datasets: the schema's categories as categories, or
    none under `categorical_splits: ordinal` (the same codes, binned and split as numbers)."""
    naming = schema.lightgbm_naming
    return naming if params.lightgbm.categorical_splits == "native" else {**naming, "categorical_feature": []}


@dataclass(frozen=True)
class BinaryDatasets:
    """The train and valid splits as LightGBM binary Dataset files, built once and shared by every candidate.

    Binning is most of what building a Dataset costs, and the encoded matrix it is built from is the largest thing
    training holds (10M rows x 22 features = 1.8 GB of float64): a search that rebuilt it per candidate paid both
    once per candidate and per worker. The binary file holds only the bins (one byte per value here), so a worker
    that loads it never reads the train split. Only construction-time parameters shape it (`dataset_params`), so
    candidates that differ in tree parameters share it; `seed` (LightGBM's bin sampling) is one of them. A model
    trained from these files is byte-identical to one trained from the frames (`fit` without them).
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
    train_set, valid_set = _datasets(train, valid, schema, dataset_params(params), params)
    directory.mkdir(parents=True, exist_ok=True)
    built = BinaryDatasets(train=directory / f"train-{params.seed}.bin", valid=directory / f"valid-{params.seed}.bin",
                           seed=params.seed)
    train_set.construct().save_binary(str(built.train))
    valid_set.construct().save_binary(str(built.valid))
    return built


def _datasets(train: pd.DataFrame, valid: pd.DataFrame, schema: FeatureSchema, construction: dict[str, Any],
              params: TrainParams) -> tuple[Any, Any]:
    """The splits as LightGBM Datasets; the train split weighted by recency when a half-life is set."""
    import lightgbm as lgb

    naming = dataset_naming(schema, params)
    train_set = lgb.Dataset(encode_frame(train, schema), label=train[LABEL].to_numpy(),
                            weight=train_weights(train, schema, params), **naming,
                            free_raw_data=True, params=construction)
    valid_set = lgb.Dataset(encode_frame(valid, schema), label=valid[LABEL].to_numpy(), reference=train_set,
                            **naming)
    return train_set, valid_set


def fit(train: pd.DataFrame | None, valid: pd.DataFrame, schema: FeatureSchema, params: TrainParams,
        datasets: BinaryDatasets | None = None) -> Fitted:
    """Boost on `train`, stop early on `valid`, keep only the rounds early stopping chose.

    With `datasets` (built by `build_datasets` for this seed) the splits are loaded from their binary files and
    `train` is not needed.
    """
    import lightgbm as lgb

    own = params.lightgbm
    if datasets is not None:
        if datasets.seed != params.seed:
            raise ValueError(f"binary datasets were built with seed {datasets.seed}, not {params.seed}")
        # The names and categorical list are in the file's bin mappers already; given again, the model file
        # records them in its parameters as the in-memory Dataset does, so both give the same file.
        named = {**dataset_naming(schema, params), "params": dataset_params(params)}
        train_set = lgb.Dataset(str(datasets.train), **named)
        valid_set = lgb.Dataset(str(datasets.valid), reference=train_set, **named)
        train_rows = int(train_set.construct().num_data())
    else:
        if train is None:
            raise ValueError("LightGBM's fit needs the train split or its binary datasets")
        train_set, valid_set = _datasets(train, valid, schema, dataset_params(params), params)
        train_rows = len(train)
    history: dict[str, dict[str, list[float]]] = {}
    booster = lgb.train(
        lightgbm_params(params),
        train_set,
        num_boost_round=own.num_boost_round,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(own.early_stopping_rounds, verbose=False), lgb.record_evaluation(history)],
    )
    best = booster.best_iteration or own.num_boost_round
    # Keep only the trees early stopping chose, so every consumer scores the same model.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    valid_metrics = {name: float(values[best - 1]) for name, values in history["valid"].items()}
    return Fitted(model=LightGBMModel(booster=booster, schema=schema, threshold=float("nan")), best_iteration=best,
                  valid_metrics=valid_metrics, train_rows=train_rows, engine={"engine": "local"})


def from_booster(booster: Any, schema: FeatureSchema) -> LightGBMModel:
    """A booster trained elsewhere (LightGBM's Dask learner) as this family's model, threshold not chosen yet."""
    return LightGBMModel(booster=booster, schema=schema, threshold=float("nan"))

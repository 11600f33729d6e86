"""The second tree family: scikit-learn's HistGradientBoostingClassifier, with native categorical splits.

Why this one beside LightGBM: another implementation of histogram boosting with native categoricals (it splits a
categorical feature on sets of categories, as LightGBM does) is the check that the champion's quality is not one
library's accident, and it costs nothing to ship: scikit-learn is already in the lock and in the served image (the
linear family needs it), where CatBoost or XGBoost would add 100-200 MB of wheels to both (docs/model-selection.md).

It reads the matrix `pipelines.features.encode` makes: categorical codes (NaN for a missing, rare or unseen value,
which it routes as missing) are declared categorical when the vocabulary fits its bins (at most `max_bins`, 255),
else taken as ordered codes. Early stopping watches the validation split (`X_val`, scikit-learn >= 1.7), as
LightGBM's does. Seeded, single-process and deterministic: the pickled estimator is the same bytes.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipelines.config import TrainParams
from pipelines.features import LABEL, FeatureSchema, encode_frame
from pipelines.model.learning import sklearn_threads, train_weights, validation_metrics
from pipelines.model.seam import Fitted, TrainedModel

FAMILY = "histgb"
PICKLE_PROTOCOL = 5
MAX_BINS = 255  # scikit-learn's most; a categorical feature with more categories is taken as ordered codes


@dataclass(kw_only=True)
class HistGBModel(TrainedModel):
    """A fitted HistGradientBoostingClassifier over the encoded matrix."""

    family: ClassVar[str] = FAMILY
    importance_kinds: ClassVar[tuple[str, ...]] = ("gain", "split")

    estimator: Any  # sklearn.ensemble.HistGradientBoostingClassifier

    def predict_matrix(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        with sklearn_threads(threads):
            return self.estimator.predict_proba(matrix)[:, 1]

    def _importance(self, kind: str) -> np.ndarray:
        """Split gain (or split count) per feature, summed over every tree's split nodes."""
        n_features = len(self.schema.feature_names)
        totals = np.zeros(n_features)
        for (tree,) in self.estimator._predictors:  # one tree per round for a binary loss
            nodes = tree.nodes[~tree.nodes["is_leaf"].astype(bool)]
            weights = np.ones(len(nodes)) if kind == "split" else nodes["gain"]
            totals += np.bincount(nodes["feature_idx"], weights=weights, minlength=n_features)
        return totals

    def _write_learner(self, path: Path) -> None:
        path.write_bytes(pickle.dumps(self.estimator, protocol=PICKLE_PROTOCOL))

    @classmethod
    def _read_learner(cls, path: Path) -> dict[str, Any]:
        return {"estimator": pickle.loads(path.read_bytes())}  # noqa: S301 - our own registry's file


MODEL_CLASS = HistGBModel


def categorical_mask(schema: FeatureSchema) -> np.ndarray:
    """Which matrix columns are native categoricals: the schema's categoricals whose vocabulary fits the bins."""
    mask = np.zeros(len(schema.feature_names), dtype=bool)
    for position, vocabulary in enumerate(schema.categorical.values()):
        mask[position] = len(vocabulary) <= MAX_BINS
    return mask


def fit(train: pd.DataFrame, valid: pd.DataFrame, schema: FeatureSchema, params: TrainParams) -> Fitted:
    """Boost on `train` (recency-weighted when set), stop early on the validation split's loss."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    own = params.histgb
    estimator = HistGradientBoostingClassifier(
        learning_rate=own.learning_rate, max_iter=own.max_iter, max_leaf_nodes=own.max_leaf_nodes,
        min_samples_leaf=own.min_samples_leaf, l2_regularization=own.l2_regularization,
        max_features=own.max_features, max_bins=MAX_BINS, categorical_features=categorical_mask(schema),
        early_stopping=True, n_iter_no_change=own.early_stopping_rounds, scoring="loss",
        random_state=params.seed)
    valid_matrix = encode_frame(valid, schema)
    y_valid = valid[LABEL].to_numpy()
    with sklearn_threads(params.num_threads):
        estimator.fit(encode_frame(train, schema), train[LABEL].to_numpy(),
                      sample_weight=train_weights(train, schema, params), X_val=valid_matrix, y_val=y_valid)
    # The binner keeps the thread count of its fit, which predicting never reads: reset to its default, so the
    # file is the same whatever threads fitted it (train.num_threads, search.threads_per_worker, the machine's
    # cores) and reproduce compares like with like.
    estimator._bin_mapper.set_params(n_threads=None)
    model = HistGBModel(estimator=estimator, schema=schema, threshold=float("nan"))
    proba = model.predict_matrix(valid_matrix)
    return Fitted(model=model, best_iteration=int(estimator.n_iter_),
                  valid_metrics=validation_metrics(y_valid, proba), train_rows=len(train),
                  engine={"engine": "local"})

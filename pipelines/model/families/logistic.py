"""The linear family: scikit-learn's LogisticRegression on the same encoded features as every family.

Why a linear model competes: it is the strong simple baseline a reviewer asks for (if boosted trees beat it by a
hair, the trees' cost is not earned), it is small (a few KB), fast to fit and to serve, and its coefficients say
plainly what pushes a prediction. It costs no dependency beyond scikit-learn.

It reads the matrix `pipelines.features.encode` makes, so training and serving share the feature code as every
family does: the categorical codes (NaN for a missing, rare or unseen category) go one-hot over the training
vocabulary (an unknown value is all zeros) or through scikit-learn's TargetEncoder (`categorical_encoding`);
numeric columns and time parts get a missing-value indicator where training saw a gap, their median in its place,
and are standardised. L-BFGS is deterministic on the same data: the pickled estimator is the same bytes.
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
from pipelines.model.seam import WEIGHT, Fitted, TrainedModel

FAMILY = "logistic"
PICKLE_PROTOCOL = 5


@dataclass(kw_only=True)
class LogisticModel(TrainedModel):
    """A fitted scikit-learn pipeline (encoding, scaling, LogisticRegression) over the encoded matrix."""

    family: ClassVar[str] = FAMILY
    importance_kinds: ClassVar[tuple[str, ...]] = ("coefficient",)

    estimator: Any  # sklearn.pipeline.Pipeline

    def predict_matrix(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        with sklearn_threads(threads):
            return self.estimator.predict_proba(matrix)[:, 1]

    def _importance(self, kind: str) -> np.ndarray:
        if kind == WEIGHT:  # recorded at fit: mean |contribution to the log-odds| on the validation split
            return np.asarray(self.meta["importance"][WEIGHT], dtype=float)
        groups = feature_groups(self.estimator, len(self.schema.categorical), len(self.schema.feature_names))
        coefficients = np.abs(self.estimator[-1].coef_[0])
        return np.bincount(groups, weights=coefficients, minlength=len(self.schema.feature_names))

    def _write_learner(self, path: Path) -> None:
        path.write_bytes(pickle.dumps(self.estimator, protocol=PICKLE_PROTOCOL))

    @classmethod
    def _read_learner(cls, path: Path) -> dict[str, Any]:
        return {"estimator": pickle.loads(path.read_bytes())}  # noqa: S301 - our own registry's file


MODEL_CLASS = LogisticModel


def build_estimator(schema: FeatureSchema, params: TrainParams) -> Any:
    """The unfitted pipeline: categorical codes encoded, the rest imputed (with indicators) and scaled."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler, TargetEncoder

    own = params.logistic
    n_categorical = len(schema.categorical)
    categories = [np.arange(len(vocabulary), dtype=float) for vocabulary in schema.categorical.values()]
    if own.categorical_encoding == "onehot":
        encoder: Any = OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)
    else:
        encoder = make_pipeline(SimpleImputer(strategy="constant", fill_value=-1.0),
                                TargetEncoder(categories=[np.append(c, -1.0) for c in categories],
                                              target_type="binary", random_state=params.seed))
    rest = make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                         StandardScaler())
    columns = ColumnTransformer([("categorical", encoder, list(range(n_categorical))),
                                 ("numeric", rest, list(range(n_categorical, len(schema.feature_names))))],
                                sparse_threshold=0.0)
    return Pipeline([("features", columns),
                     ("model", LogisticRegression(C=own.C, max_iter=own.max_iter, tol=own.tol, solver="lbfgs",
                                                  random_state=params.seed))])


def feature_groups(estimator: Any, n_categorical: int, n_features: int) -> np.ndarray:
    """For each column the pipeline's model sees, the feature (position in `schema.feature_names`) it comes from:
    one-hot columns and missing-value indicators belong to their feature."""
    columns = estimator.named_steps["features"]
    encoder = columns.named_transformers_["categorical"]
    if hasattr(encoder, "categories_"):  # one-hot: a column per vocabulary value
        groups = [np.full(len(c), i) for i, c in enumerate(encoder.categories_)]
    else:  # target encoding: one column per feature
        groups = [np.arange(n_categorical)]
    imputer = columns.named_transformers_["numeric"][0]
    numeric = np.arange(n_categorical, n_features)
    groups.append(numeric)
    if imputer.indicator_ is not None:
        groups.append(numeric[imputer.indicator_.features_])
    return np.concatenate(groups).astype(int) if groups else np.zeros(0, dtype=int)


def contribution_weights(estimator: Any, matrix: np.ndarray, n_categorical: int) -> np.ndarray:
    """Mean |coefficient x column value| per feature over `matrix` (the validation split): how far each feature
    moves the log-odds on typical rows, its one-hot columns and indicator summed. Scale-free, unlike raw
    coefficients, so features compare."""
    transformed = estimator[:-1].transform(matrix)
    contributions = np.abs(transformed * estimator[-1].coef_[0]).mean(axis=0)
    groups = feature_groups(estimator, n_categorical, matrix.shape[1])
    return np.bincount(groups, weights=contributions, minlength=matrix.shape[1])


def fit(train: pd.DataFrame, valid: pd.DataFrame, schema: FeatureSchema, params: TrainParams) -> Fitted:
    """Fit the pipeline on `train` (recency-weighted when set); score `valid`."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    estimator = build_estimator(schema, params)
    weights = train_weights(train, schema, params)
    matrix = encode_frame(train, schema)
    with sklearn_threads(params.num_threads), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(matrix, train[LABEL].to_numpy(), model__sample_weight=weights)
    del matrix
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    valid_matrix = encode_frame(valid, schema)
    model = LogisticModel(estimator=estimator, schema=schema, threshold=float("nan"))
    proba = model.predict_matrix(valid_matrix)
    model.meta = {"importance": {WEIGHT: contribution_weights(estimator, valid_matrix, len(schema.categorical))
                                 .round(10).tolist()},
                  "converged": converged}
    return Fitted(model=model, best_iteration=int(estimator[-1].n_iter_[0]),
                  valid_metrics=validation_metrics(valid[LABEL].to_numpy(), proba), train_rows=len(train),
                  engine={"engine": "local"})

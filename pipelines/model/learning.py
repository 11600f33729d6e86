"""What every family's fit shares: the task's objective and metrics, the train split's row weights, the
validation metrics of families that do not record LightGBM's own, and the thread limit of scikit-learn's pools."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import TrainParams
from pipelines.features import FeatureSchema

# The task, not a setting: a binary label, judged on ranking (AUC) with log loss beside it; every family's
# validation metrics carry both names (LightGBM's own), so `search.metric` compares families.
OBJECTIVE = "binary"
METRICS = ["auc", "binary_logloss"]


def recency_weights(times: pd.Series, half_life_days: float) -> np.ndarray:
    """0.5 ** (age / half-life), age in days before the latest row, scaled to mean 1 so that `min_data_in_leaf`
    and the regularisation keep their meaning (learners sum weights where they counted rows)."""
    age_days = (times.max() - times).dt.total_seconds().to_numpy() / 86400.0
    weights = np.power(0.5, age_days / half_life_days)
    return weights / weights.mean()


def train_weights(train: pd.DataFrame, schema: FeatureSchema, params: TrainParams) -> np.ndarray | None:
    """The train split's row weights (`train.recency_half_life_days`), or None: every row alike. The validation
    split is never weighted: early stopping and the threshold judge every validation row alike."""
    if params.recency_half_life_days is None:
        return None
    return recency_weights(train[schema.time_column], params.recency_half_life_days)


def validation_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """`auc` and `binary_logloss` of probabilities, for families that do not record LightGBM's own."""
    from sklearn.metrics import log_loss, roc_auc_score

    return {"auc": float(roc_auc_score(y_true, proba)),
            "binary_logloss": float(log_loss(y_true, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1]))}


@functools.cache
def _controller() -> Any:
    """threadpoolctl's view of the loaded thread pools (OpenMP, BLAS), built once: building it scans every loaded
    library (milliseconds), limiting through it costs microseconds."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def sklearn_threads(threads: int) -> Iterator[None]:
    """At most `threads` OpenMP/BLAS threads inside (0: as configured, no limit): what `num_threads` is to LightGBM."""
    if threads <= 0:
        yield
        return
    with _controller().limit(limits=threads):
        yield

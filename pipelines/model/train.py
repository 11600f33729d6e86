"""train: one model of `train.family`, stopped early (where the family boosts) on the validation split, seeded.

The family's module fits its learner (`pipelines/model/families/`); what every family does with it is here: the
validation metrics, the threshold (chosen on the validation split, never the test split), the metadata and the
probe rows of the load-time parity check. Same params and data give the same model file (LightGBM, the default,
byte for byte), which is what lets DVC skip unchanged work.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import FAMILIES, TrainParams
from pipelines.features import LABEL, FeatureSchema, encode_frame
from pipelines.model.catalog import family_module
from pipelines.model.learning import recency_weights as recency_weights
from pipelines.model.seam import TrainedModel, probe_record

log = logging.getLogger(__name__)

def choose_threshold(y_true: np.ndarray, proba: np.ndarray, setting: float | str) -> float:
    """A fixed threshold, or the one that maximises F1 on the given (validation) labels."""
    if not isinstance(setting, str):
        return float(setting)
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_true, proba)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=(precision + recall) > 0)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def train_model(train: pd.DataFrame | None, valid: pd.DataFrame, schema: FeatureSchema, params: TrainParams,
                datasets: Any = None) -> TrainedModel:
    """Fit `params.family` on `train`, stop early on `valid`; the threshold is chosen on `valid` too.

    `datasets` (LightGBM only: the binary Datasets a search built once, `families.lightgbm.build_datasets`) stand in
    for `train`, which is then not needed.
    """
    module = family_module(params.family)
    started = time.perf_counter()
    fitted = module.fit(train, valid, schema, params, datasets=datasets) if datasets is not None else \
        module.fit(train, valid, schema, params)
    return finish_training(fitted.model, fitted.best_iteration, fitted.valid_metrics, train_rows=fitted.train_rows,
                           valid=valid, schema=schema, params=params, engine=fitted.engine,
                           fit_seconds=time.perf_counter() - started)


def finish_training(model: TrainedModel, best: int, valid_metrics: dict[str, float], *, train_rows: int,
                    valid: pd.DataFrame, schema: FeatureSchema, params: TrainParams, engine: dict[str, Any],
                    fit_seconds: float | None = None) -> TrainedModel:
    """What every family and engine does with its fitted model: threshold on `valid`, probe rows, metadata."""
    matrix = encode_frame(valid, schema)
    valid_proba = model.predict_matrix(matrix)
    model.threshold = choose_threshold(valid[LABEL].to_numpy(), valid_proba, params.threshold)
    log.info("trained %s (%d rounds/iterations, %s engine), valid %s, threshold %.3f", model.family, best,
             engine["engine"], valid_metrics, model.threshold)
    model.meta = {
        **model.meta,
        "family": model.family,
        "best_iteration": best,
        "valid_metrics": valid_metrics,
        "train_rows": train_rows,
        "valid_rows": len(valid),
        "params": model_params(params),
        "engine": engine,
        "probe": probe_record(model, matrix, params.seed),
    }
    model.fit_seconds = None if fit_seconds is None else round(fit_seconds, 3)
    model.learner_bytes()  # the file as this process's fit wrote it, kept for `save` wherever it happens
    return model


def model_params(params: TrainParams) -> dict[str, Any]:
    """`train:` as a model records it: the common keys and its own family's section only."""
    data = params.model_dump(mode="json")
    for family in FAMILIES:
        if family != params.family:
            data.pop(family, None)
    return data

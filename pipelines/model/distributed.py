"""train on a Dask cluster (`train.engine: dask`): LightGBM's own data-parallel learner, `lightgbm.dask`.

The result is the same kind of model as `pipelines.model.train.train_model` gives (a LightGBM text model cut at
the best iteration, its threshold chosen on the validation split), so evaluate, the gate, the registry, the compiled
forest and the service cannot tell the two engines apart.

Why it is built this way (LightGBM 4.7, distributed 2026.8):
- **Partitions, pinned.** The train split is read with `dask.dataframe.read_parquet` on the workers themselves (one
  partition per Parquet row group, or per file when `train.parquet` is a folder of files), cut into exactly
  `partitions` contiguous pieces, and piece i is kept on the i-th worker (addresses sorted). No process ever holds the
  whole table, only its piece. In data-parallel learning each rank finds the bin boundaries of some features from
  its *own* rows, so which rows a rank holds shapes the model: a fixed cut and placement (plus `deterministic`,
  `force_row_wise` and the seed) is what makes two runs give the same trees.
- **Early stopping on the whole validation split.** `lightgbm.dask` 4.x does not support early stopping: each worker
  would judge its own slice of the eval set, stop at a different iteration and leave the others waiting on a socket
  (LightGBM issues #3712, #4493, #6351). Here no eval set is given to LightGBM; instead every worker runs the same
  callback over the *whole* validation split (shipped with the callback: it is one month, not the table). Every
  rank holds identical trees in data-parallel learning, so every rank computes the same score and stops at the same
  iteration, with LightGBM's own rule (`lgb.early_stopping`: any recorded metric without improvement for
  `early_stopping_rounds` rounds). The validation split must fit in one worker's memory; the train split need not.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import ParamsError, TrainParams
from pipelines.features import LABEL, FeatureSchema, encode_frame
from pipelines.model.families.lightgbm import LightGBMModel, dataset_naming, from_booster, lightgbm_params
from pipelines.model.train import finish_training

log = logging.getLogger(__name__)

# Parameters LightGBM's Dask interface sets per run (ports, ranks, the worker's thread count). They would land in
# the model file's `parameters:` block and make two runs of the same trees differ byte-wise.
_VOLATILE = ("machines", "local_listen_port", "num_machines", "time_out", "num_threads", "machine_list_filename")


class FullValidationStopping:
    """LightGBM callback: early stopping judged on the whole validation split, the same on every rank.

    Mirrors `lgb.early_stopping(rounds, first_metric_only=False)`: after each iteration the scores of every metric
    are updated; when one has not improved for `rounds` iterations, training stops at that metric's best iteration.
    The raw score is accumulated one tree at a time (the first tree carries LightGBM's init score), so a check
    costs one tree's prediction, not the whole forest's.
    """

    order = 30  # after LightGBM's own callbacks
    before_iteration = False

    def __init__(self, features: np.ndarray, labels: np.ndarray, rounds: int) -> None:
        self.features = features
        self.labels = labels
        self.rounds = rounds
        self.history: dict[str, list[float]] = {"auc": [], "binary_logloss": []}
        self._raw: np.ndarray | None = None
        self._best: dict[str, tuple[float, int]] = {}

    def scores(self, raw: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import roc_auc_score

        proba = np.clip(1.0 / (1.0 + np.exp(-raw)), 1e-15, 1 - 1e-15)
        logloss = float(-np.mean(self.labels * np.log(proba) + (1 - self.labels) * np.log(1 - proba)))
        return {"auc": float(roc_auc_score(self.labels, raw)), "binary_logloss": logloss}

    def __call__(self, env: Any) -> None:
        import lightgbm as lgb

        tree = env.model.predict(self.features, start_iteration=env.iteration - env.begin_iteration, num_iteration=1,
                                 raw_score=True)
        self._raw = tree if self._raw is None else self._raw + tree
        step = env.iteration - env.begin_iteration
        current = self.scores(self._raw)
        for name, value in current.items():
            self.history[name].append(value)
            higher = name == "auc"
            best_value, _ = self._best.get(name, (-math.inf if higher else math.inf, -1))
            if (value > best_value) if higher else (value < best_value):
                self._best[name] = (value, step)
        for name in current:
            best_value, best_step = self._best[name]
            if step - best_step >= self.rounds or env.iteration == env.end_iteration - 1:
                results = [("valid", metric, self.history[metric][best_step], metric == "auc")
                           for metric in current]
                raise lgb.callback.EarlyStopException(best_step, results)


def pinned_partitions(client: Any, path: Any, schema: FeatureSchema, workers: list[str]) -> list[Any]:
    """The split at `path` as futures of encoded features + label, future i computed and held by `workers[i]`.

    Read and encoded on the workers (nothing passes through this process); `dask.dataframe.from_delayed` makes
    a frame of them whose partitions stay where they are.
    """
    import dask.dataframe as dd
    from distributed import wait

    columns = [*schema.raw_columns, schema.time_column, LABEL]
    frame = dd.read_parquet(str(path), columns=columns, split_row_groups=True)
    if frame.npartitions != len(workers):
        frame = frame.repartition(npartitions=len(workers))
    encoded = frame.map_partitions(_encode_partition, schema, meta=_encoded_meta(schema))
    pieces = [client.compute(part, workers=[worker], allow_other_workers=False)
              for part, worker in zip(encoded.to_delayed(), workers, strict=True)]
    wait(pieces)
    return pieces


def _encoded_meta(schema: FeatureSchema) -> pd.DataFrame:
    return pd.DataFrame({**{name: pd.Series(dtype=float) for name in schema.lightgbm_naming["feature_name"]},
                         LABEL: pd.Series(dtype="int8")})


def _encode_partition(part: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    features = pd.DataFrame(encode_frame(part, schema), columns=schema.lightgbm_naming["feature_name"],
                            index=part.index)
    return features.assign(**{LABEL: part[LABEL].astype("int8").to_numpy()})


class RankOrderedClient:
    """A Dask client whose `who_has` lists data by our worker order, so worker i becomes LightGBM rank i.

    `lightgbm.dask` numbers the ranks in the order `Client.who_has` returns the data's keys, which comes from a set
    of key strings: a different order (and so a different rank for each piece, a different model) on every run.
    Everything else goes to the real client.
    """

    def __init__(self, client: Any, workers: list[str]) -> None:
        self._client = client
        self._rank = {worker: index for index, worker in enumerate(workers)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def who_has(self, futures: Any = None, **kwargs: Any) -> dict[Any, list[str]]:
        holders = self._client.who_has(futures, **kwargs)
        last = len(self._rank)
        return dict(sorted(holders.items(), key=lambda item: min((self._rank.get(w, last) for w in item[1]),
                                                                 default=last)))


def training_workers(client: Any, partitions: int) -> list[str]:
    """The first `partitions` workers by address: one partition (one LightGBM rank) each."""
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    if len(workers) < partitions:
        raise ParamsError(f"train.engine dask: search.n_workers is {partitions} (one partition per worker) but the "
                          f"Dask cluster has {len(workers)} worker(s): {workers}")
    return workers[:partitions]


def dask_lightgbm_params(params: TrainParams) -> dict[str, Any]:
    """`train:` as LightGBM's Dask estimator takes it: data-parallel, threads from each worker, no eval metric."""
    values = {key: value for key, value in lightgbm_params(params).items() if key not in _VOLATILE}
    values.pop("metric")  # the callback scores the validation split itself
    return {**values, "tree_learner": "data", "n_estimators": params.lightgbm.num_boost_round}


def stable_model_text(booster: Any, num_iteration: int) -> str:
    """The model text cut at `num_iteration`, without the per-run network settings in its parameters block."""
    lines = booster.model_to_string(num_iteration=num_iteration).splitlines(keepends=True)
    return "".join(line for line in lines if not any(line.startswith(f"[{key}:") for key in _VOLATILE))


def train_model_dask(client: Any, train_path: Any, valid: pd.DataFrame, schema: FeatureSchema, params: TrainParams,
                     partitions: int) -> LightGBMModel:
    """Fit with `lightgbm.dask` on `partitions` workers of `client`'s cluster; stop early on the whole of `valid`."""
    import dask.dataframe as dd
    import lightgbm as lgb
    from lightgbm.dask import DaskLGBMClassifier

    from pipelines.model.gpu import require_opencl

    require_opencl(params.device_type)  # checked here; each worker's own card is LightGBM's to find
    workers = training_workers(client, partitions)
    pieces = pinned_partitions(client, train_path, schema, workers)
    data = dd.from_delayed(pieces, meta=_encoded_meta(schema), verify_meta=False)
    stopping = FullValidationStopping(encode_frame(valid, schema), valid[LABEL].to_numpy(),
                                      rounds=params.lightgbm.early_stopping_rounds)
    estimator = DaskLGBMClassifier(client=RankOrderedClient(client, workers), **dask_lightgbm_params(params))
    train_rows = int(data.map_partitions(len).compute().sum())
    try:
        with warnings.catch_warnings():
            # The sklearn wrapper's n_jobs=None is an alias of num_threads, which the Dask interface sets per worker.
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
            naming = dataset_naming(schema, params)
            estimator.fit(data[naming["feature_name"]], data[LABEL], categorical_feature=naming["categorical_feature"],
                          callbacks=[stopping])
    finally:
        client.cancel(pieces)  # free the workers' memory now, not when this frame is collected
    booster = estimator.booster_
    best = booster.best_iteration or booster.current_iteration()
    model = lgb.Booster(model_str=stable_model_text(booster, best))
    # The callbacks that scored each iteration ran on the workers: score the chosen cut once more here.
    valid_metrics = stopping.scores(model.predict(stopping.features, raw_score=True))
    return finish_training(from_booster(model, schema), best, valid_metrics, train_rows=train_rows, valid=valid,
                           schema=schema, params=params, engine={"engine": "dask", "partitions": partitions})

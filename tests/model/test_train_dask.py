"""train.engine dask: LightGBM's data-parallel learner on a local cluster of 2 worker processes (each a "machine").

Real data (the small window), real worker processes, real sockets between the LightGBM ranks. The dask model must
match the single-process one on the test split, be reproducible, and be an ordinary model for the rest of the DAG.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines import io, stages
from pipelines.config import Params, ParamsError, parse_params
from pipelines.features import LABEL, FeatureSchema
from pipelines.model.seam import TrainedModel
from pipelines.model.search import dask_client
from pipelines.model.train import train_model
from support.params import SMALL_WINDOW, params_dict, prepare_small_window

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def prepared_root(tmp_path_factory: pytest.TempPathFactory, small_table: pd.DataFrame) -> Path:
    return prepare_small_window(tmp_path_factory.mktemp("train-dask"), small_table)


def dask_params(root: Path, **overrides: Any) -> Params:
    return parse_params(params_dict(root, {**SMALL_WINDOW, "train.engine": "dask", **overrides}))


@pytest.fixture(scope="module")
def client(prepared_root: Path) -> Iterator[Any]:
    with dask_client(dask_params(prepared_root).search) as client:
        yield client


def splits(params: Params) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FeatureSchema]:
    read = [pd.read_parquet(io.prepared_path(params.paths, name)) for name in ("train", "valid", "test")]
    return read[0], read[1], read[2], FeatureSchema.load(io.schema_path(params.paths))


def test_dask_model_matches_single_process_and_is_deterministic(prepared_root: Path, client: Any,
                                                                tmp_path: Path) -> None:
    from pipelines.model.distributed import train_model_dask

    params = dask_params(prepared_root)
    train, valid, test, schema = splits(params)
    local = train_model(train, valid, schema, params.train)
    train_file = io.prepared_path(params.paths, "train")
    first, second = (train_model_dask(client, train_file, valid, schema, params.train, partitions=2)
                     for _ in range(2))

    y_test = test[LABEL].to_numpy()
    local_auc = roc_auc_score(y_test, local.predict_proba(test))
    dask_auc = roc_auc_score(y_test, first.predict_proba(test))
    assert abs(dask_auc - local_auc) <= 0.005, (dask_auc, local_auc)
    # Same seed and partitioning: the same trees, the same file (no ports or ranks in its parameters).
    assert first.booster.model_to_string() == second.booster.model_to_string()
    assert "[tree_learner: data]" in first.booster.model_to_string()
    assert "machines:" not in first.booster.model_to_string()
    # Early stopping on the whole validation split stopped before the cap, and the cut is what the meta says.
    best = first.meta["best_iteration"]
    assert 1 <= best < params.train.lightgbm.num_boost_round and first.booster.num_trees() == best
    assert first.meta["engine"] == {"engine": "dask", "partitions": 2} and first.meta["train_rows"] == len(train)
    assert first.meta["valid_metrics"]["auc"] == pytest.approx(
        roc_auc_score(valid[LABEL], first.predict_proba(valid)), abs=1e-9)
    # A normal model directory: saved and loaded like the local engine's, same predictions.
    first.save(tmp_path / "model")
    loaded = TrainedModel.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(test), first.predict_proba(test))


def test_partitions_are_pinned_one_per_worker(prepared_root: Path, client: Any) -> None:
    from pipelines.model.distributed import pinned_partitions, training_workers

    params = dask_params(prepared_root)
    train, _, _, schema = splits(params)
    workers = training_workers(client, 2)
    pieces = pinned_partitions(client, io.prepared_path(params.paths, "train"), schema, workers)
    holders = client.who_has(pieces)
    assert [set(holders[piece.key]) for piece in pieces] == [{worker} for worker in workers]
    parts = client.gather(pieces)
    assert min(len(part) for part in parts) > len(train) // 3
    # Contiguous pieces in file order: the first piece holds the earliest rows, the labels are the split's own.
    np.testing.assert_array_equal(np.concatenate([part[LABEL].to_numpy() for part in parts]), train[LABEL].to_numpy())
    client.cancel(pieces)
    with pytest.raises(ParamsError, match=r"search.n_workers is 3 .* has 2 worker"):
        training_workers(client, 3)


def test_search_stage_with_dask_engine_gives_a_model_the_gate_registers(prepared_root: Path, client: Any) -> None:
    # search.dask_address: the stage joins the running cluster, as it would join a real one.
    params = dask_params(prepared_root, **{"search.grid.lightgbm": {"num_leaves": [15, 31]},
                                           "search.dask_address": client.scheduler.address,
                                           "paths.model_dir": str(prepared_root / "models" / "dask")})
    summary = stages.run_search(params)
    report = json.loads((params.paths.metrics_dir / "candidates.json").read_text())
    candidates = report["candidates"]
    # Each candidate used the whole cluster, so they ran one after the other, never side by side.
    assert summary["candidates"] == 2 and report["workers"] == [candidates[0]["worker"]]
    assert candidates[0]["worker"].startswith("dask tcp://127.0.0.1:")
    assert candidates[0]["finished"] <= candidates[1]["started"]
    model = TrainedModel.load(params.paths.model_dir)
    assert model.meta["engine"]["engine"] == "dask" and model.meta["params"]["engine"] == "dask"
    stages.run_evaluate(params)
    outcome = stages.run_gate_and_promote(params)
    assert outcome["tag"] and outcome["promote"], outcome  # first model: beats the naive baselines, promoted


def test_a_capped_dask_search_reads_the_slice_on_the_workers_and_refits_on_the_whole_split(
        prepared_root: Path, client: Any) -> None:
    """With train.engine dask the candidates' slice is a Parquet file the workers read in partitions, like the
    prepared split; the winner's refit reads the prepared split itself."""
    params = dask_params(prepared_root, **{"search.grid.lightgbm": {"num_leaves": [15, 31]},
                                           "search.dask_address": client.scheduler.address, "search.max_rows": 5000,
                                           "paths.model_dir": str(prepared_root / "models" / "dask-capped")})
    train_rows = len(splits(params)[0])
    summary = stages.run_search(params)
    report = json.loads((params.paths.metrics_dir / "candidates.json").read_text())
    assert summary["refit"] and [c["train_rows"] for c in report["candidates"]] == [5000, 5000]
    assert report["refit"]["index"] == report["winner"] and report["refit"]["worker"].startswith("dask tcp://")
    model = TrainedModel.load(params.paths.model_dir)
    assert model.meta["engine"]["engine"] == "dask" and model.meta["train_rows"] == train_rows > 5000
    assert model.meta["search"]["search_rows"] == 5000

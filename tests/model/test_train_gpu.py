"""train.device_type gpu trains where an OpenCL platform is found (an NVIDIA card with libnvidia-opencl.so.1 named by
an .icd file): none on the dev box, so this is skipped there. The refusal is tests/code/test_gpu_refusal.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines import io, stages
from pipelines.config import TrainParams, parse_params
from pipelines.features import LABEL, FeatureSchema
from pipelines.model.gpu import probe_opencl
from pipelines.model.train import train_model
from support.params import SMALL_WINDOW, params_dict, prepare_small_window

pytestmark = [pytest.mark.model, pytest.mark.gpu,
              pytest.mark.skipif(not probe_opencl().found, reason="no OpenCL platform (no GPU with an ICD here)")]


def test_gpu_model_matches_cpu_and_search_runs_candidates_in_turn(tmp_path: Path, small_table: pd.DataFrame) -> None:
    root = prepare_small_window(tmp_path, small_table)
    params = parse_params(params_dict(root, {**SMALL_WINDOW, "train.device_type": "gpu",
                                             "search.grid.lightgbm": {"num_leaves": [15, 31]}}))
    train, valid, test = (pd.read_parquet(io.prepared_path(params.paths, name)) for name in ("train", "valid", "test"))
    schema = FeatureSchema.load(io.schema_path(params.paths))
    cpu = train_model(train, valid, schema, TrainParams.model_validate({**params.train.model_dump(),
                                                                         "device_type": "cpu"}))
    gpu = train_model(train, valid, schema, params.train)
    auc = {name: roc_auc_score(test[LABEL], model.predict_proba(test)) for name, model in (("cpu", cpu), ("gpu", gpu))}
    assert abs(auc["gpu"] - auc["cpu"]) <= 0.01, auc  # OpenCL histograms are single precision by default
    stages.run_search(params)
    candidates = json.loads((params.paths.metrics_dir / "candidates.json").read_text())["candidates"]
    assert [c["worker"] for c in candidates] == ["local", "local"]
    assert candidates[0]["finished"] <= candidates[1]["started"]

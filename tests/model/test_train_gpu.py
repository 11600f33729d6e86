"""train.device_type gpu: refused before any work where LightGBM would find no OpenCL platform; trains where one is.

The refusal tests run everywhere (they point the ICD lookup at folders they make). The training test runs only where
an OpenCL platform is found (an NVIDIA card with libnvidia-opencl.so.1 named by an .icd file): none on the dev box.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines import io, stages
from pipelines.config import ParamsError, TrainParams, parse_params
from pipelines.features import LABEL, FeatureSchema
from pipelines.gpu import probe_opencl, require_opencl
from pipelines.search import parallel_candidates
from pipelines.train import train_model
from tests.conftest import SMALL_WINDOW, params_dict, prepare_small_window

HAS_OPENCL = probe_opencl().found


def test_no_icd_is_refused_naming_the_key_and_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ParamsError) as error:
        require_opencl("gpu", environ={"OCL_ICD_VENDORS": str(tmp_path)})
    message = str(error.value)
    assert message.startswith("train.device_type is 'gpu' but no OpenCL platform was found")
    assert f"OCL_ICD_VENDORS={tmp_path}" in message and "OCL_ICD_FILENAMES unset" in message
    assert "no .icd file names a vendor library" in message and "libnvidia-opencl.so.1" in message


def test_icd_naming_a_missing_library_is_refused_with_the_library(tmp_path: Path) -> None:
    (tmp_path / "nvidia.icd").write_text("libflightops-no-such-opencl.so.1\n")
    with pytest.raises(ParamsError, match=r"could not use libflightops-no-such-opencl\.so\.1: .*cannot open"):
        require_opencl("gpu", environ={"OCL_ICD_VENDORS": str(tmp_path)})
    with pytest.raises(ParamsError, match=r"could not use /nonexistent/libOpenCL\.so"):
        require_opencl("gpu", environ={"OCL_ICD_FILENAMES": "/nonexistent/libOpenCL.so",
                                       "OCL_ICD_VENDORS": str(tmp_path / "nvidia.icd")})


def test_cpu_needs_no_opencl() -> None:
    require_opencl("cpu", environ={"OCL_ICD_VENDORS": "/nonexistent"})  # no probe, no error


@pytest.mark.skipif(HAS_OPENCL, reason="an OpenCL platform is present: the refusal cannot be seen here")
def test_gpu_search_is_refused_before_a_cluster_starts_or_anything_trains(make_params) -> None:
    params = make_params(**{"train.device_type": "gpu"})
    with pytest.raises(ParamsError, match="train.device_type is 'gpu'"):
        stages.run_search(params)  # no prepared data exists: the refusal comes first
    assert not params.paths.model_dir.exists()


def test_gpu_and_dask_candidates_train_one_at_a_time(make_params) -> None:
    train = make_params().train
    assert parallel_candidates(train)
    for change in ({"device_type": "gpu"}, {"engine": "dask"}):
        assert not parallel_candidates(TrainParams.model_validate({**train.model_dump(), **change}))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_OPENCL, reason="no OpenCL platform (no GPU with an ICD on this machine)")
def test_gpu_model_matches_cpu_and_search_runs_candidates_in_turn(tmp_path: Path, small_table: pd.DataFrame) -> None:
    root = prepare_small_window(tmp_path, small_table)
    params = parse_params(params_dict(root, {**SMALL_WINDOW, "train.device_type": "gpu",
                                             "search.grid": {"num_leaves": [15, 31]}}))
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

"""train.device_type gpu is refused before any work where LightGBM would find no OpenCL platform.

These run everywhere: they point the ICD lookup at folders they make. Training on a GPU is
tests/model/test_train_gpu.py (runs only where an OpenCL platform is found).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import stages
from pipelines.config import ParamsError, TrainParams
from pipelines.model.gpu import probe_opencl, require_opencl
from pipelines.model.search import parallel_candidates

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

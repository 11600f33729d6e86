"""The scale-out keys of params.yaml (train.engine, train.device_type) are checked by the one loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import ParamsError, parse_params
from pipelines.model.families.lightgbm import lightgbm_params
from support.params import params_dict


@pytest.mark.parametrize(("key", "value"), [("train.engine", "spark"), ("train.device_type", "cuda")])
def test_unknown_engine_or_device_is_refused_naming_the_key(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ParamsError) as error:
        parse_params(params_dict(tmp_path, {key: value}))
    assert key in str(error.value) and repr(value) in str(error.value)


def test_engine_is_not_passed_to_lightgbm(tmp_path: Path) -> None:
    params = parse_params(params_dict(tmp_path, {"train.engine": "dask"}))
    assert params.train.engine == "dask" and "engine" not in lightgbm_params(params.train)

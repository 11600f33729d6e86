"""The params loader: every bad key or value is refused with a message that names it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.config import ParamsError, load_params, parse_params
from tests.conftest import PARAMS_FILE, params_dict


def test_repo_params_file_loads() -> None:
    params = load_params(PARAMS_FILE)
    assert params.collect.start < params.collect.end
    assert params.source.target not in params.features.raw_columns


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"train.num_leavs": 3}, "unknown key 'num_leavs'"),
        ({"train.learning_rate": 2}, "train.learning_rate must be in (0, 1]"),
        ({"train.num_leaves": "many"}, "train.num_leaves"),
        ({"source.kind": "s3"}, "source.kind"),
        ({"collect.end": "2012-01-01"}, "collect.end (2012-01-01) must be after collect.start"),
        ({"features.numeric": ["arr_delay", "hour"]}, "label leakage): ['arr_delay']"),
        ({"features.categorical": ["hour"]}, "both categorical and numeric: ['hour']"),
        ({"train.threshold": 1.5}, "train.threshold must be in (0, 1)"),
        ({"source.kind": "file", "source.path": None}, "source.path"),
        ({"source.kind": "file", "source.path": "data.xlsx"}, "must be a .csv or .parquet"),
        ({"features.numeric": ["hour", "time_hour"]}, "source.time_column 'time_hour' is also listed as a feature"),
        ({"serve.gc_threshold": [0, 10, 10]}, "serve.gc_threshold must be three integers >= 1, got [0, 10, 10]"),
        ({"serve.gc_threshold": [700, 10]}, "serve.gc_threshold"),
        ({"serve.predictor": "onnx"}, "serve.predictor"),
    ],
)
def test_invalid_override_is_refused_by_name(override: dict, message: str) -> None:
    with pytest.raises(ParamsError) as error:
        load_params(PARAMS_FILE, override)
    assert message in str(error.value)


def test_unknown_key_in_file_suggests_the_right_one(tmp_path: Path) -> None:
    data = params_dict(tmp_path)
    data["train"]["num_leavs"] = 3
    data["extra_section"] = {}
    with pytest.raises(ParamsError) as error:
        parse_params(data, origin="mine.yaml")
    text = str(error.value)
    assert "mine.yaml" in text
    assert "train.num_leavs: unknown key (did you mean 'num_leaves'?)" in text
    assert "extra_section: unknown key" in text


def test_missing_key_is_named(tmp_path: Path) -> None:
    data = params_dict(tmp_path)
    del data["split"]["test_days"]
    with pytest.raises(ParamsError, match=r"split.test_days: required key is missing"):
        parse_params(data)


@pytest.mark.parametrize("content", ["", "just a string", "a: [unclosed"])
def test_unusable_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(content)
    with pytest.raises(ParamsError, match=str(path)):
        load_params(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_dates_are_utc(tmp_path: Path) -> None:
    params = parse_params(yaml.safe_load(PARAMS_FILE.read_text()))
    assert params.collect.start.tzinfo is not None
    assert params.collect.start.utcoffset().total_seconds() == 0

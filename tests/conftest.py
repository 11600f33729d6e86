"""Shared fixtures: the real params file, re-pointed at a temp folder and a short real-data window."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config import Params, parse_params

REPO_ROOT = Path(__file__).resolve().parents[1]


PARAMS_FILE = REPO_ROOT / "params.yaml"

# Three real months: enough for train/valid/test splits of a week or two, small enough for unit tests.
SMALL_WINDOW = {"collect.start": "2013-03-01", "collect.end": "2013-06-01", "split.valid_days": 14,
                "split.test_days": 14, "train.num_boost_round": 60, "train.early_stopping_rounds": 10}


def pytest_configure(config: pytest.Config) -> None:
    """A private BentoML model store for the session, set before anything imports bentoml (it reads it once)."""
    os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bentoml-test-")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def params_dict(root: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """params.yaml as a dict, every path moved under `root`, then dotted overrides applied.

    Overrides that change the features and not `monitor.key_features` keep the key features still among them
    (the loader refuses a key feature that is not a feature; the tests of that set it themselves).
    """
    data = yaml.safe_load(PARAMS_FILE.read_text())
    data["paths"] = {key: str(root / value) for key, value in data["paths"].items()}
    data["validate"]["suite"] = str(REPO_ROOT / data["validate"]["suite"])
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        assert leaf in node, f"unknown param {dotted}"
        node[leaf] = value
    if "monitor.key_features" not in (overrides or {}):
        features = {*data["features"]["categorical"], *data["features"]["numeric"]}
        data["monitor"]["key_features"] = [name for name in data["monitor"]["key_features"] if name in features]
    return data


@pytest.fixture
def make_params(tmp_path: Path) -> Callable[..., Params]:
    """Build validated Params rooted in tmp_path: `make_params(**{"train.seed": 1})`."""

    def build(overrides: dict[str, Any] | None = None, **more: Any) -> Params:
        return parse_params(params_dict(tmp_path, {**SMALL_WINDOW, **(overrides or {}), **more}))

    return build


@pytest.fixture(scope="session")
def small_table() -> Any:
    """The real joined flights table for SMALL_WINDOW (read once per session)."""
    from pipelines.collect import collect

    params = parse_params(params_dict(Path("/nonexistent"), SMALL_WINDOW))
    return collect(params.source, params.collect)


def write_validated_table(params: Params, table: Any) -> None:
    """Write `table` where collect would and validate it for real: every later stage refuses an unvalidated one."""
    from pipelines import io, stages

    io.write_parquet(params.paths.raw_table, table)
    stages.run_validate(params)


def prepare_small_window(root: Path, table: Any) -> Path:
    """The small window's table written under `root`, validated and preprocessed there; returns `root`."""
    from pipelines import stages

    params = parse_params(params_dict(root, SMALL_WINDOW))
    write_validated_table(params, table)
    stages.run_preprocess(params)
    return root

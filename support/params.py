"""The tests' and benchmarks' own params: a frozen copy of the flights default (`support/params.yaml`), re-pointed at a
temp folder and a short real-data window.

Tests never read the live params.yaml, so a user who edits it for their own table keeps a green suite
(`tests/code/test_config.py` checks that the two files hold the same keys, and that the live one loads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipelines.config import Params, parse_params

REPO_ROOT = Path(__file__).resolve().parents[1]
# The flights default the tests were written for; a project copy (support/project_copy.py) gets it as params.yaml.
PARAMS_FILE = Path(__file__).resolve().parent / "params.yaml"

# Three real months: enough for train/valid/test splits of a week or two, small enough for unit tests.
SMALL_WINDOW = {"collect.start": "2013-03-01", "collect.end": "2013-06-01", "split.valid_days": 14,
                "split.test_days": 14, "train.lightgbm.num_boost_round": 60,
                "train.lightgbm.early_stopping_rounds": 10, "train.histgb.max_iter": 60,
                "train.histgb.early_stopping_rounds": 10}


def params_dict(root: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The frozen params (support/params.yaml) as a dict, every path moved under `root`, then dotted overrides applied.

    Overrides that change the features and not `monitor.key_features` keep the key features still among them
    (the loader refuses a key feature that is not a feature; the tests of that set it themselves).
    """
    data = yaml.safe_load(PARAMS_FILE.read_text())
    data["paths"] = {key: str(root / value) for key, value in data["paths"].items()}
    data["validate"]["suite"] = str(REPO_ROOT / data["validate"]["suite"])
    if data["validate"].get("calibration"):
        data["validate"]["calibration"] = str(REPO_ROOT / data["validate"]["calibration"])
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

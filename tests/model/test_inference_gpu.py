"""The CPU half of the GPU batch benchmark (benchmarks/inference_gpu.py): `--prepare` writes the champion's encoded
test rows, each model's learner file and the project's own probabilities, and the shapes that decide how the GPU
machine feeds a model its rows. The GPU half (`--run`, Hummingbird on CUDA) needs a lent GPU and packages the
project does not depend on; what it relies on is checked here: an `ordinal` model (every split numeric, missing
type None) gives LightGBM's answers when its NaNs are read as 0.0, the route the GPU run gives it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import yaml

from benchmarks.inference_gpu import EXPECTED, LABELS, MATRIX, MODEL, NAN_AS_ZERO, SHAPES, markdown, prepare
from pipelines import io
from pipelines.config import parse_params
from pipelines.data.preprocess import prepare as prepare_splits
from pipelines.features import LABEL, encode_frame
from pipelines.model.optimize import ordinal_refit, without_features
from pipelines.model.seam import TrainedModel
from pipelines.model.train import train_model
from support.params import SMALL_WINDOW, params_dict

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, small_table: pd.DataFrame) -> dict[str, Any]:
    """A champion of three real months with its splits, its `ordinal` refit, and a refit without one feature, saved
    where `optimize` saves variants."""
    root = tmp_path_factory.mktemp("gpu-prepare")
    data = params_dict(root, {**SMALL_WINDOW, "train.num_threads": 1})
    params = parse_params(data)
    (root / "params.yaml").write_text(yaml.safe_dump(data))
    splits = prepare_splits(small_table, params.source, params.features, params.split,
                            keep=params.evaluate.slices)
    for split in io.SPLITS:
        io.write_parquet(io.prepared_path(params.paths, split), getattr(splits, split))
    model = train_model(splits.train, splits.valid, splits.schema, params.train)
    model.save(params.paths.model_dir)
    champion = TrainedModel.load(params.paths.model_dir)
    ordinal_refit(champion, splits.train, splits.valid, params.train).save(params.paths.variants_dir / "ordinal")
    dropped = without_features(splits.schema, [splits.schema.numeric[0]])
    train_model(splits.train, splits.valid, dropped, params.train).save(params.paths.variants_dir / "features")
    return {"params": params, "params_file": root / "params.yaml", "splits": splits, "model": champion}


def test_prepare_writes_the_champions_rows_and_each_models_own_answers(project: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    summary = prepare(tmp_path, str(project["params_file"]), ["ordinal"])
    test, model = project["splits"].test, project["model"]
    matrix = np.load(tmp_path / MATRIX)
    np.testing.assert_array_equal(matrix, encode_frame(test, model.schema))
    np.testing.assert_array_equal(np.load(tmp_path / LABELS), test[LABEL].to_numpy())
    # The champion's expected answers are the service's: the model's probabilities on the same rows.
    np.testing.assert_allclose(np.load(tmp_path / "full" / EXPECTED), model.predict_proba(test), rtol=0, atol=1e-12)
    shapes = json.loads((tmp_path / SHAPES).read_text())
    assert list(shapes) == ["full", "ordinal"] and summary["models"] == shapes
    assert summary["rows"] == len(test) and summary["rows_with_missing"] == int(np.isnan(matrix).any(axis=1).sum())
    assert summary["rows_with_missing"] > 0  # real weather has gaps: the NaN route below is exercised
    # The native champion splits categories by sets and learns where a NaN goes; the ordinal refit does neither.
    assert shapes["full"]["set_valued_splits"] > 0 and shapes["full"]["missing_types"] != NAN_AS_ZERO
    assert shapes["ordinal"]["set_valued_splits"] == 0 and shapes["ordinal"]["missing_types"] == NAN_AS_ZERO


def test_the_ordinal_model_reads_a_missing_value_as_zero_and_the_native_one_does_not(project: dict[str, Any],
                                                                                     tmp_path: Path) -> None:
    """The GPU run gives a model whose every split has missing type None its rows with NaN replaced by 0.0 (a tree
    compiler sends every NaN one way): that must be the same answer LightGBM gives the NaN rows."""
    prepare(tmp_path, str(project["params_file"]), ["ordinal"])
    matrix = np.load(tmp_path / MATRIX)
    zeroed = np.nan_to_num(matrix, nan=0.0)
    answers = {}
    for name in ("full", "ordinal"):
        booster = lgb.Booster(model_file=str(tmp_path / name / MODEL))
        expected = np.load(tmp_path / name / EXPECTED)
        np.testing.assert_allclose(booster.predict(matrix), expected, rtol=0, atol=1e-12)
        answers[name] = np.max(np.abs(booster.predict(zeroed) - expected))
    assert answers["ordinal"] <= 1e-12
    assert answers["full"] > 1e-6  # the premise is not trivially true: a native model's NaN side matters


def test_a_variant_of_other_columns_is_refused(project: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'features' reads another encoding than the champion's"):
        prepare(tmp_path, str(project["params_file"]), ["features"])
    with pytest.raises(ValueError, match="unknown variant 'nonsense'"):
        prepare(tmp_path / "other", str(project["params_file"]), ["nonsense"])


def test_the_table_shows_a_runtime_that_failed_beside_the_measured_ones() -> None:
    results = {"device": "a GPU", "cpu_cores": 16, "versions": {"lightgbm": "4"}, "rows": 10, "rows_with_missing": 2,
               "models": {"full": {"trees": 3, "set_valued_splits": 4, "missing_types": ["NaN", "None"]}},
               "runtimes": [{"model": "full", "runtime": "LightGBM", "test_roc_auc": 0.7, "max_abs_diff": 0.0,
                             "rows_per_s": {"1000": 1e5, "10000": 2e5, "100000": 3e5, "1000000": 4e5}},
                            {"model": "full", "runtime": "Hummingbird -> torch, CUDA", "error": "no such op"}]}
    lines = markdown(results).splitlines()
    assert "10 encoded test rows (2 with a missing value)" in lines[0]
    measured, failed = lines[-2], lines[-1]
    assert measured.startswith("| full (3, 4, NaN/None) | LightGBM | 0.70000 | 0.0e+00 | 100,000 | 200,000 |")
    assert "failed: no such op" in failed
    assert measured.count("|") == failed.count("|")  # the failed row keeps the table's columns

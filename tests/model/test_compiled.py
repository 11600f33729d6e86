"""The compiled forest (services/compiled.py): same answers as the booster, compiled once, refused when it differs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.compiled import CompileError, ensure_compiled, load_compiled, probe_matrix

pytestmark = pytest.mark.model


def _booster(tmp_path: Path, **params: Any) -> tuple[Any, Path, np.ndarray]:
    """A small binary model with a categorical feature and missing values, saved as model.txt."""
    import lightgbm as lgb

    rng = np.random.default_rng(7)
    n = 3000
    matrix = np.column_stack([rng.integers(0, 6, n).astype(float), rng.normal(size=n), rng.exponential(size=n)])
    matrix[rng.random(n) < 0.1, 1] = np.nan
    label = ((matrix[:, 0] % 2 == 0) ^ (np.nan_to_num(matrix[:, 1]) > 0.3) ^ (rng.random(n) < 0.1)).astype(int)
    dataset = lgb.Dataset(matrix, label=label, feature_name=["cat", "x", "y"], categorical_feature=["cat"])
    booster = lgb.train({"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 1, **params}, dataset,
                        num_boost_round=20)
    model_file = tmp_path / "model.txt"
    booster.save_model(str(model_file))
    return booster, model_file, matrix


def test_compiled_forest_gives_the_boosters_answers_and_is_compiled_once(tmp_path: Path) -> None:
    booster, model_file, matrix = _booster(tmp_path)
    cache = tmp_path / "compiled"
    forest = load_compiled(model_file, booster, cache)
    assert forest.describe().startswith("compiled (lleaves")
    np.testing.assert_allclose(forest.predict(matrix), booster.predict(matrix), rtol=0, atol=1e-12)
    one = matrix[:1]
    assert abs(forest.predict(one)[0] - booster.predict(one)[0]) <= 1e-12
    compiled_at = forest.object_file.stat().st_mtime_ns
    again = load_compiled(model_file, booster, cache)  # a second worker, or a restart
    assert again.object_file == forest.object_file and again.object_file.stat().st_mtime_ns == compiled_at
    assert sorted(p.suffix for p in cache.iterdir()) == [".lock", ".o", ".sha256"]


def test_probe_rows_cover_every_split_threshold_and_both_sides(tmp_path: Path) -> None:
    booster, _, _ = _booster(tmp_path)
    probe = probe_matrix(booster, rows=10)
    nodes = booster.trees_to_dataframe()
    for j, name in enumerate(booster.feature_name()):
        column = probe[:, j]
        assert np.isnan(column).any() and (column == 0).any()
        for threshold in nodes.loc[nodes["split_feature"] == name, "threshold"].unique():
            if isinstance(threshold, str):
                assert {float(c) for c in threshold.split("||")} <= set(column[~np.isnan(column)])
            else:
                assert {threshold, np.nextafter(threshold, np.inf), np.nextafter(threshold, -np.inf)} <= set(column)


def test_a_damaged_cache_file_is_compiled_again_not_loaded(tmp_path: Path) -> None:
    """LLVM aborts the process on a damaged object file, so the checksum must catch it before loading."""
    booster, model_file, matrix = _booster(tmp_path)
    cache = tmp_path / "compiled"
    object_file = ensure_compiled(model_file, cache)
    object_file.write_bytes(object_file.read_bytes()[:500])
    forest = load_compiled(model_file, booster, cache)
    assert forest.object_file.stat().st_size > 500
    np.testing.assert_allclose(forest.predict(matrix), booster.predict(matrix), rtol=0, atol=1e-12)


def test_a_forest_that_differs_from_the_booster_is_refused(tmp_path: Path) -> None:
    """lleaves ignores linear trees' leaf models: the parity check must notice and refuse."""
    booster, model_file, _ = _booster(tmp_path, linear_tree=True)
    with pytest.raises(CompileError, match="differs from LightGBM by"):
        load_compiled(model_file, booster, tmp_path / "compiled")


def test_a_model_that_cannot_be_compiled_says_why(tmp_path: Path) -> None:
    model_file = tmp_path / "model.txt"
    model_file.write_text("this is not a LightGBM model\n")
    with pytest.raises(CompileError, match="compiling .*model.txt failed"):
        ensure_compiled(model_file, tmp_path / "compiled")
    assert not list((tmp_path / "compiled").glob("*.o"))


def test_an_unwritable_cache_folder_falls_back_to_a_temp_folder(tmp_path: Path) -> None:
    booster, model_file, matrix = _booster(tmp_path)
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a file where the folder should be: mkdir fails
    forest = load_compiled(model_file, booster, blocked / "compiled")
    assert blocked not in forest.object_file.parents
    np.testing.assert_allclose(forest.predict(matrix), booster.predict(matrix), rtol=0, atol=1e-12)


@pytest.mark.parametrize("linear_tree", [False, True], ids=["compiled", "refused-served-by-booster"])
def test_a_stored_model_is_served_compiled_or_else_by_its_booster(tmp_path: Path, linear_tree: bool) -> None:
    """What the service loads: a registered model with its compiled forest, or (when the forest is refused) its
    booster, saying why; either way `score` answers with the booster's probabilities."""
    from datetime import datetime, timedelta

    from pipelines.features import FeatureSchema
    from pipelines.model.families.lightgbm import LightGBMModel
    from pipelines.release import registry
    from services.scoring import load_tagged, score

    booster, _, matrix = _booster(tmp_path, linear_tree=linear_tree)
    vocabulary = list("abcdef")
    schema = FeatureSchema(time_column="t", categorical={"cat": vocabulary}, numeric=["x", "y"], time_parts=[])
    LightGBMModel(booster=booster, schema=schema, threshold=0.5).save(tmp_path / "model")
    tag = registry.save_model(tmp_path / "model", {"data_version": "test"}, name="test-model")
    loaded = load_tagged(tag, ["cat", "x", "y"], "t", compiled_dir=tmp_path / "compiled")
    if linear_tree:
        assert loaded.forest is None and "differs from LightGBM" in loaded.predictor
    else:
        assert loaded.forest is not None and loaded.predictor.startswith("compiled")
    start = datetime(2013, 1, 1)
    rows = [{"cat": vocabulary[int(c)], "x": None if np.isnan(x) else float(x), "y": float(y),
             "t": start + timedelta(hours=i)} for i, (c, x, y) in enumerate(matrix[:200])]
    answers = score(loaded, rows, "t", None)
    np.testing.assert_allclose([a["probability"] for a in answers], booster.predict(matrix[:200]), rtol=0,
                               atol=1e-12)

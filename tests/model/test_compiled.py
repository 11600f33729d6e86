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


def test_scoring_from_the_checked_columns_answers_and_logs_as_from_the_rows(tmp_path: Path) -> None:
    """`score` given the columnar checks' columns (the batch fast path) gives the answers and prediction-log lines
    it gives from pydantic's rows: same probabilities, labels, unknown categories, logged inputs and times."""
    import json
    from datetime import datetime, timedelta
    from typing import Annotated

    import orjson
    from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, TypeAdapter
    from typing_extensions import TypedDict

    from pipelines.features import FeatureSchema
    from pipelines.model.families.lightgbm import LightGBMModel
    from pipelines.monitor.prediction_log import PredictionLog
    from pipelines.release import registry
    from services.columnar import ColumnarRows
    from services.schemas import CategoryText, _in_utc
    from services.scoring import load_tagged, score

    booster, _, matrix = _booster(tmp_path)
    schema = FeatureSchema(time_column="t", categorical={"cat": list("abcdef")}, numeric=["x", "y"], time_parts=[])
    LightGBMModel(booster=booster, schema=schema, threshold=0.5).save(tmp_path / "model")
    loaded = load_tagged(registry.save_model(tmp_path / "model", {"data_version": "test"}, name="test-model"),
                         ["cat", "x", "y"], "t", compiled_dir=tmp_path / "compiled")
    row_type = TypedDict("Row", {"cat": CategoryText | None,  # noqa: UP013
                                 "x": Annotated[float | None, Field(strict=True)],
                                 "y": Annotated[float, Field(strict=True)],
                                 "t": Annotated[AwareDatetime, AfterValidator(_in_utc)]})
    row_type.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    start = datetime(2013, 1, 1)
    sent = [{"cat": "abcdefz"[int(c) if i % 17 else 6], "x": None if np.isnan(x) else round(float(x), 3),
             "y": int(y) if i % 5 == 0 else float(y),
             "t": (start + timedelta(minutes=37 * i)).isoformat() + ("+05:30" if i % 3 else "Z")}
            for i, (c, x, y) in enumerate(matrix[:300])]
    texts = [orjson.dumps(row) for row in sent]
    by_pydantic = [TypeAdapter(row_type).validate_json(text) for text in texts]
    by_columns = [orjson.loads(text) for text in texts]
    checked = ColumnarRows(row_type).check(by_columns)
    assert checked.proven.all()
    answers = {}
    for name, rows, columns in (("pydantic", by_pydantic, None), ("columns", by_columns, checked.columns)):
        log = PredictionLog(tmp_path / name, rotate_hourly=False, rotate_bytes=10**9)
        answers[name] = [{k: v for k, v in answer.items() if k != "request_id"}
                         for answer in score(loaded, rows, "t", log, columns=columns)]
        log.close()
    assert answers["columns"] == answers["pydantic"]
    assert sum(bool(answer["unknown_categories"]) for answer in answers["columns"]) > 10
    lines = {name: [{k: v for k, v in json.loads(line).items() if k not in ("request_id", "ts")}
                    for path in sorted((tmp_path / name).glob("*.jsonl")) for line in path.read_text().splitlines()]
             for name in answers}
    assert len(lines["columns"]) == 300 and lines["columns"] == lines["pydantic"]
    assert lines["columns"][1]["inputs"]["t"] == "2012-12-31T19:07:00+00:00"

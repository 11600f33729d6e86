"""preprocess -> train -> evaluate on three real months: leakage-free splits, determinism, meaningful metrics."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.config import parse_params
from pipelines.data.preprocess import THIN_SPLIT_AUC_SE, prepare, roc_auc_standard_error
from pipelines.features import LABEL, FeatureError, encode_frame
from pipelines.model.evaluate import evaluate_model
from pipelines.model.families.lightgbm import build_datasets
from pipelines.model.seam import TrainedModel
from pipelines.model.train import recency_weights, train_model
from support.params import SMALL_WINDOW, params_dict

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, small_table: pd.DataFrame):
    params = parse_params(params_dict(tmp_path_factory.mktemp("model"), SMALL_WINDOW))
    return params, prepare(small_table, params.source, params.features, params.split, keep=params.evaluate.slices)


def test_splits_are_ordered_in_time_and_unlabelled_rows_dropped(prepared) -> None:
    params, data = prepared
    time = params.source.time_column
    assert data.train[time].max() < data.valid[time].min()
    assert data.valid[time].max() < data.test[time].min()
    assert data.test[time].min().day_of_year - data.valid[time].min().day_of_year == params.split.valid_days
    for split in (data.train, data.valid, data.test):
        assert split[LABEL].isin([0, 1]).all()
        assert not set(params.features.forbidden) & set(split.columns)  # label sources never reach a split


def test_training_is_deterministic_and_beats_the_baselines(prepared, tmp_path) -> None:
    params, data = prepared
    first = train_model(data.train, data.valid, data.schema, params.train)
    second = train_model(data.train, data.valid, data.schema, params.train)
    first.save(tmp_path / "a")
    second.save(tmp_path / "b")
    assert (tmp_path / "a" / "model.txt").read_bytes() == (tmp_path / "b" / "model.txt").read_bytes()

    loaded = TrainedModel.load(tmp_path / "a")
    assert loaded.schema == data.schema and loaded.threshold == pytest.approx(first.threshold)
    evaluation = evaluate_model(loaded, data.train, data.test, params.source.time_column,
                                params.evaluate.slices, params.evaluate.min_slice_rows)
    metrics = evaluation.metrics
    assert metrics.model.roc_auc > metrics.baselines["hour_of_day_rate"].roc_auc > 0.5
    assert metrics.model.brier < metrics.baselines["prior"].brier
    assert metrics.lift_over_best_baseline.roc_auc > 0
    assert {entry.value for entry in evaluation.slices.columns["origin"]} == {"EWR", "JFK", "LGA"}
    assert set(evaluation.importance["feature"]) == set(data.schema.feature_names)
    assert evaluation.roc["fpr"].is_monotonic_increasing


def test_model_is_sensitive_to_weather_and_invariant_to_unused_columns(prepared) -> None:
    params, data = prepared
    model = train_model(data.train, data.valid, data.schema, params.train)
    rows = data.test.head(2000)
    # invariance: a column the model never sees cannot change its answer
    noisy = rows.assign(tailnum="N00000", flight=0)
    pd.testing.assert_series_equal(pd.Series(model.predict_proba(rows)), pd.Series(model.predict_proba(noisy)))
    # direction: poor visibility and heavy rain at the origin should not make delays less likely on average
    stormy = rows.assign(visib=0.5, precip=0.5, wind_gust=45.0)
    assert model.predict_proba(stormy).mean() > model.predict_proba(rows).mean()


def test_prepare_refuses_missing_and_mistyped_columns(prepared, small_table: pd.DataFrame) -> None:
    params, _ = prepared
    with pytest.raises(FeatureError, match=r"missing column\(s\) \['distance'\]"):
        prepare(small_table.drop(columns="distance"), params.source, params.features, params.split)
    mistyped = small_table.assign(distance=small_table["distance"].astype(str).where(small_table.index > 0, "far"))
    with pytest.raises(FeatureError, match=r"numeric feature 'distance' \(features.numeric\) has dtype object "
                       r"with non-numeric values, e.g. \['far'\]$"):
        prepare(mistyped, params.source, params.features, params.split)


def test_split_that_leaves_a_part_empty_is_explained(prepared, small_table: pd.DataFrame, make_params) -> None:
    params = make_params({"split.valid_days": 60, "split.test_days": 40})
    with pytest.raises(FeatureError, match=r"time split leaves \['train'\] empty.*widen collect.start/end"):
        prepare(small_table, params.source, params.features, params.split)


def test_a_thin_test_split_is_warned_with_its_class_counts_and_the_key_that_widens_it(
        prepared, small_table: pd.DataFrame, make_params) -> None:
    """Two weeks of flights per split are plenty (no warning); a sparse table's test split of a few dozen rows
    trains, but its ROC AUC decides nothing: the warning says how uncertain it is and what to widen."""
    _, data = prepared
    assert data.split_warnings == []
    params = make_params()
    time = params.source.time_column
    last_days = small_table[time] >= small_table[time].max() - pd.Timedelta(days=params.split.test_days)
    sparse = pd.concat([small_table[~last_days], small_table[last_days].sample(n=60, random_state=0)])
    thin = prepare(sparse, params.source, params.features, params.split)
    assert len(thin.split_warnings) == 1
    positives = int(thin.test[LABEL].sum())
    days = params.split.test_days
    assert thin.split_warnings[0].startswith(
        f"the test split is thin: {len(thin.test):,} rows over split.test_days={days} days ({positives:,} positive")
    enough = int(thin.split_warnings[0].split("split.test_days: ")[1].split(" ")[0])
    # The days it names, at the split's own rate, give a standard error within the bound.
    rows = len(thin.test) * enough / days
    rate = positives / len(thin.test)
    assert roc_auc_standard_error(int(rows * rate), int(rows * (1 - rate))) <= THIN_SPLIT_AUC_SE * 1.05


def test_a_table_too_small_for_its_splits_is_told_so_rather_than_given_days_it_lacks(
        small_table: pd.DataFrame, make_params) -> None:
    """A table whose every split is thin (a daily table of a few hundred rows): widening a split would take more rows
    than the table holds, so the warning says the table is too small instead of naming split days it lacks."""
    params = make_params()
    tiny = small_table.sample(n=400, random_state=0)
    thin = prepare(tiny, params.source, params.features, params.split)
    assert thin.split_warnings
    for warning in thin.split_warnings:
        assert "the table is too small for this split to decide; collect more history" in warning
        assert "would hold enough" not in warning


def test_encoded_matrix_has_no_label_source(prepared) -> None:
    _, data = prepared
    matrix = encode_frame(data.test, data.schema)
    assert matrix.shape[1] == len(data.schema.feature_names)
    assert "arr_delay" not in data.schema.feature_names


def test_recency_weights_halve_per_half_life_and_keep_the_mean() -> None:
    times = pd.Series(pd.to_datetime(["2013-03-01", "2013-03-31", "2013-04-30"], utc=True))
    weights = recency_weights(times, half_life_days=30)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[2] / weights[1] == pytest.approx(2.0) and weights[1] / weights[0] == pytest.approx(2.0)


def test_recency_weighting_changes_the_model_and_binary_datasets_carry_it(prepared, tmp_path) -> None:
    """Weighted training learns another model than unweighted; trained from the shared binary Dataset files (the
    search's path) it is the same file as trained from the frames: the weights travel in the binary file."""
    params, data = prepared
    weighted = params.train.model_copy(update={"recency_half_life_days": 14.0})
    plain = train_model(data.train, data.valid, data.schema, params.train)
    from_frames = train_model(data.train, data.valid, data.schema, weighted)
    datasets = build_datasets(data.train, data.valid, data.schema, weighted, tmp_path / "bin")
    from_binary = train_model(None, data.valid, data.schema, weighted, datasets=datasets)
    assert from_frames.booster.model_to_string() != plain.booster.model_to_string()
    assert from_binary.booster.model_to_string() == from_frames.booster.model_to_string()


def test_recency_weighting_is_refused_with_the_dask_engine(tmp_path) -> None:
    with pytest.raises(ValueError, match="recency_half_life_days is not supported with train.engine: dask"):
        parse_params(params_dict(tmp_path, {"train.engine": "dask", "train.recency_half_life_days": 30}))

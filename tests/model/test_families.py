"""Every model family through the seam, on three real months: deterministic files, a save/load round trip that
predicts the same, the load-time parity check, importance of the right shape, evaluation, and the service's
scoring path giving `predict_proba`'s probabilities."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pipelines import contracts, io
from pipelines.config import FAMILIES, parse_params
from pipelines.contracts import ModelMeta
from pipelines.data.preprocess import prepare
from pipelines.model.catalog import load_model
from pipelines.model.evaluate import evaluate_model, feature_importance
from pipelines.model.seam import WEIGHT, ParityError, TrainedModel, check_parity
from pipelines.model.train import train_model
from support.params import SMALL_WINDOW, params_dict

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, small_table: pd.DataFrame):
    params = parse_params(params_dict(tmp_path_factory.mktemp("families"), SMALL_WINDOW))
    return params, prepare(small_table, params.source, params.features, params.split, keep=params.evaluate.slices)


@pytest.fixture(scope="module", params=FAMILIES)
def trained(request: pytest.FixtureRequest, prepared, tmp_path_factory: pytest.TempPathFactory):
    params, data = prepared
    train_params = params.train.with_family(request.param)
    model = train_model(data.train, data.valid, data.schema, train_params)
    directory = tmp_path_factory.mktemp(request.param) / "model"
    model.save(directory)
    return request.param, train_params, model, directory


def test_same_params_and_data_give_the_same_file(trained, prepared, tmp_path) -> None:
    family, train_params, _, directory = trained
    params, data = prepared
    train_model(data.train, data.valid, data.schema, train_params).save(tmp_path / "again")
    assert contracts.model_file(directory).name == io.MODEL_FILES[family]
    assert io.file_md5(contracts.model_file(tmp_path / "again")) == io.file_md5(contracts.model_file(directory))
    # Every file of the model directory, not only the learner's: DVC hashes the directory (`dvc repro` after a run
    # by hand must put back the recorded bytes), so nothing in it may vary run to run (a fit's duration did).
    files = sorted(path.name for path in directory.iterdir())
    assert files == sorted(path.name for path in (tmp_path / "again").iterdir())
    assert {name: io.file_md5(tmp_path / "again" / name) for name in files} == \
        {name: io.file_md5(directory / name) for name in files}


def test_save_load_round_trip_predicts_the_same(trained, prepared, tmp_path) -> None:
    family, train_params, model, directory = trained
    _, data = prepared
    loaded = load_model(directory)
    assert type(loaded) is type(model) and loaded.family == family
    assert loaded.threshold == model.threshold and loaded.schema == data.schema
    np.testing.assert_array_equal(loaded.predict_proba(data.test), model.predict_proba(data.test))
    loaded.save(tmp_path / "resaved")  # a loaded model saves the file it was loaded from
    assert io.file_md5(contracts.model_file(tmp_path / "resaved")) == io.file_md5(contracts.model_file(directory))
    assert ModelMeta.load(directory).family == family
    assert loaded.family_params == train_params.model and loaded.family_params.family == family


def test_model_json_is_the_bytes_the_meta_dict_was_written_as(trained, tmp_path) -> None:
    """model.json is the train stage's DVC out: `ModelMeta` writes what the seam wrote from the model's meta dict
    before it was typed (every key, in its order, the family's own first; the same numbers), the search's `data` and
    `search` after training's keys, and a loaded model saves the same file again."""
    _, _, model, directory = trained
    meta = {**model.meta, "data": {"raw_table_md5": "0" * 32, "window": ["2013-01-01", "2013-04-01"]},
            "search": {"candidate": np.int64(0), "candidates": 1, "refit": np.bool_(False)}}  # NumPy, as a caller may
    dataclasses.replace(model, meta=meta).save(tmp_path / "model")
    io.write_json(tmp_path / "dict.json", {**meta, "family": model.family, "threshold": model.threshold})
    assert (tmp_path / "model" / io.META_FILE).read_bytes() == (tmp_path / "dict.json").read_bytes()
    io.write_json(tmp_path / "plain.json", {**model.meta, "family": model.family, "threshold": model.threshold})
    assert (directory / io.META_FILE).read_bytes() == (tmp_path / "plain.json").read_bytes()
    load_model(tmp_path / "model").save(tmp_path / "resaved")
    assert (tmp_path / "resaved" / io.META_FILE).read_bytes() == (tmp_path / "model" / io.META_FILE).read_bytes()


def test_a_model_that_crossed_processes_is_saved_as_its_fit_wrote_it(trained, tmp_path) -> None:
    """A search candidate comes back from its Dask worker pickled: its file must be the one its fit wrote."""
    import pickle

    _, _, model, directory = trained
    travelled = pickle.loads(pickle.dumps(model))
    travelled.save(tmp_path / "travelled")
    assert io.file_md5(contracts.model_file(tmp_path / "travelled")) == io.file_md5(contracts.model_file(directory))


def test_parity_on_probe_rows_and_a_drifted_model_is_refused(trained) -> None:
    _, _, _, directory = trained
    loaded = load_model(directory)
    difference, rows = check_parity(loaded)
    assert difference <= 1e-12 and rows == 100
    one_thread = check_parity(loaded, lambda matrix: loaded.predict_matrix(matrix, 1))
    assert one_thread[0] <= 1e-12
    with pytest.raises(ParityError, match="away from the probabilities recorded at training"):
        check_parity(loaded, lambda matrix: loaded.predict_matrix(matrix) + 1e-6)


def test_importance_has_one_value_per_feature(trained, prepared) -> None:
    family, _, model, _ = trained
    _, data = prepared
    for kind in (WEIGHT, *model.importance_kinds):
        values = model.importance(kind)
        assert list(values.index) == data.schema.feature_names and (values >= 0).all() and values.sum() > 0, kind
    with pytest.raises(ValueError, match=f"{family} models have no 'shap' importance"):
        model.importance("shap")
    frame = feature_importance(model)
    assert frame["share"].sum() == pytest.approx(1.0, abs=1e-3)
    assert frame["weight"].is_monotonic_decreasing


def test_every_family_beats_the_naive_baselines_on_the_test_split(trained, prepared) -> None:
    _, _, model, directory = trained
    params, data = prepared
    evaluation = evaluate_model(load_model(directory), data.train, data.test, params.source.time_column,
                                params.evaluate.slices, params.evaluate.min_slice_rows)
    assert evaluation.metrics.lift_over_best_baseline.roc_auc > 0
    assert 0 < model.threshold < 1


def test_the_service_scores_with_predict_probas_probabilities(trained, prepared) -> None:
    """The served path (request dicts -> `encode` -> the loaded predictor, one thread) gives `predict_proba`."""
    from services.scoring import LoadedModel, score

    _, _, _, directory = trained
    params, data = prepared
    loaded_model: TrainedModel = load_model(directory)
    rows = data.test.head(300)
    time_column = params.source.time_column
    requests = [{name: row[name] for name in [*loaded_model.schema.raw_columns, time_column]}
                for row in rows.to_dict("records")]
    for name in loaded_model.schema.categorical:  # the service's form: text categories
        for request in requests:
            request[name] = None if pd.isna(request[name]) else str(request[name])
    for batch in (requests[:1], requests):  # one row (one thread) and a batch (parallel)
        answers = score(LoadedModel(tag="t:1", model=loaded_model), [dict(r, **{time_column: r[time_column]
                                                                                 .to_pydatetime()})
                                                                     for r in batch], time_column, None)
        np.testing.assert_allclose([a["probability"] for a in answers],
                                   loaded_model.predict_proba(rows.head(len(batch))), rtol=0, atol=1e-12)

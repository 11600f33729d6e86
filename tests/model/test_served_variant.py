"""The `variant` stage (pipelines/stages.py `run_variant`) on a model trained on a small real window, then the real
gate: with serve.artifact naming a variant the stage makes only that variant (and what it is derived from) where
the gate and the service read it, and the gate promotes with no manual `optimize`; with `full` it reads no data and
makes nothing, and the gate checks no variant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines import contracts, io, stages
from pipelines.config import Params, parse_params
from pipelines.contracts import VariantsReport
from pipelines.model.catalog import load_model
from pipelines.model.optimize import with_sources
from pipelines.model.variants import check_variant, probe_matrix
from pipelines.stages import _served_variant_checks
from support.params import SMALL_WINDOW, params_dict, write_validated_table

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small_table: pd.DataFrame) -> Params:
    """The DAG up to evaluate, as its stages run it: a validated table, its splits, a trained and evaluated model."""
    params = parse_params(params_dict(tmp_path_factory.mktemp("served"),
                                      {**SMALL_WINDOW, "optimize.probe_rows": 300, "train.num_threads": 1}))
    write_validated_table(params, small_table)
    stages.run_preprocess(params)
    stages.run_train(params)
    stages.run_evaluate(params)
    return params


def _with(params: Params, tmp_path: Path, **changes: Any) -> Params:
    """`params` with serve.artifact / optimize keys changed as a params.yaml edit would, and a registry of its own
    (no champion: the gate compares with the naive baselines, as on a first run)."""
    paths = params.paths.model_copy(update={"registry_dir": tmp_path / "registry"})
    serve = params.serve.model_copy(update={k: v for k, v in changes.items() if k in type(params.serve).model_fields})
    optimize = params.optimize.model_copy(update={k: v for k, v in changes.items()
                                                  if k in type(params.optimize).model_fields})
    return params.model_copy(update={"paths": paths, "serve": serve, "optimize": optimize})


def _gate_checks(params: Params) -> dict[str, dict[str, Any]]:
    report = json.loads((params.paths.metrics_dir / io.GATE_FILE).read_text())
    return {check["name"]: check for check in report["checks"]}


@pytest.mark.parametrize("artifact", ["trees", "onnx"])
def test_the_stage_makes_the_served_variant_and_the_gate_promotes_it(trained: Params, tmp_path: Path,
                                                                     artifact: str) -> None:
    """serve.artifact names a variant: the stage makes it (optimize's code, that variant only) into
    paths.served_dir, and the gate that follows checks it and promotes: no `python -m pipelines optimize`."""
    params = _with(trained, tmp_path, artifact=artifact)
    made = stages.run_variant(params)
    served = params.paths.served_dir
    report = VariantsReport.load(served)
    assert report is not None and report.to_json_dict() == made
    assert report.served == artifact and [record.name for record in report.variants] == ["full", artifact]
    assert report.model_md5 == io.file_md5(contracts.model_file(params.paths.model_dir))
    assert report.variant("full").file == str(contracts.model_file(params.paths.model_dir))  # as params spell it
    assert sorted(path.name for path in served.iterdir()) == sorted([artifact, io.VARIANTS_REPORT_FILE])
    assert not params.paths.variants_dir.exists()  # optimize's comparison folder is not touched
    outcome = stages.run_gate_and_promote(params)
    checks = _gate_checks(params)
    assert checks["variant_parity"]["passed"], checks["variant_parity"]
    assert checks["variant_parity"]["reason"].startswith(f"serve.artifact {artifact}: {artifact} variant")
    assert checks["variant_latency"]["passed"], checks["variant_latency"]
    assert outcome["promote"] and outcome["promoted"], outcome


def test_with_full_the_stage_makes_nothing_and_the_gate_checks_no_variant(trained: Params, tmp_path: Path) -> None:
    """serve.artifact full: the stage reads no data (it runs with the table and splits gone), leaves nothing an
    earlier serve.artifact made, and writes a report saying no variant is served, the same bytes whatever the
    `optimize:` keys; the gate's checks are the usual ones. A variant asked for afterwards, without the stage run
    again, is refused by the gate with what to do."""
    params = _with(trained, tmp_path, artifact="full")
    served = params.paths.served_dir
    (served / "trees").mkdir(parents=True, exist_ok=True)  # what a run with serve.artifact trees left
    nowhere = params.paths.model_copy(update={"raw_table": tmp_path / "none.parquet", "prepared_dir": tmp_path})
    made = stages.run_variant(params.model_copy(update={"paths": nowhere}))
    assert sorted(path.name for path in served.iterdir()) == [io.VARIANTS_REPORT_FILE]
    report = VariantsReport.load(served)
    assert report.to_json_dict() == made
    assert (report.served, report.variants, report.max_auc_loss, report.settings) == ("full", [], None, None)
    assert report.model_md5 == io.file_md5(contracts.model_file(params.paths.model_dir))
    written = (served / io.VARIANTS_REPORT_FILE).read_bytes()
    stages.run_variant(_with(trained, tmp_path, artifact="full", max_auc_loss=0.5, probe_rows=7))
    assert (served / io.VARIANTS_REPORT_FILE).read_bytes() == written  # an optimize edit: nothing new to gate

    outcome = stages.run_gate_and_promote(params)
    assert outcome["promoted"], outcome
    assert not [name for name in _gate_checks(params) if name.startswith("variant_")]

    test = io.read_parquet(io.prepared_path(params.paths, "test"), "preprocess")
    [check] = _served_variant_checks(_with(trained, tmp_path, artifact="trees"), load_model(params.paths.model_dir),
                                     test)
    assert not check.passed and "holds what serve.artifact full asks for, not trees" in check.reason
    assert check.reason.endswith("run the variant stage (dvc repro variant)")


def test_a_variant_is_made_with_what_it_is_derived_from() -> None:
    """pruned cuts the features refit, so the stage makes both; a name that is no variant is refused."""
    assert with_sources(["pruned"]) == {"pruned", "features"}
    assert with_sources(["quantised"]) == {"quantised"}
    with pytest.raises(ValueError, match=r"unknown variant\(s\) \['tiny'\]"):
        with_sources(["tiny"])


def test_the_registered_model_carries_its_variant_so_a_rollback_serves_its_own(trained: Params,
                                                                              tmp_path: Path) -> None:
    """The gate attaches the variant it checked to the model it registers, and the service reads it there first: the
    champion serves its own variant whatever the variant stage's folder holds by then (remade for another
    serve.artifact or candidate), a champion without one serves in full saying why, and a rollback brings the old
    champion's variant back with it."""
    from pipelines.monitor.prediction_log import PredictionLog, read_prediction_log
    from pipelines.release import registry
    from pipelines.release.model_card import build_model_card
    from services.scoring import ChampionWatcher, score

    params = _with(trained, tmp_path, artifact="trees")
    stages.run_variant(params)
    tag = stages.run_gate_and_promote(params)["tag"]
    store = registry.open_registry(params)
    attached = registry.model_path(tag, store) / io.SERVED_VARIANT_DIR
    assert sorted(path.name for path in attached.iterdir()) == sorted(["trees", io.VARIANTS_REPORT_FILE])
    for made in params.paths.served_dir.rglob("*"):
        copy = attached / made.relative_to(params.paths.served_dir)
        assert copy.is_dir() if made.is_dir() else copy.read_bytes() == made.read_bytes(), copy
    assert VariantsReport.load(attached).served == "trees"

    stages.run_variant(_with(trained, tmp_path, artifact="full"))  # the workspace's folder moves on
    schema = load_model(params.paths.model_dir).schema
    watcher = ChampionWatcher(store, schema.raw_columns, schema.time_column, artifact="trees",
                              variants_dir=params.paths.served_dir)
    assert watcher.check() and watcher.current is not None and watcher.current.tag == tag
    assert watcher.current.predictor.startswith("trees variant, "), watcher.current.predictor
    # Every log line says which variant answered for the champion (its probabilities and threshold are its own).
    log = PredictionLog(tmp_path / "log", rotate_hourly=False, rotate_bytes=1 << 20)
    probe = pd.read_parquet(io.prepared_path(params.paths, "test")).head(3)
    rows = [{name: (None if pd.isna(value) else value) for name, value in row.items() if name in schema.raw_columns}
            | {schema.time_column: row[schema.time_column].to_pydatetime()} for row in probe.to_dict("records")]
    answers = score(watcher.current, rows, schema.time_column, log)
    logged = read_prediction_log(tmp_path / "log").records
    expected = ("trees", tag, watcher.current.model.threshold)
    assert [(r.served, r.model_tag, r.threshold) for r in logged] == [expected] * 3
    assert [r.probability for r in logged] == [a["probability"] for a in answers]

    # Another model made champion by hand (no gate, so no variant attached): it serves in full and says why.
    other = registry.save_model(params.paths.model_dir, {"data_version": "test"}, name=params.project.model_name,
                                registry=store)
    registry.set_champion(store, other, reason="by hand", expected=tag)
    assert watcher.check() and watcher.current.tag == other and watcher.current.served == "full"
    assert watcher.current.predictor.startswith("full champion (trees variant not used: "), watcher.current.predictor
    assert "holds what serve.artifact full asks for, not trees" in watcher.current.predictor
    card = build_model_card(params)
    assert "## Served variant\nThe model itself (`serve.artifact` trees; no variant attached" in card

    registry.rollback(store, tag)
    assert watcher.check() and watcher.current.tag == tag
    assert watcher.current.predictor.startswith("trees variant, "), watcher.current.predictor
    card = build_model_card(params)  # the card of the champion says what serves in its place
    assert "## Served variant\n- **trees** (attached by the gate; `serve.artifact` now: trees), made from full" in card


def test_a_gate_that_refuses_the_variant_attaches_nothing(trained: Params, tmp_path: Path) -> None:
    """A variant the gate could not check (here: the folder holds what serve.artifact full made) is not attached: the
    registered model's attachment is what it was before (none, or what an earlier gate checked)."""
    from pipelines.release import registry

    def attachment(tag: str) -> dict[str, bytes]:
        folder = registry.model_path(tag, registry.open_registry(params)) / io.SERVED_VARIANT_DIR
        return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}

    stages.run_variant(_with(trained, tmp_path, artifact="full"))
    params = _with(trained, tmp_path, artifact="trees")
    before = {model.tag: attachment(model.tag)
              for model in registry.list_models(registry.open_registry(params), name=params.project.model_name)}
    outcome = stages.run_gate_and_promote(params)
    assert not outcome["promote"] and any("variant" in reason for reason in outcome["failed"]), outcome
    assert attachment(outcome["tag"]) == before.get(outcome["tag"], {})


def test_the_served_onnx_variant_decides_every_split_as_the_model_does(trained: Params, tmp_path: Path) -> None:
    """LightGBM compares a value with a threshold in float64, the ONNX tree operator in float32: a value a hair above
    a threshold (a request's 61.52000000000001 against a split at 61.520000000000003) went left in ONNX and right in
    LightGBM. On the champion `dvc repro` promotes, a served onnx variant answered 0.252 (label 0) where the
    champion answers 0.348 (label 1), while /metadata said it was within 1.2e-07 of the champion. Each value of
    the probe row is put on every split threshold and the next double either side of it: the variant the service
    and the gate check answers as the model does, and its parity check covers those rows."""
    params = _with(trained, tmp_path, artifact="onnx")
    stages.run_variant(params)
    model = load_model(params.paths.model_dir)
    checked = check_variant(model, params.paths.model_dir, "onnx", params.paths.served_dir)
    nodes = model.booster.trees_to_dataframe()
    nodes = nodes[nodes["decision_type"] == "<="]
    base = probe_matrix(model)[0]
    rows = []
    for column, name in enumerate(model.booster.feature_name()):
        for threshold in nodes.loc[nodes["split_feature"] == name, "threshold"].unique():
            for value in (threshold, np.nextafter(threshold, np.inf), np.nextafter(threshold, -np.inf)):
                row = base.copy()
                row[column] = value
                rows.append(row)
    matrix = np.array(rows)
    assert len(matrix) > 300
    expected = model.predict_matrix(matrix, 1)
    np.testing.assert_allclose(checked.predict_matrix(matrix), expected, rtol=0, atol=1e-6)
    for row, probability in zip(matrix[::97], expected[::97], strict=False):  # one row at a time too, as /predict
        assert abs(checked.predict_matrix(row[None, :])[0] - probability) <= 1e-6
    assert checked.probe_rows >= len(probe_matrix(model)) + len(matrix)

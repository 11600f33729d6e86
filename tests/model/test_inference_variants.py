"""Inference variants and edge artefacts (pipelines/model/optimize.py, export.py) on a model of three real months:
pruning holds its tolerance on validation, ONNX and the C runner give the service's probabilities, the quantised
variant stays within its bound, the encoding is spelled out, and bad requests say what is wrong."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines import io
from pipelines.config import parse_params
from pipelines.contracts import EdgeEncoding, VariantsReport
from pipelines.data.preprocess import prepare
from pipelines.features import LABEL, encode, encode_frame, records_to_columns
from pipelines.model.export import ExportError, export_model, run_export, run_runner
from pipelines.model.families.lightgbm_exchange import compact_library, compact_predictor, onnx_bytes, onnx_predictor
from pipelines.model.optimize import cut_trees, fewer_leaves, probe_rows, roc_auc, run_optimize, trees_within
from pipelines.model.seam import TrainedModel
from pipelines.model.train import train_model
from support.params import SMALL_WINDOW, params_dict

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small_table: pd.DataFrame) -> dict[str, Any]:
    """A LightGBM model trained on three real months, saved where the params put the candidate, with its splits."""
    root = tmp_path_factory.mktemp("variants")
    data = params_dict(root, {**SMALL_WINDOW, "optimize.feature_candidates": 1, "optimize.probe_rows": 300,
                                "train.num_threads": 1})
    params = parse_params(data)
    (root / "params.yaml").write_text(yaml.safe_dump(data))
    prepared = prepare(small_table, params.source, params.features, params.split, keep=params.evaluate.slices)
    for split in io.SPLITS:
        io.write_parquet(io.prepared_path(params.paths, split), getattr(prepared, split))
    model = train_model(prepared.train, prepared.valid, prepared.schema, params.train)
    model.save(params.paths.model_dir)
    probe = probe_rows(prepared.test, params.optimize.probe_rows, params.train.seed)
    return {"params": params, "params_file": root / "params.yaml", "data": prepared,
            "model": TrainedModel.load(params.paths.model_dir), "probe": probe}


@pytest.fixture(scope="module")
def exported(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The model exported once per format (building the runner is most of a test's time)."""
    return {fmt: export_model(trained["model"], fmt, tmp_path_factory.mktemp(f"export-{fmt}"), trained["probe"])
            for fmt in ("onnx", "c")}


def test_the_fewest_first_trees_within_the_tolerance_are_kept() -> None:
    """A made-up staging whose AUC rises, dips and rises: the first prefix within the tolerance wins."""
    labels = np.array([0, 0, 1, 1])
    good, bad = np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.9, 0.2, 0.1, 0.8])
    staged = np.vstack([bad, good, bad, good])  # AUC 0.25, 1, 0.25, 1
    assert trees_within(staged, labels, 0.0) == 2
    assert trees_within(staged, labels, 0.0, reference_auc=0.2) == 1
    with pytest.raises(ValueError, match="no prefix of 4 trees"):
        trees_within(staged, labels, 0.0, reference_auc=1.5)


def test_tree_pruning_keeps_validation_auc_within_the_tolerance(trained: dict[str, Any]) -> None:
    model, data, params = trained["model"], trained["data"], trained["params"]
    labels = data.valid[LABEL].to_numpy()
    full = roc_auc(labels, model.predict_proba(data.valid))
    tolerance = 0.003
    cut = cut_trees(model, data.valid, params.train, tolerance, full)
    assert cut.trees < model.trees
    assert full - roc_auc(labels, cut.predict_proba(data.valid)) <= tolerance
    # The fewest: one tree fewer is outside the tolerance.
    fewer = model.first_trees(cut.trees - 1)
    assert full - roc_auc(labels, fewer.predict_proba(data.valid)) > tolerance
    # It is a whole trained model: saved and loaded, it replays its probe rows (the load-time parity check).
    cut.save(trained["params"].paths.variants_dir / "cut")
    assert TrainedModel.load(trained["params"].paths.variants_dir / "cut").trees == cut.trees


def test_a_refit_with_fewer_leaves_is_kept_only_within_the_tolerance(trained: dict[str, Any]) -> None:
    """Candidates at or above the model's own num_leaves are skipped; a refit outside the tolerance is not kept."""
    model, data, params = trained["model"], trained["data"], trained["params"]
    own = params.train.lightgbm.num_leaves
    leaner = fewer_leaves(model, data.train, data.valid, params.train, 1.0, [3, own, own * 2])
    assert leaner is not None and leaner.meta["params"]["lightgbm"]["num_leaves"] == 3
    assert leaner.leaves <= 3 * leaner.trees < model.leaves
    assert fewer_leaves(model, data.train, data.valid, params.train, -1.0, [3]) is None


def test_the_compact_library_gives_the_boosters_probabilities(trained: dict[str, Any], tmp_path: Path) -> None:
    """TL2cgen's quantised C, built small and called row by row through ctypes: LightGBM's probabilities on the probe
    rows (missing values included) and on rows that sit on the forest's thresholds, smaller than the plain build."""
    from services.compiled import probe_matrix as threshold_rows

    model, probe = trained["model"], trained["probe"]
    library = compact_library(model, tmp_path / "compact.so")
    predict = compact_predictor(library, len(model.schema.feature_names))
    for matrix in (encode_frame(probe, model.schema), threshold_rows(model.booster, rows=500)):
        assert np.isnan(matrix).any()
        np.testing.assert_allclose(predict(matrix), model.predict_matrix(matrix, 1), rtol=0, atol=1e-12)
        assert predict(matrix[:1]) == pytest.approx(model.predict_matrix(matrix[:1], 1), abs=1e-12)
    with pytest.raises(ValueError, match="rows of"):
        predict(np.ones((1, 3)))


def test_onnx_gives_the_boosters_probabilities_on_probe_rows(trained: dict[str, Any],
                                                           exported: dict[str, dict[str, Any]]) -> None:
    model, probe, result = trained["model"], trained["probe"], exported["onnx"]
    assert result["max_difference"] <= 1e-6 and result["probe_rows"] > len(probe)  # + rows on every threshold
    matrix = encode_frame(probe, model.schema)
    got = onnx_predictor(Path(result["model_file"]).read_bytes())(matrix)
    assert np.max(np.abs(got - model.predict_matrix(matrix))) <= 1e-6


def test_the_onnx_exports_float32_rule_read_from_encoding_json_decides_every_split_as_the_model(
        trained: dict[str, Any], exported: dict[str, dict[str, Any]]) -> None:
    """A foreign caller of model.onnx with encoding.json alone: values on a split threshold or the next double
    either side of it part from the model under a plain float32 cast, and agree once moved by the written rule."""
    import onnxruntime

    from pipelines.model.variants import split_rows

    model, out = trained["model"], Path(exported["onnx"]["out"])
    encoding = json.loads((out / io.ENCODING_FILE).read_text())
    assert "float32" in encoding["float32_rule"]
    by_name = {column["name"]: column for column in encoding["columns"]}
    listed = [np.array(by_name[name].get("float32_thresholds", []), dtype=float) for name in encoding["column_order"]]
    rows = split_rows(encode_frame(trained["probe"], model.schema)[0], listed)
    session = onnxruntime.InferenceSession(str(out / io.ONNX_FILE), providers=["CPUExecutionProvider"])

    def onnx(matrix: np.ndarray) -> np.ndarray:
        return session.run(None, {session.get_inputs()[0].name: matrix.astype(np.float32)})[1][:, 1]

    moved = rows.copy()
    moved[np.abs(moved) <= 1e-35] = 0.0
    for column, thresholds in enumerate(listed):  # the rule, as encoding.json words it
        if len(thresholds):
            above = np.nextafter(np.float32(thresholds[-1]), np.float32(np.inf))
            targets = np.append(thresholds.astype(np.float32), above)
            present = ~np.isnan(moved[:, column])
            moved[present, column] = targets[np.searchsorted(thresholds, moved[present, column], side="left")]
    expected = model.predict_matrix(rows)
    assert np.max(np.abs(onnx(rows) - expected)) > 1e-6  # what the rule is for
    assert np.max(np.abs(onnx(moved) - expected)) <= 1e-6


def test_the_c_runner_gives_the_services_probabilities(trained: dict[str, Any],
                                                      exported: dict[str, dict[str, Any]]) -> None:
    """The runner, built by cc and run with no Python on PATH, against the service's own scoring of the same
    request rows (`services.scoring.score`: records -> encode -> predict)."""
    from services.scoring import LoadedModel, score

    model, probe, result = trained["model"], trained["probe"], exported["c"]
    assert result["max_difference"] <= 1e-6
    assert {"main.c", "header.h", "runner.c", "runner", "encoding.json"} <= set(result["files"])
    schema = model.schema
    records = [{**row, schema.time_column: row[schema.time_column].to_pydatetime()}
               for row in probe[[*schema.raw_columns, schema.time_column]].to_dict("records")]
    columns = records_to_columns(records, schema.raw_columns)
    matrix = encode(columns, probe[schema.time_column], schema)
    assert np.isnan(matrix).any()  # missing values reach the runner too
    answers = score(LoadedModel(tag="under-test", model=model), [dict(row) for row in records], schema.time_column,
                    None)
    service = np.array([answer["probability"] for answer in answers])
    env = {key: value for key, value in os.environ.items() if key not in ("PATH", "PYTHONPATH", "VIRTUAL_ENV")}
    got = _run_bare(Path(result["model_file"]), matrix, env)
    assert got.shape == service.shape
    assert np.max(np.abs(got - service)) <= 1e-6


def _run_bare(program: Path, matrix: np.ndarray, env: dict[str, str]) -> np.ndarray:
    import subprocess

    from pipelines.model.export import rows_csv

    done = subprocess.run([str(program)], input=rows_csv(matrix), capture_output=True, text=True, env=env,
                          check=True, timeout=60)
    return np.array([float(line) for line in done.stdout.split()])


def test_the_runner_refuses_a_row_of_the_wrong_width(exported: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(ExportError, match="columns, expected"):
        run_runner(Path(exported["c"]["model_file"]), np.ones((1, 3)))


def test_the_encoding_json_spells_out_the_column_order_and_codes(trained: dict[str, Any],
                                                                 exported: dict[str, dict[str, Any]]) -> None:
    """Encoding rows from encoding.json alone (no pipelines.features) gives the matrix the service encodes."""
    model, probe = trained["model"], trained["probe"]
    c, onnx = EdgeEncoding.load(Path(exported["c"]["out"])), EdgeEncoding.load(Path(exported["onnx"]["out"]))
    assert c.float32_rule is None and onnx.float32_rule  # C compares in float64 as LightGBM does
    assert c.columns == [{key: value for key, value in column.items() if key != "float32_thresholds"}
                         for column in onnx.columns]
    encoding = json.loads((Path(exported["onnx"]["out"]) / io.ENCODING_FILE).read_text())  # as a foreign caller
    assert encoding["column_order"] == model.schema.feature_names
    by_name = {column["name"]: column for column in encoding["columns"]}
    for name, vocabulary in model.schema.categorical.items():
        assert by_name[name]["codes"] == {text: code for code, text in enumerate(vocabulary)}
    expected = encode_frame(probe, model.schema)
    for position, name in enumerate(encoding["column_order"]):
        column = by_name[name]
        if column["kind"] == "categorical":
            mine = [column["codes"].get(value, np.nan) if isinstance(value, str) else np.nan
                    for value in probe[name]]
        elif column["kind"] == "numeric":
            mine = probe[name].astype(float).tolist()
        else:
            assert column["of"] == model.schema.time_column and column["rule"]
            continue
        np.testing.assert_array_equal(np.array(mine, dtype=float), expected[:, position])


def test_the_quantised_variant_stays_within_its_bound(trained: dict[str, Any]) -> None:
    model, probe = trained["model"], trained["probe"]
    matrix = encode_frame(probe, model.schema)
    full = model.predict_matrix(matrix)
    float32 = onnx_predictor(onnx_bytes(model, "float32"))(matrix)
    half = onnx_predictor(onnx_bytes(model, "float16"))(matrix)
    quantisation = np.max(np.abs(half - full))
    assert quantisation > np.max(np.abs(float32 - full))  # the leaves were rounded
    assert quantisation <= trained["params"].optimize.max_prob_diff


@pytest.fixture(scope="module")
def optimized(trained: dict[str, Any]) -> VariantsReport:
    return run_optimize(trained["params"])


def test_the_ordinal_variant_splits_only_on_thresholds_and_records_its_cost(trained: dict[str, Any],
                                                                            optimized: VariantsReport) -> None:
    """The champion splits its category columns as sets and sends a missing value to each split's learnt side, which
    GPU tree runtimes do not do; the ordinal variant reads the same encoded codes with numeric thresholds only and a
    missing value as 0.0 (so the rows with NaN replaced by 0 give its answers), and the report records the cost."""
    model, data, params = trained["model"], trained["data"], trained["params"]
    variant = TrainedModel.load(params.paths.variants_dir / "ordinal")
    assert model.categorical_splits > 0  # the check can fail: the full model has set-valued splits
    assert variant.categorical_splits == 0 and variant.trees > 0
    assert variant.schema.to_dict() == model.schema.to_dict()  # the same encoding, the same requests
    assert variant.meta["params"]["lightgbm"]["categorical_splits"] == "ordinal"
    assert variant.meta["params"]["lightgbm"]["use_missing"] is False
    assert "NaN" in model.missing_types and variant.missing_types == {"None"}
    matrix = encode_frame(data.test, model.schema)
    zeroed = np.nan_to_num(matrix, nan=0.0)
    assert np.isnan(matrix).any()  # the check can fail: rows with missing values, which zeroing changes
    assert not np.array_equal(model.predict_matrix(matrix), model.predict_matrix(zeroed))
    np.testing.assert_array_equal(variant.predict_matrix(matrix), variant.predict_matrix(zeroed))
    # Cut to its best validation round (on the small fixture it may use all of them).
    assert variant.meta["best_iteration"] == variant.trees <= params.train.lightgbm.num_boost_round
    record = optimized.variant("ordinal")
    assert (record.parent, record.trees, record.leaves) == ("full", variant.trees, variant.leaves)
    valid_labels, test_labels = data.valid[LABEL].to_numpy(), data.test[LABEL].to_numpy()
    assert record.valid_roc_auc == pytest.approx(roc_auc(valid_labels, variant.predict_proba(data.valid)))
    assert record.valid_auc_loss == pytest.approx(roc_auc(valid_labels, model.predict_proba(data.valid))
                                                  - record.valid_roc_auc)
    assert record.test_auc_delta == pytest.approx(roc_auc(test_labels, variant.predict_proba(data.test))
                                                  - roc_auc(test_labels, model.predict_proba(data.test)))
    assert record.max_prob_diff > 0  # another forest, not a copy of the full one


def test_optimize_records_every_variant_against_the_full_model(trained: dict[str, Any],
                                                               optimized: VariantsReport) -> None:
    params, report = trained["params"], optimized
    names = [record.name for record in report.variants]
    assert names[0] == "full" and {"trees", "pruned", "onnx", "quantised"} <= set(names)
    assert report.variant("full").max_prob_diff == 0 and report.variant("full").valid_auc_loss == 0
    for name in ("trees", "pruned", *(["features"] if "features" in names else [])):
        record = report.variant(name)
        assert record.valid_auc_loss <= params.optimize.max_auc_loss, record
        assert TrainedModel.load(params.paths.variants_dir / name).trees == record.trees
    assert report.variant("trees").trees <= report.variant("full").trees
    assert report.variant("onnx").max_prob_diff <= 1e-6
    quantised = report.variant("quantised")
    assert 0 < quantised.max_prob_diff <= quantised.bound == params.optimize.max_prob_diff
    stored = VariantsReport.load(params.paths.variants_dir)
    assert [variant.name for variant in stored.variants] == names


def test_bad_requests_say_what_is_wrong(trained: dict[str, Any], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    assert main(["export", "--format", "tflite", "--params", str(trained["params_file"])]) == 1
    assert "unknown export format 'tflite'; known: onnx, c" in capsys.readouterr().err
    missing = parse_params(params_dict(tmp_path, SMALL_WINDOW))
    with pytest.raises(FileNotFoundError, match="no model at"):
        run_export(missing, "onnx", "full", missing.paths.model_dir)
    with pytest.raises(ValueError, match="unknown variant 'tiny'"):
        run_export(trained["params"], "onnx", "tiny", trained["params"].paths.model_dir)
    with pytest.raises(FileNotFoundError, match="run `python -m pipelines optimize` first"):
        run_export(missing, "c", "pruned", missing.paths.model_dir)
    assert main(["export", "--format", "onnx", "--params", str(trained["params_file"]),
                 "--set", f"paths.model_dir={tmp_path / 'nothing'}"]) == 1
    assert "no model at" in capsys.readouterr().err


def _request_rows(model: TrainedModel, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as the service receives them (validated request fields: raw columns and a datetime)."""
    schema = model.schema
    return [{**row, schema.time_column: row[schema.time_column].to_pydatetime()}
            for row in frame[[*schema.raw_columns, schema.time_column]].to_dict("records")]


@pytest.mark.parametrize("artifact", ["pruned", "onnx", "quantised"])
def test_the_service_serves_the_variant_serve_artifact_names(trained: dict[str, Any], optimized: VariantsReport,
                                                             tmp_path: Path, artifact: str) -> None:
    """`load_tagged` with an artifact: the variant answers (its own probabilities and threshold for a LightGBM
    variant, compiled like the champion; onnxruntime for an ONNX one), and /metadata's predictor says so."""
    from pipelines.release import registry
    from services.scoring import load_tagged, score

    params, champion, probe = trained["params"], trained["model"], trained["probe"]
    tag = registry.save_model(params.paths.model_dir, {"data_version": "test"}, name="variants-test")
    loaded = load_tagged(tag, champion.schema.raw_columns, champion.schema.time_column,
                         compiled_dir=tmp_path / "compiled" if artifact == "pruned" else None, artifact=artifact,
                         variants_dir=params.paths.variants_dir)
    answers = score(loaded, _request_rows(champion, probe), champion.schema.time_column, None)
    got = np.array([answer["probability"] for answer in answers])
    if artifact == "pruned":
        variant = TrainedModel.load(params.paths.variants_dir / artifact)
        assert loaded.predictor.startswith("pruned variant, compiled (lleaves")
        assert loaded.model.threshold == variant.threshold != champion.threshold
        np.testing.assert_allclose(got, variant.predict_proba(probe), rtol=0, atol=1e-9)
    else:
        assert loaded.predictor.startswith(f"{artifact} variant (onnxruntime")
        data = (params.paths.variants_dir / artifact / io.ONNX_FILE).read_bytes()
        np.testing.assert_array_equal(got, onnx_predictor(data)(encode_frame(probe, champion.schema)))
    bound = optimized.variant(artifact).bound or 1.0
    assert np.max(np.abs(got - champion.predict_proba(probe))) <= bound


def test_a_variant_made_from_another_model_is_not_served(trained: dict[str, Any], optimized: VariantsReport,
                                                         tmp_path: Path) -> None:
    """After a promotion the variants on disk are the old champion's: the full champion serves, saying why."""
    import shutil

    from pipelines.release import registry
    from services.scoring import load_tagged, score

    params, champion, probe = trained["params"], trained["model"], trained["probe"]
    stale = tmp_path / "variants"
    shutil.copytree(params.paths.variants_dir, stale)
    optimized.model_copy(update={"model_md5": "0" * 32}).save(stale)
    tag = registry.save_model(params.paths.model_dir, {"data_version": "test"}, name="variants-test")
    loaded = load_tagged(tag, champion.schema.raw_columns, champion.schema.time_column, artifact="onnx",
                         variants_dir=stale)
    assert loaded.predictor.startswith("full champion (onnx variant not used: the variants in")
    assert loaded.forest is None
    answers = score(loaded, _request_rows(champion, probe), champion.schema.time_column, None)
    np.testing.assert_allclose([answer["probability"] for answer in answers], champion.predict_proba(probe),
                               rtol=0, atol=1e-12)


def test_optimize_of_a_registered_model_records_its_variants_in_the_registry(trained: dict[str, Any],
                                                                            capsys: pytest.CaptureFixture[str]
                                                                            ) -> None:
    import json

    from pipelines.cli import main
    from pipelines.release import registry

    params = trained["params"]
    tag = registry.save_model(params.paths.model_dir, {"data_version": "test"}, name="variants-registered")
    assert main(["optimize", "--tag", tag, "--params", str(trained["params_file"])]) == 0
    printed = json.loads(capsys.readouterr().out)
    stored = VariantsReport.load(registry.model_path(tag))
    assert printed["registered"] == str(registry.model_path(tag) / io.VARIANTS_REPORT_FILE)
    assert stored.model_md5 == io.file_md5(registry.model_path(tag) / io.MODEL_FILE)
    parents = {record.name: record.parent for record in stored.variants}
    assert parents.items() >= {"full": None, "trees": "full", "onnx": "full", "quantised": "full"}.items()
    assert stored.variant("pruned").parent in ("full", "features")
    assert all(record.valid_auc_loss <= params.optimize.max_auc_loss for record in stored.variants)


def _serving(params: Any, artifact: str, variants_dir: Path | None = None) -> Any:
    """`params` with serve.artifact changed, as a params.yaml edit would, and the folder the gate reads the served
    variant from (paths.served_dir, the variant stage's) pointed at `variants_dir` (default: what optimize made)."""
    paths = params.paths.model_copy(update={"served_dir": variants_dir or params.paths.variants_dir})
    return params.model_copy(update={"serve": params.serve.model_copy(update={"artifact": artifact}),
                                     "paths": paths})


@pytest.mark.parametrize("artifact", ["pruned", "quantised"])
def test_the_gate_checks_the_variant_serve_artifact_names(trained: dict[str, Any], optimized: VariantsReport,
                                                          artifact: str) -> None:
    """Before a promotion the gate checks the variant the service would serve: its parity on probe rows within its
    bound (exact for a LightGBM variant, the documented bound for the quantised one) and its latency."""
    from pipelines.stages import _served_variant_checks

    params, model, data = trained["params"], trained["model"], trained["data"]
    parity, latency = _served_variant_checks(_serving(params, artifact), model, data.test)
    assert parity.name == "variant_parity" and parity.passed
    if artifact == "quantised":
        assert 0 < parity.value <= parity.limit == optimized.variant("quantised").bound
    else:
        assert parity.value <= parity.limit == 1e-9
        assert f"{optimized.variant('pruned').trees} trees" in parity.reason
    assert parity.reason.startswith(f"serve.artifact {artifact}: {artifact} variant")
    assert latency.name == "variant_latency" and latency.passed and 0 < latency.value <= params.gate.max_latency_ms


def test_the_gate_refuses_a_missing_stale_or_out_of_bound_variant(trained: dict[str, Any],
                                                                  optimized: VariantsReport, tmp_path: Path) -> None:
    """A variant that is not there, was made from another model.txt, or moves probabilities beyond its bound
    fails the gate with the reason; with serve.artifact full (the default) the gate checks no variant at all."""
    import shutil

    from pipelines.features import encode_frame
    from pipelines.model.evaluate import baseline_predictions
    from pipelines.model.gate import decide
    from pipelines.model.seam import measure_latency_ms
    from pipelines.stages import _served_variant_checks

    params, model, data = trained["params"], trained["model"], trained["data"]

    def refusal(artifact: str, variants_dir: Path) -> str:
        [check] = _served_variant_checks(_serving(params, artifact, variants_dir), model, data.test)
        assert check.name == "variant_parity" and not check.passed and check.value is None
        return check.reason

    assert "no variants.json in" in refusal("pruned", tmp_path / "none")
    stale, tight = tmp_path / "stale", tmp_path / "tight"
    shutil.copytree(params.paths.variants_dir, stale)
    optimized.model_copy(update={"model_md5": "0" * 32}).save(stale)
    assert "were made from model 00000000, not this one" in refusal("onnx", stale)
    shutil.copytree(params.paths.variants_dir, tight)
    records = [record.model_copy(update={"bound": 1e-12}) if record.name == "quantised" else record
               for record in optimized.variants]
    optimized.model_copy(update={"variants": records}).save(tight)
    assert "quantised variant differs from the model by" in refusal("quantised", tight)
    assert "(tolerance 1e-12)" in refusal("quantised", tight)
    shutil.rmtree(tight / "trees")
    assert "trees variant cannot load" in refusal("trees", tight)
    # `full`: nothing is read from the variants folder, even a stale one; the gate's checks are the usual ones.
    assert _served_variant_checks(_serving(params, "full", stale), model, data.test) == []
    batch = encode_frame(data.test.head(params.gate.latency_batch_rows), model.schema)
    arguments = (data.test, model.predict_proba(data.test), None,
                 baseline_predictions(data.train, data.test, params.source.time_column),
                 measure_latency_ms(model, batch, 3), params.gate, params.evaluate.slices,
                 params.evaluate.min_slice_rows)
    usual = decide(*arguments)
    refused = decide(*arguments, variant=_served_variant_checks(_serving(params, "onnx", stale), model, data.test))
    assert [check.name for check in refused.checks] == [*(check.name for check in usual.checks), "variant_parity"]
    assert not refused.promote and refused.failed[-1].startswith("serve.artifact onnx: the variants in")


def test_reproduce_reruns_the_recorded_variants_and_names_what_differs(trained: dict[str, Any],
                                                                      optimized: VariantsReport,
                                                                      tmp_path: Path) -> None:
    """`reproduce --check` on an entry carrying variants.json: optimize rerun on the (rebuilt) model with the
    recorded settings gives the same variants; a report that does not match is named field by field."""
    from pipelines.release.reproduce import reproduce_variants

    params = trained["params"]
    assert optimized.settings == params.optimize.model_dump(mode="json")
    rerun = params.paths.model_copy(update={"variants_dir": tmp_path / "rerun"})
    elsewhere = params.model_copy(update={"paths": rerun})  # the rebuild writes its own variants folder
    same = reproduce_variants(optimized, elsewhere, params.paths.model_dir)
    assert same == {"identical": True, "variants": [record.name for record in optimized.variants],
                    "settings": "recorded", "differences": []}
    assert VariantsReport.load(tmp_path / "rerun").variants == optimized.variants
    made = optimized.variant("trees").trees
    records = [record.model_copy(update={"trees": record.trees + 1}) if record.name == "trees" else record
               for record in optimized.variants]
    differs = reproduce_variants(optimized.model_copy(update={"variants": records}), elsewhere,
                                 params.paths.model_dir)
    assert not differs["identical"]
    assert differs["differences"] == [f"variants.trees.trees: {made + 1} -> {made}"]

"""The I/O shell of each step: load its inputs from the paths in params, call the pure step, save its outputs.

`dvc.yaml` runs these through the CLI and the Prefect flows run them as tasks, so a stage is implemented once.
File names and the atomic writers are `pipelines.io`'s; what a step computes lives in its own module.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipelines import contracts, io
from pipelines.config import Params
from pipelines.contracts import Check, GateReport, ModelMeta, SplitLineage

log = logging.getLogger(__name__)


# --- the guard ----------------------------------------------------------------------------------------------------

def require_validated_table(params: Params, stage: str, *, strict: bool = False) -> Any:
    """The guard every stage after validate calls first: the raw table is the one that passed validation.

    Stages that read the prepared splits also need them to come from that table (preprocess's lineage file).
    `strict` (registering a model) refuses a table let through only by validate.fail_on_error: false; a failed
    table goes on only while the params in force still say false (with a warning naming its failed checks).
    Raises `NotValidatedError` ("table <hash> has not passed validation (<summary.json> says ...)").
    """
    from pipelines.data.suite import require_validated

    derived = None if stage == "preprocess" else params.paths.prepared_dir
    return require_validated(params.paths.raw_table, params.paths.validation_dir, stage, strict=strict,
                             derived=derived, warn_only=not params.validate_.fail_on_error)


def _training_data(params: Params, validated: Any) -> dict[str, Any]:
    """What a model was trained on (`DataVersion`), recorded in its meta: the validated raw table's DVC hash and the
    splits'."""
    from pipelines.contracts import DataVersion

    return DataVersion(
        raw_table_md5=validated.table_md5, validation_success=validated.success, validation_suite=validated.suite,
        splits_md5={split: io.file_md5(io.prepared_path(params.paths, split)) for split in ("train", "valid")},
        window=[params.collect.start.isoformat(), params.collect.end.isoformat()]).to_json_dict()


# --- data ---------------------------------------------------------------------------------------------------------

def run_collect(params: Params) -> dict[str, Any]:
    from pipelines.data.collect import PARSE_ERRORS, WINDOW_ROWS, collect, params_columns
    from pipelines.data.suite import read_suite, suite_column_types

    column_types = suite_column_types(read_suite(params.validate_.suite))
    # Every params key naming a column is checked against the table before any work (README, "What is refused").
    table = collect(params.source, params.collect, column_types,
                    expected_columns=params_columns(params.source, params.features, params.evaluate.slices))
    io.write_parquet(params.paths.raw_table, table)
    return {"rows": len(table), "path": str(params.paths.raw_table), **table.attrs.get(WINDOW_ROWS, {}),
            "unparsed_cells": {name: info["count"] for name, info in (table.attrs.get(PARSE_ERRORS) or {}).items()}}


def run_validate(params: Params) -> dict[str, Any]:
    from pipelines.data.behaviour import read_behaviour
    from pipelines.data.collect import PARSE_ERRORS, WINDOW_ROWS
    from pipelines.data.validate import validate_table

    behaviour = read_behaviour(params.validate_.calibration) if params.validate_.calibration else None
    table = io.read_parquet(params.paths.raw_table, "collect")
    summary = validate_table(table, params.validate_.suite, params.paths.validation_dir,
                             fail_on_error=params.validate_.fail_on_error, time_column=params.source.time_column,
                             period=params.validate_.period, window=(params.collect.start, params.collect.end),
                             max_duplicate_share=params.validate_.max_duplicate_share,
                             chunk_rows=params.validate_.chunk_rows,
                             parse_errors=table.attrs.get(PARSE_ERRORS) or {}, table=params.paths.raw_table,
                             table_md5=io.file_md5(params.paths.raw_table), collected=table.attrs.get(WINDOW_ROWS),
                             behaviour=behaviour)
    return summary if isinstance(summary, dict) else summary.to_dict()


def run_preprocess(params: Params) -> dict[str, Any]:
    from pipelines.data.preprocess import prepare

    validated = require_validated_table(params, "preprocess")
    table = io.read_parquet(params.paths.raw_table, "collect")
    prepared = prepare(table, params.source, params.features, params.split, keep=params.evaluate.slices)
    for split in io.SPLITS:
        io.write_parquet(io.prepared_path(params.paths, split), prepared.split(split),
                         row_group_rows=io.SPLIT_ROW_GROUP_ROWS)
    io.write_atomic(io.schema_path(params.paths), prepared.schema.save)
    # Which table these splits come from, for the guard of later stages and the registry's lineage (written last).
    SplitLineage(raw_table_md5=validated.table_md5, validation_success=validated.success, suite=validated.suite,
                 rows=validated.rows).save(params.paths.prepared_dir)
    # The command's JSON output (what `python -m pipelines preprocess` prints): rows per split, and each configured
    # feature dropped as constant on the train split with its reason (README, "What is refused"), and the valid or
    # test split too thin for its ROC AUC to decide anything.
    return {**{split: len(prepared.split(split)) for split in io.SPLITS},
            "dropped_features": prepared.dropped_features, "split_warnings": prepared.split_warnings}


# --- model --------------------------------------------------------------------------------------------------------

def run_train(params: Params) -> dict[str, Any]:
    """`train:` alone, no search: in this process, or across the Dask cluster with train.engine dask."""
    from pipelines.model.driver import train_alone
    from pipelines.model.gpu import require_opencl

    require_opencl(params.train.device_type)  # a wrong setting is refused before any data is read
    return train_alone(params, _training_data(params, require_validated_table(params, "train")))


def run_search(params: Params) -> dict[str, Any]:
    """The train stage with model selection (`pipelines.model.driver.run_search`): the families' candidates on Dask,
    the best on the validation split saved."""
    from pipelines.model.driver import plan_search
    from pipelines.model.driver import run_search as search

    candidates = plan_search(params)  # refuses a wrong setting (train.device_type gpu without OpenCL) first
    return search(params, candidates, _training_data(params, require_validated_table(params, "train")))


def _baseline_train(params: Params) -> Any:
    """What the naive baselines need of the train split (evaluate and gate): its time and label, not the whole
    split (gigabytes on a big table)."""
    from pipelines.features import LABEL

    return io.read_parquet(io.prepared_path(params.paths, "train"), "preprocess",
                           columns=[params.source.time_column, LABEL])


def run_evaluate(params: Params) -> dict[str, Any]:
    from pipelines.model.catalog import load_model
    from pipelines.model.evaluate import evaluate_model

    require_validated_table(params, "evaluate")
    evaluation = evaluate_model(
        load_model(params.paths.model_dir),
        train=_baseline_train(params),
        test=io.read_parquet(io.prepared_path(params.paths, "test"), "preprocess"),
        time_column=params.source.time_column,
        slices=params.evaluate.slices,
        min_slice_rows=params.evaluate.min_slice_rows,
    )
    evaluation.metrics.save(params.paths.metrics_dir)
    evaluation.slices.save(params.paths.metrics_dir)
    for curve, name in io.PLOT_FILES.items():
        io.write_csv(params.paths.plots_dir / name, getattr(evaluation, curve))
    return evaluation.metrics.to_json_dict()


# --- the served variant -------------------------------------------------------------------------------------------

def run_variant(params: Params) -> dict[str, Any]:
    """The `variant` stage: the variant serve.artifact names, made from the candidate (`paths.model_dir`) into
    `paths.served_dir` with what it is derived from (`pipelines.model.optimize.make_variants`, optimize's own code),
    so that the gate checks it and the service serves it with no manual `optimize`.

    With `full` (the default) it reads no data and makes nothing: the report says no variant is served (the
    candidate's MD5, no variants, nothing from `optimize:`), so an `optimize:` edit changes no byte the gate reads.
    The folder is swapped in whole: a variant an earlier serve.artifact made is not left behind.
    """
    from pipelines.contracts import VariantsReport
    from pipelines.model.variants import FULL

    if params.serve.artifact == FULL:
        report = VariantsReport(model_md5=io.file_md5(contracts.model_file(params.paths.model_dir)),
                                max_auc_loss=None, probe_rows=0, variants=[], served=FULL)
        io.replace_dir(params.paths.served_dir, report.save)
    else:
        from pipelines.model.optimize import make_served_variant

        require_validated_table(params, "variant")
        report = io.replace_dir(params.paths.served_dir, lambda out: make_served_variant(params, out))
    log.info("variant: serve.artifact %s: %s", params.serve.artifact,
             ", ".join(record.name for record in report.variants) or "no variant made")
    return report.to_json_dict()


# --- gate and promotion -------------------------------------------------------------------------------------------

def run_gate(params: Params) -> GateReport:
    """Challenger (the model the train stage wrote) vs the registry's champion on the current test split.

    Writes metrics/gate.json and returns the report. A refusal is returned, not raised: the flow and `dvc repro`
    carry on and report it; `gate.enforce` turns it into an error when gate.fail_on_refusal asks.
    """
    from pipelines.features import encode_frame
    from pipelines.model.catalog import load_model
    from pipelines.model.evaluate import baseline_predictions
    from pipelines.model.gate import decide
    from pipelines.model.seam import measure_latency_ms
    from pipelines.release import registry

    require_validated_table(params, "gate")
    challenger = load_model(params.paths.model_dir)
    test = io.read_parquet(io.prepared_path(params.paths, "test"), "preprocess")
    train = _baseline_train(params)
    store = registry.open_registry(params)
    champion_tag = registry.champion_tag(store)
    if champion_tag is not None and champion_tag in registry.quarantined(store):
        # A quarantined model is no yardstick: a clean challenger never loses to it (quarantine moves the pointer;
        # this holds even where a quarantine was interrupted before its rollback, or the pointer edited by hand;
        # the store then takes None as the champion this gate decided against).
        log.warning("gate: the champion %s is quarantined: the challenger is compared with the naive baselines",
                    champion_tag)
        champion_tag = None
    champion_proba = registry.load_model(champion_tag, store).predict_proba(test) if champion_tag else None
    batch = encode_frame(test.head(params.gate.latency_batch_rows), challenger.schema)
    latency = measure_latency_ms(challenger, batch, params.gate.latency_repeats)
    decision = decide(test, challenger.predict_proba(test), champion_proba,
                      baseline_predictions(train, test, params.source.time_column), latency, params.gate,
                      params.evaluate.slices, params.evaluate.min_slice_rows, champion_tag=champion_tag,
                      variant=_served_variant_checks(params, challenger, test))
    report = decision.model_copy(update={"challenger_md5": io.file_md5(contracts.model_file(params.paths.model_dir)),
                                         "test_rows": len(test)})
    report.save(params.paths.metrics_dir)
    log.info("gate: %s (%s)", "PROMOTE" if report.promote else "REFUSE", "; ".join(report.failed) or "all passed")
    return report


def _served_variant_checks(params: Params, challenger: Any, test: Any) -> list[Check]:
    """The gate's checks of the variant `serve.artifact` names (none for `full`, the default): the variant the
    `variant` stage made in `paths.served_dir` must be made from this challenger's model.txt and pass its parity
    check, and be timed within the latency budget, before a promotion puts it in front of callers."""
    from pipelines.features import encode_frame
    from pipelines.model.gate import variant_checks
    from pipelines.model.seam import fastest_call_ms
    from pipelines.model.variants import FULL, VariantRefused, check_variant

    artifact = params.serve.artifact
    if artifact == FULL:
        return []
    # The variant stage's out, in the run's own directory (an experiment's temp copy included), beside the model.
    try:
        checked = check_variant(challenger, params.paths.model_dir, artifact, params.paths.served_dir)
    except VariantRefused as error:
        return variant_checks(artifact, str(error), None, params.gate)
    batch = encode_frame(test.head(params.gate.latency_batch_rows), checked.model.schema)
    latency = fastest_call_ms(lambda: checked.predict_matrix(batch), params.gate.latency_repeats)
    return variant_checks(artifact, checked, latency, params.gate)


def run_promote(params: Params, gate_report: GateReport) -> GateReport:
    """Register the challenger (once per model file) and, if the gate said so, make it the champion atomically.

    Returns the report with `registered_tag` (and `promoted_tag` when promoted), as written to metrics/gate.json.
    """
    from pipelines.data.suite import NotValidatedError
    from pipelines.model.gate import VARIANT_PARITY
    from pipelines.release import lineage, registry

    # Nothing trained on a table that did not pass validation is ever registered, even in warn-only mode.
    validated = require_validated_table(params, "register", strict=True)
    meta = ModelMeta.load(params.paths.model_dir)
    trained_on = ((meta.data if meta is not None else None) or {}).get("raw_table_md5")
    if trained_on != validated.table_md5:
        raise NotValidatedError(f"register: the challenger was trained on table {trained_on}, not on table "
                                f"{validated.table_md5}, which validation passed "
                                f"({params.paths.validation_dir / io.VALIDATION_SUMMARY_FILE}); train it again "
                                f"(dvc repro train)")
    if gate_report.challenger_md5 is None:
        raise ValueError("register: the gate report names no challenger (challenger_md5): run the gate first")
    name = params.project.model_name
    store = registry.open_registry(params)
    built = lineage.capture(Path.cwd(), registry.dag_outputs(params.paths))
    tag = registry.find_by_model_hash(gate_report.challenger_md5, name=name, root=Path.cwd(), current=built,
                                      registry=store)
    if tag is None:
        verdict = "passed" if gate_report.promote else "refused"
        tag = registry.save_model(params.paths.model_dir, registry.registration_entry(params, gate_report, built),
                                  name=name, labels={registry.GATE_LABEL: verdict}, registry=store)
    if any(check.name == VARIANT_PARITY and check.passed for check in gate_report.checks):
        # The variant the gate just checked goes with the model, before any promotion makes it visible to the
        # service: whenever this model serves (now, after a rollback, from the Bento) its variant serves with it.
        registry.attach_served_variant(tag, params.paths.served_dir, store)
    if gate_report.promote:
        # Only over the champion the gate compared with: if another promotion landed meanwhile this raises
        # PromotionConflict having written nothing, and the caller gates again against the new champion.
        registry.set_champion(store, tag, reason="; ".join(gate_report.reasons), expected=gate_report.champion)
    report = gate_report.model_copy(update={"registered_tag": tag, "promoted_tag": tag if gate_report.promote
                                            else None})
    report.save(params.paths.metrics_dir)
    return report


PROMOTION_ATTEMPTS = 3  # a gate that lost a promotion race judges again against the winner, this many times at most


def run_gate_and_promote(params: Params) -> dict[str, Any]:
    """The `gate` DVC stage: decide, register, promote; raises `GateRefused` only in blocking mode.

    Promotion is conditional on the champion the gate compared with: when another run promoted meanwhile (two
    workers, a retrain beside a training run), this gate's verdict is stale, so it judges again against the new
    champion, up to PROMOTION_ATTEMPTS times, and never overwrites a champion it did not beat.
    """
    from pipelines.model.gate import enforce
    from pipelines.release.registry import PromotionConflict

    for attempt in range(1, PROMOTION_ATTEMPTS + 1):
        try:
            report = run_promote(params, run_gate(params))
            break
        except PromotionConflict as conflict:
            if attempt == PROMOTION_ATTEMPTS:
                raise
            log.warning("%s: gating again against the new champion (attempt %d of %d)", conflict, attempt + 1,
                        PROMOTION_ATTEMPTS)
    report.receipt().save(params.paths.registry_dir)
    enforce(report, params.gate)
    return {"promote": report.promote, "promoted": report.promoted_tag is not None, "tag": report.registered_tag,
            "champion": report.promoted_tag or report.champion,
            **({"previous": report.champion} if report.promote else {"failed": report.failed})}


# --- the monitoring reference -------------------------------------------------------------------------------------

def run_reference(params: Params) -> dict[str, Any]:
    """The `reference` DVC stage: the monitoring reference sample and drift calibration of the model the gate
    registered (its receipt), attached to that model in the registry (`registry.attach_files`).

    Its own stage, after the gate, so that the gate reads no monitor.* key: a calibration key re-runs this alone,
    and a monitoring-only key (cooldown, alarms) re-runs nothing. The windows it calibrates on are said here
    (`monitor.window_days` / `min_window_rows`, `auto` resolved from the reference period) and kept in the receipt.
    """
    from pipelines.contracts import GateReceipt, ReferenceReceipt
    from pipelines.model.catalog import load_model
    from pipelines.monitor.calibration import calibration_warning
    from pipelines.monitor.reference import build_reference
    from pipelines.release import registry

    require_validated_table(params, "reference")
    # The gate's receipt is that stage's out, beside this one's, in the run's own directory (an experiment's temp
    # copy included); the model it names is in the machine's store, which `attach_files` writes into (and, with a
    # registry remote, uploads beside the model's archive for every other machine).
    home = params.paths.registry_dir
    receipt = GateReceipt.load(home)
    model_md5 = io.file_md5(contracts.model_file(params.paths.model_dir))
    if receipt is None or receipt.model_md5 != model_md5:
        raise RuntimeError(f"reference: the gate has not registered the model in {params.paths.model_dir} "
                           f"({home / io.DVC_GATE_RECEIPT} names {receipt.model_md5 if receipt else None}, the "
                           f"model is {model_md5}): run the gate stage first (dvc repro gate)")
    splits = [io.read_parquet(io.prepared_path(params.paths, split), "preprocess") for split in io.SPLITS]
    reference, calibration = build_reference(splits[:2], load_model(params.paths.model_dir), params.features,
                                             params.source.time_column, params.monitor, labelled=splits[1:])
    registry.attach_files(receipt.tag, {
        io.REFERENCE_FILE: lambda path: reference.to_parquet(path, index=False),
        io.CALIBRATION_FILE: lambda path: io.write_json(path, calibration.to_json_dict())},
        registry=registry.open_registry(params))
    log.info("reference: %s; calibrated on %d reference windows of %d days (%s)", receipt.tag,
             calibration.windows, calibration.window_days, calibration.sizing)
    attached = ReferenceReceipt(tag=receipt.tag, model_md5=model_md5, reference_rows=len(reference),
                                window_days=calibration.window_days, min_window_rows=calibration.min_window_rows,
                                calibration_windows=calibration.windows, sizing=calibration.sizing)
    attached.save(home)
    noisy = calibration_warning(calibration)
    if noisy:
        log.warning("reference: %s", noisy)
    return attached.to_json_dict() | ({"calibration_warning": noisy} if noisy else {})

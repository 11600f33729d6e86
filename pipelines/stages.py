"""The I/O shell of each step: load its inputs from the paths in params, call the pure step, save its outputs.

`dvc.yaml` runs these through the CLI and the Prefect flows run them as tasks, so a stage is implemented once.
File names and the atomic writers are `pipelines.io`'s; what a step computes lives in its own module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import io
from pipelines.config import Params
from pipelines.contracts import GateReport

log = logging.getLogger(__name__)


# --- the guard ----------------------------------------------------------------------------------------------------

def require_validated_table(params: Params, stage: str, *, strict: bool = False) -> Any:
    """The guard every stage after validate calls first: the raw table is the one that passed validation.

    Stages that read the prepared splits also need them to come from that table (preprocess's lineage file).
    `strict` (registering a model) refuses a table let through only by validate.fail_on_error: false.
    Raises `NotValidatedError` ("table <hash> has not passed validation (<summary.json> says ...)").
    """
    from pipelines.data.suite import require_validated

    derived = None if stage == "preprocess" else io.lineage_path(params.paths)
    return require_validated(params.paths.raw_table, params.paths.validation_dir, stage, strict=strict,
                             derived=derived)


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
    from pipelines.data.collect import PARSE_ERRORS, WINDOW_ROWS, collect
    from pipelines.data.suite import read_suite, suite_column_types

    column_types = suite_column_types(read_suite(params.validate_.suite))
    table = collect(params.source, params.collect, column_types)
    io.write_parquet(params.paths.raw_table, table)
    return {"rows": len(table), "path": str(params.paths.raw_table), **table.attrs.get(WINDOW_ROWS, {}),
            "unparsed_cells": {name: info["count"] for name, info in (table.attrs.get(PARSE_ERRORS) or {}).items()}}


def run_validate(params: Params) -> dict[str, Any]:
    from pipelines.data.collect import PARSE_ERRORS, WINDOW_ROWS
    from pipelines.data.validate import validate_table

    table = io.read_parquet(params.paths.raw_table, "collect")
    summary = validate_table(table, params.validate_.suite, params.paths.validation_dir,
                             fail_on_error=params.validate_.fail_on_error, time_column=params.source.time_column,
                             period=params.validate_.period, window=(params.collect.start, params.collect.end),
                             max_duplicate_share=params.validate_.max_duplicate_share,
                             chunk_rows=params.validate_.chunk_rows,
                             parse_errors=table.attrs.get(PARSE_ERRORS) or {}, table=params.paths.raw_table,
                             table_md5=io.file_md5(params.paths.raw_table), collected=table.attrs.get(WINDOW_ROWS))
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
    io.write_json(io.lineage_path(params.paths), {"raw_table_md5": validated.table_md5,
                                                  "validation_success": validated.success,
                                                  "suite": validated.suite, "rows": validated.rows})
    return {split: len(prepared.split(split)) for split in io.SPLITS}


# --- model --------------------------------------------------------------------------------------------------------

def run_train(params: Params) -> dict[str, Any]:
    """`train:` alone, no search: in this process, or across the Dask cluster with train.engine dask."""
    from pipelines.model.gpu import require_opencl

    require_opencl(params.train.device_type)  # a wrong setting is refused before any data is read
    lineage = require_validated_table(params, "train")
    if params.train.engine == "dask":
        model = run_candidates_in_turn(params, [params.train])[0].model
    else:
        model = run_candidate(params, 0, params.train).model
    model.meta["data"] = _training_data(params, lineage)
    model.save(params.paths.model_dir)
    return {"best_iteration": model.meta["best_iteration"], "threshold": model.threshold,
            "valid_metrics": model.meta["valid_metrics"]}


_SPLIT_CACHE: dict[tuple[str, int], Any] = {}


def _training_splits(params: Params, train_file: Path | None = None) -> tuple[Any, Any, Any]:
    """train (the prepared split, or the search's slice at `train_file`), valid and schema, read once per process
    (a Dask worker trains several candidates)."""
    from pipelines.features import FeatureSchema

    train_file = train_file or io.prepared_path(params.paths, "train")
    key = (str(train_file.resolve()), train_file.stat().st_mtime_ns if train_file.exists() else 0)
    if key not in _SPLIT_CACHE:
        _SPLIT_CACHE.clear()
        _SPLIT_CACHE[key] = (io.read_parquet(train_file, "preprocess"),
                             io.read_parquet(io.prepared_path(params.paths, "valid"), "preprocess"),
                             FeatureSchema.load(io.schema_path(params.paths)))
    return _SPLIT_CACHE[key]


def plan_search(params: Params) -> list[Any]:
    """The candidates' TrainParams (one entry, `train:` itself, when search.strategy is none).

    A GPU set-up without OpenCL is refused here, before a cluster starts or a candidate trains.
    """
    from pipelines.model.gpu import require_opencl
    from pipelines.model.search import candidate_params

    require_opencl(params.train.device_type)
    return candidate_params(params.search, params.train)


def run_candidate(params: Params, index: int, candidate: Any, datasets: Any = None,
                  train_file: Path | None = None) -> Any:
    """Train one candidate where this runs (a Dask worker, a Prefect task, this process).

    With `datasets` (`pipelines.model.train.BinaryDatasets` of the candidate's seed) the train split is not read here;
    otherwise it is read from `train_file` (the search's slice) or the prepared split.
    """
    from pipelines.features import FeatureSchema
    from pipelines.model.search import train_candidate

    if datasets is not None:
        valid = io.read_parquet(io.prepared_path(params.paths, "valid"), "preprocess")
        schema = FeatureSchema.load(io.schema_path(params.paths))
        return train_candidate(index, candidate, params.train, None, valid, schema, datasets=datasets)
    train, valid, schema = _training_splits(params, train_file)
    return train_candidate(index, candidate, params.train, train, valid, schema)


@contextmanager
def _scratch_dir(params: Params, prefix: str) -> Iterator[Path]:
    """A temporary folder beside the model directory (the path an external Dask cluster's workers see, like the
    prepared splits), removed on exit."""
    import shutil
    import tempfile

    parent = params.paths.model_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class SearchSplit:
    """The train split the search's candidates read: the prepared split, or its latest `search.max_rows` rows."""

    path: Path
    rows: int
    train_rows: int

    @property
    def sliced(self) -> bool:
        return self.rows < self.train_rows


@contextmanager
def search_split(params: Params) -> Iterator[SearchSplit]:
    """The candidates' train split: the whole prepared split, or (when it is longer than search.max_rows) its
    latest rows, written to a temporary Parquet file that workers read like the prepared split."""
    from pipelines.model.search import latest_rows

    train_file = io.prepared_path(params.paths, "train")
    time_column = params.source.time_column
    stamps = io.read_parquet(train_file, "preprocess", columns=[time_column])[time_column]
    rows = latest_rows(stamps, params.search.max_rows)
    if rows is None:
        yield SearchSplit(path=train_file, rows=len(stamps), train_rows=len(stamps))
        return
    with _scratch_dir(params, ".search-") as directory:
        sliced = io.write_parquet(directory / train_file.name, io.parquet_rows(train_file, rows),
                                  row_group_rows=io.SPLIT_ROW_GROUP_ROWS)
        log.info("search: candidates train on the latest %d of the train split's %d rows (search.max_rows)",
                 len(rows), len(stamps))
        yield SearchSplit(path=sliced, rows=len(rows), train_rows=len(stamps))


@contextmanager
def shared_datasets(params: Params, candidates: list[Any], train_file: Path) -> Iterator[dict[int, Any]]:
    """The train split at `train_file` and the valid split binned once per distinct seed into LightGBM binary
    files, for every candidate.

    Read, encoded and binned here, in the driver, before any worker starts; the frames are dropped before the
    workers load the (much smaller) binary files, which are removed after.
    """
    import gc

    from pipelines.features import FeatureSchema
    from pipelines.model.train import build_datasets

    with _scratch_dir(params, ".datasets-") as directory:
        train = io.read_parquet(train_file, "preprocess")
        valid = io.read_parquet(io.prepared_path(params.paths, "valid"), "preprocess")
        schema = FeatureSchema.load(io.schema_path(params.paths))
        built = {}
        for candidate in candidates:
            if candidate.seed not in built:
                built[candidate.seed] = build_datasets(train, valid, schema, candidate, directory)
        del train, valid
        gc.collect()
        yield built


def finish_search(params: Params, results: list[Any], split: SearchSplit | None = None) -> dict[str, Any]:
    """Save the winner (refit on the whole train split when the candidates saw a slice of it) where the train stage
    puts its model, and every candidate's record as a DVC metric. No `split`: they saw the whole train split."""
    from pipelines.model.search import pick_winner, search_report

    lineage = require_validated_table(params, "train")
    winner = pick_winner(results, params.search.metric)
    if split is None:
        rows = winner.model.meta["train_rows"]
        split = SearchSplit(path=io.prepared_path(params.paths, "train"), rows=rows, train_rows=rows)
    refit = refit_winner(params, winner) if split.sliced else None
    model = winner.model if refit is None else refit.model
    model.meta["data"] = _training_data(params, lineage)
    model.meta["search"] = {"candidate": winner.index, "candidates": len(results), "metric": params.search.metric,
                            "search_rows": split.rows, "refit": refit is not None}
    model.save(params.paths.model_dir)
    report = search_report(results, winner, params.search.metric)
    report.update({"search_rows": split.rows, "train_rows": split.train_rows,
                   "refit": None if refit is None else refit.record()})
    io.write_json(params.paths.metrics_dir / io.CANDIDATES_FILE, report)
    log.info("search: %d candidates on %s, winner #%d %s%s", len(results), report["workers"], winner.index,
             winner.valid_metrics, "" if refit is None else f"; refit on {split.train_rows} rows {refit.valid_metrics}")
    return {"best_iteration": model.meta["best_iteration"], "threshold": model.threshold,
            "valid_metrics": model.meta["valid_metrics"], "candidates": len(results), "winner": winner.index,
            "workers": report["workers"], "wall_seconds": report["wall_seconds"], "search_rows": split.rows,
            "refit": refit is not None}


def refit_winner(params: Params, winner: Any) -> Any:
    """The search's winner trained again, alone, on the whole prepared train split, by the engine that trained it.

    Early stopping on the validation split picks its rounds again: more rows carry more rounds than the slice did.
    """
    from pipelines.model.search import refit_params

    refit = refit_params(params.train, winner)
    log.info("search: refitting candidate #%d on the whole train split", winner.index)
    return run_candidates_in_turn(params, [refit], first_index=winner.index)[0]


def run_candidates_in_turn(params: Params, candidates: list[Any], train_file: Path | None = None,
                           first_index: int = 0) -> list[Any]:
    """Candidates one after another: on the whole Dask cluster each (train.engine dask), or here (a GPU's one queue)."""
    import time

    from pipelines.features import FeatureSchema
    from pipelines.model.distributed import train_model_dask
    from pipelines.model.search import candidate_result, dask_client

    if params.train.engine == "local":
        return [run_candidate(params, index, candidate, train_file=train_file)
                for index, candidate in enumerate(candidates, start=first_index)]
    valid = io.read_parquet(io.prepared_path(params.paths, "valid"), "preprocess")
    schema = FeatureSchema.load(io.schema_path(params.paths))
    train_file = train_file or io.prepared_path(params.paths, "train")
    if not train_file.exists():
        raise FileNotFoundError(f"{train_file} not found: run the preprocess stage first (dvc repro preprocess)")
    results = []
    with dask_client(params.search) as client:
        where = f"dask {client.scheduler.address}"
        for index, candidate in enumerate(candidates, start=first_index):
            started = time.time()
            model = train_model_dask(client, train_file, valid, schema, candidate, partitions=params.search.n_workers)
            results.append(candidate_result(index, candidate, params.train, model, started=started, worker=where))
            log.info("candidate #%d done on %s: %s", index, where, results[-1].valid_metrics)
    return results


def run_search(params: Params) -> dict[str, Any]:
    """The train stage with model selection: candidates fan out over Dask (local cluster or search.dask_address).

    A single candidate (search.strategy none) trains in this process: no cluster for one job. With train.engine
    dask, or on a GPU, candidates train in turn (`pipelines.model.search.parallel_candidates`).
    """
    from pipelines.model.search import map_on_dask, parallel_candidates

    candidates = plan_search(params)  # refuses a wrong setting (train.device_type gpu without OpenCL) first
    require_validated_table(params, "train")
    if len(candidates) == 1:  # nothing to choose: `train:` trains on the whole split
        return finish_search(params, run_candidates_in_turn(params, candidates))
    with search_split(params) as split:
        if params.train.engine == "dask" or not parallel_candidates(params.train):
            results = run_candidates_in_turn(params, candidates, split.path)
        else:
            with shared_datasets(params, candidates, split.path) as datasets:
                jobs = [(params, index, candidate, datasets[candidate.seed])
                        for index, candidate in enumerate(candidates)]
                results = map_on_dask(params.search, run_candidate, jobs)
    return finish_search(params, results, split)


def _baseline_train(params: Params) -> Any:
    """What the naive baselines need of the train split (evaluate and gate): its time and label, not the whole
    split (gigabytes on a big table)."""
    from pipelines.features import LABEL

    return io.read_parquet(io.prepared_path(params.paths, "train"), "preprocess",
                           columns=[params.source.time_column, LABEL])


def run_evaluate(params: Params) -> dict[str, Any]:
    from pipelines.model.evaluate import evaluate_model
    from pipelines.model.train import TrainedModel

    require_validated_table(params, "evaluate")
    evaluation = evaluate_model(
        TrainedModel.load(params.paths.model_dir),
        train=_baseline_train(params),
        test=io.read_parquet(io.prepared_path(params.paths, "test"), "preprocess"),
        time_column=params.source.time_column,
        slices=params.evaluate.slices,
        min_slice_rows=params.evaluate.min_slice_rows,
    )
    io.write_json(params.paths.metrics_dir / io.EVALUATE_FILE, evaluation.metrics)
    io.write_json(params.paths.metrics_dir / io.SLICES_FILE, evaluation.slices)
    for curve, name in io.PLOT_FILES.items():
        io.write_csv(params.paths.plots_dir / name, getattr(evaluation, curve))
    return evaluation.metrics


# --- gate and promotion -------------------------------------------------------------------------------------------

def run_gate(params: Params) -> GateReport:
    """Challenger (the model the train stage wrote) vs the registry's champion on the current test split.

    Writes metrics/gate.json and returns the report. A refusal is returned, not raised: the flow and `dvc repro`
    carry on and report it; `gate.enforce` turns it into an error when gate.fail_on_refusal asks.
    """
    from pipelines.features import encode_frame
    from pipelines.model.evaluate import baseline_predictions
    from pipelines.model.gate import decide, measure_latency_ms
    from pipelines.model.train import TrainedModel
    from pipelines.release import registry

    require_validated_table(params, "gate")
    challenger = TrainedModel.load(params.paths.model_dir)
    test = io.read_parquet(io.prepared_path(params.paths, "test"), "preprocess")
    train = _baseline_train(params)
    store = registry.open_registry(params)
    champion_tag = registry.champion_tag(store)
    champion_proba = registry.load_model(champion_tag, store).predict_proba(test) if champion_tag else None
    batch = encode_frame(test.head(params.gate.latency_batch_rows), challenger.schema)
    latency = measure_latency_ms(challenger.booster, batch, params.gate.latency_repeats)
    decision = decide(test, challenger.predict_proba(test), champion_proba,
                      baseline_predictions(train, test, params.source.time_column), latency, params.gate,
                      params.evaluate.slices, params.evaluate.min_slice_rows, champion_tag=champion_tag)
    report = decision.model_copy(update={"challenger_md5": io.file_md5(params.paths.model_dir / io.MODEL_FILE),
                                         "test_rows": len(test)})
    report.save(params.paths.metrics_dir)
    log.info("gate: %s (%s)", "PROMOTE" if report.promote else "REFUSE", "; ".join(report.failed) or "all passed")
    return report


def run_promote(params: Params, gate_report: GateReport) -> GateReport:
    """Register the challenger (once per model file) and, if the gate said so, make it the champion atomically.

    Returns the report with `registered_tag` (and `promoted_tag` when promoted), as written to metrics/gate.json.
    """
    from pipelines.data.suite import NotValidatedError
    from pipelines.model.train import TrainedModel
    from pipelines.monitor.reference import build_reference
    from pipelines.release import lineage, registry

    # Nothing trained on a table that did not pass validation is ever registered, even in warn-only mode.
    validated = require_validated_table(params, "register", strict=True)
    trained_on = ((io.read_json(params.paths.model_dir / io.META_FILE) or {}).get("data") or {}).get("raw_table_md5")
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
        splits = [io.read_parquet(io.prepared_path(params.paths, split), "preprocess") for split in ("train", "valid")]
        labelled = [splits[1], io.read_parquet(io.prepared_path(params.paths, "test"), "preprocess")]
        reference, calibration = build_reference(splits, TrainedModel.load(params.paths.model_dir), params.features,
                                                 params.source.time_column, params.monitor, labelled=labelled)
        verdict = "passed" if gate_report.promote else "refused"
        tag = registry.save_model(params.paths.model_dir, registry.registration_entry(params, gate_report, built),
                                  name=name, labels={registry.GATE_LABEL: verdict}, registry=store,
                                  extra_files={io.REFERENCE_FILE: lambda path: reference.to_parquet(path, index=False),
                                               io.CALIBRATION_FILE: lambda path: io.write_json(
                                                   path, calibration.to_json_dict())})
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

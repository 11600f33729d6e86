"""The I/O shell of each step: load its inputs from the paths in params, call the pure step, save its outputs.

`dvc.yaml` runs these through the CLI and the Prefect flows run them as tasks, so a stage is implemented once.
Every file is written to a temporary name and renamed into place: a crashed stage never leaves a half-written
artifact for the next one to read.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.config import Params

log = logging.getLogger(__name__)


def write_atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temp))
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path


def write_json(path: Path, data: Any) -> Path:
    return write_atomic(path, lambda temp: temp.write_text(json.dumps(data, indent=2, default=str) + "\n"))


def write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda temp: frame.to_parquet(temp, index=False))


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda temp: frame.to_csv(temp, index=False))


def read_parquet(path: Path, stage: str) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the {stage} stage first (dvc repro {stage})")
    return pd.read_parquet(path)


def prepared_path(params: Params, split: str) -> Path:
    return params.paths.prepared_dir / f"{split}.parquet"


def schema_path(params: Params) -> Path:
    return params.paths.prepared_dir / "feature_schema.json"


# --- the stages, in DAG order -------------------------------------------------------------------------------------

def run_collect(params: Params) -> dict[str, Any]:
    from pipelines.collect import collect

    table = collect(params.source, params.collect)
    write_parquet(params.paths.raw_table, table)
    return {"rows": len(table), "path": str(params.paths.raw_table)}


def run_validate(params: Params) -> dict[str, Any]:
    from pipelines.validate import validate_table

    table = read_parquet(params.paths.raw_table, "collect")
    summary = validate_table(table, params.validate_.suite, params.paths.validation_dir,
                             fail_on_error=params.validate_.fail_on_error)
    return summary if isinstance(summary, dict) else summary.to_dict()


def run_preprocess(params: Params) -> dict[str, Any]:
    from pipelines.preprocess import SPLITS, prepare

    table = read_parquet(params.paths.raw_table, "collect")
    prepared = prepare(table, params.source, params.features, params.split, keep=params.evaluate.slices)
    for split in SPLITS:
        write_parquet(prepared_path(params, split), prepared.split(split))
    write_atomic(schema_path(params), prepared.schema.save)
    return {split: len(prepared.split(split)) for split in SPLITS}


def run_train(params: Params) -> dict[str, Any]:
    from pipelines.features import FeatureSchema
    from pipelines.train import train_model

    train = read_parquet(prepared_path(params, "train"), "preprocess")
    valid = read_parquet(prepared_path(params, "valid"), "preprocess")
    model = train_model(train, valid, FeatureSchema.load(schema_path(params)), params.train)
    model.save(params.paths.model_dir)
    return {"best_iteration": model.meta["best_iteration"], "threshold": model.threshold,
            "valid_metrics": model.meta["valid_metrics"]}


def run_evaluate(params: Params) -> dict[str, Any]:
    from pipelines.evaluate import evaluate_model
    from pipelines.train import TrainedModel

    model = TrainedModel.load(params.paths.model_dir)
    evaluation = evaluate_model(
        model,
        train=read_parquet(prepared_path(params, "train"), "preprocess"),
        test=read_parquet(prepared_path(params, "test"), "preprocess"),
        time_column=params.source.time_column,
        slices=params.evaluate.slices,
        min_slice_rows=params.evaluate.min_slice_rows,
    )
    metrics_dir, plots_dir = params.paths.metrics_dir, params.paths.plots_dir
    write_json(metrics_dir / "evaluate.json", evaluation.metrics)
    write_json(metrics_dir / "slices.json", evaluation.slices)
    write_csv(plots_dir / "roc.csv", evaluation.roc)
    write_csv(plots_dir / "precision_recall.csv", evaluation.precision_recall)
    write_csv(plots_dir / "calibration.csv", evaluation.calibration)
    write_csv(plots_dir / "feature_importance.csv", evaluation.importance)
    return evaluation.metrics


# --- model selection, gate and promotion --------------------------------------------------------------------------

_SPLIT_CACHE: dict[tuple[str, int], Any] = {}


def _training_splits(params: Params) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """train, valid and schema, read once per process (a Dask worker trains several candidates)."""
    from pipelines.features import FeatureSchema

    train_file = prepared_path(params, "train")
    key = (str(train_file.resolve()), train_file.stat().st_mtime_ns if train_file.exists() else 0)
    if key not in _SPLIT_CACHE:
        _SPLIT_CACHE.clear()
        _SPLIT_CACHE[key] = (read_parquet(train_file, "preprocess"),
                             read_parquet(prepared_path(params, "valid"), "preprocess"),
                             FeatureSchema.load(schema_path(params)))
    return _SPLIT_CACHE[key]


def plan_search(params: Params) -> list[Any]:
    """The candidates' TrainParams (one entry, `train:` itself, when search.strategy is none)."""
    from pipelines.search import candidate_params

    return candidate_params(params.search, params.train)


def run_candidate(params: Params, index: int, candidate: Any) -> Any:
    """Train one candidate where this runs (a Dask worker, a Prefect task, this process)."""
    from pipelines.search import train_candidate

    train, valid, schema = _training_splits(params)
    return train_candidate(index, candidate, params.train, train, valid, schema)


def finish_search(params: Params, results: list[Any]) -> dict[str, Any]:
    """Save the winner where the train stage puts its model, and every candidate's record as a DVC metric."""
    from pipelines.search import pick_winner, search_report

    winner = pick_winner(results, params.search.metric)
    winner.model.meta["search"] = {"candidate": winner.index, "candidates": len(results),
                                   "metric": params.search.metric}
    winner.model.save(params.paths.model_dir)
    report = search_report(results, winner, params.search.metric)
    write_json(params.paths.metrics_dir / "candidates.json", report)
    log.info("search: %d candidates on %s, winner #%d %s", len(results), report["workers"], winner.index,
             winner.valid_metrics)
    return {"best_iteration": winner.best_iteration, "threshold": winner.model.threshold,
            "valid_metrics": winner.valid_metrics, "candidates": len(results), "winner": winner.index,
            "workers": report["workers"], "wall_seconds": report["wall_seconds"]}


def _gather_with_progress(futures: list[Any]) -> list[Any]:
    """Candidates' results in submission order, with a progress bar (in a terminal) and a log line per candidate."""
    from distributed import as_completed
    from rich.progress import Progress

    results = []
    with Progress(transient=True) as progress:
        bar = progress.add_task(f"training {len(futures)} candidates on Dask", total=len(futures))
        for future in as_completed(futures):
            result = future.result()
            log.info("candidate #%d done: %s", result.index, result.valid_metrics)
            results.append(result)
            progress.advance(bar)
    return sorted(results, key=lambda result: result.index)


def run_search(params: Params) -> dict[str, Any]:
    """The train stage with model selection: candidates fan out over Dask (local cluster or search.dask_address).

    A single candidate (search.strategy none) trains in this process: no cluster for one job.
    """
    candidates = plan_search(params)
    if len(candidates) == 1:
        return finish_search(params, [run_candidate(params, 0, candidates[0])])
    from distributed import Client, LocalCluster

    from pipelines.search import dask_cluster_kwargs

    if params.search.dask_address:
        client, cluster = Client(params.search.dask_address), None
    else:
        cluster = LocalCluster(**dask_cluster_kwargs(params.search))
        client = Client(cluster)
    try:
        futures = [client.submit(run_candidate, params, index, candidate, pure=False)
                   for index, candidate in enumerate(candidates)]
        results = _gather_with_progress(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return finish_search(params, results)


def run_gate(params: Params) -> dict[str, Any]:
    """Challenger (the model the train stage wrote) vs the registry's champion on the current test split.

    Writes metrics/gate.json and returns the decision as a dict. A refusal is returned, not raised: the flow and
    `dvc repro` carry on and report it; `gate.fail_on_refusal: true` turns it into an error in `run_gate_and_promote`.
    """
    from pipelines import registry
    from pipelines.evaluate import baseline_predictions
    from pipelines.features import encode_frame
    from pipelines.gate import decide, measure_latency_ms
    from pipelines.train import MODEL_FILE, TrainedModel

    challenger = TrainedModel.load(params.paths.model_dir)
    test = read_parquet(prepared_path(params, "test"), "preprocess")
    train = read_parquet(prepared_path(params, "train"), "preprocess")
    champion_tag = registry.champion_tag(registry.registry_home(params.paths.registry_dir))
    champion_proba = registry.load_model(champion_tag).predict_proba(test) if champion_tag else None
    batch = encode_frame(test.head(params.gate.latency_batch_rows), challenger.schema)
    latency = measure_latency_ms(challenger.booster, batch, params.gate.latency_repeats)
    decision = decide(test, challenger.predict_proba(test), champion_proba,
                      baseline_predictions(train, test, params.source.time_column), latency, params.gate,
                      params.evaluate.slices, params.evaluate.min_slice_rows, champion_tag=champion_tag)
    report = decision.to_dict()
    report["challenger_md5"] = registry.file_md5(params.paths.model_dir / MODEL_FILE)
    report["test_rows"] = len(test)
    write_json(params.paths.metrics_dir / "gate.json", report)
    log.info("gate: %s (%s)", "PROMOTE" if decision.promote else "REFUSE", "; ".join(decision.failed) or "all passed")
    return report


def model_metadata(params: Params, gate_report: dict[str, Any]) -> dict[str, Any]:
    """What the registry stores with a model: metrics, params, data version, commit, feature schema, gate."""
    import json as _json

    from pipelines import lineage, registry
    from pipelines.train import META_FILE

    meta = _json.loads((params.paths.model_dir / META_FILE).read_text())
    evaluation = params.paths.metrics_dir / "evaluate.json"
    return {
        "model_md5": gate_report["challenger_md5"],
        "metrics": {"test": gate_report["metrics"]["challenger"], "valid": meta.get("valid_metrics"),
                    "evaluate": _json.loads(evaluation.read_text()) if evaluation.exists() else None},
        "params": meta.get("params"),
        "search": meta.get("search"),
        "threshold": meta.get("threshold"),
        # DVC 3 records a file out's md5 of its bytes, so this equals dvc.lock's collect out for this table.
        "data_version": {"raw_table_md5": registry.file_md5(params.paths.raw_table)
                         if params.paths.raw_table.exists() else "unknown",
                         "window": [params.collect.start.isoformat(), params.collect.end.isoformat()]},
        "git_commit": registry.git_commit(),
        # How to rebuild it: commit, dirty files, experiment ref, data hash, params diff, package lock.
        "lineage": lineage.capture(Path.cwd(), dag_outputs(params)).model_dump(mode="json"),
        "feature_schema": _json.loads((params.paths.model_dir / "feature_schema.json").read_text()),
        "gate": {"promote": gate_report["promote"], "failed": gate_report["failed"],
                 "compared_with": gate_report["compared_with"], "champion": gate_report["champion"]},
    }


def dag_outputs(params: Params) -> list[Path]:
    """What the DAG's stages write (dvc.yaml's outs, metrics and plots are under these): the run's result, never
    a dirty tree."""
    paths = params.paths
    return [paths.raw_table, paths.validation_dir, paths.prepared_dir, paths.model_dir, paths.metrics_dir,
            paths.plots_dir, paths.registry_dir]


def _write_reference(params: Params, path: Path) -> None:
    from pipelines.monitoring import sample_reference

    train = read_parquet(prepared_path(params, "train"), "preprocess")
    sample_reference(train, params.features, params.source.time_column, params.monitor).to_parquet(path, index=False)


def run_promote(params: Params, gate_report: dict[str, Any]) -> dict[str, Any]:
    """Register the challenger (once per model file) and, if the gate said so, make it the champion atomically."""
    from pipelines import registry

    tag = registry.find_by_model_hash(gate_report["challenger_md5"])
    if tag is None:
        tag = registry.save_model(params.paths.model_dir, model_metadata(params, gate_report),
                                  extra_files={registry.REFERENCE_FILE: lambda path: _write_reference(params, path)})
    if not gate_report["promote"]:
        write_json(params.paths.metrics_dir / "gate.json", {**gate_report, "registered_tag": tag, "promoted_tag": None})
        return {"promoted": False, "tag": tag, "champion": gate_report["champion"], "failed": gate_report["failed"]}
    registry.set_champion(registry.registry_home(params.paths.registry_dir), tag,
                          reason="; ".join(gate_report["reasons"]))
    outcome = {"promoted": True, "tag": tag, "champion": tag, "previous": gate_report["champion"]}
    write_json(params.paths.metrics_dir / "gate.json", {**gate_report, "registered_tag": tag, "promoted_tag": tag})
    return outcome


def run_gate_and_promote(params: Params) -> dict[str, Any]:
    """The `gate` DVC stage: decide, register, promote; raises `GateRefused` only in blocking mode."""
    from pipelines import registry
    from pipelines.gate import enforce

    report = run_gate(params)
    outcome = run_promote(params, report)
    write_json(params.paths.registry_dir / registry.DVC_GATE_RECEIPT,
               {"model_md5": report["challenger_md5"], "tag": outcome["tag"], "promoted": outcome["promoted"]})
    enforce(report, params.gate)
    return {"promote": report["promote"], **outcome}

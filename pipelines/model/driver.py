"""The search driver: the train stage's I/O around `pipelines.model.search`, whichever families compete.

It reads the prepared splits, fans the candidates out over Dask (one candidate per worker; LightGBM candidates
share binary Datasets built once), refits the winner on the whole train split when the candidates saw a slice of
it, and writes the winner's model directory and `metrics/candidates.json`. `pipelines.stages.run_train` /
`run_search` (the DVC stage and the Prefect task) call it after the validation guard, handing it the record of
what the model is trained on (`data`), so this module knows nothing of validation.
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

log = logging.getLogger(__name__)

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

    With `datasets` (LightGBM's `BinaryDatasets` of the candidate's seed) the train split is not read here;
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
    files, for every LightGBM candidate (other families read the splits themselves).

    Read, encoded and binned here, in the driver, before any worker starts; the frames are dropped before the
    workers load the (much smaller) binary files, which are removed after.
    """
    import gc

    lightgbm = [candidate for candidate in candidates if candidate.family == "lightgbm"]
    if not lightgbm:
        yield {}
        return
    from pipelines.features import FeatureSchema
    from pipelines.model.families.lightgbm import build_datasets

    with _scratch_dir(params, ".datasets-") as directory:
        train = io.read_parquet(train_file, "preprocess")
        valid = io.read_parquet(io.prepared_path(params.paths, "valid"), "preprocess")
        schema = FeatureSchema.load(io.schema_path(params.paths))
        built = {}
        for candidate in lightgbm:
            if candidate.seed not in built:
                built[candidate.seed] = build_datasets(train, valid, schema, candidate, directory)
        del train, valid
        gc.collect()
        yield built


def finish_search(params: Params, results: list[Any], data: dict[str, Any],
                  split: SearchSplit | None = None) -> dict[str, Any]:
    """Save the winner (refit on the whole train split when the candidates saw a slice of it) where the train stage
    puts its model, with `data` (what it was trained on) in its meta, and every candidate's record as a DVC
    metric. No `split`: they saw the whole train split."""
    from pipelines.model.search import pick_winner, search_report

    winner = pick_winner(results, params.search.metric)
    if split is None:
        rows = winner.model.meta["train_rows"]
        split = SearchSplit(path=io.prepared_path(params.paths, "train"), rows=rows, train_rows=rows)
    refit = refit_winner(params, winner) if split.sliced else None
    model = winner.model if refit is None else refit.model
    model.meta["data"] = data
    model.meta["search"] = {"candidate": winner.record.index, "family": winner.record.family,
                            "candidates": len(results), "families": sorted({r.record.family for r in results}),
                            "metric": params.search.metric, "search_rows": split.rows, "refit": refit is not None}
    model.save(params.paths.model_dir)
    report = search_report(results, winner, params.search.metric, search_rows=split.rows,
                           train_rows=split.train_rows, refit=refit)
    report.save(params.paths.metrics_dir)
    log.info("search: %d candidates on %s, winner #%d (%s) %s%s", len(results), report.workers,
             winner.record.index, winner.record.family, winner.record.valid_metrics,
             "" if refit is None else f"; refit on {split.train_rows} rows {refit.record.valid_metrics}")
    return {"family": model.family, "best_iteration": model.meta["best_iteration"], "threshold": model.threshold,
            "valid_metrics": model.meta["valid_metrics"], "candidates": len(results), "winner": winner.record.index,
            "workers": report.workers, "wall_seconds": report.wall_seconds, "search_rows": split.rows,
            "refit": refit is not None}


def refit_winner(params: Params, winner: Any) -> Any:
    """The search's winner trained again, alone, on the whole prepared train split, by the engine that trained it.

    Early stopping on the validation split picks its rounds again: more rows carry more rounds than the slice did.
    """
    from pipelines.model.search import refit_params

    refit = refit_params(params.train, winner)
    log.info("search: refitting candidate #%d (%s) on the whole train split", winner.record.index,
             winner.record.family)
    return run_candidates_in_turn(params, [refit], first_index=winner.record.index)[0]


def run_candidates_in_turn(params: Params, candidates: list[Any], train_file: Path | None = None,
                           first_index: int = 0) -> list[Any]:
    """Candidates one after another: on the whole Dask cluster each (LightGBM with train.engine dask), or here."""
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
            results.append(candidate_result(index, candidate, params.train, model, started=started, worker=where,
                                            valid=valid))
            log.info("candidate #%d done on %s: %s", index, where, results[-1].record.valid_metrics)
    return results


def train_alone(params: Params, data: dict[str, Any]) -> dict[str, Any]:
    """`train:` alone, no search: in this process, or across the Dask cluster with train.engine dask."""
    if params.train.engine == "dask":
        model = run_candidates_in_turn(params, [params.train])[0].model
    else:
        model = run_candidate(params, 0, params.train).model
    model.meta["data"] = data
    model.save(params.paths.model_dir)
    return {"family": model.family, "best_iteration": model.meta["best_iteration"], "threshold": model.threshold,
            "valid_metrics": model.meta["valid_metrics"]}


def run_search(params: Params, candidates: list[Any], data: dict[str, Any]) -> dict[str, Any]:
    """The train stage with model selection: `candidates` (`plan_search`) fan out over Dask (local cluster or
    search.dask_address), and the winner is saved with `data` in its meta.

    A single candidate (search.strategy none) trains in this process: no cluster for one job. With train.engine
    dask, or on a GPU, candidates train in turn (`pipelines.model.search.parallel_candidates`).
    """
    from pipelines.model.search import map_on_dask, parallel_candidates

    if len(candidates) == 1:  # nothing to choose: `train:` trains on the whole split
        return finish_search(params, run_candidates_in_turn(params, candidates), data)
    with search_split(params) as split:
        if params.train.engine == "dask" or not parallel_candidates(params.train):
            results = run_candidates_in_turn(params, candidates, split.path)
        else:
            with shared_datasets(params, candidates, split.path) as datasets:
                jobs = [(params, index, candidate, datasets.get(candidate.seed) if candidate.family == "lightgbm"
                         else None, split.path) for index, candidate in enumerate(candidates)]
                results = map_on_dask(params.search, run_candidate, jobs)
    return finish_search(params, results, data, split)

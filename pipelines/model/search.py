"""Model selection: which families and params compete, how one candidate trains, which one wins.

Pure: params and frames in, results out. A candidate is `train:` with its family set and that family's section
changed (a full `TrainParams`), trained by `pipelines.model.train.train_model` (the one training implementation),
mapped over a `dask.distributed.Client` by the search driver (`pipelines.model.driver`), whether `dvc repro` or
the Prefect flow runs the train stage (the flow runs DVC's stages). The winner is chosen on the validation split by
`search.metric`, whatever its family, so the test split stays untouched for evaluate and the promotion gate.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import ParamsError, SearchParams, TrainParams, format_errors
from pipelines.contracts import CandidateRecord, CandidatesReport
from pipelines.features import FeatureSchema, encode_frame
from pipelines.model.seam import TrainedModel, measure_latency_ms
from pipelines.model.train import model_params, train_model

# Direction of each validation metric every family records.
HIGHER_IS_BETTER = {"auc": True, "binary_logloss": False}
# Predict latency of each candidate, on validation rows: one row (a /predict) and a 1,000-row batch; fastest of this
# many runs on one thread (a candidate shares its worker's core).
LATENCY_ROWS = (1, 1000)
LATENCY_REPEATS = 5


@dataclass
class CandidateResult:
    """One trained candidate: what metrics/candidates.json keeps of it (`record`: params, validation metrics, where
    and when it ran, the proof of parallelism) and the model itself, saved only for the winner."""

    record: CandidateRecord
    model: TrainedModel | None = field(default=None, repr=False)


def _with(base: TrainParams, family: str, overrides: dict[str, Any], threads: int) -> TrainParams:
    # Re-validate: a grid value out of range fails here with the key named, not inside the learner.
    from pydantic import ValidationError

    try:
        return base.with_family(family, overrides, num_threads=threads)
    except ValidationError as error:
        messages = "; ".join(format_errors(error, TrainParams, prefix=("train",)))
        raise ParamsError(f"search candidate {family} {overrides} is not valid: {messages}") from None


def candidate_overrides(search: SearchParams, seed: int, family: str) -> list[dict[str, Any]]:
    """The changes each candidate of `family` makes to its `train.<family>` section; `[{}]`: the section alone."""
    if search.strategy == "none" or (search.strategy == "optuna" and search.trials == 0):
        return [{}]
    if search.strategy == "grid":
        grid = search.grid.of(family)
        keys = sorted(grid)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
    return _optuna_overrides(search, seed, family)


def _optuna_overrides(search: SearchParams, seed: int, family: str) -> list[dict[str, Any]]:
    """`trials` seeded draws from the family's `space` through an Optuna study's ask interface.

    All trials are asked before any is told (they train in parallel), so TPE samples them independently (its
    start-up phase): in effect a seeded random search with Optuna's distributions and bookkeeping.
    """
    import optuna

    space = search.space.of(family)
    if not space:
        return [{}]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if HIGHER_IS_BETTER[search.metric] else "minimize"
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
    drawn = []
    for _ in range(search.trials):
        trial = study.ask()
        values = {}
        for name in sorted(space):
            low, high = space[name]
            if isinstance(low, int) and isinstance(high, int):
                values[name] = trial.suggest_int(name, low, high)
            else:
                values[name] = trial.suggest_float(name, float(low), float(high))
        drawn.append(values)
    return drawn


def refit_params(base: TrainParams, winner: CandidateResult) -> TrainParams:
    """The winner's params for its refit on the whole train split: alone, so with `train.num_threads` again."""
    return _with(base, winner.record.family, winner.record.overrides, base.num_threads)


def latest_rows(stamps: pd.Series, max_rows: int | None) -> np.ndarray | None:
    """Ascending positions of the `max_rows` latest rows, or None when every row fits (or there is no cap).

    The latest, because they sit next to the validation months the candidates are judged on: the slice is the
    traffic most like what the model will see. Rows sharing the cut's timestamp are taken in table order; a split
    already in time order (what preprocess writes) is not sorted again.
    """
    from pipelines.features import time_order

    if max_rows is None or len(stamps) <= max_rows:
        return None
    ticks, positions, _ = time_order(stamps)
    if positions is None:
        return np.arange(len(ticks) - max_rows, len(ticks))
    return np.sort(positions[-max_rows:])


def candidate_params(search: SearchParams, base: TrainParams) -> list[TrainParams]:
    """Every candidate's full TrainParams, family by family in `search.families` order (null: `train.family`
    alone), in a fixed order (same params file, same list). `search.strategy: none`: `train:` alone."""
    if search.strategy == "none":
        return [base]
    families = search.families or [base.family]
    if (base.engine == "dask" or base.device_type == "gpu") and set(families) != {"lightgbm"}:
        raise ParamsError(f"search.families {families}: train.engine dask and train.device_type gpu are "
                          "LightGBM's learners; let only lightgbm compete there, or use engine local, device cpu")
    candidates = [(family, change) for family in families
                  for change in candidate_overrides(search, base.seed, family)]
    if candidates == [(base.family, {})]:
        return [base]
    return [_with(base, family, change, search.threads_per_worker) for family, change in candidates]


def _where() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def train_candidate(index: int, params: TrainParams, base: TrainParams, train: pd.DataFrame | None,
                    valid: pd.DataFrame, schema: FeatureSchema, datasets: Any = None) -> CandidateResult:
    """Train one candidate with the shared `train_model`; records the worker, pid, wall-clock interval, and the
    model's predict latency and size.

    With `datasets` (LightGBM's binary Datasets the search built once) `train` is not read: the same model, without
    the train split in every worker.
    """
    started = time.time()
    model = train_model(train, valid, schema, params, datasets=datasets)
    return candidate_result(index, params, base, model, started=started, worker=_where(), valid=valid)


def predict_latency(model: TrainedModel, valid: pd.DataFrame) -> dict[str, float]:
    """Fastest single-thread `predict_matrix` time on 1 and on 1,000 validation rows, in milliseconds."""
    matrix = encode_frame(valid.head(max(LATENCY_ROWS)), model.schema)
    return {f"{rows}_row{'s' if rows > 1 else ''}": round(measure_latency_ms(model, matrix[:rows], LATENCY_REPEATS,
                                                                             threads=1), 4)
            for rows in LATENCY_ROWS}


def candidate_result(index: int, params: TrainParams, base: TrainParams, model: TrainedModel, *, started: float,
                     worker: str, valid: pd.DataFrame | None = None) -> CandidateResult:
    """A trained candidate's record: its family, what it changed from `train.<family>`, its validation metrics,
    fit time, predict latency (on `valid`'s rows) and size, where and when."""
    finished = time.time()
    base_values = base.model_dump()[params.family]
    overrides = {k: v for k, v in params.model_dump()[params.family].items() if base_values.get(k) != v}
    record = CandidateRecord(index=index, family=params.family, overrides=overrides, params=model_params(params),
                             valid_metrics=model.meta["valid_metrics"], best_iteration=model.meta["best_iteration"],
                             worker=worker, pid=os.getpid(), started=started, finished=finished,
                             fit_seconds=model.fit_seconds,
                             predict_ms=predict_latency(model, valid) if valid is not None else {},
                             model_bytes=len(model.learner_bytes()), seconds=round(finished - started, 3),
                             train_rows=model.meta["train_rows"])
    return CandidateResult(record, model)


def parallel_candidates(base: TrainParams) -> bool:
    """Whether candidates may train side by side, one per Dask worker (every family: their fits are one process
    each).

    Not with `engine: dask` (each candidate already uses the whole cluster) nor with `device_type: gpu` (candidates
    on one card would fight for its memory and its queue): those train one at a time.
    """
    return base.engine == "local" and base.device_type == "cpu"


def pick_winner(results: list[CandidateResult], metric: str) -> CandidateResult:
    """The best candidate by the validation metric; ties go to the earlier candidate (a stable choice)."""
    if not results:
        raise ValueError("no candidates to pick from (search produced an empty list)")
    missing = [r.record.index for r in results if metric not in r.record.valid_metrics]
    if missing:
        raise ValueError(f"search.metric {metric!r} was not recorded for candidates {missing}")
    sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
    return min(results, key=lambda r: (sign * r.record.valid_metrics[metric], r.record.index))


def dask_cluster_kwargs(search: SearchParams) -> dict[str, Any]:
    """LocalCluster settings: worker processes (LightGBM holds the GIL-free threads itself), loopback only."""
    return {"n_workers": search.n_workers, "threads_per_worker": search.threads_per_worker, "processes": True,
            "host": "127.0.0.1", "dashboard_address": None}


def search_report(results: list[CandidateResult], winner: CandidateResult, metric: str, *, search_rows: int,
                  train_rows: int, refit: CandidateResult | None = None) -> CandidatesReport:
    """What metrics/candidates.json holds: every candidate, the winner, the parallel wall time, the rows the
    candidates saw (`search_rows`) of the train split's `train_rows`, and the winner's `refit` on all of them."""
    ordered = sorted((r.record for r in results), key=lambda r: r.index)
    return CandidatesReport(
        metric=metric,
        winner=winner.record.index,
        winner_family=winner.record.family,
        winner_valid=winner.record.valid_metrics,
        winner_overrides=winner.record.overrides,
        families={family: best_of_family(results, family, metric).record.index
                  for family in dict.fromkeys(r.family for r in ordered)},
        candidates=ordered,
        wall_seconds=round(max(r.finished for r in ordered) - min(r.started for r in ordered), 3),
        workers=sorted({r.worker for r in ordered}),
        search_rows=search_rows, train_rows=train_rows, refit=None if refit is None else refit.record,
    )


def best_of_family(results: list[CandidateResult], family: str, metric: str) -> CandidateResult:
    """The best candidate of one family (what the family's row of a comparison shows)."""
    return pick_winner([r for r in results if r.record.family == family], metric)


@contextmanager
def dask_client(search: SearchParams) -> Iterator[Any]:
    """A client of search.dask_address, or of a local cluster of search.n_workers processes (closed on exit)."""
    from distributed import Client, LocalCluster

    if search.dask_address:
        with Client(search.dask_address) as client:
            yield client
        return
    with _quiet("distributed"), LocalCluster(**dask_cluster_kwargs(search)) as cluster, Client(cluster) as client:
        yield client


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """`logger` at WARNING for the block, unless the run logs at DEBUG (`-v`). A local cluster's scheduler and nannies
    log their start, every connection and their teardown at INFO (with a `CommClosedError` traceback when a worker
    closes first, which is how a LocalCluster ends): in the train stage's output that reads as a failure."""
    import logging

    target = logging.getLogger(logger)
    level = target.level
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        target.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        target.setLevel(level)


def map_on_dask(search: SearchParams, function: Any, jobs: list[tuple[Any, ...]]) -> list[Any]:
    """`function(*job)` for every job on Dask (search.dask_address, or a local cluster of search.n_workers), in
    job order, with a progress bar (in a terminal) and a log line per finished job: the train stage's driver,
    under `dvc repro` and the Prefect flow alike."""
    import logging

    from distributed import as_completed
    from rich.progress import Progress

    log = logging.getLogger(__name__)
    with dask_client(search) as client:
        futures = {client.submit(function, *job, pure=False): order for order, job in enumerate(jobs)}
        results: dict[int, Any] = {}
        with Progress(transient=True) as progress:
            bar = progress.add_task(f"training {len(futures)} candidates on Dask", total=len(futures))
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                done = results[futures[future]]
                record = getattr(done, "record", done)
                log.info("candidate #%d (%s) done: %s", futures[future], getattr(record, "family", ""),
                         getattr(record, "valid_metrics", ""))
                progress.advance(bar)
    return [results[order] for order in range(len(jobs))]

"""Model selection on real data: candidates really train in parallel on Dask workers, the best one is kept."""

from __future__ import annotations

import json
import logging
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines import stages
from pipelines.config import Params, parse_params
from pipelines.model.families import lightgbm as lightgbm_family
from pipelines.model.seam import TrainedModel
from pipelines.model.train import model_params
from support.params import SMALL_WINDOW, params_dict, prepare_small_window

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def prepared_root(tmp_path_factory: pytest.TempPathFactory, small_table: pd.DataFrame) -> Path:
    return prepare_small_window(tmp_path_factory.mktemp("search"), small_table)


def search_params(root: Path, **overrides: Any) -> Params:
    return parse_params(params_dict(root, {**SMALL_WINDOW, **overrides}))


def assert_ran_in_parallel(candidates: list[dict[str, Any]]) -> None:
    """Two candidates on distinct workers (distinct processes) whose wall-clock intervals overlap."""
    overlapping = [(a["index"], b["index"]) for a, b in combinations(candidates, 2)
                   if a["worker"] != b["worker"] and a["pid"] != b["pid"]
                   and a["started"] < b["finished"] and b["started"] < a["finished"]]
    assert overlapping, f"no two candidates overlapped on distinct workers: {candidates}"


GRID = {"num_leaves": [15, 31], "min_data_in_leaf": [40, 120]}


def test_grid_candidates_train_in_parallel_on_two_dask_workers(prepared_root: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    params = search_params(prepared_root, **{"search.strategy": "grid", "search.grid.lightgbm": GRID,
                                             "search.n_workers": 2, "train.lightgbm.num_leaves": 63,
                                             "train.lightgbm.min_data_in_leaf": 100})
    import distributed  # noqa: F401 - its import sets its loggers' levels (distributed.yaml)

    before = logging.getLogger("distributed").level
    with caplog.at_level(logging.INFO):
        summary = stages.run_search(params)
    # The stage logs each candidate; the local cluster's own start/connection/teardown chatter stays out of it.
    assert sum("candidate #" in r.getMessage() for r in caplog.records) == 4
    chatter = [r.getMessage() for r in caplog.records
               if r.name.startswith("distributed") and r.levelno < logging.WARNING]
    assert not chatter, chatter[:5]
    assert logging.getLogger("distributed").level == before  # quiet only while the cluster ran

    report = json.loads((params.paths.metrics_dir / "candidates.json").read_text())
    candidates = report["candidates"]
    assert len(candidates) == summary["candidates"] == 4
    assert len({c["worker"] for c in candidates}) == 2 and all(c["worker"].startswith("tcp://127.0.0.1:")
                                                               for c in candidates)
    assert_ran_in_parallel(candidates)
    # Every candidate's params and validation metrics are recorded; the winner is the best valid AUC.
    assert [(c["params"]["lightgbm"]["min_data_in_leaf"], c["params"]["lightgbm"]["num_leaves"])
            for c in candidates] == [
        (40, 15), (40, 31), (120, 15), (120, 31)]
    assert candidates[0]["overrides"] == {"min_data_in_leaf": 40, "num_leaves": 15}  # what differs from train:
    best = max(candidates, key=lambda c: (c["valid_metrics"]["auc"], -c["index"]))
    assert report["winner"] == best["index"] == summary["winner"]
    saved = TrainedModel.load(params.paths.model_dir)
    assert saved.meta["params"] == best["params"] and saved.meta["search"]["candidate"] == best["index"]
    assert saved.meta["valid_metrics"] == pytest.approx(best["valid_metrics"])


def test_families_compete_on_the_validation_split_and_the_best_is_saved(prepared_root: Path) -> None:
    """Three families in one search, one candidate each, on two Dask workers: every candidate's family, params,
    validation metric, fit time, predict latency and size are recorded, and the best by search.metric is saved,
    whatever its family, as the model of that family."""
    params = search_params(prepared_root, **{
        "search.strategy": "grid", "search.families": ["logistic", "lightgbm", "histgb"], "search.n_workers": 2,
        "search.grid.lightgbm": {}, "search.grid.logistic": {}, "search.grid.histgb": {},
        "paths.model_dir": str(prepared_root / "families" / "model"),
        "paths.metrics_dir": str(prepared_root / "families" / "metrics")})
    summary = stages.run_search(params)
    report = json.loads((params.paths.metrics_dir / "candidates.json").read_text())
    candidates = report["candidates"]
    assert [c["family"] for c in candidates] == ["logistic", "lightgbm", "histgb"]
    for candidate in candidates:
        assert candidate["params"]["family"] == candidate["family"]
        assert set(candidate["params"]) - {"family", "seed", "num_threads", "device_type", "engine",
                                           "recency_half_life_days", "threshold"} == {candidate["family"]}
        assert candidate["fit_seconds"] > 0 and candidate["model_bytes"] > 0
        assert set(candidate["predict_ms"]) == {"1_row", "1000_rows"} and all(v > 0 for v in
                                                                              candidate["predict_ms"].values())
    best = max(candidates, key=lambda c: (c["valid_metrics"]["auc"], -c["index"]))
    assert report["winner"] == best["index"] and report["winner_family"] == best["family"] == summary["family"]
    assert report["families"] == {c["family"]: c["index"] for c in candidates}
    saved = TrainedModel.load(params.paths.model_dir)
    assert saved.family == best["family"] and saved.meta["search"]["families"] == sorted(report["families"])
    assert saved.meta["valid_metrics"] == pytest.approx(best["valid_metrics"])


def test_strategy_none_trains_only_the_train_params_in_process(prepared_root: Path) -> None:
    params = search_params(prepared_root, **{"search.strategy": "none", "paths.model_dir":
                                             str(prepared_root / "models" / "single")})
    summary = stages.run_search(params)
    report = json.loads((params.paths.metrics_dir / "candidates.json").read_text())
    assert summary["candidates"] == 1 and report["workers"] == ["local"]
    assert report["candidates"][0]["params"] == model_params(params.train)


def test_the_search_bins_the_splits_once_and_its_winner_is_the_in_memory_model(prepared_root: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Candidates train from one binary Dataset built by the driver (workers never read the train split), and
    the winner is byte-identical to `train_model` on the frames with the winner's params."""
    from pipelines import io
    from pipelines.model import train

    built: list[int] = []
    original = lightgbm_family.build_datasets
    monkeypatch.setattr(lightgbm_family, "build_datasets", lambda *args: built.append(args[3].seed) or original(*args))
    params = search_params(prepared_root, **{"search.strategy": "grid", "search.grid.lightgbm": GRID,
                                             "search.n_workers": 2,
                                             "paths.model_dir": str(prepared_root / "models" / "binary")})
    stages.run_search(params)
    assert built == [params.train.seed]  # once, for four candidates
    assert not list(params.paths.model_dir.parent.glob(".datasets-*"))  # the binary files are removed after
    saved = TrainedModel.load(params.paths.model_dir)
    winner = params.train.model_validate({**params.train.model_dump(), **saved.meta["params"]})
    in_memory = train.train_model(pd.read_parquet(io.prepared_path(params.paths, "train")),
                                  pd.read_parquet(io.prepared_path(params.paths, "valid")), saved.schema, winner)
    assert in_memory.booster.model_to_string() == (params.paths.model_dir / io.MODEL_FILE).read_text()
    assert in_memory.threshold == saved.threshold


def test_a_capped_search_judges_candidates_on_the_latest_rows_and_refits_the_winner_on_the_whole_split(
        prepared_root: Path) -> None:
    """search.max_rows under the train split: each candidate trains on the split's latest rows (the model it gives
    is the one `train_model` gives on exactly those rows), and the saved model is the winner trained again on the
    whole split with `train.num_threads`."""
    from pipelines import io
    from pipelines.model import train

    params = search_params(prepared_root, **{"search.strategy": "grid", "search.grid.lightgbm": GRID,
                                             "search.n_workers": 2,
                                             "paths.model_dir": str(prepared_root / "models" / "capped")})
    whole = pd.read_parquet(io.prepared_path(params.paths, "train"))
    valid = pd.read_parquet(io.prepared_path(params.paths, "valid"))
    cap = len(whole) // 3
    params = params.model_copy(update={"search": params.search.model_copy(update={"max_rows": cap})})
    summary = stages.run_search(params)

    report = json.loads((params.paths.metrics_dir / "candidates.json").read_text())
    assert (report["search_rows"], report["train_rows"]) == (cap, len(whole)) and summary["refit"]
    assert [c["train_rows"] for c in report["candidates"]] == [cap] * 4
    best = max(report["candidates"], key=lambda c: (c["valid_metrics"]["auc"], -c["index"]))
    assert report["winner"] == best["index"] == report["refit"]["index"]
    latest = whole.sort_values(params.source.time_column, kind="stable").tail(cap).sort_index()
    saved = TrainedModel.load(params.paths.model_dir)
    on_latest = train.train_model(latest.reset_index(drop=True), valid, saved.schema,
                                  params.train.model_validate({**params.train.model_dump(), **best["params"]}))
    assert on_latest.meta["valid_metrics"] == pytest.approx(best["valid_metrics"])

    refit = params.train.with_family("lightgbm", best["overrides"])
    on_whole = train.train_model(whole, valid, saved.schema, refit)
    assert on_whole.booster.model_to_string() == (params.paths.model_dir / io.MODEL_FILE).read_text()
    assert saved.meta["train_rows"] == len(whole) == report["refit"]["train_rows"]
    assert saved.meta["search"] == {"candidate": best["index"], "family": "lightgbm", "candidates": 4,
                                    "families": ["lightgbm"], "metric": "auc", "search_rows": cap, "refit": True}
    assert saved.meta["valid_metrics"] == pytest.approx(report["refit"]["valid_metrics"])
    scratch = [p.name for p in params.paths.model_dir.parent.iterdir() if p.name.startswith((".search-", ".datasets-"))]
    assert not scratch  # the slice and the binary files are removed after

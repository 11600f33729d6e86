"""The training flow's search: candidates are Prefect tasks on a DaskTaskRunner, really parallel on two workers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines import io, stages
from pipelines.config import parse_params
from tests.conftest import SMALL_WINDOW, params_dict
from tests.model.test_search import assert_ran_in_parallel

pytestmark = pytest.mark.integration


def test_search_subflow_runs_candidates_on_dask_workers(tmp_path: Path, small_table: pd.DataFrame,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    from prefect import flow

    from flows import training

    params = parse_params(params_dict(tmp_path, SMALL_WINDOW))
    io.write_parquet(params.paths.raw_table, small_table)
    stages.run_preprocess(params)

    @flow(name="search-gate-slice")
    def selection() -> tuple[dict, dict]:
        # The training flow's model section, from the search on (collect/validate are covered elsewhere).
        candidates = training.plan_search(params)
        results = training.search.with_options(task_runner=training._search_runner(params))(params, candidates)
        selected = training.select(params, results)
        training.evaluate(params)
        decision = training.gate(params)
        promotion = training.promote(params, decision)
        training.report_gate(params, decision, promotion)
        return selected, promotion

    selected, promotion = selection()
    report = json.loads((params.paths.metrics_dir / "candidates.json").read_text())
    assert selected["candidates"] == 4 and len(report["workers"]) == 2
    assert_ran_in_parallel(report["candidates"])
    assert promotion["promoted"] and json.loads((params.paths.metrics_dir / "gate.json").read_text())["promote"]

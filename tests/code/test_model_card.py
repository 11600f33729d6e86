"""The model card on a real model trained on a small real window: metrics vs baselines, slices, data version,
gate decision, and a clear error when there is no model yet."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines import stages
from pipelines.config import Params
from pipelines.model_card import build_model_card, write_model_card
from tests.conftest import write_validated_table


@pytest.fixture
def trained(make_params: Callable[..., Params], small_table: pd.DataFrame) -> Params:
    params = make_params()
    write_validated_table(params, small_table)
    stages.run_preprocess(params)
    stages.run_train(params)
    stages.run_evaluate(params)
    return params


def test_card_shows_metrics_baselines_slices_data_version_and_params(trained: Params) -> None:
    paths = write_model_card(trained)
    markdown = Path(paths["markdown"]).read_text()
    page = Path(paths["html"]).read_text()
    threshold = json.loads((trained.paths.model_dir / "model.json").read_text())["threshold"]
    evaluation = json.loads((trained.paths.metrics_dir / "evaluate.json").read_text())
    assert "candidate (no champion yet)" in markdown
    assert f"{threshold:.4f}" in markdown
    assert f"| LightGBM | {evaluation['model']['roc_auc']:.4f}" in markdown
    assert "baseline: prior" in markdown and "baseline: hour_of_day_rate" in markdown
    assert "### by carrier" in markdown and "### by origin" in markdown
    assert "No gate decision recorded" in markdown
    assert "md5 `" in markdown and "missing" not in markdown.split("md5 `")[1][:10]
    assert "| train.num_leaves | 63 |" in markdown
    assert page.startswith("<!doctype html>") and "<table>" in page and "<h2>Slices (test split)</h2>" in page


def test_card_reports_the_gate_decision_with_its_reasons(trained: Params) -> None:
    gate: dict[str, Any] = {"decision": "rejected", "reasons": ["roc_auc 0.70 < champion 0.72 - 0.005"],
                            "challenger": {"roc_auc": 0.70}}
    (trained.paths.metrics_dir / "gate.json").write_text(json.dumps(gate))
    markdown = build_model_card(trained)
    assert "- decision: **rejected**" in markdown
    assert "- roc_auc 0.70 < champion 0.72 - 0.005" in markdown
    assert '"challenger"' in markdown


def test_card_without_a_model_names_the_stage_to_run(make_params: Callable[..., Params]) -> None:
    with pytest.raises(FileNotFoundError, match="run the train stage first"):
        build_model_card(make_params())

"""The model card on a real model trained on a small real window: metrics vs baselines, slices, data version,
the gate decision as the real gate wrote it, and a clear error when there is no model yet."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pipelines import stages
from pipelines.config import Params
from pipelines.contracts import ModelMeta
from pipelines.release.model_card import build_model_card, write_model_card
from support.params import write_validated_table

pytestmark = pytest.mark.model

# Values the card must echo; set here so the test does not depend on params.yaml's current values.
NUM_LEAVES = 7


@pytest.fixture
def trained(make_params: Callable[..., Params], small_table: pd.DataFrame) -> Params:
    params = make_params({"train.lightgbm.num_leaves": NUM_LEAVES})
    write_validated_table(params, small_table)
    stages.run_preprocess(params)
    stages.run_train(params)
    stages.run_evaluate(params)
    return params


def test_card_shows_metrics_baselines_slices_data_version_and_params(trained: Params) -> None:
    paths = write_model_card(trained)
    markdown = Path(paths["markdown"]).read_text()
    page = Path(paths["html"]).read_text()
    threshold = ModelMeta.load(trained.paths.model_dir).threshold
    evaluation = json.loads((trained.paths.metrics_dir / "evaluate.json").read_text())
    assert "candidate (no champion yet)" in markdown
    assert f"{threshold:.4f}" in markdown
    assert f"| LightGBM | {evaluation['model']['roc_auc']:.4f}" in markdown
    assert "baseline: prior" in markdown and "baseline: hour_of_day_rate" in markdown
    assert "### by carrier" in markdown and "### by origin" in markdown
    assert "No gate decision recorded" in markdown
    assert "md5 `" in markdown and "missing" not in markdown.split("md5 `")[1][:10]
    assert f"| train.lightgbm.num_leaves | {NUM_LEAVES} |" in markdown
    assert page.startswith("<!doctype html>") and "<table>" in page and "<h2>Slices (test split)</h2>" in page


@pytest.mark.parametrize(("min_improvement", "promoted"), [(-1.0, True), (1.0, False)])
def test_card_shows_the_real_gate_decision_with_its_reasons(trained: Params, min_improvement: float,
                                                            promoted: bool) -> None:
    """The gate stage writes gate.json (and promotes or not); the card must show that decision and every reason."""
    params = trained.model_copy(update={"gate": trained.gate.model_copy(update={"min_improvement": min_improvement})})
    outcome = stages.run_gate_and_promote(params)
    report = json.loads((params.paths.metrics_dir / "gate.json").read_text())
    assert outcome["promoted"] is promoted and report["promote"] is promoted

    markdown = build_model_card(params)
    section = markdown.split("## Gate decision")[1].split("\n## ")[0]
    assert f"Gate: challenger {'PROMOTED' if promoted else 'REFUSED'}" in section
    assert f"decision: **{'promote' if promoted else 'refuse'}**" in section
    assert "None" not in section.split("| check |")[0]
    for check in report["checks"]:
        assert check["reason"] in section
    if promoted:
        assert f"new champion: `{outcome['tag']}`" in section and "about this model" in section
        assert markdown.startswith(f"# Model card: {outcome['tag']}")
        # The registry entry's lineage: the commit this test runs in, the data hash, the rebuild command.
        lineage = markdown.split("## Lineage: how to rebuild it")[1].split("\n## ")[0]
        assert "- git commit: `" in lineage and "unknown" not in lineage.split("git commit: `")[1][:8]
        assert "uv.lock md5): `" in lineage
        assert f"`python -m pipelines reproduce {outcome['tag']} --check`" in lineage
    else:
        assert f"failed: {report['failed'][0]}" in section
        assert f"registered as `{outcome['tag']}`" in section


def test_the_card_of_a_champion_that_is_not_the_current_candidate_shows_its_stored_metrics(trained: Params) -> None:
    """The registry stores the champion's evaluation at registration; once a newer candidate is trained (and
    evaluated) in the checkout, the card of the champion shows the stored numbers, never the candidate's and never
    "a different model" (the registry wrote `metrics.evaluate` while the card read `evaluate`)."""
    params = trained.model_copy(update={"gate": trained.gate.model_copy(update={"min_improvement": -1.0})})
    outcome = stages.run_gate_and_promote(params)
    assert outcome["promoted"]
    champion = json.loads((params.paths.metrics_dir / "evaluate.json").read_text())
    newer = params.model_copy(update={"train": params.train.model_copy(update={"num_leaves": 3, "seed": 7})})
    stages.run_train(newer)
    candidate = stages.run_evaluate(newer)
    assert candidate["model"]["roc_auc"] != champion["model"]["roc_auc"]

    markdown = build_model_card(newer)
    assert markdown.startswith(f"# Model card: {outcome['tag']}") and "stage: **champion**" in markdown
    section = markdown.split("## Test split: model vs naive baselines")[1].split("\n## ")[0]
    assert f"| LightGBM | {champion['model']['roc_auc']:.4f}" in section
    assert f"{candidate['model']['roc_auc']:.4f}" not in section
    assert f"| baseline: prior | {champion['baselines']['prior']['roc_auc']:.4f}" in section
    assert "As evaluated when it was registered" in section and "different model" not in section
    assert "another model (challenger md5" not in markdown.split("## Gate decision")[1].split("\n## ")[0]


def test_card_without_a_model_names_the_stage_to_run(make_params: Callable[..., Params]) -> None:
    with pytest.raises(FileNotFoundError, match="run the train stage first"):
        build_model_card(make_params())


def test_card_of_another_family_names_it_and_shows_its_own_params(make_params: Callable[..., Params],
                                                                   small_table: pd.DataFrame) -> None:
    params = make_params({"train.family": "logistic", "train.logistic.C": 0.5})
    write_validated_table(params, small_table)
    stages.run_preprocess(params)
    stages.run_train(params)
    stages.run_evaluate(params)
    markdown = build_model_card(params)
    evaluation = json.loads((params.paths.metrics_dir / "evaluate.json").read_text())
    assert "- family: **logistic regression (scikit-learn)** (`train.family` logistic)" in markdown
    assert f"| logistic regression (scikit-learn) | {evaluation['model']['roc_auc']:.4f}" in markdown
    assert "| train.logistic.C | 0.5 |" in markdown and "train.lightgbm." not in markdown


def test_a_slice_column_of_many_values_is_folded_on_the_card_and_kept_whole_in_the_report(
        make_params: Callable[..., Params], small_table: pd.DataFrame) -> None:
    """`dest` has ~100 airports: the card shows the largest compared ones and names the small ones in one line,
    not a table of every airport; slices.json keeps them all."""
    from pipelines.contracts import SliceReport
    from pipelines.release.model_card import CARD_COMPARED_SLICES, CARD_SMALL_SLICES

    params = make_params({"evaluate.slices": ["dest"], "evaluate.min_slice_rows": 20})
    write_validated_table(params, small_table)
    stages.run_preprocess(params)
    stages.run_train(params)
    stages.run_evaluate(params)
    rows = SliceReport.load(params.paths.metrics_dir).columns["dest"]
    compared, small = [r for r in rows if r.compared], [r for r in rows if not r.compared]
    assert len(compared) > CARD_COMPARED_SLICES and len(small) > CARD_SMALL_SLICES  # the case this test is for
    markdown = Path(write_model_card(params)["markdown"]).read_text()
    table = markdown.split("### by dest")[1].split("\n\n")[0]
    listed = [line.split(" |")[0].removeprefix("| ") for line in table.splitlines()[3:]]
    largest = sorted(compared, key=lambda r: -r.rows)[:CARD_COMPARED_SLICES]
    assert sorted(listed) == sorted(r.value for r in largest)
    assert f"{len(compared) - CARD_COMPARED_SLICES:,} more compared values of `dest`" in markdown
    assert f"{len(small):,} values of `dest` not compared" in markdown
    biggest_small = max(small, key=lambda r: r.rows)
    assert f"{biggest_small.value} ({biggest_small.rows:,})" in markdown

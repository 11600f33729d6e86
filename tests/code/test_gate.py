"""The gate's decision rules and the search's candidate lists, on small inline data (no training)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipelines import io
from pipelines.config import ParamsError, parse_params
from pipelines.contracts import CandidateRecord, GateReceipt, GateReport, GateVerdict
from pipelines.features import LABEL
from pipelines.model.gate import decide, decision_markdown
from pipelines.model.search import CandidateResult, candidate_params, pick_winner
from support.params import params_dict

ROWS = 4000


@pytest.fixture
def params(tmp_path):
    return parse_params(params_dict(tmp_path))


@pytest.fixture
def holdout() -> tuple[pd.DataFrame, np.ndarray]:
    """Labels plus a latent risk; models are the risk seen through more or less noise."""
    rng = np.random.default_rng(0)
    risk = rng.normal(size=ROWS)
    label = (risk + rng.normal(size=ROWS) > 0.8).astype(int)
    frame = pd.DataFrame({LABEL: label, "origin": np.repeat(["EWR", "JFK", "LGA", "XXX"], ROWS // 4)})
    frame.loc[frame.index[-10:], "origin"] = "TINY"  # a slice too small to compare
    return frame, risk


def _model(risk: np.ndarray, noise: float, seed: int) -> np.ndarray:
    score = risk + np.random.default_rng(seed).normal(scale=noise, size=len(risk))
    return 1 / (1 + np.exp(-(score - 1.2)))


def _decide(params, frame, challenger, champion, latency=1.0, **gate):
    return decide(frame, challenger, champion, {"prior": np.full(len(frame), frame[LABEL].mean())}, latency,
                  params.gate.model_copy(update=gate), ["origin"], 200, champion_tag="delay-classifier:old")


def test_a_better_challenger_passes_every_check(params, holdout) -> None:
    frame, risk = holdout
    decision = _decide(params, frame, _model(risk, 0.3, 1), _model(risk, 1.5, 2), max_brier_increase=1.0)
    assert decision.promote, decision.failed
    assert [c.name for c in decision.checks] == ["roc_auc_improvement", "slice_drop", "brier_increase", "latency"]
    assert decision.metrics.challenger.roc_auc > decision.metrics.champion.roc_auc + 0.05
    assert {row.value: row.compared for row in decision.slices}["TINY"] is False
    assert "PROMOTED" in decision_markdown(decision)


def test_a_worse_challenger_is_refused_with_the_numbers(params, holdout) -> None:
    frame, risk = holdout
    decision = _decide(params, frame, _model(risk, 1.5, 2), _model(risk, 0.3, 1), min_improvement=0.0035)
    assert not decision.promote
    assert decision.failed[0].startswith("roc_auc ") and "below the required +0.0035" in decision.failed[0]
    report = decision.to_json_dict()
    assert report["promote"] is False and len(report["reasons"]) == 4 and report["failed"] == decision.failed


def test_one_slice_losing_refuses_even_when_the_total_improves(params, holdout) -> None:
    frame, risk = holdout
    challenger = _model(risk, 0.3, 1)
    jfk = (frame["origin"] == "JFK").to_numpy()
    challenger[jfk] = np.random.default_rng(3).permutation(challenger[jfk])  # JFK now ranked at random
    decision = _decide(params, frame, challenger, _model(risk, 1.0, 2), min_improvement=-1.0,
                       max_brier_increase=1.0)
    assert [c.name for c in decision.checks if not c.passed] == ["slice_drop"]
    assert "origin=JFK" in decision.failed[0] and "origin=EWR" not in decision.failed[0]


def test_latency_and_calibration_budgets_refuse(params, holdout) -> None:
    frame, risk = holdout
    better = _model(risk, 0.3, 1)
    overconfident = np.clip((better - 0.5) * 3 + 0.5, 0.001, 0.999)  # about the same ranking, worse Brier
    decision = _decide(params, frame, overconfident, better, latency=500.0, min_improvement=-1.0,
                       max_slice_drop=1.0)
    assert {c.name for c in decision.checks if not c.passed} == {"brier_increase", "latency"}


def test_without_a_champion_the_baseline_is_the_bar(params, holdout) -> None:
    frame, risk = holdout
    assert _decide(params, frame, _model(risk, 0.3, 1), None).promote
    random = np.random.default_rng(5).uniform(size=ROWS)
    decision = _decide(params, frame, random, None)
    assert not decision.promote and decision.compared_with == "baselines"
    assert "no champion yet" in decision.failed[0]


def test_grid_none_and_optuna_candidates(tmp_path) -> None:
    params = parse_params(params_dict(tmp_path, {
        "search.strategy": "grid", "search.grid.lightgbm": {"num_leaves": [7, 15], "min_data_in_leaf": [10, 30]},
        "search.threads_per_worker": 1, "search.trials": 5,
        "search.space.lightgbm": {"num_leaves": [4, 9], "learning_rate": [0.03, 0.04]}}))
    grid = candidate_params(params.search, params.train)
    assert [(c.lightgbm.min_data_in_leaf, c.lightgbm.num_leaves) for c in grid] == [(10, 7), (10, 15), (30, 7),
                                                                                   (30, 15)]
    assert all(c.num_threads == 1 and c.family == "lightgbm" for c in grid)
    assert candidate_params(params.search.model_copy(update={"strategy": "none"}), params.train) == [params.train]
    optuna = params.search.model_copy(update={"strategy": "optuna"})
    first, second = candidate_params(optuna, params.train), candidate_params(optuna, params.train)
    assert first == second and len(first) == 5  # seeded by train.seed
    assert all(4 <= c.lightgbm.num_leaves <= 9 and 0.03 <= c.lightgbm.learning_rate <= 0.04 for c in first)
    assert all(isinstance(c.lightgbm.num_leaves, int) for c in first)  # integer bounds give integer params


def test_families_compete_in_order_each_with_its_own_space(tmp_path) -> None:
    params = parse_params(params_dict(tmp_path, {
        "search.strategy": "grid", "search.families": ["logistic", "lightgbm", "histgb"],
        "search.grid.lightgbm": {"num_leaves": [7, 15]}, "search.grid.logistic": {"C": [0.1, 1.0, 10.0]},
        "search.grid.histgb": {}, "search.threads_per_worker": 1}))
    grid = candidate_params(params.search, params.train)
    assert [c.family for c in grid] == ["logistic"] * 3 + ["lightgbm"] * 2 + ["histgb"]
    assert [c.logistic.C for c in grid[:3]] == [0.1, 1.0, 10.0]
    assert [c.lightgbm.num_leaves for c in grid[3:5]] == [7, 15]
    assert grid[5].histgb == params.train.histgb  # an empty grid: the family's own section competes
    # Each candidate changes only its own family's section; the others stay as `train:` has them.
    assert all(c.lightgbm == params.train.lightgbm for c in grid[:3])
    optuna = params.search.model_copy(update={"strategy": "optuna", "trials": 3})
    drawn = candidate_params(optuna, params.train)
    assert [c.family for c in drawn] == ["logistic"] * 3 + ["lightgbm"] * 3 + ["histgb"] * 3
    assert all(0.01 <= c.logistic.C <= 10.0 for c in drawn[:3])


def test_bad_search_params_name_the_key(tmp_path) -> None:
    with pytest.raises(ParamsError, match=r"search.grid.lightgbm.num_treads: not a train.lightgbm param"):
        parse_params(params_dict(tmp_path, {"search.grid.lightgbm": {"num_treads": [1, 2]}}))
    with pytest.raises(ParamsError, match=r"search.grid.logistic.num_leaves: not a train.logistic param \(one of C,"):
        parse_params(params_dict(tmp_path, {"search.grid.logistic": {"num_leaves": [31]}}))
    with pytest.raises(ParamsError, match=r"search.families"):
        parse_params(params_dict(tmp_path, {"search.families": ["lightgbm", "xgboost"]}))
    with pytest.raises(ParamsError, match=r"train.engine dask and train.device_type gpu are LightGBM's"):
        dask = parse_params(params_dict(tmp_path, {"train.engine": "dask",
                                                   "search.families": ["lightgbm", "logistic"]}))
        candidate_params(dask.search, dask.train)
    with pytest.raises(ParamsError, match=r"train.logistic.C must be > 0"):
        candidate_params(parse_params(params_dict(tmp_path, {"search.families": ["logistic"],
                                                             "search.grid.logistic": {"C": [0]}})).search,
                         parse_params(params_dict(tmp_path)).train)
    with pytest.raises(ParamsError, match=r"train.lightgbm.num_leaves must be >= 2"):
        candidate_params(parse_params(params_dict(tmp_path, {"search.grid.lightgbm": {"num_leaves": [1]}})).search,
                         parse_params(params_dict(tmp_path)).train)


def _result(index: int, auc: float) -> CandidateResult:
    return CandidateResult(CandidateRecord(index=index, family="lightgbm", overrides={}, params={},
                                           valid_metrics={"auc": auc, "binary_logloss": 1 - auc}, best_iteration=1,
                                           worker="local", pid=1, started=0.0, finished=1.0, seconds=1.0))


def test_pick_winner_follows_the_metric_direction() -> None:
    results = [_result(0, 0.70), _result(1, 0.72), _result(2, 0.72)]
    assert pick_winner(results, "auc").record.index == 1  # ties go to the earlier candidate
    assert pick_winner(results, "binary_logloss").record.index == 1
    with pytest.raises(ValueError, match="no candidates"):
        pick_winner([], "auc")


def test_a_one_class_slice_is_skipped_and_named_not_a_crash(params, holdout) -> None:
    frame, risk = holdout
    frame = frame.copy()
    frame.loc[frame["origin"] == "XXX", LABEL] = 0  # a slice with one class: its ROC AUC does not exist
    decision = _decide(params, frame, _model(risk, 0.5, 1), _model(risk, 0.6, 2))
    row = next(r for r in decision.slices if r.value == "XXX")
    assert not row.compared and row.skipped.startswith("one class only (label 0 on all 990 rows)")
    slice_check = next(check for check in decision.checks if check.name == "slice_drop")
    assert "skipped (one class): origin=XXX" in slice_check.reason


def test_degenerate_splits_are_named_by_preprocess_and_evaluate() -> None:
    from pipelines.data.preprocess import check_both_classes
    from pipelines.features import FeatureError
    from pipelines.model.evaluate import evaluate_model, slice_metrics

    stamps = pd.date_range("2013-05-01", periods=4, freq="D", tz="UTC")
    parts = {"train": pd.DataFrame({"t": stamps, LABEL: [0, 1, 0, 1]}),
             "test": pd.DataFrame({"t": stamps, LABEL: [0, 0, 0, 0]})}
    with pytest.raises(FeatureError, match=r"degenerate split: test \(4 rows, 2013-05-01 .. 2013-05-04\) has only "
                                           r"label \[0\]"):
        check_both_classes(parts, "t")
    with pytest.raises(ValueError, match="cannot evaluate on a degenerate test split: 4 rows with labels \\[0\\]"):
        evaluate_model(None, parts["train"], parts["test"], "t", [], 1)
    frame = pd.DataFrame({LABEL: [0, 1, 0, 0, 0], "origin": ["A", "A", "B", "B", "B"]})
    rows = slice_metrics(frame, np.array([0.2, 0.8, 0.1, 0.3, 0.2]), 0.5, ["origin"], 1).columns["origin"]
    assert [(r.value, r.compared) for r in rows] == [("A", True), ("B", False)]
    assert rows[1].skipped.startswith("one class only") and np.isnan(rows[1].roc_auc)


def test_latency_is_the_fastest_run_so_a_busy_machine_does_not_refuse_a_model() -> None:
    import time

    from pipelines.model.seam import measure_latency_ms

    class Interrupted:
        """A model whose calls take 20 ms except when something else on the machine took the CPU (200 ms)."""

        def __init__(self, slow_calls: set[int]) -> None:
            self.calls, self.slow_calls = 0, slow_calls

        def predict_matrix(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
            time.sleep(0.2 if self.calls in self.slow_calls else 0.02)
            self.calls += 1
            return matrix[:, 0]

    # Warm-up is call 0; of the 7 timed calls, 5 were disturbed: a median would say 200 ms.
    latency = measure_latency_ms(Interrupted({1, 2, 3, 5, 6}), np.zeros((10, 2)), repeats=7)
    assert 20 <= latency < 100


def test_the_training_artifact_lists_every_candidate_with_its_family_and_costs() -> None:
    from pipelines.release.reporting import candidates_markdown

    report = {"metric": "auc", "winner": 1, "winner_family": "lightgbm", "candidates": [
        {"index": 0, "family": "logistic", "overrides": {"C": 0.1}, "valid_metrics": {"auc": 0.71},
         "fit_seconds": 3.5, "predict_ms": {"1_row": 0.25, "1000_rows": 2.0}, "model_bytes": 20480},
        {"index": 1, "family": "lightgbm", "overrides": {}, "valid_metrics": {"auc": 0.74},
         "fit_seconds": 9.0, "predict_ms": {"1_row": 0.5, "1000_rows": 6.0}, "model_bytes": 1048576}]}
    lines = candidates_markdown(report)
    assert "winner #1 (lightgbm) by validation auc" in lines[1]
    assert "| 0 | logistic | C=0.1 | 0.7100 | 3.5000 | 0.2500 | 2.0000 | 20.0000 |" in lines
    assert "| 1 **winner** | lightgbm | (section) | 0.7400 | 9.0000 | 0.5000 | 6.0000 | 1024.0000 |" in lines
    assert candidates_markdown(None) == []


def test_the_report_the_gate_writes_is_the_one_every_reader_reads(params, holdout, tmp_path) -> None:
    """One shape: gate.json as saved (NaN as null) reads back equal; the receipt and the registry's view are
    derived from it, never spelled apart."""
    frame, risk = holdout
    frame = frame.copy()
    frame.loc[frame["origin"] == "XXX", LABEL] = 0  # a one-class slice: NaN metrics on disk
    decision = _decide(params, frame, _model(risk, 0.3, 1), _model(risk, 1.5, 2), max_brier_increase=1.0)
    judged = decision.model_copy(update={"challenger_md5": "abc", "test_rows": len(frame)})
    registered = judged.model_copy(update={"registered_tag": "m:1", "promoted_tag": "m:1"})
    registered.save(tmp_path)
    stored = json.loads((tmp_path / io.GATE_FILE).read_text())
    assert stored["failed"] == registered.failed and stored["registered_tag"] == "m:1"
    read = GateReport.load(tmp_path)
    assert read.to_json_dict() == registered.to_json_dict() and read.failed == registered.failed
    xxx = next(r for r in read.slices if r.value == "XXX")
    assert xxx.challenger is None and stored["slices"][[r["value"] for r in stored["slices"]].index("XXX")][
        "challenger"] is None
    assert read.receipt() == GateReceipt(model_md5="abc", tag="m:1", promoted=True)
    assert read.verdict() == GateVerdict(promote=True, failed=[], compared_with="champion",
                                         champion="delay-classifier:old")
    with pytest.raises(ValueError, match="registered challenger"):
        judged.receipt()
    assert GateReport.load(tmp_path / "nowhere") is None


def test_a_gate_json_of_an_older_version_still_renders(tmp_path) -> None:
    """A committed gate.json of an earlier version (a retrain experiment's): its keys as that writer spelled them."""
    old = {"promote": False, "compared_with": "baselines", "champion": None, "metric": "roc_auc",
           "checks": [{"name": "roc_auc_over_baseline", "passed": False, "value": -0.01, "limit": 0.0,
                       "reason": "no champion yet: roc_auc 0.6000 vs best naive baseline prior 0.6100"}],
           "metrics": {"challenger": {"roc_auc": 0.6, "pr_auc": 0.3, "brier": 0.2, "log_loss": 0.5, "rows": 10},
                       "latency_ms": 1.0, "baselines": {"prior": {"roc_auc": 0.61, "brier": 0.2, "rows": 10}}},
           "slices": [], "reasons": ["..."], "failed": ["..."], "challenger_md5": "x", "test_rows": 10,
           "registered_tag": "m:2", "promoted_tag": None}
    text = decision_markdown(old)
    assert "Gate: challenger REFUSED" in text and "registered as `m:2`" in text
    assert "failed: no champion yet: roc_auc 0.6000" in text


def test_delong_standard_error_agrees_with_a_paired_bootstrap(holdout) -> None:
    """The paired standard error is what resampling the rows says, ties included (scores rounded), and the
    difference is sklearn's."""
    from sklearn.metrics import roc_auc_score

    from pipelines.model.significance import auc_lead

    frame, risk = holdout
    labels = frame[LABEL].to_numpy()
    ours, theirs = np.round(_model(risk, 0.9, 1), 2), _model(risk, 1.0, 2)
    lead = auc_lead(labels, ours, theirs)
    assert lead.difference == pytest.approx(roc_auc_score(labels, ours) - roc_auc_score(labels, theirs), abs=1e-12)
    rng = np.random.default_rng(5)
    draws = [roc_auc_score(labels[i], ours[i]) - roc_auc_score(labels[i], theirs[i])
             for i in (rng.integers(0, ROWS, ROWS) for _ in range(400))]
    assert lead.standard_error == pytest.approx(np.std(draws), rel=0.15)
    same = auc_lead(labels, ours, ours)
    assert (same.difference, same.standard_error, same.p_value) == (0.0, 0.0, 1.0)


def test_max_p_value_refuses_a_lead_a_thin_split_cannot_prove_and_keeps_one_a_large_split_can(params,
                                                                                              holdout) -> None:
    """The same two models: on 300 rows their lead is within the noise (refused by `significance`, although it
    meets min_improvement); on all 4,000 rows it is proven. Without max_p_value the p-value is only reported."""
    frame, risk = holdout
    challenger, champion = _model(risk, 0.6, 1), _model(risk, 0.9, 2)
    thin = slice(0, 300)
    refused = _decide(params, frame.iloc[thin], challenger[thin], champion[thin], max_p_value=0.01,
                      min_improvement=0.0, max_brier_increase=1.0, max_slice_drop=1.0)
    assert [c.name for c in refused.checks if not c.passed] == ["significance"], refused.failed
    assert "above gate.max_p_value 0.01: it may be noise of this test split" in refused.failed[0]
    proven = _decide(params, frame, challenger, champion, max_p_value=0.01, min_improvement=0.0,
                     max_brier_increase=1.0)
    assert proven.promote, proven.failed
    significance = next(c for c in proven.checks if c.name == "significance")
    assert significance.value < 0.01
    reported = _decide(params, frame.iloc[thin], challenger[thin], champion[thin], min_improvement=0.0,
                       max_brier_increase=1.0, max_slice_drop=1.0)
    assert reported.promote and "significance" not in [c.name for c in reported.checks]
    assert "DeLong's paired standard error; one-sided p" in reported.checks[0].reason


def test_max_p_value_with_pr_auc_is_refused_by_the_loader(tmp_path) -> None:
    with pytest.raises(ParamsError, match="gate.max_p_value needs gate.metric roc_auc"):
        parse_params(params_dict(tmp_path, {"gate.metric": "pr_auc", "gate.max_p_value": 0.05}))

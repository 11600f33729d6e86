"""`python -m pipelines summary`, the end of the main job: a few lines a person reads instead of `dvc metrics show`'s
hundreds of columns (issue #34 item 7)."""

from __future__ import annotations

import pytest

from pipelines import io
from pipelines.cli import main
from pipelines.contracts import EvaluationReport, ModelMeta, Scores
from pipelines.release.summary import summary_text

METRICS = Scores(roc_auc=0.7167, pr_auc=0.4714, log_loss=0.4995, brier=0.1635, accuracy=0.6999, precision=0.4048,
                 recall=0.5506, f1=0.4666, positive_rate=0.2384, rows=28810)


def _written(params, gate):
    EvaluationReport(model=METRICS, threshold=0.2879,
                     baselines={"prior": METRICS.model_copy(update={"roc_auc": 0.5}),
                                "hour_of_day_rate": METRICS.model_copy(update={"roc_auc": 0.6278})},
                     ).save(params.paths.metrics_dir)
    ModelMeta(best_iteration=106, valid_metrics={"auc": 0.7576}, threshold=0.2879,
              search={"candidate": 0, "candidates": 4, "metric": "auc"},
              data={"window": ["2013-01-01T00:00:00+00:00", "2013-09-01T00:00:00+00:00"]}).save(params.paths.model_dir)
    if gate:
        io.write_json(params.paths.metrics_dir / io.GATE_FILE, gate)


def test_the_summary_puts_the_model_beside_the_baselines_and_says_what_the_gate_did(make_params) -> None:
    params = make_params()
    _written(params, {"promote": False, "registered_tag": "delay-classifier:new", "champion": "delay-classifier:old",
                      "failed": ["roc_auc 0.7167 vs champion 0.7170: -0.0003 (below the required +0.0020)"]})
    text = summary_text(params)
    lines = text.splitlines()
    assert lines[0].startswith("delay-classifier: trained on 2013-01-01 .. 2013-09-01 (candidate #0 of 4")
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split() == ["metric", "model", "baseline:", "prior", "baseline:", "hour_of_day_rate"]
    auc = next(line for line in lines if line.startswith("ROC AUC"))
    assert auc.split()[2:] == ["0.7167", "0.5000", "0.6278"]
    assert "gate: REFUSED delay-classifier:new; delay-classifier:old stays champion" in text
    assert "below the required +0.0020" in text
    assert "dvc plots show" in text and "python -m pipelines model-card" in text
    root = str(params.paths.metrics_dir.parent)  # this test's temp folder makes the paths long
    assert len(lines) < 30 and max(len(line) for line in lines if root not in line) <= 120


def test_the_command_prints_it_and_says_what_to_run_before(make_params, tmp_path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from support.params import params_dict

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params_dict(tmp_path)))
    assert main(["summary", "--params", str(params_file)]) == 1
    assert "run the training DAG first (dvc repro)" in capsys.readouterr().err
    params = make_params()
    _written(params, {"promote": True, "registered_tag": "delay-classifier:first", "champion": None,
                      "reasons": ["no champion yet: roc_auc 0.7167 vs best naive baseline 0.6278"]})
    assert main(["summary", "--params", str(params_file)]) == 0
    assert "gate: PROMOTED delay-classifier:first (the first champion)" in capsys.readouterr().out

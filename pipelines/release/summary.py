"""What a person reads after the training DAG: `python -m pipelines summary` (the end of scripts/demo.sh).

`dvc metrics show` prints every metrics file flattened into one table (per-slice metrics make it ~2,000 columns).
This is the short view: the candidate's test metrics beside the naive baselines, the gate's decision and where to
look next. Pure: it reads the files the stages wrote (names from `pipelines.io`) and returns text.
"""

from __future__ import annotations

import math
from typing import Any

from pipelines import io
from pipelines.config import Params
from pipelines.contracts import EvaluationReport, ModelMeta

# (key in evaluate.json, label, lower is better)
ROWS = (("roc_auc", "ROC AUC", False), ("pr_auc", "PR AUC", False), ("log_loss", "log loss", True),
        ("brier", "Brier", True), ("precision", "precision", False), ("recall", "recall", False),
        ("f1", "F1", False))


def _number(value: Any) -> str:
    if not isinstance(value, int | float) or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}"


def metrics_lines(evaluation: EvaluationReport) -> list[str]:
    """The test split's metrics, the model beside each naive baseline, one metric per line."""
    model, baselines = evaluation.model, evaluation.baselines
    names = ["model", *(f"baseline: {name}" for name in baselines)]
    widths = [max(len(name), 6) + 3 for name in names]
    lines = ["metric    " + "".join(name.rjust(width) for name, width in zip(names, widths, strict=True))]
    for key, label, lower in ROWS:
        cells = [_number(model.metric(key)), *(_number(values.metric(key)) for values in baselines.values())]
        lines.append(label.ljust(10) + "".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True))
                     + ("   (lower is better)" if lower else ""))
    return lines


def gate_lines(gate: dict[str, Any] | None) -> list[str]:
    if not gate:
        return ["gate: not run yet (dvc repro gate)"]
    tag = gate.get("registered_tag") or "the candidate"
    if gate.get("promote"):
        head = f"gate: PROMOTED {tag}" + (f", replacing {gate['champion']}" if gate.get("champion") else
                                          " (the first champion)")
        return [head, *(f"  - {reason}" for reason in gate.get("reasons") or [])]
    champion = gate.get("champion")
    head = f"gate: REFUSED {tag}" + (f"; {champion} stays champion" if champion else "; nothing serves yet")
    return [head, *(f"  - {reason}" for reason in gate.get("failed") or [])]


def summary_text(params: Params) -> str:
    """The summary of the last training run in this workspace (its metrics files and model)."""
    paths = params.paths
    evaluation = EvaluationReport.load(paths.metrics_dir)
    if evaluation is None:
        raise FileNotFoundError(f"{paths.metrics_dir / io.EVALUATE_FILE} not found: run the training DAG first "
                                "(dvc repro)")
    meta = ModelMeta.load(paths.model_dir)
    window = ((meta.data if meta else None) or {}).get("window") or [params.collect.start.isoformat(),
                                                                     params.collect.end.isoformat()]
    search = (meta.search if meta else None) or {}
    validation = io.read_json(paths.validation_dir / io.VALIDATION_SUMMARY_FILE) or {}
    chosen = (f"candidate #{search['candidate']} of {search['candidates']} by validation {search['metric']}, "
              if search.get("candidates") else "")
    lines = [
        f"{params.project.model_name}: trained on {window[0][:10]} .. {window[1][:10]} ({chosen}"
        f"{meta.best_iteration if meta and meta.best_iteration is not None else '?'} trees, threshold "
        f"{_number(evaluation.threshold)})",
        f"test split: {evaluation.model.rows:,} rows, the last {params.split.test_days} days, later than training",
        "",
        *metrics_lines(evaluation),
        "",
        *gate_lines(io.read_json(paths.metrics_dir / io.GATE_FILE)),
        "",
        "next:",
        "  dvc plots show                      ROC, precision-recall, calibration, importance "
        "(dvc_plots/index.html, offline)",
        f"  {paths.metrics_dir / io.SLICES_FILE}" + " " * max(2, 36 - len(str(paths.metrics_dir / io.SLICES_FILE)))
        + f"per-slice metrics ({', '.join(params.evaluate.slices) or 'no slices'})",
        f"  {validation.get('report') or paths.validation_dir}   the data validation report (Great Expectations)",
        "  python -m pipelines model-card      the champion's model card (Markdown + HTML)",
        "  python -m pipelines models list     every registered model: stage, test AUC, data version, gate",
        "  dvc exp show --only-changed         experiments side by side (README, \"Look at them\")",
    ]
    return "\n".join(lines)

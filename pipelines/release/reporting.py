"""Human-readable summaries of step results (Prefect artifacts, model cards); pure string builders."""

from __future__ import annotations

import math
from typing import Any

METRIC_COLUMNS = ("roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall", "f1")


def _cell(value: Any) -> str:
    if value is None:  # NaN is written to JSON as null
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def metrics_table(rows: dict[str, dict[str, Any]], columns: tuple[str, ...] = METRIC_COLUMNS) -> str:
    """A markdown table: one row per named model, one column per metric."""
    header = "| model | " + " | ".join(columns) + " |"
    rule = "|---|" + "---|" * len(columns)
    body = [f"| {name} | " + " | ".join(_cell(values.get(c, "")) for c in columns) + " |"
            for name, values in rows.items()]
    return "\n".join([header, rule, *body])


def training_summary_markdown(summary: dict[str, Any]) -> str:
    metrics = summary["evaluate"]
    rows = {"LightGBM": metrics["model"], **{f"baseline: {k}": v for k, v in metrics["baselines"].items()}}
    splits = ", ".join(f"{name} {rows_:,}" for name, rows_ in summary["splits"].items())
    return "\n".join([
        "# Training run",
        f"- rows collected: {summary['collect']['rows']:,} (validation passed: {summary['validate'].get('success')})",
        f"- splits (rows): {splits}",
        f"- trees (early stopping): {summary['train']['best_iteration']}, "
        f"threshold: {summary['train']['threshold']:.3f}",
        "",
        "## Test split (later in time than training)",
        metrics_table(rows),
    ])

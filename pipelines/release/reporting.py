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
    rows = {summary["train"].get("family", "model"): metrics["model"],
            **{f"baseline: {k}": v for k, v in metrics["baselines"].items()}}
    splits = ", ".join(f"{name} {rows_:,}" for name, rows_ in summary["splits"].items())
    return "\n".join([
        "# Training run",
        f"- rows collected: {summary['collect']['rows']:,} (validation passed: {summary['validate'].get('success')})",
        f"- splits (rows): {splits}",
        f"- family: {summary['train'].get('family', 'lightgbm')}, rounds kept: {summary['train']['best_iteration']}, "
        f"threshold: {summary['train']['threshold']:.3f}",
        "",
        "## Test split (later in time than training)",
        metrics_table(rows),
        *candidates_markdown(summary.get("candidates")),
    ])


def candidates_markdown(report: dict[str, Any] | None) -> list[str]:
    """The search's candidates (metrics/candidates.json) as a table: family, what each changed, its validation
    metric, fit time, predict latency and size; the winner marked."""
    if not report or not report.get("candidates"):
        return []
    metric = report["metric"]
    lines = ["", f"## Search: {len(report['candidates'])} candidates, winner #{report['winner']} "
                 f"({report.get('winner_family', 'lightgbm')}) by validation {metric}", "",
             f"| # | family | params changed | valid {metric} | fit s | 1 row ms | 1,000 rows ms | size KiB |",
             "|---|---|---|---|---|---|---|---|"]
    for candidate in report["candidates"]:
        latency = candidate.get("predict_ms") or {}
        changed = ", ".join(f"{key}={value}" for key, value in candidate.get("overrides", {}).items()) or "(section)"
        mark = " **winner**" if candidate["index"] == report["winner"] else ""
        lines.append(f"| {candidate['index']}{mark} | {candidate.get('family', 'lightgbm')} | {changed} | "
                     f"{_cell(candidate['valid_metrics'].get(metric))} | {_cell(candidate.get('fit_seconds'))} | "
                     f"{_cell(latency.get('1_row'))} | {_cell(latency.get('1000_rows'))} | "
                     f"{_cell((candidate.get('model_bytes') or 0) / 1024)} |")
    return lines

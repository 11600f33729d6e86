"""evaluate: score a model on the later-in-time test split, beside naive baselines so the numbers mean something.

Everything here is pure: predictions and frames in, typed records (`pipelines.contracts.EvaluationReport`,
`SliceReport`) and frames out. The stage shell writes them as DVC metrics (JSON) and plots (CSV rendered by
`dvc plots show`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.contracts import EvaluationReport, Lift, Scores, SliceReport, SliceScores
from pipelines.features import LABEL, date_only


@dataclass(frozen=True)
class Evaluation:
    metrics: EvaluationReport
    slices: SliceReport
    roc: pd.DataFrame
    precision_recall: pd.DataFrame
    calibration: pd.DataFrame
    importance: pd.DataFrame


def score(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """The primary metrics for one set of predictions; ranking metrics are NaN when a class is absent."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y_true = np.asarray(y_true)
    label = (proba >= threshold).astype(int)
    both_classes = len(np.unique(y_true)) == 2
    return {
        "roc_auc": float(roc_auc_score(y_true, proba)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y_true, proba)) if both_classes else float("nan"),
        "log_loss": float(log_loss(y_true, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, proba)),
        "accuracy": float(accuracy_score(y_true, label)),
        "precision": float(precision_score(y_true, label, zero_division=0)),
        "recall": float(recall_score(y_true, label, zero_division=0)),
        "f1": float(f1_score(y_true, label, zero_division=0)),
        "positive_rate": float(y_true.mean()),
        "rows": int(len(y_true)),
    }


def baseline_predictions(train: pd.DataFrame, test: pd.DataFrame, time_column: str) -> dict[str, np.ndarray]:
    """Two naive models fitted on train: the class prior, and the positive rate per hour of day; where the table
    has no time of day (every time a midnight) the hour would be the prior again, so the rate per day of the week
    replaces it (`baseline_note` says so)."""
    prior = float(train[LABEL].mean())
    name, part = ("day_of_week_rate", lambda stamps: stamps.dt.dayofweek) if date_only(train[time_column]) else (
        "hour_of_day_rate", lambda stamps: stamps.dt.hour)
    rate = train[LABEL].groupby(part(train[time_column])).mean()
    by_part = part(test[time_column]).map(rate).fillna(prior).to_numpy(dtype=float)
    return {"prior": np.full(len(test), prior), name: by_part}


def baseline_note(baselines: dict[str, Any]) -> str | None:
    """Why the time baseline is not the hour of day, for the metrics a person reads."""
    if "day_of_week_rate" in baselines:
        return ("the table has no time of day (every time is a midnight): the hour-of-day baseline would be the "
                "prior, so the positive rate per day of the week is the time baseline")
    return None


def slice_metrics(frame: pd.DataFrame, proba: np.ndarray, threshold: float, columns: list[str],
                  min_rows: int) -> SliceReport:
    """Metrics per value of each slice column; small slices are reported but flagged `compared: false`."""
    result: dict[str, list[SliceScores]] = {}
    y_true = frame[LABEL].to_numpy()
    for column in columns:
        rows = []
        for value, index in frame.groupby(column, observed=True, sort=True).indices.items():
            skipped = skip_reason(y_true[index], min_rows)
            rows.append(SliceScores(value=str(value), **score(y_true[index], proba[index], threshold),
                                    skipped=skipped, compared=skipped is None))
        result[column] = rows
    return SliceReport(columns=result)


def skip_reason(y_true: np.ndarray, min_rows: int) -> str | None:
    """Why a slice is reported but not compared: too few rows, or one class (ranking metrics undefined)."""
    if len(y_true) < min_rows:
        return f"{len(y_true)} rows < evaluate.min_slice_rows {min_rows}"
    if len(np.unique(y_true)) < 2:
        return f"one class only (label {int(y_true[0])} on all {len(y_true)} rows): ROC AUC undefined"
    return None


def curves(y_true: np.ndarray, proba: np.ndarray, bins: int = 10) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """ROC, precision-recall and calibration (reliability) points, thinned to a size a plot can carry."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(y_true, proba)
    precision, recall, _ = precision_recall_curve(y_true, proba)
    observed, predicted = calibration_curve(y_true, proba, n_bins=bins, strategy="quantile")
    roc = _thin(pd.DataFrame({"fpr": fpr, "tpr": tpr}))
    pr = _thin(pd.DataFrame({"recall": recall, "precision": precision}))
    calibration = pd.DataFrame({"predicted": predicted, "observed": observed})
    return roc, pr, calibration


def _thin(frame: pd.DataFrame, points: int = 200) -> pd.DataFrame:
    if len(frame) <= points:
        return frame.round(5)
    index = np.unique(np.linspace(0, len(frame) - 1, points).astype(int))
    return frame.iloc[index].round(5).reset_index(drop=True)


def feature_importance(model: Any) -> pd.DataFrame:
    """The model's weight per feature (`importance("weight")`: split gain for trees, mean |log-odds contribution|
    for a linear model) and its share, named as the table names it; with the split count where the family counts
    splits."""
    weight = model.importance("weight")
    frame = pd.DataFrame({"feature": weight.index, "weight": weight.to_numpy()})
    if "split" in model.importance_kinds:
        frame["splits"] = model.importance("split").to_numpy()
    frame["share"] = (frame["weight"] / max(frame["weight"].sum(), 1e-12)).round(5)
    return frame.sort_values("weight", ascending=False, kind="stable").reset_index(drop=True)


def evaluate_model(model: Any, train: pd.DataFrame, test: pd.DataFrame, time_column: str, slices: list[str],
                   min_slice_rows: int) -> Evaluation:
    """The evaluate step: the model on the test split, the baselines on the same rows, slices, curves."""
    y_true = test[LABEL].to_numpy()
    if len(y_true) == 0 or len(np.unique(y_true)) < 2:
        raise ValueError(f"cannot evaluate on a degenerate test split: {len(y_true)} rows with labels "
                         f"{sorted(int(v) for v in np.unique(y_true))}; both classes are needed "
                         "(run preprocess again: it names degenerate splits)")
    proba = model.predict_proba(test)
    scored = score(y_true, proba, model.threshold)
    baselines = {name: score(y_true, values, model.threshold)
                 for name, values in baseline_predictions(train, test, time_column).items()}
    ranked = [b["roc_auc"] for b in baselines.values() if not np.isnan(b["roc_auc"])]
    by_slice = slice_metrics(test, proba, model.threshold, slices, min_slice_rows)
    metrics = EvaluationReport(
        model=Scores(**scored), threshold=model.threshold,
        baselines={name: Scores(**values) for name, values in baselines.items()},
        baseline_note=baseline_note(baselines),
        lift_over_best_baseline=Lift(roc_auc=scored["roc_auc"] - max(ranked) if ranked else None),
        # Reported, not compared: which slices and why (a one-class slice has no ROC AUC).
        skipped_slices=[f"{column}={entry.value}: {entry.skipped}"
                        for column, entries in by_slice.columns.items() for entry in entries if entry.skipped])
    roc, pr, calibration = curves(y_true, proba)
    return Evaluation(metrics=metrics, slices=by_slice, roc=roc, precision_recall=pr, calibration=calibration,
                      importance=feature_importance(model))

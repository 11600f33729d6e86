"""Label quality: whether a window's outcomes still fit the champion's probabilities as its held-out weeks did.

Why: ROC AUC only sees the ranking. Relabelling a fifth of the on-time flights as late leaves much of the ranking
intact (the AUC-drop rule caught 4 of 6 such weeks), while the probabilities fit the outcomes far worse. How much
worse a week may fit by chance depends on the week: a week of low-risk flights has a low log loss whatever happens,
a stormy one a high one. So each figure is taken against what the model's own probabilities expect of that very
window:

- `log_loss_excess`: the window's log loss minus the log loss its probabilities expect if they are right
  (their mean entropy, -mean(p log p + (1 - p) log(1 - p))). On the real weeks of 2013 it stays within -0.13 ..
  +0.12 for a champion trained on January-August (held-out weeks and the weeks it learned from alike); 20% of the
  on-time flights relabelled late raise it to +0.11 .. +0.54. It alarms.
- `brier_excess`: the Brier score minus the mean of p (1 - p), the same idea on the squared scale (reported);
- `calibration_gap`: mean predicted probability minus the observed positive rate, its departure from the
  held-out weeks' in absolute value (reported: real weeks range from -0.21 to +0.15, as wide as a label flip).

The limits are calibrated like the AUC drop, on the windows of the labelled splits the champion was not fitted on
(validation and test: a handful of weeks): the prediction bound of their values at `monitor.alarm_quantile`
(`calibration.prediction_bound`, Gaussian beyond the largest when the weeks are few). Whether a window past the
alarming limit is a label fault or a change the model should learn is decided with the inputs
(`pipelines.monitor.drift.label_reason`): outcomes that moved while the inputs did not are a label shift, a
data-quality fault.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipelines.config import MonitorParams
from pipelines.monitor.calibration import LABEL_CHECKS, LabelCalibration, prediction_bound, reference_windows

# The checks that raise an alarm past their limit (the others are reported beside them): the one that told real
# weeks from relabelled ones on the flights (docs/monitoring.md).
ALARM_CHECKS = ("log_loss_excess",)
# Probabilities are clipped like `pipelines.model.evaluate.score` clips them for log loss.
_EPS = 1e-7


def label_figures(actual: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Log-loss and Brier excess over what the probabilities expect, and the calibration gap, of one window."""
    actual = np.asarray(actual, dtype=float)
    raw = np.asarray(probability, dtype=float)
    if actual.size == 0:
        return {name: float("nan") for name in LABEL_CHECKS}
    p = np.clip(raw, _EPS, 1 - _EPS)
    log_loss = -np.mean(actual * np.log(p) + (1 - actual) * np.log(1 - p))
    entropy = -np.mean(p * np.log(p) + (1 - p) * np.log(1 - p))
    return {"log_loss_excess": float(log_loss - entropy),
            "brier_excess": float(np.mean((raw - actual) ** 2) - np.mean(raw * (1 - raw))),
            "calibration_gap": float(np.mean(raw) - np.mean(actual))}


def departures(figures: Mapping[str, float], reference: Mapping[str, float]) -> dict[str, float]:
    """What each check compares with its limit: the excesses as they are (already against the window's own
    expectation), the calibration gap's distance from the held-out gap."""
    return {"log_loss_excess": figures["log_loss_excess"], "brier_excess": figures["brier_excess"],
            "calibration_gap": abs(figures["calibration_gap"] - reference["calibration_gap"])}


def calibrate_labels(labelled: pd.DataFrame, time_column: str, monitor: MonitorParams, label: str = "label",
                     probability: str = "probability") -> LabelCalibration | None:
    """Limits from the held-out windows (`calibration.reference_windows` of the labelled splits); None with fewer
    than two windows."""
    if labelled.empty:
        return None
    windows = reference_windows(labelled, time_column, monitor)
    if len(windows) < 2:
        return None
    reference = label_figures(labelled[label].to_numpy(), labelled[probability].to_numpy())
    values: dict[str, list[float]] = {name: [] for name in LABEL_CHECKS}
    for window in windows:
        for name, value in departures(label_figures(window[label].to_numpy(), window[probability].to_numpy()),
                                      reference).items():
            values[name].append(round(value, 6))
    return LabelCalibration(windows=len(windows), reference={k: round(v, 6) for k, v in reference.items()},
                            limits={name: round(prediction_bound(v, monitor.alarm_quantile), 6)
                                    for name, v in values.items()},
                            values=values)

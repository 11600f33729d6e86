"""Label quality: whether a window's outcomes still behave as the champion's held-out outcomes did.

Why: ROC AUC only sees the ranking. Relabelling a quarter of the on-time flights as late leaves much of the ranking
intact (the decay rule caught 4 of 6 such weeks), while the probabilities the model gives fit the outcomes far
worse: log loss and Brier rise, the observed late rate leaves the predicted one (calibration-in-the-large). These
are calibrated like the AUC drop, on the windows of the labelled splits the champion was not fitted on (validation
and test: a handful of weeks), each window's figure against the figure over all of them:

- `log_loss`, `brier`: the window's minus the held-out whole's (a rise is worse);
- `calibration_gap`: the window's mean predicted probability minus its observed positive rate, minus the held-out
  whole's, in absolute value (more late flights than predicted, or fewer).

A limit is the prediction bound of those few values at `monitor.calibration_quantile`
(`calibration.prediction_bound`). Whether a window past a limit is a label fault or a change the model should learn
is decided with the inputs (`pipelines.monitor.drift`): outcomes that moved while the inputs did not are named a
label shift, a data-quality fault.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipelines.config import MonitorParams
from pipelines.monitor.calibration import LABEL_CHECKS, LabelCalibration, prediction_bound, reference_windows

# Probabilities are clipped like `pipelines.model.evaluate.score` clips them for log loss.
_EPS = 1e-7


def label_figures(actual: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Log loss, Brier score and calibration gap (mean predicted minus observed rate) of one set of outcomes."""
    actual = np.asarray(actual, dtype=float)
    clipped = np.clip(np.asarray(probability, dtype=float), _EPS, 1 - _EPS)
    if actual.size == 0:
        return {name: float("nan") for name in LABEL_CHECKS}
    return {"log_loss": float(-np.mean(actual * np.log(clipped) + (1 - actual) * np.log(1 - clipped))),
            "brier": float(np.mean((np.asarray(probability, dtype=float) - actual) ** 2)),
            "calibration_gap": float(np.mean(probability) - np.mean(actual))}


def departures(figures: Mapping[str, float], reference: Mapping[str, float]) -> dict[str, float]:
    """How far a window's figures are from the reference's, each in the direction that is worse."""
    return {"log_loss": figures["log_loss"] - reference["log_loss"],
            "brier": figures["brier"] - reference["brier"],
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
    q = monitor.calibration_quantile
    return LabelCalibration(windows=len(windows), reference={k: round(v, 6) for k, v in reference.items()},
                            limits={name: round(prediction_bound(v, q), 6) for name, v in values.items()},
                            values=values)

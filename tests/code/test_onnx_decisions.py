"""`float32_decisions` (pipelines/model/families/lightgbm_exchange.py): the values handed to the float32 ONNX tree
operator fall on the same side of every split as the float64 values do in LightGBM, whichever path (a few rows
one by one, or a batch) moves them."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.model.families.lightgbm import LIGHTGBM_ZERO
from pipelines.model.families.lightgbm_exchange import float32_decisions

THRESHOLDS = [np.array([0.1, 61.520000000000003, 912.5, 1015.2500000000001]),
              np.array([]),  # a categorical column: left alone
              np.array([-2.5, LIGHTGBM_ZERO, 3.0000000000000004])]


def _values(thresholds: np.ndarray) -> list[float]:
    """Every threshold, the next doubles either side, and what else a request or LightGBM treats apart."""
    around = [v for t in thresholds for v in (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf))]
    return [*around, 0.0, -0.0, 1e-36, -1e-36, np.inf, -np.inf, 1e300, -1e300, 5.0, np.nan]


@pytest.mark.parametrize("rows_at_once", [1, 1000])
def test_every_value_falls_on_the_side_lightgbm_sends_it(rows_at_once: int) -> None:
    values = [_values(t) for t in THRESHOLDS]
    size = max(len(v) for v in values)
    rng = np.random.default_rng(0)
    matrix = np.column_stack([rng.permutation(np.resize(np.array(v), size * 20)) for v in values])
    matrix[:, 1] = rng.integers(0, 7, len(matrix))  # category codes
    original = matrix.copy()
    decide = float32_decisions(THRESHOLDS)
    decided = np.vstack([decide(matrix[i:i + rows_at_once]) for i in range(0, len(matrix), rows_at_once)])
    np.testing.assert_array_equal(matrix, original)  # the caller's rows are not changed
    as_float32 = decided.astype(np.float32)
    lightgbm = np.where(np.abs(matrix) <= LIGHTGBM_ZERO, 0.0, matrix)  # what LightGBM reads
    for column, thresholds in enumerate(THRESHOLDS):
        np.testing.assert_array_equal(np.isnan(decided[:, column]), np.isnan(matrix[:, column]))
        present = ~np.isnan(matrix[:, column])
        for threshold in thresholds:
            onnx_left = as_float32[present, column] <= np.float32(threshold)
            assert (onnx_left == (lightgbm[present, column] <= threshold)).all(), (column, threshold)
    np.testing.assert_array_equal(decided[:, 1], matrix[:, 1])


def test_a_plain_float32_cast_would_part_from_lightgbm() -> None:
    """Why it exists: the cast alone sends a value just above 61.520000000000003 to the left."""
    value = np.nextafter(61.520000000000003, np.inf)
    assert value > 61.520000000000003 and np.float32(value) <= np.float32(61.520000000000003)
    decided = float32_decisions(THRESHOLDS)(np.array([[value, 0.0, 1.0]]))
    assert np.float32(decided[0, 0]) > np.float32(61.520000000000003)

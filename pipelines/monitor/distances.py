"""Evidently's drift distances for many windows against one reference, computed on counts.

Calibration scores every reference window, several times each (resampled), against the reference without that
window's rows: ~30 windows x 23 columns x a handful of resamples. Evidently's stat tests (the functions its
`ValueDrift` calls) sort the whole reference at every call (~20-80 ms a column on a busy 2-core machine), which
made calibration the slow half of registration. The same numbers come from counts: each column's values are coded
once on one sorted grid of its distinct values (the reference's and the windows'), a window or resample is a
`bincount` of its codes, and the reference without a window is the reference's counts minus the window's own.

- `wasserstein_norm`: the first Wasserstein distance of the two empirical distributions (the integral of the
  absolute difference of their CDFs, as `scipy.stats.wasserstein_distance` computes it), divided by the reference's
  population standard deviation, at least 0.001 (Evidently's `wasserstein` stat test);
- `jensen_shannon`: the Jensen-Shannon distance (natural log) of the two category distributions
  (`scipy.spatial.distance.jensenshannon` on the category shares, as Evidently's `jensenshannon` on a categorical
  column).

Missing and infinite values are left out, as Evidently's `ValueDrift` drops them. Both equal Evidently's own to
floating-point rounding (tests/code/test_monitoring_distances.py compares them on ties, constant columns, unseen
categories and missing values).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Evidently's floor on the reference's standard deviation (a constant column would divide by zero).
MIN_NORM = 0.001


@dataclass(frozen=True)
class CodedColumn:
    """One column's values as positions on its grid of distinct values (-1: missing or not finite).

    `grid` is sorted numbers for a numeric column, the category texts (in any order) for a categorical one.
    """

    grid: np.ndarray
    numeric: bool
    reference: np.ndarray             # the reference's codes
    windows: list[np.ndarray]         # each window's codes, in the order given

    @property
    def size(self) -> int:
        return len(self.grid)

    def counts(self, codes: np.ndarray) -> np.ndarray:
        """How many of `codes` fall on each grid position (missing left out)."""
        return np.bincount(codes[codes >= 0], minlength=self.size).astype(float)


def code_column(reference: pd.Series, windows: Sequence[pd.Series], numeric: bool) -> CodedColumn:
    """The reference's and the windows' values of one column on one grid."""
    parts = [reference, *windows]
    if numeric:
        values = [pd.to_numeric(part, errors="coerce").to_numpy(dtype=float) for part in parts]
        finite = [v[np.isfinite(v)] for v in values]
        grid = np.unique(np.concatenate(finite)) if finite else np.zeros(0)
        codes = []
        for v in values:
            code = np.full(len(v), -1, dtype=np.int64)
            ok = np.isfinite(v)
            code[ok] = np.searchsorted(grid, v[ok])
            codes.append(code)
    else:
        texts = [part.astype(object).where(part.notna(), None) for part in parts]
        grid = pd.unique(pd.concat([t.dropna() for t in texts], ignore_index=True).astype(str)) \
            if any(t.notna().any() for t in texts) else np.zeros(0, dtype=object)
        lookup = pd.Index(grid)
        codes = [np.where(t.notna().to_numpy(), lookup.get_indexer(t.fillna("").astype(str)), -1).astype(np.int64)
                 for t in texts]
    return CodedColumn(grid=np.asarray(grid), numeric=numeric, reference=codes[0], windows=codes[1:])


@dataclass(frozen=True)
class ReferenceSide:
    """The reference's counts of one column, prepared once for many windows' draws: its CDF on the grid and its
    standard deviation (numeric), or its counts (categorical)."""

    counts: np.ndarray
    cdf: np.ndarray | None = None
    norm: float = MIN_NORM

    @classmethod
    def of(cls, column: CodedColumn, counts: np.ndarray) -> ReferenceSide:
        total = counts.sum()
        if not column.numeric or total == 0:
            return cls(counts=counts)
        mean = float(counts @ column.grid) / total
        norm = max(float(np.sqrt(counts @ (column.grid - mean) ** 2 / total)), MIN_NORM)
        return cls(counts=counts, cdf=np.cumsum(counts)[:-1] / total, norm=norm)


def wasserstein_norm(grid: np.ndarray, reference: ReferenceSide, current: np.ndarray) -> float:
    """Evidently's normed Wasserstein distance from counts on a sorted grid of values (NaN if a side is empty)."""
    n_current = current.sum()
    if reference.cdf is None or n_current == 0:
        return float("nan")
    if len(grid) < 2:
        return 0.0
    gap = reference.cdf - np.cumsum(current)[:-1] / n_current
    return float(np.abs(gap) @ np.diff(grid)) / reference.norm


def jensen_shannon(reference: ReferenceSide, current: np.ndarray) -> float:
    """Evidently's Jensen-Shannon distance from category counts (NaN if a side is empty)."""
    from scipy.spatial import distance

    if reference.counts.sum() == 0 or current.sum() == 0:
        return float("nan")
    return float(distance.jensenshannon(reference.counts, current))


def distance(column: CodedColumn, reference: ReferenceSide, current: np.ndarray) -> float:
    """The column's distance from its (prepared) reference counts to a window's counts."""
    if column.numeric:
        return wasserstein_norm(column.grid, reference, current)
    return jensen_shannon(reference, current)

"""The search's slice of the train split: which rows it keeps, and reading just those rows from Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import io
from pipelines.model.search import latest_rows


def test_the_slice_is_the_latest_rows_in_table_order_whatever_the_order_of_the_table() -> None:
    rng = np.random.default_rng(7)
    stamps = pd.Timestamp("2013-01-01") + pd.to_timedelta(rng.permutation(5_000), unit="h")
    kept = latest_rows(pd.Series(stamps), 1_200)
    assert kept is not None and len(kept) == 1_200
    assert np.all(np.diff(kept) > 0)  # ascending positions: the slice keeps the table's order
    cut = np.sort(stamps.to_numpy())[-1_200]
    assert (stamps[kept] >= cut).all() and (np.delete(stamps.to_numpy(), kept) < cut).all()


def test_rows_sharing_the_cut_timestamp_are_taken_in_table_order() -> None:
    stamps = pd.Series(pd.to_datetime(["2013-01-02", "2013-01-01", "2013-01-02", "2013-01-03", "2013-01-02"]))
    assert latest_rows(stamps, 3).tolist() == [2, 3, 4]


def test_a_split_in_time_order_gives_its_last_rows_and_untimed_rows_are_never_the_latest() -> None:
    in_order = pd.Series(pd.date_range("2013-01-01", periods=10, freq="h", tz="UTC"))
    assert latest_rows(in_order, 4).tolist() == [6, 7, 8, 9]
    untimed = in_order.copy()
    untimed[[3, 9]] = pd.NaT
    assert latest_rows(untimed, 4).tolist() == [5, 6, 7, 8]


@pytest.mark.parametrize("cap", [None, 5, 6])
def test_no_slice_when_every_row_fits_or_there_is_no_cap(cap: int | None) -> None:
    assert latest_rows(pd.Series(pd.date_range("2013-01-01", periods=5, tz="UTC")), cap) is None


def test_parquet_rows_reads_exactly_those_rows_across_row_groups(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"n": np.arange(1_000), "x": rng.normal(size=1_000),
                          "city": pd.Series(rng.choice(["EWR", "JFK", None], 1_000), dtype=object)})
    path = io.write_parquet(tmp_path / "split.parquet", frame, row_group_rows=128)
    for rows in (np.array([0, 127, 128, 500, 999]), np.arange(900, 1_000), np.sort(rng.choice(1_000, 300, False)),
                 np.array([511])):
        expected = frame.iloc[rows].reset_index(drop=True)
        pd.testing.assert_frame_equal(io.parquet_rows(path, rows), expected)

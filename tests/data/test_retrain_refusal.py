"""The retraining flow refuses to learn from data that fails the validation suite, with the suite's own message,
before any experiment starts (flows/retraining.py `validate_retrain_data`); clean data goes through."""

from __future__ import annotations

import pandas as pd
import pytest

from flows.retraining import RetrainRefused, validate_retrain_data
from pipelines.config import parse_params
from support.params import SMALL_WINDOW, params_dict

pytestmark = pytest.mark.model


def _params(root, source):
    return parse_params(params_dict(root, {**SMALL_WINDOW, "source.kind": "file", "source.path": str(source)}))


def test_clean_data_goes_through(tmp_path, small_table):
    source = tmp_path / "table.parquet"
    small_table.to_parquet(source, index=False)
    checked = validate_retrain_data.fn(_params(tmp_path, source), tmp_path, "2013-06-01T00:00:00+00:00")
    assert checked["rows"] == len(small_table) and checked["checks"] > 20


def test_a_unit_change_in_the_window_is_refused_with_the_suites_message(tmp_path, small_table):
    may = small_table["time_hour"] >= pd.Timestamp("2013-05-01", tz="UTC")
    corrupted = small_table.assign(pressure=small_table["pressure"].where(~may, small_table["pressure"] / 33.8639))
    source = tmp_path / "table.parquet"
    corrupted.to_parquet(source, index=False)
    with pytest.raises(RetrainRefused) as refused:
        validate_retrain_data.fn(_params(tmp_path, source), tmp_path, "2013-06-01T00:00:00+00:00")
    message = str(refused.value)
    assert message.startswith("retrain on data up to 2013-06-01T00:00:00+00:00 refused: data validation failed")
    assert "expect_column_values_to_be_between on column 'pressure'" in message

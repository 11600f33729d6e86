"""The service log's filter: refusals and load shedding are one WARNING line each, never a traceback."""

from __future__ import annotations

import logging
import sys

import bentoml
import pytest

from services.service import RejectedRequestLog


def _record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:  # noqa: BLE001 - the record carries whatever was raised
        info = sys.exc_info()
    return logging.LogRecord("bentoml._internal.server.http_app", logging.ERROR, __file__, 1,
                             "Exception on %s [%s]", ("/predict_many", "POST"), info)


def test_a_request_shed_by_adaptive_batching_is_one_warning_line_naming_the_param() -> None:
    record = _record(bentoml.exceptions.ServiceUnavailable("process is overloaded"))
    assert RejectedRequestLog().filter(record)
    assert record.levelname == "WARNING" and record.exc_info is None
    line = record.getMessage()
    assert line.startswith("refused /predict_many POST: 503")
    assert "serve.adaptive_max_latency_ms" in line and "\n" not in line


def test_a_client_error_is_one_warning_line() -> None:
    record = _record(bentoml.exceptions.InvalidArgument("bad"))
    assert RejectedRequestLog().filter(record)
    assert record.levelname == "WARNING" and record.getMessage() == "refused /predict_many POST: 400, InvalidArgument"


@pytest.mark.parametrize("error", [RuntimeError("boom"), bentoml.exceptions.InternalServerError("boom")])
def test_a_server_fault_keeps_its_traceback(error: BaseException) -> None:
    record = _record(error)
    assert RejectedRequestLog().filter(record)
    assert record.levelname == "ERROR" and record.exc_info is not None

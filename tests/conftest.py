"""Shared fixtures over the frozen params (support/params.py): a temp folder and a short real-data window."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import Params, parse_params
from support.params import SMALL_WINDOW, params_dict


def pytest_configure(config: pytest.Config) -> None:
    """A private BentoML model store for the session, set before anything imports bentoml (it reads it once)."""
    os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bentoml-test-")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")



@pytest.fixture
def make_params(tmp_path: Path) -> Callable[..., Params]:
    """Build validated Params rooted in tmp_path: `make_params(**{"train.seed": 1})`."""

    def build(overrides: dict[str, Any] | None = None, **more: Any) -> Params:
        return parse_params(params_dict(tmp_path, {**SMALL_WINDOW, **(overrides or {}), **more}))

    return build


@pytest.fixture(scope="session")
def small_table() -> Any:
    """The real joined flights table for SMALL_WINDOW (read once per session)."""
    from pipelines.data.collect import collect

    params = parse_params(params_dict(Path("/nonexistent"), SMALL_WINDOW))
    return collect(params.source, params.collect)



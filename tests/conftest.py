"""Shared fixtures over the frozen params (support/params.py): a temp folder and a short real-data window."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import Params, parse_params
from support.params import SMALL_WINDOW, params_dict

TEMP_ROOT = Path(tempfile.gettempdir()) / "flightops-tests"  # run as root: the sessions' temp folders (0711)
KEEP_SECONDS = 24 * 3600  # older sessions' folders are removed (age, not count: other sessions run meanwhile)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A private BentoML model store for the session, set before anything imports bentoml (it reads it once).

    0711 (reachable, not listable, by others): `bentoml serve` started by a test as root runs its workers as
    serve.worker_user, who reads the models there."""
    os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bentoml-test-")
    Path(os.environ["BENTOML_HOME"]).chmod(0o711)
    if os.geteuid() == 0 and config.option.basetemp is None:
        # pytest keeps its temp folders in /tmp/pytest-of-root and makes that 0700 at every session's start (other
        # sessions run at the same time): this session's go in a folder of the project's instead, those of
        # sessions older than KEEP_SECONDS removed. Made reachable by `_temp_folders_reachable`.
        import time

        TEMP_ROOT.mkdir(exist_ok=True)
        TEMP_ROOT.chmod(0o711)
        for old in TEMP_ROOT.glob("session-*"):
            if time.time() - old.stat().st_mtime > KEEP_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        config.option.basetemp = tempfile.mkdtemp(prefix="session-", dir=TEMP_ROOT)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")



@pytest.fixture(scope="session", autouse=True)
def _temp_folders_reachable(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Run as root, a test's `bentoml serve` runs its workers as serve.worker_user, who must reach the params,
    registry and prediction log the test keeps in pytest's temp folders: pytest makes them 0700; 0711 lets another
    user reach a path it knows, never list the folder."""
    if os.geteuid() != 0:
        return
    tmp_path_factory.getbasetemp().chmod(0o711)
    make = tmp_path_factory.mktemp

    def mktemp(basename: str, numbered: bool = True) -> Path:
        path = make(basename, numbered)
        path.chmod(0o711)
        return path

    tmp_path_factory.mktemp = mktemp  # type: ignore[method-assign]


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



"""The Bento's requirements are uv.lock's `serve` group: a lock change cannot leave the container behind."""

from __future__ import annotations

from deploy.package import REQUIREMENTS, locked_requirements


def _pins(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.lstrip().startswith("#")]


def test_committed_requirements_match_the_lock() -> None:
    assert _pins(REQUIREMENTS.read_text()) == _pins(locked_requirements()), (
        "services/requirements.txt is stale: run python -m deploy.package (or commit its refreshed file)")


def test_serving_requirements_leave_out_the_orchestration_stack() -> None:
    names = {pin.split("==")[0].lower() for pin in _pins(REQUIREMENTS.read_text())}
    assert {"bentoml", "lightgbm", "pandas", "pydantic", "pyyaml", "orjson"} <= names
    assert not names & {"prefect", "dvc", "great-expectations", "evidently", "dask", "optuna"}

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.servers import postgres_database, prefect_server


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Prefect server for the session; tests point their client at it with temporary_settings."""
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as url:
        yield url


@pytest.fixture(scope="session")
def prefect_api_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server on the stack's own PostgreSQL (prefect.database: postgres), for the tests that must
    pass on both databases."""
    with postgres_database() as url, prefect_server(tmp_path_factory.mktemp("prefect-home-pg"), url) as api:
        yield api

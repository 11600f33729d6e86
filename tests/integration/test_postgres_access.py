"""Who can reach the stack's PostgreSQL (`ops/postgres.py`): by default it listens on loopback only, and even where
it is told to listen on another address on purpose (`prefect.database_host`), only the networks named in
`prefect.database_clients` may log in, with the password; every other host is refused by PostgreSQL itself."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from support.params import params_dict
from support.servers import free_port, private_folder, ready_timeout_s, stop

pytestmark = pytest.mark.integration


def _outside_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (a connection from it is not a loopback one)."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return None


OUTSIDE = _outside_address()
needs_outside = pytest.mark.skipif(OUTSIDE is None, reason="this machine has no non-loopback IPv4 address")


@contextlib.contextmanager
def _postgres(root: Path, overrides: dict[str, Any]) -> Iterator[tuple[Any, int]]:
    """`python -m ops.postgres serve` on a free port with these params (the cluster in `root`, kept between starts)."""
    from pipelines.config import parse_params

    data = params_dict(root, overrides)
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    params, port = parse_params(data), free_port()
    log = root / "postgres.log"
    with open(log, "a") as out:
        process = subprocess.Popen([sys.executable, "-m", "ops.postgres", "serve", "--params", str(params_file),
                                    "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        _wait_listening(params.prefect.database_host, port, process, log)
        yield params, port
    finally:
        stop(process)


def _wait_listening(host: str, port: int, process: subprocess.Popen, log: Path) -> None:
    import time

    deadline = time.monotonic() + ready_timeout_s()
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=2):
            return
        time.sleep(0.3)
    raise AssertionError(f"PostgreSQL did not listen on {host}:{port}:\n{log.read_text()[-3000:]}")


def _login(host: str, port: int, password: str) -> str:
    """'ok', or the refusal's class and message, of a password login as the stack's user."""
    import asyncpg

    from ops import postgres

    async def attempt() -> str:
        try:
            connection = await asyncpg.connect(host=host, port=port, user=postgres.USER, password=password,
                                               database="postgres", timeout=10)
        except (OSError, asyncpg.PostgresError) as error:
            return f"{type(error).__name__}: {error}"
        await connection.close()
        return "ok"

    return asyncio.run(attempt())


def _password(params: Any) -> str:
    from ops import postgres

    return postgres.ensure_password(postgres.folder(params))


@needs_outside
def test_postgres_listens_on_loopback_and_refuses_other_hosts_unless_configured() -> None:
    root = private_folder("postgres-access-")
    try:
        # Default: loopback only. The password logs in there; nothing listens on the machine's other address.
        with _postgres(root, {}) as (params, port):
            assert params.prefect.database_host == "127.0.0.1" and params.prefect.database_clients == []
            password = _password(params)
            assert _login("127.0.0.1", port, password) == "ok"
            assert _login("127.0.0.1", port, password + "x").startswith("InvalidPasswordError")
            assert _login(OUTSIDE, port, password).startswith(("ConnectionRefusedError", "OSError")), OUTSIDE

        # Listening on the other address on purpose: a connection from it is still refused by pg_hba.conf, with
        # the right password, until its network is named.
        with _postgres(root, {"prefect.database_host": OUTSIDE}) as (params, port):
            refused = _login(OUTSIDE, port, _password(params))
            assert refused.startswith("InvalidAuthorizationSpecificationError") and "pg_hba.conf" in refused, refused

        with _postgres(root, {"prefect.database_host": OUTSIDE,
                              "prefect.database_clients": [f"{OUTSIDE}/32"]}) as (params, port):
            assert _login(OUTSIDE, port, _password(params)) == "ok"
            assert _login(OUTSIDE, port, "wrong").startswith("InvalidPasswordError")
            hba = (root / "var" / "stack" / "postgres" / "data" / "pg_hba.conf").read_text()
            assert f"host all prefect {OUTSIDE}/32 scram-sha-256" in hba and "trust" not in hba
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def test_database_clients_must_be_networks() -> None:
    from pipelines.config import ParamsError, parse_params

    with pytest.raises(ParamsError, match="CIDR"):
        parse_params(params_dict(Path("/nonexistent"), {"prefect.database_clients": ["everyone"]}))

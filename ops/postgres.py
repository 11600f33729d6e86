"""The Prefect server's PostgreSQL, run by the stack (`prefect.database: postgres`): Debian's `postgresql` package,
one cluster in its own data folder under `paths.stack_dir`, listening on `prefect.database_host` only (loopback by
default: only the Prefect server beside it talks to it).

Why PostgreSQL: SQLite lets one writer in at a time, so a Prefect server under concurrent flow runs queues (or
fails with "database is locked") on every state change; PostgreSQL takes them concurrently (docs/scale-out.md has
the measured difference). Why not the system cluster (`pg_ctlcluster`, port 5432): the stack must not depend on
or change what the machine already runs; its own cluster starts and stops with it and its data stays beside it.

`python -m ops.postgres serve --params P --port N` is the stack's `postgres` component: it creates the cluster on
first use (`initdb`, superuser `prefect`, scram-sha-256 password auth, no Unix socket) and then becomes the
`postgres` server process itself (exec), so the stack's recorded pid is the postmaster's. PostgreSQL refuses to
run as root; when the stack runs as root the cluster belongs to, and runs as, the `postgres` account the Debian
package creates. `ensure-database` (the Prefect server's set-up step) waits for the server to accept connections
and creates the `prefect` database once.

The password is generated once (`<stack_dir>/postgres/password`, mode 0600) and reaches the Prefect server only
through its environment (`PREFECT_API_DATABASE_CONNECTION_URL`), never through stack.json or a command line.

Who may log in is written to the cluster's `pg_hba.conf` at every start (`hba_lines`): the `prefect` user with its
password (scram-sha-256) from loopback, and from the networks in `prefect.database_clients` only; a connection from
any other address is refused by PostgreSQL itself ("no pg_hba.conf entry"), whatever address it listens on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from pipelines import io
from pipelines.config import Params, load_params

USER = "prefect"      # the cluster's superuser, the one Prefect connects as
DATABASE = "prefect"
SYSTEM_ACCOUNT = "postgres"  # created by Debian's postgresql package; the cluster's owner when the stack is root
DEBIAN_BIN = Path("/usr/lib/postgresql")


class PostgresError(RuntimeError):
    """PostgreSQL cannot be set up or started as asked; the message says why and what to do."""


def folder(params: Params) -> Path:
    """Everything of the stack's cluster: `data/` (PGDATA) and `password`."""
    return params.paths.stack_dir.resolve() / "postgres"


def binaries() -> Path:
    """The folder of `initdb` and `postgres`: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin (Debian puts
    only wrappers on PATH)."""
    found = shutil.which("postgres"), shutil.which("initdb")
    if all(found) and Path(found[0]).resolve().parent == Path(found[1]).resolve().parent:
        return Path(found[0]).resolve().parent
    versions = sorted((p for p in DEBIAN_BIN.glob("*/bin") if (p / "postgres").exists() and (p / "initdb").exists()),
                      key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0], reverse=True)
    if versions:
        return versions[0]
    raise PostgresError("prefect.database is postgres but PostgreSQL is not installed (no `postgres`/`initdb` on "
                        f"PATH or under {DEBIAN_BIN}/*/bin): `sudo apt-get install postgresql`, or set "
                        "prefect.database: sqlite")


def ensure_password(home: Path) -> str:
    """The cluster's password: generated on first use, kept in `home/password` readable by its owner only."""
    path = home / "password"
    home.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PostgresError(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
    return path.read_text().strip()


def connection_url(host: str, port: int, password: str) -> str:
    """What Prefect's PREFECT_API_DATABASE_CONNECTION_URL takes (asyncpg is the only async driver it supports)."""
    return f"postgresql+asyncpg://{USER}:{quote(password, safe='')}@{host}:{port}/{DATABASE}"


def hba_lines(params: Params) -> list[str]:
    """pg_hba.conf: password logins as `prefect` from loopback and `prefect.database_clients`; nothing else (no
    trust, no peer, no other user: there is no Unix socket either)."""
    networks = ["127.0.0.1/32", "::1/128", *params.prefect.database_clients]
    return ["# Written by ops/postgres.py at every start from params (prefect.database_clients): edits are replaced.",
            *(f"host all {USER} {network} scram-sha-256" for network in dict.fromkeys(networks))]


def _account() -> pwd.struct_passwd | None:
    """The account the cluster runs as when we are root (PostgreSQL refuses root), else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_ACCOUNT)
    except KeyError:
        raise PostgresError(f"PostgreSQL refuses to run as root and there is no {SYSTEM_ACCOUNT!r} account to run "
                            "it as (Debian's postgresql package creates it): install the package, or run the "
                            "stack as a normal user") from None


def _drop_to(account: pwd.struct_passwd, home: Path) -> None:
    """Hand the cluster's folder to `account` and become it, for good (this process then execs `postgres`)."""
    for root, dirs, files in os.walk(home):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.chown(name, account.pw_uid, account.pw_gid)
    os.initgroups(account.pw_name, account.pw_gid)
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    os.environ.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
    if not os.access(home, os.R_OK | os.W_OK | os.X_OK):
        blocked = next((p for p in reversed(home.parents) if not os.access(p, os.X_OK)), home)
        raise PostgresError(f"the stack runs as root, so PostgreSQL runs as {account.pw_name!r}, which cannot reach "
                            f"{home}: {blocked} is not searchable by it (chmod o+x {blocked}, or put "
                            "paths.stack_dir where that account can reach it, or run the stack as a normal user)")


def serve(params: Params, port: int) -> None:
    """Create the cluster on first use, then become its `postgres` server on `prefect.database_host`:`port`, taking
    password logins from the hosts `hba_lines` names (never returns)."""
    home, host = folder(params), params.prefect.database_host
    ensure_password(home)
    bin_dir = binaries()
    account = _account()
    if account is not None:
        _drop_to(account, home)  # from here on nothing may be imported: the interpreter may live under /root
    data = home / "data"
    if not (data / "PG_VERSION").exists():
        if data.exists() and any(data.iterdir()):
            raise PostgresError(f"{data} holds something that is not a PostgreSQL cluster (no PG_VERSION): move it "
                                "away; the stack creates the cluster there")
        subprocess.run([str(bin_dir / "initdb"), "--pgdata", str(data), "--username", USER,
                        "--pwfile", str(home / "password"), "--auth", "scram-sha-256", "--encoding", "UTF8",
                        "--no-locale", "--no-instructions"], check=True, stdin=subprocess.DEVNULL)
    (data / "pg_hba.conf").write_text("\n".join(hba_lines(params)) + "\n")
    argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-c", f"listen_addresses={host}",
            # TCP only: no socket file in /var/run/postgresql, which may not exist or belong to another cluster.
            "-c", "unix_socket_directories=", "-c", "max_connections=200"]
    print(f"exec {' '.join(argv)}", flush=True)
    os.execv(argv[0], argv)


def ensure_database(params: Params, port: int, timeout: float) -> None:
    """Wait (up to `timeout`) for the cluster to take password logins, then create the `prefect` database once."""
    import asyncio

    import asyncpg

    password = ensure_password(folder(params))

    async def run() -> None:
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                connection = await asyncpg.connect(host=params.prefect.database_host, port=port, user=USER,
                                                   password=password,
                                                   database="postgres", timeout=5)
                break
            except (TimeoutError, OSError, asyncpg.CannotConnectNowError) as error:  # starting up
                last = error
                await asyncio.sleep(0.5)
        else:
            raise PostgresError(f"PostgreSQL on {params.prefect.database_host}:{port} did not accept a login within "
                                f"{timeout:.0f}s (stack.start_timeout_s): {last}")
        try:
            if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await connection.execute(f'CREATE DATABASE "{DATABASE}"')
                print(f"created database {DATABASE}", flush=True)
        finally:
            await connection.close()

    asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.postgres", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve", "ensure-database"])
    parser.add_argument("--params", default=io.PARAMS_FILE, help=f"params file (default: {io.PARAMS_FILE})")
    parser.add_argument("--port", type=int, required=True, help="the cluster's port on prefect.database_host")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    try:
        if args.command == "serve":
            serve(params, args.port)
        else:
            ensure_database(params, args.port, params.stack.start_timeout_s)
    except PostgresError as error:
        print(f"error: postgres {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

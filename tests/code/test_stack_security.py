"""The stack's closed doors without starting it: credentials made once and kept 0600, the Prefect auth string on the
server and every client it starts (never in stack.json or argv), the Evidently UI on loopback, and every server's
output through a writer that rotates it (issue 37)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import credentials
from pipelines.config import parse_params
from support.params import REPO_ROOT, params_dict


def test_credentials_are_made_once_private_and_verified_by_digest(tmp_path: Path) -> None:
    params = parse_params(params_dict(tmp_path, {"serve.api_keys": ["replay", "partner-a"]}))
    auth = credentials.ensure_prefect_auth(params)
    verifier = credentials.ensure_service_credentials(params)
    assert auth.startswith(f"{credentials.PREFECT_USER}:") and len(auth) > 30
    assert credentials.ensure_prefect_auth(params) == auth  # made once, then read
    assert credentials.ensure_service_credentials(params) == verifier
    folder = credentials.folder(params)
    secrets = [credentials.prefect_auth_file(params), credentials.admin_token_file(params),
               credentials.api_key_file(params, "replay"), credentials.api_key_file(params, "partner-a")]
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in secrets)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o711
    verify = credentials.verify_file(params).read_text()
    assert not [path for path in secrets if path.read_text().strip() in verify]  # digests only
    assert verifier.admin_ok(credentials.admin_token(params)) and not verifier.admin_ok("guess")
    assert verifier.caller(credentials.api_key(params, "replay")) == "replay" and verifier.caller("guess") is None
    credentials.admin_token_file(params).chmod(0o644)
    with pytest.raises(credentials.CredentialsError, match="can be read by other users"):
        credentials.admin_token(params)


def test_the_verify_file_holds_digests_only_readable_by_the_workers_and_a_damaged_one_is_named(
        tmp_path: Path) -> None:
    """service-verify.json (`ServiceDigests`) never holds a secret: what the service writes is 64-hex digests of the
    secrets, 0644 even under a private umask; a record carrying a plain token is refused when built and when read
    (naming the file, so a worker does not start on it); the service makes a damaged file again."""
    import os
    import secrets as random_tokens

    from pydantic import ValidationError

    from pipelines.contracts import MalformedRecord, ServiceDigests, token_digest

    params = parse_params(params_dict(tmp_path, {"serve.api_keys": ["replay"]}))
    previous = os.umask(0o077)
    try:
        credentials.ensure_service_credentials(params)
    finally:
        os.umask(previous)
    path = credentials.verify_file(params)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    stored = json.loads(path.read_text())
    admin, key = credentials.admin_token(params), credentials.api_key(params, "replay")
    assert stored == {"admin": token_digest(admin), "api_keys": {"replay": token_digest(key)}}
    assert ServiceDigests.load(credentials.folder(params)) == ServiceDigests.of(admin, {"replay": key})
    token = random_tokens.token_urlsafe(32)  # what the service generates
    for plain in ({"admin": token}, {"api_keys": {"replay": token}}):
        with pytest.raises(ValidationError, match="pattern"):
            ServiceDigests.model_validate(plain)
        path.write_text(json.dumps(plain))
        with pytest.raises(MalformedRecord, match=rf"{path} is not a valid ServiceDigests record"):
            credentials.read_verifier(params)
    assert credentials.ensure_service_credentials(params).admin_ok(admin)  # made again from the secrets it holds
    assert json.loads(path.read_text()) == stored
    path.unlink()
    assert credentials.read_verifier(params) is None  # not made yet: no token is accepted


def test_the_stack_gives_the_auth_string_to_the_server_and_its_clients_through_the_environment_only(
        tmp_path: Path) -> None:
    from ops.stack import plan

    for runner in ("serve", "workers"):
        params = parse_params(params_dict(tmp_path, {"prefect.runner": runner}))
        components, _ = plan(params, tmp_path / "params.yaml")
        auth = credentials.ensure_prefect_auth(params)
        by_name = {c.name: c for c in components}
        assert by_name["prefect"].secret_env["PREFECT_SERVER_API_AUTH_STRING"] == auth
        clients = [c for c in components if c.name == "deployments" or c.name.startswith("worker-")]
        assert clients and all(c.secret_env["PREFECT_API_AUTH_STRING"] == auth for c in clients)
        for component in components:
            assert auth not in json.dumps(component.record().to_json_dict())
            assert not any(auth in arg for arg in component.argv)
            assert not any(auth in arg for step in component.setup for arg in step)


@pytest.mark.parametrize(("host", "behind_proxy", "expected"), [
    ("127.0.0.1", False, "127.0.0.1"), ("0.0.0.0", False, "127.0.0.1"), ("0.0.0.0", True, "0.0.0.0"),
    ("10.1.2.3", False, "127.0.0.1")])
def test_the_evidently_ui_listens_on_loopback_unless_a_proxy_authenticates(tmp_path: Path, host: str,
                                                                           behind_proxy: bool, expected: str) -> None:
    from ops.stack import plan

    params = parse_params(params_dict(tmp_path, {"stack.host": host, "stack.evidently_behind_auth_proxy":
                                                 behind_proxy}))
    components, notes = plan(params, tmp_path / "params.yaml")
    evidently = {c.name: c for c in components}["evidently"]
    assert evidently.argv[evidently.argv.index("--host") + 1] == expected == evidently.host
    assert any("Evidently UI on 127.0.0.1 only" in note for note in notes) is (expected != host)


def test_the_log_writer_rotates_at_line_ends_and_keeps_the_newest(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "server.log"
    lines = [f"line {i:05d} {'x' * (i % 70)}\n".encode() for i in range(5000)]
    done = subprocess.run([sys.executable, "-m", "ops.logs", str(log), "--max-bytes", "20000", "--backups", "2"],
                          input=b"".join(lines), cwd=REPO_ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    files = [log.with_name("server.log.2"), log.with_name("server.log.1"), log]
    assert not log.with_name("server.log.3").exists()
    assert all(0 < path.stat().st_size <= 20000 for path in files)
    kept = b"".join(path.read_bytes() for path in files)
    assert kept.endswith(lines[-1]) and b"".join(lines).endswith(kept)  # the newest, in order, lines whole
    assert kept.startswith(b"line ") and len(kept) > 40000


def test_a_line_longer_than_a_file_is_split_not_lost(tmp_path: Path) -> None:
    from ops.logs import RotatingFile

    log = RotatingFile(tmp_path / "x.log", max_bytes=100, backups=5)
    log.write(b"a" * 250 + b"\nend\n")
    log.close()
    parts = [tmp_path / name for name in ("x.log.2", "x.log.1", "x.log")]
    assert b"".join(path.read_bytes() for path in parts) == b"a" * 250 + b"\nend\n"

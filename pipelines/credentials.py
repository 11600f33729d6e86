"""The credentials the stack and the service generate once and keep, in `<paths.stack_dir>/credentials/`.

Secrets (mode 0600, generated the first time they are needed, never rewritten):
- `prefect-auth`: the Prefect server's basic-auth string `flightops:<random>`; the server gets it as
  `server.api.auth_string`, every client the stack starts (the deployments process, workers, their flow runs) as
  `api.auth_string`, both through the environment. The Prefect UI asks for it once per browser.
- `admin-token`: the bearer token of the service's admin routes (`/reload`, `/metadata`).
- `api-keys/<name>`: one bearer key per name in `serve.api_keys`, for the callers of `/predict*`.

Not secret (mode 0644): `service-verify.json` (`pipelines.contracts.ServiceDigests`, which holds digests only), the
SHA-256 of the admin token and of each API key: all the service's workers (an unprivileged user, who cannot read the
secrets) need to check a presented one. A token is 32 random bytes, so a plain digest is as strong as the token.

Secrets never go to argv, stack.json or a log. To rotate one, delete its file and restart what uses it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pipelines import io
from pipelines.config import Params
from pipelines.contracts import MalformedRecord, ServiceDigests, token_digest

FOLDER = io.CREDENTIALS_DIR
PREFECT_AUTH_FILE = io.PREFECT_AUTH_FILE
ADMIN_TOKEN_FILE = io.ADMIN_TOKEN_FILE
API_KEYS_FOLDER = io.API_KEYS_DIR
VERIFY_FILE = io.SERVICE_VERIFY_FILE
PREFECT_USER = "flightops"


class CredentialsError(RuntimeError):
    """A credential that should exist cannot be read or made; the message names the file."""


def folder(params: Params) -> Path:
    return params.paths.stack_dir / FOLDER


def prefect_auth_file(params: Params) -> Path:
    return folder(params) / PREFECT_AUTH_FILE


def admin_token_file(params: Params) -> Path:
    return folder(params) / ADMIN_TOKEN_FILE


def api_key_file(params: Params, name: str) -> Path:
    return folder(params) / API_KEYS_FOLDER / name


def verify_file(params: Params) -> Path:
    return ServiceDigests.path(folder(params))


def _make_folder(path: Path) -> None:
    """0711: others may reach a file they know the name of (the verify file, for the workers), never list it."""
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        path.chmod(0o711)


def _ensure_secret(path: Path, make: str) -> str:
    """The secret in `path`, written (0600, exclusively: two processes starting at once keep the first) when absent."""
    with contextlib.suppress(FileNotFoundError):
        return read_secret(path)
    _make_folder(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_secret(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(make + "\n")
    return make


def read_secret(path: Path) -> str:
    """A secret's text; FileNotFoundError when it was never made, CredentialsError when it is empty or shared."""
    text = Path(path).read_text().strip()
    if not text:
        raise CredentialsError(f"{path} is empty: delete it and start again to make a new one")
    if Path(path).stat().st_mode & 0o077:
        raise CredentialsError(f"{path} can be read by other users (mode {Path(path).stat().st_mode & 0o777:o}): "
                               f"chmod 600 it (or delete it to make a new one)")
    return text


@dataclass(frozen=True)
class Verifier:
    """What the service checks presented bearer tokens against: digests only."""

    admin: str | None
    api_keys: dict[str, str]  # digest -> key name

    @classmethod
    def of(cls, digests: ServiceDigests) -> Verifier:
        return cls(admin=digests.admin, api_keys={value: name for name, value in digests.api_keys.items()})

    def admin_ok(self, token: str | None) -> bool:
        import hmac

        return bool(token) and self.admin is not None and hmac.compare_digest(token_digest(token), self.admin)

    def caller(self, token: str | None) -> str | None:
        """The API key's name for a presented key, else None."""
        return self.api_keys.get(token_digest(token)) if token else None


def ensure_prefect_auth(params: Params) -> str:
    """The Prefect basic-auth string `flightops:<password>`, made on first use."""
    return _ensure_secret(prefect_auth_file(params), f"{PREFECT_USER}:{secrets.token_urlsafe(24)}")


def ensure_service_credentials(params: Params) -> Verifier:
    """The admin token and one key per `serve.api_keys` name (made when absent), and the verify file the workers
    read, rewritten (atomically) when it does not match them."""
    admin = _ensure_secret(admin_token_file(params), secrets.token_urlsafe(32))
    keys = {name: _ensure_secret(api_key_file(params, name), secrets.token_urlsafe(32))
            for name in params.serve.api_keys}
    digests = ServiceDigests.of(admin, keys)
    with contextlib.suppress(MalformedRecord):  # a damaged file is made again: this process holds the secrets
        if ServiceDigests.load(folder(params)) == digests:
            return Verifier.of(digests)
    _make_folder(folder(params))
    digests.save(folder(params))
    return Verifier.of(digests)


def read_verifier(params: Params) -> Verifier | None:
    """The verify file as the workers see it; None when there is none or they may not read it (then no admin token
    or key is accepted). A damaged one raises `MalformedRecord` naming it: the worker does not start on it."""
    try:
        digests = ServiceDigests.load(folder(params))
    except PermissionError:
        return None
    return Verifier.of(digests) if digests is not None else None


def can_write(path: Path) -> bool:
    """Whether this process could create or rewrite files in `path` (or in the nearest folder above it that exists)."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    return existing is not None and os.access(existing, os.W_OK | os.X_OK)


def admin_token(params: Params) -> str:
    """The admin token, for a client of `/reload` and `/metadata` (the stack's loop, tests, people)."""
    try:
        return read_secret(admin_token_file(params))
    except FileNotFoundError:
        raise CredentialsError(f"no admin token in {admin_token_file(params)}: the service makes it when it first "
                               "starts (or `python -m ops.stack credentials`)") from None


def api_key(params: Params, name: str) -> str:
    try:
        return read_secret(api_key_file(params, name))
    except FileNotFoundError:
        raise CredentialsError(f"no API key {name!r} in {api_key_file(params, name)}: list it in serve.api_keys "
                               "and start the service (or `python -m ops.stack credentials`)") from None


def bearer(token: str) -> dict[str, str]:
    """The request header that presents a token."""
    return {"Authorization": f"Bearer {token}"}

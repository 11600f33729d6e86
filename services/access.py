"""Who is calling: the admin token on the admin routes, the caller's identity on the API routes.

- Admin routes (`/reload`, `/metadata`) need `Authorization: Bearer <admin token>`, always: the token is generated
  once into `<paths.stack_dir>/credentials/admin-token` (`pipelines/credentials.py`).
- API routes: with `serve.api_keys` naming callers, `Authorization: Bearer <key>` is required and the caller is
  `key:<name>`; without, the routes are open and the caller is `peer:<address>` (behind a proxy every caller is the
  proxy: give callers keys to tell them apart).

The caller's identity is put in the request's ASGI scope (`CALLER_SCOPE`), where the body checker reads it: the
prediction log keys each row by caller (`<caller>/<request_id>`), so no caller can overwrite another's record, and
each caller's log bytes are budgeted on their own. Workers check presented tokens against digests
(`service-verify.json`), never the secrets themselves.
"""

from __future__ import annotations

from typing import Any

CALLER_SCOPE = "flightops.caller"
_BEARER = b"bearer "


def bearer_token(headers: dict[bytes, bytes]) -> str | None:
    value = headers.get(b"authorization")
    if value is None or value[:7].lower() != _BEARER:
        return None
    return value[7:].strip().decode("latin-1") or None


class Access:
    """The service's access rules, per worker: `verifier` is the digests' table (`pipelines.credentials.Verifier`),
    None when there is none (then every admin request and, with keys required, every API request is refused)."""

    def __init__(self, verifier: Any, keys_required: bool) -> None:
        self.verifier = verifier
        self.keys_required = keys_required

    def admit(self, scope: dict[str, Any], headers: dict[bytes, bytes], admin: bool) -> str | None:
        """None when the request may go on (its caller then in `scope[CALLER_SCOPE]`), else why not (a 401)."""
        token = bearer_token(headers)
        if admin:
            if self.verifier is None or self.verifier.admin is None:
                return "the admin routes are closed: no admin token was made (<paths.stack_dir>/credentials)"
            if not self.verifier.admin_ok(token):
                return "the admin routes need Authorization: Bearer <the admin token> " \
                       "(<paths.stack_dir>/credentials/admin-token)"
            scope[CALLER_SCOPE] = "admin"
            return None
        if self.keys_required:
            name = self.verifier.caller(token) if self.verifier is not None else None
            if name is None:
                return "this route needs Authorization: Bearer <an API key of serve.api_keys>"
            scope[CALLER_SCOPE] = f"key:{name}"
            return None
        client = scope.get("client")
        scope[CALLER_SCOPE] = f"peer:{client[0] if client else 'unknown'}"
        return None

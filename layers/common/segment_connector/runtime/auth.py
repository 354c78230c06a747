"""Who may call: Basic auth with the API key, an X-Signature HMAC, or writeKey in the body."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping

from segment_connector.domain.errors import ConsoleNotConfigured, NotConfigured, Unauthorized


def _same(given: str, expected: str) -> bool:
    # surrogatepass: a header or body value is whatever the sender typed, encodable or not
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def basic_auth_key(authorization: str | None) -> str | None:
    """The user name of `Basic base64(key:)`; Hull's destination sent base64(key) without colon."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, a non-ASCII header ("Basic \xff"), bytes that are not UTF-8
        return None
    return decoded.partition(":")[0].strip()


def token_matches(authorization: str | None, token: str | None) -> bool:
    """Whether `Basic base64(token:)` carries `token` (compared in constant time; the password is
    not read). False when no token is configured."""
    given = basic_auth_key(authorization)
    return bool(token) and given is not None and _same(given, token or "")


def valid_signature(signature: str | None, secret: str | None, raw_body: bytes) -> bool:
    if not signature or not secret:
        return False
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha1).hexdigest()
    return _same(signature.strip().lower(), expected)


def authenticate(
    headers: Mapping[str, str],
    raw_body: bytes,
    *,
    api_key: str | None,
    shared_secret: str | None,
    write_key_in_body: Callable[[], object] | None = None,
    allow_signature: bool = True,
) -> None:
    """Raise Unauthorized unless one of the accepted credentials is valid. Keys are never logged.

    Headers are checked first, so that a request with valid headers is never parsed for its
    credentials and one without is parsed only where a body may carry them (`write_key_in_body`,
    the Tracking API's `writeKey`). With neither an API key nor a shared secret configured
    nobody can be let in, but answering 401 would make Segment drop the data: that is the
    operator's mistake, so answer 500 (retried).
    """
    if not api_key and not (shared_secret and allow_signature):
        raise NotConfigured("the connector has no API key: create the SecureString parameter <prefix>/api-key")
    if api_key:
        key = basic_auth_key(headers.get("authorization"))
        if key is not None and _same(key, api_key):
            return
    if allow_signature and valid_signature(headers.get("x-signature"), shared_secret, raw_body):
        return
    if api_key and write_key_in_body is not None:
        given = write_key_in_body()
        if isinstance(given, str) and _same(given.strip(), api_key):
            return
    raise Unauthorized(
        _accepted(
            basic=bool(api_key),
            signature=allow_signature and bool(shared_secret),
            write_key=bool(api_key) and write_key_in_body is not None,
        )
    )


def _accepted(*, basic: bool, signature: bool, write_key: bool) -> str:
    """The 401's message: only the credentials this route takes (the Profile API: Basic auth only)."""
    ways = ["Basic auth with the API key as the user name"] if basic else []
    if signature:
        ways.append("an X-Signature header (HMAC-SHA1 of the body with the shared secret)")
    if write_key:
        ways.append('"writeKey": the API key in the body')
    listed = ways[0] if len(ways) == 1 else ", ".join(ways[:-1]) + " or " + ways[-1]
    return f"missing or invalid credentials: send {listed}"


def authenticate_admin(authorization: str | None, admin_key: str | None, *, parameter: str) -> None:
    """The console's check: `Authorization: Bearer <admin key>`, compared in constant time.

    `parameter` names the admin key's parameter in the 503 answered while it does not exist.
    """
    if not admin_key:
        raise ConsoleNotConfigured(
            f"the console has no admin key: create the SecureString {parameter} "
            "(segment-connector keys set admin-key; ADMIN_KEY for make run)"
        )
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not _same(token.strip(), admin_key):
        raise Unauthorized("missing or invalid admin key: send Authorization: Bearer <admin key>")

"""Who may call: Basic auth with the API key, an X-Signature HMAC, or writeKey in the body."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, Mapping

from segment_connector.errors import NotConfigured, Unauthorized


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def basic_auth_key(authorization: str | None) -> str | None:
    """The user name of `Basic base64(key:)`; Hull's destination sent base64(key) without colon."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0].strip()


def valid_signature(signature: str | None, secret: str | None, raw_body: bytes) -> bool:
    if not signature or not secret:
        return False
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha1).hexdigest()
    return _same(signature.strip().lower(), expected)


def authenticate(
    headers: Mapping[str, str],
    raw_body: bytes,
    body: Any,
    *,
    api_key: str | None,
    shared_secret: str | None,
    allow_write_key: bool,
) -> None:
    """Raise Unauthorized unless one of the accepted credentials is valid. Keys are never logged.

    With neither an API key nor a shared secret configured nobody can be let in, but answering
    401 would make Segment drop the data: that is the operator's mistake, so answer 500 (retried).
    """
    if not api_key and not shared_secret:
        raise NotConfigured("the connector has no API key: create the SecureString parameter <prefix>/api-key")
    if api_key:
        key = basic_auth_key(headers.get("authorization"))
        if key is not None and _same(key, api_key):
            return
        if allow_write_key and isinstance(body, dict) and isinstance(body.get("writeKey"), str):
            if _same(body["writeKey"].strip(), api_key):
                return
    if valid_signature(headers.get("x-signature"), shared_secret, raw_body):
        return
    raise Unauthorized("missing or invalid credentials: use Basic auth with the API key or a valid X-Signature")

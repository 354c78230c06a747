"""Exceptions of the connector and the one place that maps them to HTTP answers."""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        # `message` too: Segment's libraries read `code` and `message` from an error answer.
        body: dict[str, Any] = {"error": self.message, "code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class BadRequest(ConnectorError):
    status = 400
    code = "bad_request"


class Unauthorized(ConnectorError):
    status = 401
    code = "unauthorized"


class NotFound(ConnectorError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ConnectorError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ConnectorError):
    status = 413
    code = "payload_too_large"


class SettingsInvalid(ConnectorError):
    """The operator's settings document is broken: 500 so that Segment retries after the fix."""

    status = 500
    code = "settings_invalid"


class NotConfigured(ConnectorError):
    """A required parameter is missing: 500 so that Segment retries once the operator adds it."""

    status = 500
    code = "not_configured"


class ConsoleNotConfigured(ConnectorError):
    """No admin key exists, so nobody can sign in to the console: a setup step (503), not a client error."""

    status = 503
    code = "not_configured"


class SettingsRejected(ConnectorError):
    """A settings document sent to the console that the functions' model refuses (nothing saved)."""

    status = 400
    code = "settings_invalid"


class ReplayFailed(ConnectorError):
    """OutboundFunction raised while replaying dead letters (they are kept; try again)."""

    status = 502
    code = "replay_failed"


class StoreUnavailable(ConnectorError):
    """DynamoDB throttled or unreachable: 503 + Retry-After; dedup makes Segment's retry safe."""

    status = 503
    code = "store_unavailable"

    def __init__(self, message: str = "storage is busy or unavailable, retry later", details: Any = None):
        super().__init__(message, details, headers={"Retry-After": "2"})


class PermissionDenied(ConnectorError):
    """AWS refused a call the connector needs (its role lacks a grant): a deployment fault an
    operator must fix. 500, so Segment keeps retrying the delivery meanwhile; the log names the
    action and the resource."""

    status = 500
    code = "permission_denied"

    def __init__(self, denied: str):
        super().__init__(
            "the connector's AWS role does not allow a call it needs; an operator must fix the deployment "
            "(the function's log names the action)",
            None,
        )
        self.denied = denied
        self.args = (f"{self.message}: {denied}",)  # logs and job records name what AWS denied


ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied"})


class VersionConflict(Exception):
    """A guarded write lost a race; the caller reads again and retries."""


class DuplicateMessage(Exception):
    """The messageId was stored before."""


def http_answer(error: ConnectorError) -> tuple[int, dict[str, Any], dict[str, str]]:
    return error.status, error.body(), error.headers

"""How the CLI ends a command on an error: one line for the operator, not a traceback."""

from __future__ import annotations

PROG = "segment-connector"


class CliError(Exception):
    """Ends the command: `segment-connector: error: <message>` on stderr, exit 1."""


def describe(error: BaseException) -> str:
    """One line for an unexpected error: AWS's code and message, or the connector's own message."""
    from botocore.exceptions import BotoCoreError, ClientError

    from segment_connector.domain.errors import ConnectorError

    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        operation = getattr(error, "operation_name", "") or "AWS"
        return f"{operation}: {details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")
    if isinstance(error, ConnectorError):
        cause = error.__cause__
        if not isinstance(cause, Exception):
            return error.message
        described = describe(cause)
        # An adapter's denial repeats AWS's message (PermissionDenied): AWS's line alone says it all.
        return described if error.message and error.message in described else f"{error.message} ({described})"
    if isinstance(error, BotoCoreError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def aws_error(error: BaseException) -> tuple[str, str] | None:
    """AWS's (code, message) of a refused call, the adapter's error unwrapped; None for any other error."""
    from botocore.exceptions import ClientError

    from segment_connector.domain.errors import ConnectorError

    cause = error.__cause__ if isinstance(error, ConnectorError) else error
    if not isinstance(cause, ClientError):
        return None
    details = cause.response.get("Error", {})
    return str(details.get("Code", "error")), str(details.get("Message", ""))

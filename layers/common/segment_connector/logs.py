"""The package's log lines go out through the function's Powertools Logger (JSON, service, level)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

PACKAGE = "segment_connector"


def route_package_logs(logger: Logger) -> None:
    """Write every `segment_connector.*` record with `logger`'s handler and level.

    The records then carry the function's service name and the keys the Logger holds for the
    invocation (function_request_id, ...). They do not propagate to the root logger: on Lambda its
    handler has Powertools' SuppressFilter, which drops any record whose logger name contains the
    service name ("segment_connector.outbound"), and prints the others a second time as plain text.
    Called again (a new Logger), it replaces the previous handler: no line is written twice.
    """
    package = logging.getLogger(PACKAGE)
    package.handlers = [logger.registered_handler]
    package.setLevel(logger.log_level)
    package.propagate = False

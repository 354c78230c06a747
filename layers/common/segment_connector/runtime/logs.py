"""The package's log lines go out through the function's Powertools Logger (JSON, service, level).

One process may run several functions (the local stack runs every handler in-process): each
handler's entry (`function_logs`) says which function runs, in a contextvar, so that a package
line carries the service, level and invocation keys of the function that wrote it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

PACKAGE = "segment_connector"
# One time format for every line: UTC, milliseconds, `Z` (%F is Powertools' milliseconds directive),
# the format of every time the connector stores or answers (models.messages.format_time).
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%FZ"
LOGGER_OPTIONS: dict[str, Any] = {"datefmt": TIME_FORMAT, "utc": True}  # Logger(**LOGGER_OPTIONS)

Handler = TypeVar("Handler", bound=Callable[..., Any])
_Target = tuple[logging.Handler, int]  # a function's Powertools handler and its log level
_running: ContextVar[_Target | None] = ContextVar("segment_connector_function_log", default=None)


class _FunctionRouter(logging.Handler):
    """The package logger's one handler: each record to the handler of the function that runs
    (set by `function_logs`), else to the last function's that registered (on Lambda the only one)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.last: _Target | None = None

    def emit(self, record: logging.LogRecord) -> None:
        target = _running.get() or self.last
        if target is None:
            return
        handler, level = target
        if record.levelno >= level:
            handler.handle(record)


_router = _FunctionRouter()


def route_package_logs(logger: Logger) -> None:
    """Write every `segment_connector.*` record with `logger`'s handler and level.

    The records then carry the function's service name and the keys the Logger holds for the
    invocation (function_request_id, ...). They do not propagate to the root logger: on Lambda its
    handler has Powertools' SuppressFilter, which drops any record whose logger name contains the
    service name ("segment_connector.outbound.handler"), and prints the others a second time as plain text.
    Called again (a new Logger), no line is written twice: the package keeps one handler, which
    writes each line with the handler of the function that runs (`function_logs`).
    """
    _router.last = (logger.registered_handler, logger.log_level)
    package = logging.getLogger(PACKAGE)
    package.handlers = [_router]
    # The lowest level of the functions that registered: the router applies each function's own.
    level = logger.log_level if package.level == logging.NOTSET else min(package.level, logger.log_level)
    package.setLevel(level)
    package.propagate = False


def function_logs(logger: Logger) -> Callable[[Handler], Handler]:
    """A handler's entry: while it runs, package lines are written as `logger`'s (its service)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def run(*args: Any, **kwargs: Any) -> Any:
            token = _running.set((logger.registered_handler, logger.log_level))
            try:
                return handler(*args, **kwargs)
            finally:
                _running.reset(token)

        return cast("Handler", run)

    return decorate

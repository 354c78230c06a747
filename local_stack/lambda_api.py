"""Lambda's Invoke API on 127.0.0.1, for the local stack's functions.

`POST /2015-03-31/functions/{name}/invocations`, as boto3's `lambda.invoke` sends it (the
operator CLI with `--local`, and functions invoking each other through AWS_ENDPOINT_URL_LAMBDA):

- RequestResponse (the default): runs the handler in the request's thread and answers 200 with
  its JSON result; a handler exception answers 200 with `X-Amz-Function-Error: Unhandled` and
  `{"errorMessage", "errorType", "requestId", "stackTrace"}`, as Lambda does.
- Event: answers 202 at once and runs the handler later on one of a few background workers
  (Lambda queues asynchronous invocations too). A failure (an exception, a timeout) is retried
  per the function's EventInvokeConfig (MaximumRetryAttempts, default 2; Lambda waits 1 then 2
  minutes, here `retry_delays`), then its invocation record goes to the on-failure destination.
- DryRun: 204.

A function is found by its logical id, its local name or the name it would have when deployed,
bare or as an ARN (with or without a qualifier). Invocations of one function may run side by side
(Lambda would start another container): they do not take the function's lock, which keeps the
stream worker's batches one at a time.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from local_stack.lambda_runtime import (
    ACCOUNT_ID,
    MAX_ASYNC_REQUEST_BYTES,
    MAX_REQUEST_BYTES,
    REGION,
    LambdaError,
    RequestTooLarge,
)

PATH_PREFIX = "/2015-03-31/functions/"
PATH_SUFFIX = "/invocations"
# Asynchronous invocations running at once (the others wait in the queue). Lambda runs Event
# invocations side by side up to the account's concurrency: a resync's 16 segment chains must not
# hold a settings change (the next resync) or a replay back for minutes, as 4 workers did.
EVENT_WORKERS = 32
MAX_PAYLOAD_BYTES = MAX_REQUEST_BYTES  # Lambda's limit for a synchronous request
RETRY_DELAYS = (1.0, 2.0)  # seconds before the 1st and 2nd retry of a failed Event (Lambda: 60 and 120)

Handler = Callable[[Any], Any]


@dataclass(frozen=True)
class AsyncConfig:
    """The function's EventInvokeConfig: retries of a failed Event, then its on-failure destination."""

    maximum_retry_attempts: int = 2
    on_failure: Callable[[dict[str, Any]], None] | None = None  # sends an invocation record

    @classmethod
    def from_template(
        cls, template: Mapping[str, Any], logical_id: str, destinations: Mapping[str, Callable[[dict[str, Any]], None]]
    ) -> AsyncConfig:
        """The function's EventInvokeConfig; `destinations` maps a queue's logical id to its sender."""
        config = template["Resources"][logical_id].get("Properties", {}).get("EventInvokeConfig") or {}
        target = (config.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
        return cls(
            maximum_retry_attempts=int(config.get("MaximumRetryAttempts", 2)),
            on_failure=destinations.get(resource_of(target)) if target is not None else None,
        )


def resource_of(reference: Any) -> str:
    """The logical id behind `!GetAtt X.Arn` / `!Ref X` (or the string itself)."""
    if isinstance(reference, dict):
        if "Fn::GetAtt" in reference:
            return str(reference["Fn::GetAtt"][0])
        if "Ref" in reference:
            return str(reference["Ref"])
    return str(reference)


@dataclass
class _Function:
    name: str
    invoke: Handler | None
    unavailable: str | None = None  # why the function could not be loaded
    async_config: AsyncConfig = AsyncConfig()
    arn: str = ""


@dataclass
class _Event:
    function: _Function
    payload: Any
    request_id: str
    attempt: int = 1


class FunctionUnavailable(Exception):
    """The function's code could not be loaded (Lambda answers Runtime.ImportModuleError)."""


def function_name_of(reference: str) -> str:
    """The bare name in `name`, `name:qualifier` or `arn:aws:lambda:region:account:function:name[:q]`."""
    if reference.startswith("arn:"):
        parts = reference.split(":")
        return parts[6] if len(parts) > 6 else reference
    return reference.split(":", 1)[0]


class LambdaApi(ThreadingHTTPServer):
    """The Invoke API of the functions registered with `register`."""

    daemon_threads = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        event_workers: int = EVENT_WORKERS,
        out: Any = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        super().__init__((host, port), _RequestHandler)
        self.out = out
        self.retry_delays = retry_delays
        self._functions: dict[str, _Function] = {}
        self._events: queue.Queue[_Event | None] = queue.Queue()
        self._stopping = threading.Event()
        self._workers = [
            threading.Thread(target=self._work, name=f"lambda-event-{n}", daemon=True) for n in range(event_workers)
        ]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def register(
        self,
        names: Iterable[str],
        invoke: Handler | None,
        unavailable: str | None = None,
        async_config: AsyncConfig | None = None,
    ) -> None:
        """Make a function invokable under each of `names` (the first is the one reported; the
        second, when given, is its deployed name, used in its ARN)."""
        names = list(dict.fromkeys(names))
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{names[1] if len(names) > 1 else names[0]}"
        function = _Function(names[0], invoke, unavailable, async_config or AsyncConfig(), arn)
        for name in names:
            self._functions[name] = function

    def knows(self, reference: str) -> bool:
        return function_name_of(reference) in self._functions

    def available(self, reference: str) -> bool:
        function = self._functions.get(function_name_of(reference))
        return function is not None and function.invoke is not None

    # -- invoking (also used in-process, e.g. by the settings watcher) ---------------------------

    def invoke(self, reference: str, payload: Any) -> Any:
        """RequestResponse: the handler's result (its exception propagates)."""
        function = self._function(reference)
        if function.invoke is None:
            raise FunctionUnavailable(function.unavailable or f"{function.name} is not loaded")
        return function.invoke(payload)

    def invoke_async(self, reference: str, payload: Any) -> str:
        """Event: queued for a background worker; its request id."""
        request_id = str(uuid.uuid4())
        self._events.put(_Event(self._function(reference), payload, request_id))
        return request_id

    def _function(self, reference: str) -> _Function:
        try:
            return self._functions[function_name_of(reference)]
        except KeyError:
            raise KeyError(reference) from None

    def _work(self) -> None:
        while True:
            job = self._events.get()
            if job is None or self._stopping.is_set():
                return
            function = job.function
            try:
                if function.invoke is None:
                    raise FunctionUnavailable(function.unavailable or f"{function.name} is not loaded")
                function.invoke(job.payload)
            except Exception as error:  # noqa: BLE001 - Lambda logs it; the caller of an Event never sees it
                if not self._stopping.is_set():
                    self._failed(job, error)

    def _failed(self, job: _Event, error: Exception) -> None:
        """Retry a failed Event per the function's EventInvokeConfig, else send its record on."""
        function, config = job.function, job.function.async_config
        self._say(f"lambda: {function.name} (Event) failed, attempt {job.attempt}: {_error_type(error)}: {error}")
        if not isinstance(error, (FunctionUnavailable, LambdaError)):
            traceback.print_exception(error)
        retry = job.attempt - 1
        if retry < config.maximum_retry_attempts:
            delay = self.retry_delays[min(retry, len(self.retry_delays) - 1)] if self.retry_delays else 0.0
            again = _Event(function, job.payload, job.request_id, job.attempt + 1)
            timer = threading.Timer(delay, lambda: None if self._stopping.is_set() else self._events.put(again))
            timer.daemon = True
            timer.start()
            return
        if config.on_failure is None:
            self._say(
                f"lambda: {function.name} (Event) dropped after {job.attempt} attempt(s) (no on-failure destination)"
            )
            return
        try:
            config.on_failure(invocation_record(function.arn, job.request_id, job.payload, error, job.attempt))
            self._say(f"lambda: {function.name} (Event) failed {job.attempt} time(s): record sent to on-failure")
        except Exception as failure:  # noqa: BLE001 - Lambda counts DestinationDeliveryFailures and goes on
            self._say(f"lambda: {function.name} (Event): the on-failure destination refused the record: {failure!r}")

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> LambdaApi:
        for worker in self._workers:
            worker.start()
        self._thread = threading.Thread(target=self.serve_forever, name="lambda-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop queued Event invocations; running handlers are not waited for."""
        self._stopping.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        self.server_close()
        for _ in self._workers:
            self._events.put(None)

    def __enter__(self) -> LambdaApi:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _say(self, line: str) -> None:
        print(line, file=self.out or sys.stdout, flush=True)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LambdaApi

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if not (path.startswith(PATH_PREFIX) and path.endswith(PATH_SUFFIX)):
            self._discard_body()
            self._error(404, "UnknownOperationException", f"no such operation: POST {path}")
            return
        reference = unquote(path[len(PATH_PREFIX) : -len(PATH_SUFFIX)])
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_PAYLOAD_BYTES:
            self.close_connection = True
            self._error(
                413,
                "RequestEntityTooLargeException",
                f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for the Invoke operation",
            )
            return
        body = self.rfile.read(length) if length else b""
        if not self.server.knows(reference):
            self._error(404, "ResourceNotFoundException", f"Function not found: {reference}")
            return
        try:
            payload = json.loads(body) if body.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._error(400, "InvalidRequestContentException", "Could not parse request body into json")
            return
        kind = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        if kind == "Event":
            if length > MAX_ASYNC_REQUEST_BYTES:
                self._error(
                    413,
                    "RequestEntityTooLargeException",
                    f"Request must be smaller than {MAX_ASYNC_REQUEST_BYTES} bytes for the Invoke operation",
                )
                return
            self.server.invoke_async(reference, payload)
            self._answer(202, b"")
        elif kind == "DryRun":
            self._answer(204, b"")
        elif kind == "RequestResponse":
            self._request_response(reference, payload)
        else:
            self._error(400, "InvalidParameterValueException", f"unknown invocation type {kind!r}")

    def _request_response(self, reference: str, payload: Any) -> None:
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        try:
            result = self.server.invoke(reference, payload)
            body = json.dumps(result, default=str).encode("utf-8")
            error_header = None
        except RequestTooLarge as refused:  # the Invoke API's own error: the function did not run
            self._error(413, refused.error_type, str(refused))
            return
        except Exception as error:  # noqa: BLE001 - Lambda answers 200 with the error as the payload
            body = json.dumps(error_payload(error, request_id)).encode("utf-8")
            error_header = "Unhandled"
            elapsed = (time.monotonic() - started) * 1000
            self.server._say(f"lambda: {function_name_of(reference)} failed after {elapsed:.0f} ms: {error!r}")
        headers = [("X-Amz-Executed-Version", "$LATEST"), ("X-Amzn-RequestId", request_id)]
        if error_header:
            headers.append(("X-Amz-Function-Error", error_header))
        self._answer(200, body, headers)

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= MAX_PAYLOAD_BYTES:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _error(self, status: int, error_type: str, message: str) -> None:
        body = json.dumps({"Type": "User", "message": message}).encode("utf-8")
        self._answer(status, body, [("X-Amzn-ErrorType", error_type)])

    def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers or []:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def _error_type(error: BaseException) -> str:
    if isinstance(error, FunctionUnavailable):
        return "Runtime.ImportModuleError"
    if isinstance(error, LambdaError):
        return error.error_type
    return type(error).__name__


def error_payload(error: BaseException, request_id: str) -> dict[str, Any]:
    """What Lambda returns for a failed invocation: errorMessage, errorType, requestId, stackTrace."""
    own = not isinstance(error, (FunctionUnavailable, LambdaError))  # the handler's exception
    return {
        "errorMessage": str(error),
        "errorType": _error_type(error),
        "requestId": request_id,
        "stackTrace": traceback.format_tb(error.__traceback__) if own else [],
    }


def invocation_record(
    function_arn: str, request_id: str, payload: Any, error: BaseException, attempts: int
) -> dict[str, Any]:
    """The record Lambda sends to an asynchronous invocation's on-failure destination (SQS: the
    message body), as in the Lambda Developer Guide's "Capturing records of Lambda asynchronous
    invocations"."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"{function_arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": error_payload(error, request_id),
    }

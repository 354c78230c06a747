"""HTTP -> API Gateway HTTP API (payload format 2.0) event -> handler -> HTTP response."""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

from local_stack.lambda_runtime import LambdaError, RequestTooLarge

ACCOUNT_ID = "123456789012"
API_ID = "local"

# Request bodies with these media types reach the handler as text; anything else (and anything
# that is not valid UTF-8 or carries a Content-Encoding) arrives base64-encoded, like API Gateway.
_TEXT_TYPES = ("application/json", "application/javascript", "application/xml", "application/ld+json")

# What an HTTP API answers for a Lambda proxy integration that fails (the Lambda Developer Guide,
# "Handling Lambda errors with an API Gateway API"): 502 when the function ran and failed (an
# exception, a timeout, a response too large or malformed); 500 when Lambda's Invoke API refused
# the invocation (an event over the 6 MB synchronous payload limit), the function never running.
INTERNAL_ERROR = (502, [("Content-Type", "application/json")], b'{"message":"Internal Server Error"}')
INVOKE_REFUSED = (500, [("Content-Type", "application/json")], b'{"message":"Internal Server Error"}')
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # an HTTP API refuses larger requests itself
TOO_LARGE = (413, [("Content-Type", "application/json")], b'{"message":"Request Entity Too Large"}')
BAD_REQUEST = (400, [("Content-Type", "application/json")], b'{"message":"Bad Request"}')


class _Refused(Exception):
    """A request API Gateway answers itself, without invoking the function."""

    def __init__(self, answer: tuple[int, list[tuple[str, str]], bytes]):
        super().__init__(answer[0])
        self.answer = answer


def build_event(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str = "127.0.0.1",
    protocol: str = "HTTP/1.1",
    now: float | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The event API Gateway sends for `method target` with these headers and body.

    `target` is the request line's target ("/path?query"). Header names are lowercased and
    repeated headers comma-joined; Cookie headers become `cookies`. `rawPath` is percent-decoded
    as an HTTP API delivers it; `rawQueryString` is passed on as received.
    """
    now = time.time() if now is None else now
    raw_path, _, raw_query = target.partition("?")
    raw_path = raw_path.split("#", 1)[0] or "/"
    raw_query = raw_query.split("#", 1)[0]
    path = unquote(raw_path)

    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        name = name.lower()
        if name == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        merged[name] = f"{merged[name]},{value}" if name in merged else value
    merged.setdefault("x-forwarded-for", source_ip)
    merged.setdefault("x-forwarded-proto", "http")
    host = merged.get("host", "127.0.0.1")
    if ":" in host:
        merged.setdefault("x-forwarded-port", host.rsplit(":", 1)[1])
    domain = host.rsplit(":", 1)[0] if not host.startswith("[") else host

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": merged,
    }
    if cookies:
        event["cookies"] = cookies
    if raw_query:
        params: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            params[name] = f"{params[name]},{value}" if name in params else value
        event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": method.upper(),
            "path": path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": merged.get("user-agent", ""),
        },
        "requestId": request_id or base64.b64encode(os.urandom(12)).decode("ascii"),
        "routeKey": "$default",
        "stage": "$default",
        "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now * 1000),
    }
    if body:
        if _is_text(merged):
            try:
                event["body"] = body.decode("utf-8")
                event["isBase64Encoded"] = False
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode("ascii")
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


def _is_text(headers: dict[str, str]) -> bool:
    if headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
        return False
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or media_type in _TEXT_TYPES or media_type.endswith(("+json", "+xml"))


def route_by_path(
    prefixes: dict[str, Callable[[dict[str, Any]], Any]], default: Callable[[dict[str, Any]], Any]
) -> Callable[[dict[str, Any]], Any]:
    """One function per path prefix (`/console` takes /console and /console/...), else `default`."""

    def invoke(event: dict[str, Any]) -> Any:
        path = event.get("rawPath", "")
        for prefix, target in prefixes.items():
            if path == prefix or path.startswith(prefix + "/"):
                return target(event)
        return default(event)

    return invoke


def http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) API Gateway makes of a handler's return value (format 2.0).

    A dict with `statusCode` is taken as a response; any other JSON value is sent as a 200
    application/json body. Raises ValueError for a response API Gateway would reject (502).
    """
    if not (isinstance(result, dict) and "statusCode" in result):
        text = result if isinstance(result, str) else json.dumps(result)
        return 200, [("Content-Type", "application/json")], text.encode("utf-8")
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"invalid statusCode {status!r}")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), str(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(value)) for value in values)
    for cookie in result.get("cookies") or []:
        headers.append(("Set-Cookie", str(cookie)))
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    body = result.get("body")
    if body is None:
        payload = b""
    elif result.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
    return status, headers, payload


Invoke = Callable[[dict[str, Any]], Any]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer

    def __getattr__(self, name: str) -> Any:
        # Every method (GET, POST, PATCH, OPTIONS, ...) goes to the handler, like `ANY /{proxy+}`.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self) -> None:
        started = time.monotonic()
        try:
            body = self._read_body()
            event = build_event(
                self.command,
                self.path,
                self.headers.items(),
                body,
                source_ip=self.client_address[0],
                protocol=self.request_version,
            )
            status, headers, payload = http_response(self.server.invoke(event))
        except _Refused as refused:
            status, headers, payload = refused.answer
            self.close_connection = True  # the rest of the body, if any, is not read
        except RequestTooLarge as error:
            print(f"{self.command} {self.path}: Lambda refused the event: {error}", file=sys.stderr, flush=True)
            status, headers, payload = INVOKE_REFUSED
        except LambdaError as error:
            print(f"{self.command} {self.path}: {error.error_type}: {error}", file=sys.stderr, flush=True)
            status, headers, payload = INTERNAL_ERROR
        except Exception:  # noqa: BLE001 - API Gateway answers 502 whatever the handler did
            print(f"{self.command} {self.path}: handler failed", file=sys.stderr, flush=True)
            traceback.print_exc()
            sys.stderr.flush()
            status, headers, payload = INTERNAL_ERROR
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        elapsed_ms = (time.monotonic() - started) * 1000
        print(f"{self.command} {self.path} -> {status} ({elapsed_ms:.0f} ms)", flush=True)

    def _read_body(self) -> bytes:
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunks()
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise _Refused(BAD_REQUEST) from None
        if length > MAX_PAYLOAD_BYTES:
            raise _Refused(TOO_LARGE)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunks(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(64).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if size < 0 or total > MAX_PAYLOAD_BYTES:
                raise _Refused(TOO_LARGE)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(64)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # one line per request is printed by _dispatch


class ApiServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that hands every request, as an API Gateway event, to `invoke`."""

    daemon_threads = True
    request_queue_size = 128  # the default 5 resets connections when many senders connect at once

    def __init__(self, host: str, port: int, invoke: Invoke):
        self.invoke = invoke
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="api", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

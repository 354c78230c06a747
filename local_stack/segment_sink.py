"""A local stand-in for Segment's HTTP Tracking API, shared by the tests and the local stack."""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import urlsplit

SINGLE_CALLS = frozenset({"identify", "track", "page", "screen", "group", "alias"})

# (status, headers, JSON body or None)
Response = tuple[int, dict[str, str], Any]
# Called with (path, parsed body) before the scripted queue; returns a Response or None to pass.
Responder = Callable[[str, Any], Response | None]

OK: Response = (200, {}, {"success": True})


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, None when the body was not JSON
    write_key: str | None
    status: int  # what the sink answered
    messages: tuple[dict[str, Any], ...]


class SegmentSink:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, out: TextIO | None = None, responder: Responder | None = None
    ) -> None:
        self.host, self.port, self.out, self.responder = host, port, out, responder
        self._cond = threading.Condition()
        self._requests: list[ReceivedRequest] = []
        self._script: deque[Response] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> SegmentSink:
        if self._server is None:
            self._server = ThreadingHTTPServer((self.host, self.port), _Handler)
            self._server.sink = self  # type: ignore[attr-defined]
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="segment-sink", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()  # type: ignore[union-attr]
            self._server = self._thread = None

    def __enter__(self) -> SegmentSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("SegmentSink is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- what tests look at ----------------------------------------------------------------
    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self._cond:
            return [message for request in self._requests for message in request.messages]

    @property
    def accepted_messages(self) -> list[dict[str, Any]]:
        with self._cond:
            return [m for r in self._requests if 200 <= r.status < 300 for m in r.messages]

    def script(self, *responses: Response) -> None:
        """Queue answers for the next requests; once the queue is empty, answer 200."""
        with self._cond:
            self._script.extend(responses)

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 5.0) -> bool:
        with self._cond:
            return bool(self._cond.wait_for(lambda: predicate(self.messages), timeout))

    # -- request handling (server threads) ---------------------------------------------------
    def _handle(self, raw_path: str, headers: dict[str, str], raw_body: bytes) -> Response:
        path = urlsplit(raw_path).path.rstrip("/")
        call = path.removeprefix("/v1/") if path.startswith("/v1/") else ""
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        messages = _messages(call, body)
        write_key = _write_key(headers.get("Authorization"))
        if not write_key and isinstance(body, dict) and isinstance(body.get("writeKey"), str):
            write_key = body["writeKey"] or None  # Segment also takes the key from the body
        with self._cond:
            if call != "batch" and call not in SINGLE_CALLS:
                response: Response = (404, {}, {"error": "not found"})
            elif not isinstance(body, dict):
                response = (400, {}, {"error": "invalid JSON"})
            elif not write_key:
                response = (400, {}, {"error": "missing write key"})
            else:
                answer = self.responder(path, body) if self.responder else None
                response = answer or (self._script.popleft() if self._script else OK)
            self._requests.append(ReceivedRequest(path, headers, body, write_key, response[0], tuple(messages)))
            if self.out is not None:
                for message in messages:
                    suffix = "" if 200 <= response[0] < 300 else f"  (answered {response[0]})"
                    print(describe(message) + suffix, file=self.out, flush=True)
            self._cond.notify_all()
        return response


def describe(message: dict[str, Any]) -> str:
    """One readable line per message, e.g. `segment <- track userId=u1 event="Signed Up" properties={...}`."""
    kind = message.get("type", "?")
    parts = [f"segment <- {kind}"]
    parts += [f"{key}={message[key]}" for key in ("userId", "anonymousId", "groupId", "previousId") if message.get(key)]
    if kind == "track":
        parts.append(f"event={json.dumps(message.get('event'))}")
    elif kind in ("page", "screen") and message.get("name"):
        parts.append(f"name={json.dumps(message['name'])}")
    payload = "traits" if kind in ("identify", "group") else "properties"
    if message.get(payload):
        parts.append(f"{payload}={json.dumps(message[payload], ensure_ascii=False, default=str)}")
    return " ".join(parts)


def _messages(call: str, body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return []
    if call == "batch":
        return [item for item in body.get("batch") or [] if isinstance(item, dict)]
    if call in SINGLE_CALLS:
        return [{**body, "type": body.get("type") or call}]  # Segment takes the type from the path
    return []


def _write_key(authorization: str | None) -> str | None:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode().partition(":")[0] or None
    except (binascii.Error, UnicodeDecodeError):
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API: exercises the client's session
    disable_nagle_algorithm = True  # headers and body are two writes: avoid the 40 ms delayed-ACK stall

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.title(): value for name, value in self.headers.items()}  # "Authorization", ...
        status, extra_headers, body = self.server.sink._handle(self.path, headers, raw)  # type: ignore[attr-defined]
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in extra_headers.items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: `out` shows the traffic
        pass

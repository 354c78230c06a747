"""HTTP to the local stack: raw requests (any bytes in the target and headers) and a JSON client."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REQUEST_TIMEOUT = 120.0  # the inbound function takes one request at a time: a sender may queue
# local_stack's ApiServer listens with socketserver's default backlog of 5: with 16 clients
# connecting at once the kernel resets some new connections before the server reads a byte
# (API Gateway has no such limit). Such a request is sent again, and counted in RESETS.
RESET_RETRIES = 5
RESET_PAUSE = 0.05


class Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


RESETS = Counter()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The parsed body, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def is_json(self) -> bool:
        try:
            json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return False
        return True


def _again_on_reset[T](send: Callable[[], T]) -> T:
    """`send()`, again when a new connection is reset or refused before any answer."""
    for attempt in range(RESET_RETRIES + 1):
        try:
            return send()
        except (ConnectionResetError, ConnectionRefusedError) as error:
            if attempt == RESET_RETRIES or isinstance(error, http.client.RemoteDisconnected):
                raise  # RemoteDisconnected: the server read the request and closed without answering
            RESETS.add()
            time.sleep(RESET_PAUSE * (attempt + 1))
    raise AssertionError("unreachable")


def send_raw(
    host: str,
    port: int,
    method: str,
    target: bytes,
    headers: tuple[tuple[str, bytes], ...],
    body: bytes,
    timeout: float = REQUEST_TIMEOUT,
) -> Reply:
    """One request on its own connection, written byte for byte (http.client refuses non-latin-1
    header values and odd targets)."""
    lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    lines += [name.encode("ascii") + b": " + value for name, value in headers]
    lines += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body

    def send() -> Reply:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            response = http.client.HTTPResponse(sock, method=method)
            response.begin()
            try:
                payload = response.read()
            finally:
                response.close()
        return Reply(response.status, {name.lower(): value for name, value in response.getheaders()}, payload)

    return _again_on_reset(send)


class JsonClient:
    """A keep-alive connection for one sender thread, with the API key as Basic credentials."""

    def __init__(self, host: str, port: int, api_key: str, timeout: float = REQUEST_TIMEOUT):
        self.host, self.port, self.timeout = host, port, timeout
        self.authorization = "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()
        self._connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Reply:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Authorization": self.authorization, "Content-Type": "application/json"}

        def send() -> Reply:
            while True:
                reused = self._connection is not None
                connection = self._connect()
                try:
                    connection.request(method, path, body=data, headers=headers)
                    response = connection.getresponse()
                    payload = response.read()
                except (ConnectionError, http.client.BadStatusLine, http.client.CannotSendRequest):
                    self.close()
                    if reused:  # the server closed an idle keep-alive connection: send on a new one
                        continue
                    raise
                if (response.getheader("Connection") or "").lower() == "close":
                    self.close()
                return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, payload)

        return _again_on_reset(send)

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Reply:
        return self.request("POST", path, body)

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

"""A Segment sink that refuses a share of requests with 500 or 429 (seeded, so runs repeat)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

from local_stack.segment_sink import ReceivedRequest, Response, SegmentSink


class FlakySink:
    """local_stack's SegmentSink with a responder that fails `failure_rate` of the requests.

    Refusals are 500 or 429 (half of the 429s with `Retry-After: 1`); the rest are answered 200.
    """

    def __init__(self, failure_rate: float, seed: int, host: str = "127.0.0.1"):
        self.failure_rate = failure_rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.refusing: Response | None = None  # set: every request gets this answer (a broken sink)
        self.sink = SegmentSink(host=host, responder=self._respond)

    def _respond(self, path: str, body: Any) -> Response | None:
        if self.refusing is not None:
            return self.refusing
        with self._lock:
            roll, kind = self._random.random(), self._random.random()
        if roll >= self.failure_rate:
            return None  # the sink's default: 200
        if kind < 0.5:
            return 500, {}, {"success": False, "error": "soak: internal error"}
        headers = {"Retry-After": "1"} if kind < 0.75 else {}
        return 429, headers, {"success": False, "error": "soak: rate limited"}

    def start(self) -> FlakySink:
        self.sink.start()
        return self

    def stop(self) -> None:
        self.sink.stop()

    @property
    def url(self) -> str:
        return self.sink.url

    @property
    def requests(self) -> list[ReceivedRequest]:
        return self.sink.requests

    def deliveries(self) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """(request number, status, message) for every message of every request, in arrival order."""
        for number, request in enumerate(self.sink.requests):
            for message in request.messages:
                yield number, request.status, message

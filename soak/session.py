"""What every phase works with: the stack, the sink, the report, clients and the run's deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from local_stack.child_process import HOST
from soak.config import QUIET_SECONDS, SENDERS, STOP_RESERVE_SECONDS
from soak.flaky_sink import FlakySink
from soak.report import Report
from soak.stack import Stack
from soak.wire import JsonClient

T = TypeVar("T")
R = TypeVar("R")
POLL_SECONDS = 0.5


class Session:
    def __init__(self, stack: Stack, sink: FlakySink, report: Report, api_key: str, deadline: float):
        self.stack, self.sink, self.report = stack, sink, report
        self.api_key = api_key
        self.deadline = deadline  # time.monotonic() by which the phases must be over
        self._local = threading.local()

    def remaining(self) -> float:
        return self.deadline - STOP_RESERVE_SECONDS - time.monotonic()

    def client(self) -> JsonClient:
        """This thread's keep-alive client."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = JsonClient(HOST, self.stack.port, self.api_key)
        return client

    def in_parallel(self, work: Callable[[T], R], items: list[T], workers: int = SENDERS) -> list[R]:
        """`work(item)` for every item on `workers` threads; results in the items' order."""
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sender") as pool:
            return list(pool.map(work, items))

    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Poll `done` until it holds or `timeout` (bounded by the run's deadline) has passed."""
        until = time.monotonic() + min(timeout, max(0.0, self.remaining()))
        while not done():
            if time.monotonic() >= until:
                return False
            time.sleep(POLL_SECONDS)
        return True

    def wait_quiet(self, timeout: float, quiet: float = QUIET_SECONDS) -> bool:
        """Wait until the sink has had no request for `quiet` seconds (the outbound side is idle)."""
        seen = len(self.sink.requests)
        last_change = time.monotonic()

        def idle() -> bool:
            nonlocal seen, last_change
            now_seen = len(self.sink.requests)
            if now_seen != seen:
                seen, last_change = now_seen, time.monotonic()
            return time.monotonic() - last_change >= quiet

        return self.wait_until(idle, timeout)

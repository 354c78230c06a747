"""The console dashboard's item counts, kept for a minute in the warm function's memory.

Each count is a parallel Scan of the whole table, which costs the table's size. The counts move
slowly and are only an overview, so one count serves every dashboard read for COUNTS_MAX_AGE
seconds. The answer says when the count was taken. The dead letters are counted on every read
(a Query of their own partition) because a replay changes them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the counts come from the store's inventory, made on the dashboard's first read
    from segment_connector.store.inventory import KindCounts

COUNTS_MAX_AGE = 60.0  # seconds a count is shown before the next dashboard read counts again


class TakenCounts:
    """A count as a dashboard read shows it. (A plain class: see store.inventory.KindCounts.)"""

    __slots__ = ("age", "counts", "taken")

    def __init__(self, counts: KindCounts, taken: float, age: float) -> None:
        self.counts = counts
        self.taken = taken  # the clock's time (seconds since the epoch) when the count was taken
        self.age = age  # seconds between the count and this read

    @property
    def counted_at(self) -> str:
        return datetime.fromtimestamp(self.taken, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class CountsCache:
    """One count per table, taken again once it is older than `max_age`. A read that finds the
    count expired takes the new one while holding the lock, so reads that arrive meanwhile wait
    for it and do not start their own scans."""

    def __init__(self, clock: Callable[[], float] = time.time, max_age: float = COUNTS_MAX_AGE) -> None:
        self.clock = clock
        self.max_age = max_age
        self._lock = threading.Lock()
        self._taken: dict[str, tuple[KindCounts, float]] = {}

    def get(self, table: str, count: Callable[[], KindCounts]) -> TakenCounts:
        with self._lock:
            now = self.clock()
            kept = self._taken.get(table)
            if kept is None or not 0 <= now - kept[1] < self.max_age:
                kept = (count(), self.clock())
                self._taken[table] = kept
            counts, taken = kept
            return TakenCounts(counts, taken, max(0.0, self.clock() - taken))

    def forget(self) -> None:
        with self._lock:
            self._taken.clear()

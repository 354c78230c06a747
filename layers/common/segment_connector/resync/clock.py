"""The resync's clock: one place the job, its workers and stale detection read the time and wait
(tests move the time and skip the waits)."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def sleep(seconds: float) -> None:
    time.sleep(seconds)

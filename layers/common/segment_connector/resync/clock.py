"""The resync's clock: one function the job, its workers and stale detection all read (tests move it)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)

"""Segment times: parsed from what a message carries, formatted as the table stores them.

No pydantic here: outbound, resync and the store format and parse times without importing the
message models (domain.models.messages, which re-exports these)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECONDS_FROM = 10**11  # a numeric time above this is in milliseconds (10^11 s is in the year 5138)


def parse_time(value: Any) -> datetime | None:
    """A Segment time: ISO-8601 (`Z`, an offset or none = UTC; any fraction digits) or epoch
    seconds / milliseconds as a number. None when absent; ValueError when unparseable or
    outside 1970..9999 in UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("must be an ISO-8601 date-time or epoch seconds/milliseconds")
    try:
        if isinstance(value, (int, float)):
            # timedelta, not fromtimestamp: whole milliseconds stay exact (no float division)
            unit = "milliseconds" if abs(value) > MILLISECONDS_FROM else "seconds"
            parsed = EARLIEST + timedelta(**{unit: value})
        elif isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip().replace("z", "Z").replace("Z", "+00:00"))
            parsed = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
        else:
            raise ValueError
    except (ValueError, OverflowError, OSError):
        raise ValueError("must be an ISO-8601 date-time or epoch seconds/milliseconds (1970 to 9999)") from None
    if parsed < EARLIEST:
        raise ValueError("must not be before 1970-01-01T00:00:00Z")
    return parsed


def format_time(value: datetime) -> str:
    """Sortable UTC ISO-8601 with milliseconds, the one format stored everywhere."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"

"""What the CLI prints: lines on stdout (the result) or stderr (notes), JSON, counts, progress."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from segment_connector.ops.settings_document import FieldError
from segment_connector.ops.status import StatusWarning


def out(text: str = "") -> None:
    print(text, flush=True)


def note(text: str = "") -> None:
    print(text, file=sys.stderr, flush=True)


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def print_problems(errors: list[FieldError], warnings: list[StatusWarning], *, to_stderr: bool) -> None:
    say = note if to_stderr else out
    for error in errors:
        say(f"  {error['field']}: {error['error']}")
    for warning in warnings:
        say(f"warning: {warning.code}: {warning.message}")


def count(number: int, singular: str, plural: str | None = None) -> str:
    """`1 user`, `2 users`, `1,024 dead letters`."""
    return f"{number:,} {singular if number == 1 else plural or singular + 's'}"


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def progress(job: Mapping[str, Any]) -> str:
    """A resync's counters, in one line."""
    return (
        f"segments {as_int(job.get('segments_done'))}/{as_int(job.get('segments'))}, "
        f"evaluated {as_int(job.get('evaluated')):,}, changed {as_int(job.get('changed')):,}, "
        f"sent {as_int(job.get('sent')):,}, failed {as_int(job.get('failed')):,}"
    )


def describe_job(job: Mapping[str, Any]) -> str:
    """The last resync, for `status`."""
    status = job.get("status")
    if status == "unknown":
        return f"unknown ({job.get('error')})"
    if status == "none" or not job.get("id"):
        return "none yet"
    times = ", ".join(
        f"{label} {job[key]}" for label, key in (("started", "started_at"), ("finished", "finished_at")) if job.get(key)
    )
    return f"{status} ({job.get('reason') or 'no reason'}; {times}); {progress(job)}"


def describe_replay(job: Mapping[str, Any]) -> str:
    """A replay's state and counters, in one line."""
    status = job.get("status")
    if status in (None, "none"):
        return "replay: none yet"
    counts = (
        f"tried {as_int(job.get('tried')):,} of {as_int(job.get('total')):,}: {as_int(job.get('replayed')):,} "
        f"replayed, {as_int(job.get('failed')):,} failed"
    )
    reason = f" ({job.get('reason')})" if job.get("reason") else ""
    return f"replay {status}{reason}; {counts}"

"""The resync and replay jobs as status, the console and the CLI show them (no lease, no cursor)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RESYNC_COUNTERS = ("evaluated", "changed", "sent", "failed")
RESYNC_FIELDS = (
    "id",
    "status",
    "reason",
    "started_at",
    "updated_at",
    "finished_at",
    "segments",
    "segments_done",
    *RESYNC_COUNTERS,
    "error",
)


def resync_view(job: Mapping[str, Any] | None) -> dict[str, Any]:
    """The resync job as the CLI and the console show it."""
    if job is None:
        return {"status": "none"}
    return {name: job.get(name) for name in RESYNC_FIELDS if name in job}


def replay_view(job: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
    """What status, the dashboard and the answers show of a job (no lease, no cursor)."""
    if not job:
        return {"status": "none"}
    status = str(job.get("status"))
    if status == "running" and float(job.get("lease_until") or 0) < now:
        status = "stalled"  # its worker died and no invocation took it over: a new start replaces it
    view = {
        key: job.get(key)
        for key in ("id", "started_at", "updated_at", "finished_at", "limit", "total", "tried", "replayed", "failed")
        if job.get(key) is not None
    }
    view.update(status=status, errors=list(job.get("errors") or []))
    if job.get("reason"):
        view["reason"] = job["reason"]
    return view

"""Resync: a scan segment whose chain of invocations died is invoked again from its recorded page."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from segment_connector.domain.times import format_time
from segment_connector.runtime.invoker import FunctionInvoker
from segment_connector.store.profile_store import ProfileStore

log = logging.getLogger(__name__)

STALE_SECONDS = 3 * 900  # three function timeouts without progress: the segment's chain died


def invoke_work(invoker: FunctionInvoker, function: str, resync_id: str, segment: int) -> bool:
    """Queue a segment's work; False (logged) when Lambda refused: stale detection resumes it."""
    try:
        invoker.invoke_async(function, {"action": "work", "resync_id": resync_id, "segment": segment})
    except Exception as error:  # noqa: BLE001 - the segment is resumed once stale (resume_stale)
        log.warning("resync %s: segment %d could not be invoked: %r", resync_id, segment, error)
        return False
    return True


def resume_stale(
    store: ProfileStore,
    invoker: FunctionInvoker,
    function: str,
    job: Mapping[str, Any],
    now: datetime,
) -> list[int]:
    """Invoke again the unfinished segments of a running job whose progress has not moved for
    STALE_SECONDS (a chain that died: a self-invocation Lambda refused, retries used up, a start
    that could not invoke a segment). Invoking a segment twice is harmless: one invocation
    records each page, the other stops. Returns the segments resumed."""
    if job.get("status") != "running":
        return []
    stale_before = format_time(now - timedelta(seconds=STALE_SECONDS))
    started = str(job.get("started_at") or "")
    seen: dict[int, str] = {}
    for name, progress in (job.get("progress") or {}).items():
        at = str(progress.get("at") or "")
        if progress.get("done"):
            continue
        if (at or started) < stale_before:
            seen[int(name)] = at
    if not seen or not store.resync.touch_segments(job["id"], seen, format_time(now)):
        return []
    log.warning("resync %s: segments %s made no progress: resumed", job["id"], sorted(seen))
    for segment in sorted(seen):
        invoke_work(invoker, function, job["id"], segment)
    return sorted(seen)

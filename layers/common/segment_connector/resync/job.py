"""Resync: after a settings change, every stored user and account whose outbound view changed is
brought up to date (plan.py says what that means for one profile).

`handle()` is the one entry point of ResyncFunction:
- a "Parameter Store Change" event of `<prefix>/settings` (EventBridge), or {"action": "start"},
  starts a job: one record in the table (pk "resync") holding the target settings, its sequence
  number `seq`, the settings Segment got every profile with that records no synced view (`base`),
  and per scan segment its progress;
- the job fans out one chain of invocations per parallel-scan segment ({"action": "work"}); each
  invocation works through pages until its time runs short, records its progress after every
  page, and invokes itself to go on. The live stream is never involved: calls go straight to
  Segment.
- per profile, an item `sync#<uid>` records the view Segment has it with (`view`, the `seq` of the
  job that wrote it) and, while one is being sent, the transition (`pending`: from, to, seq). A
  worker claims a profile (conditional write) before sending it, and commits after: a worker that
  finds a pending transition (its own, after a crash, or an older job's) sends that transition
  again, with the same message ids (Segment dedups them, the table stores an event once), commits
  it and goes on from there; a worker that finds a newer job's mark (on the sync item, which
  every job writes for each profile it evaluates, or on the person's segment history) stops
  (superseded). So
  restarts, retries, duplicate invocations and concurrent jobs never send one change twice and
  never skip one, and a profile that moves (anonymous -> known keeps its uid) or is deleted
  changes nothing for the others.
- a segment whose progress has not moved for STALE_SECONDS (its chain died: a self-invocation
  that failed, retries used up) is resumed from its recorded page by the next status request,
  start, or page of another segment.
- {"action": "status"} returns the job. It is also the schedule's call (StaleCheck), so it resumes
  stalled GDPR deletions too (deletions_pending.resume_stalled: one Query when none is in progress),
  and starts the resync of a settings change whose own start never ran (start_missed: the settings
  as stored differ from the last job's target).

The first job ever compares against the oldest settings version kept (what the stack was
deployed with, which Segment got everything with before any resync); later ones against what the
last finished job synced. A manual start ({"action": "start"}, `segment-connector resync`)
compares against "nothing sent" and so sends every user and account in the filters again (e.g.
after restoring the table).

This module starts a job and answers its status; a segment's work is in work.py (pages, progress,
hand-over), one page's profiles in page_sync.py (claim, send, commit), the stale resume in stale.py.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from segment_connector.domain.errors import SettingsInvalid
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.domain.times import format_time
from segment_connector.resync import clock
from segment_connector.resync.page_sync import NOTHING_SENT, job_target_view
from segment_connector.resync.plan import view_of
from segment_connector.resync.stale import invoke_work, resume_stale
from segment_connector.resync.work import Result, Worker
from segment_connector.runtime import config
from segment_connector.runtime.invoker import FunctionInvoker
from segment_connector.segment_api.delivery import ClientPool
from segment_connector.store import deletions_pending
from segment_connector.store.profile_store import ProfileStore
from segment_connector.views import jobs
from segment_connector.views.jobs import RESYNC_COUNTERS as COUNTERS

log = logging.getLogger(__name__)

DEFAULT_SEGMENTS = 16


def segments() -> int:
    return max(1, int(os.environ.get("RESYNC_SEGMENTS", "") or DEFAULT_SEGMENTS))


def is_settings_change(event: Any) -> bool:
    return (
        isinstance(event, Mapping)
        and event.get("source") == "aws.ssm"
        and event.get("detail-type") == "Parameter Store Change"
    )


def handle(
    event: Any,
    context: Any,
    store: ProfileStore,
    clients: ClientPool,
    invoker: FunctionInvoker | None = None,
    now: datetime | None = None,
) -> Result:
    invoker = invoker or FunctionInvoker()
    now = now or clock.utcnow()
    function = getattr(context, "function_name", None) or os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    action = event.get("action") if isinstance(event, Mapping) else None
    if is_settings_change(event):
        return start(store, invoker, function, "settings changed", full=False, now=now)
    if action == "start":
        return start(store, invoker, function, str(event.get("reason") or "manual"), full=True, now=now)
    if action == "status":
        job = store.resync.job()
        if job is not None:
            resume_stale(store, invoker, function, job, now)
        started = start_missed(store, invoker, function, job, now)
        return Result(started.response if started else public(job), _resume_deletions(store, now))
    if action == "work":
        return Worker(store, clients, invoker, function, context, now).run(
            str(event["resync_id"]), int(event["segment"])
        )
    return Result(
        {
            "error": f"unknown event: expected a Parameter Store Change or an action "
            f"(start, status, work), got {str(action or type(event).__name__)[:80]}"
        }
    )


def _resume_deletions(store: ProfileStore, now: datetime) -> dict[str, int]:
    """The schedule's other job: stalled GDPR deletions get a new step (their metric: how many)."""
    try:
        resumed = deletions_pending.resume_stalled(store, now)
    except Exception:  # the job's status is still answered; the next tick tries again
        log.exception("resuming stalled deletions failed; the next scheduled check tries again")
        return {"DeletionsResumeFailed": 1}
    return {"DeletionsResumed": len(resumed)} if resumed else {}


def public(job: Mapping[str, Any] | None) -> dict[str, Any]:
    """The job as the CLI and the console show it."""
    return jobs.resync_view(job)


# -- starting a job -------------------------------------------------------------------------------


def start(
    store: ProfileStore,
    invoker: FunctionInvoker,
    function: str,
    reason: str,
    *,
    full: bool,
    now: datetime,
    target: str | None = None,
) -> Result:
    """Start a job towards `target` (the settings document as stored now, read here unless given)."""
    target = config.current_settings_document() if target is None else target
    try:
        target_settings = config.parse_settings(target)
    except SettingsInvalid as error:
        log.error("resync not started: %s: %s", error.message, error.details)
        return Result(
            {"status": "not_started", "error": error.message, "details": error.details}, {"ResyncRunsFailed": 1}
        )
    target_view = view_of(target_settings)
    current = store.resync.job()
    running = current is not None and current["status"] == "running"
    if current is not None and running and not full and job_target_view(current) == target_view:
        resume_stale(store, invoker, function, current, now)
        return Result(public(current))  # the same change announced twice
    job = _new_job(store, current, reason, target, target_view, full=full, at=format_time(now))
    if not store.resync.start(job, current["id"] if current else None):
        return Result(public(store.resync.job()))  # another start won the race: it does the work
    if job["status"] == "running":
        for segment in range(job["segments"]):
            invoke_work(invoker, function, job["id"], segment)
        log.info("resync %s started (%s): %d segments", job["id"], reason, job["segments"])
    return Result(public(job))


def start_missed(
    store: ProfileStore, invoker: FunctionInvoker, function: str, current: Mapping[str, Any] | None, now: datetime
) -> Result | None:
    """Start the resync of a settings change whose own start never ran (its EventBridge invocation
    failed Lambda's retries: the table or SSM unavailable): the settings as stored now differ from
    the last job's target (before any job: from the deployed settings). None when they do not, or
    when the stored settings are invalid (a save refuses those; nothing to start)."""
    document = config.current_settings_document()
    try:
        view = view_of(config.parse_settings(document))
    except SettingsInvalid:
        return None
    synced = (
        job_target_view(current)
        if current is not None
        else view_of(config.parse_settings(_synchronized_settings(None)))
    )
    if view == synced:
        return None
    log.warning("resync: the settings changed and no resync started for them: starting it now")
    return start(store, invoker, function, "settings changed (start missed)", full=False, now=now, target=document)


def _new_job(
    store: ProfileStore,
    current: Mapping[str, Any] | None,
    reason: str,
    target: str,
    target_view: str,
    *,
    full: bool,
    at: str,
) -> dict[str, Any]:
    """The job that follows `current`: done at once when nothing any profile sees changes, else
    running with fresh progress per segment (and the views it compares stored first)."""
    base = _synchronized_settings(current)
    seq = int((current or {}).get("seq") or 0) + 1
    unfinished = current is not None and current["status"] != "done"
    inherited = int((current or {}).get("full_since") or 0) if unfinished else 0
    job: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "seq": seq,
        "reason": reason,
        "target": target,
        "target_view": target_view,
        "base": base,
        "base_view": view_of(config.parse_settings(base)),
        "full_since": seq if full else inherited,
        "segments": segments(),
        "segments_done": 0,
        **dict.fromkeys(COUNTERS, 0),
        "started_at": at,
        "updated_at": at,
    }
    if not unfinished and not job["full_since"] and job["base_view"] == target_view:
        job.update(status="done", finished_at=at, base=target, base_view=target_view, segments_done=job["segments"])
        return job
    job.update(status="running", progress={str(n): _fresh_progress() for n in range(job["segments"])})
    views = {target_view: target, job["base_view"]: base}
    if job["full_since"]:
        views[view_of(NOTHING_SENT)] = NOTHING_SENT.model_dump_json()
    store.resync.put_views(views)
    return job


def _synchronized_settings(current: Mapping[str, Any] | None) -> str:
    """What Segment got every profile that records no synced view with: the last finished job's
    target; while a job is unfinished, its base; before any job, the oldest settings version
    kept (what the stack was deployed with: every save since started a resync, none ran yet)."""
    if current is not None:
        synchronized: str = current["target"] if current["status"] == "done" else current["base"]
        return synchronized
    return config.oldest_valid_settings_document() or ConnectorSettings().model_dump_json()


def _fresh_progress() -> dict[str, Any]:
    return {"resume": "", "done": False, "attempts": 0, "at": ""}

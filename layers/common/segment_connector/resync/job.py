"""Resync: after a settings change, every stored user and account whose outbound view changed is
brought up to date (resync_plan.py says what that means for one profile).

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
  it and goes on from there; a worker that finds a newer job's mark stops (superseded). So
  restarts, retries, duplicate invocations and concurrent jobs never send one change twice and
  never skip one, and a profile that moves (anonymous -> known keeps its uid) or is deleted
  changes nothing for the others.
- a segment whose progress has not moved for STALE_SECONDS (its chain died: a self-invocation
  that failed, retries used up) is resumed from its recorded page by the next status request,
  start, or page of another segment.
- {"action": "status"} returns the job. It is also the schedule's call (StaleCheck), so it resumes
  stalled GDPR deletions too (deletions_pending.resume_stalled: one Query when none is in progress).

The first job ever compares against the oldest settings version kept (what the stack was
deployed with, which Segment got everything with before any resync); later ones against what the
last finished job synced. A manual start ({"action": "start"}, `segment-connector resync`)
compares against "nothing sent" and so sends every user and account in the filters again (e.g.
after restoring the table).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from segment_connector.domain.errors import SettingsInvalid
from segment_connector.domain.models.items import Account, UserProfile
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.domain.times import format_time
from segment_connector.resync.plan import ItemPlan, PagePlanner, Transition, sync_key, transition_id, view_of
from segment_connector.runtime import config
from segment_connector.runtime.invoker import FunctionInvoker
from segment_connector.segment_api.delivery import ClientPool, DeadLetters, Entry, deliver
from segment_connector.store import deletions_pending
from segment_connector.store.profile_store import ProfileStore
from segment_connector.views import jobs
from segment_connector.views.jobs import RESYNC_COUNTERS as COUNTERS

log = logging.getLogger(__name__)

DEFAULT_SEGMENTS = 16
PAGE_SIZE = 500  # profiles per scan page (a page is at most 1 MB anyway)
TIME_MARGIN = 60.0  # seconds left when a work invocation hands over to the next one
MAX_STEP_ATTEMPTS = 3
STALE_SECONDS = 3 * 900  # three function timeouts without progress: the segment's chain died
CLAIM_ROUNDS = 5  # a profile another worker wrote meanwhile is read and planned again
NOTHING_SENT = ConnectorSettings(synchronized_account_segments=[])  # filters empty: nobody was sent


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Result:
    response: dict[str, Any]
    metrics: dict[str, int] = field(default_factory=dict)


class Superseded(Exception):
    """A newer job has written a profile of this page: this job's work ends."""


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
    now = now or utcnow()
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
        return Result(public(job), _resume_deletions(store, now))
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


def _invoke_work(invoker: FunctionInvoker, function: str, resync_id: str, segment: int) -> bool:
    """Queue a segment's work; False (logged) when Lambda refused: stale detection resumes it."""
    try:
        invoker.invoke_async(function, {"action": "work", "resync_id": resync_id, "segment": segment})
    except Exception as error:  # noqa: BLE001 - the segment is resumed once stale (resume_stale)
        log.warning("resync %s: segment %d could not be invoked: %r", resync_id, segment, error)
        return False
    return True


# -- starting a job -------------------------------------------------------------------------------


def start(
    store: ProfileStore, invoker: FunctionInvoker, function: str, reason: str, *, full: bool, now: datetime
) -> Result:
    target = config.current_settings_document()
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
    if current is not None and running and not full and _target_view(current) == target_view:
        resume_stale(store, invoker, function, current, now)
        return Result(public(current))  # the same change announced twice
    job = _new_job(store, current, reason, target, target_view, full=full, at=format_time(now))
    if not store.resync.start(job, current["id"] if current else None):
        return Result(public(store.resync.job()))  # another start won the race: it does the work
    if job["status"] == "running":
        for segment in range(job["segments"]):
            _invoke_work(invoker, function, job["id"], segment)
        log.info("resync %s started (%s): %d segments", job["id"], reason, job["segments"])
    return Result(public(job))


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


def _target_view(job: Mapping[str, Any]) -> str:
    return str(job.get("target_view") or view_of(config.parse_settings(job["target"])))


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
        _invoke_work(invoker, function, job["id"], segment)
    return sorted(seen)


# -- working one segment --------------------------------------------------------------------------


@dataclass
class PageCount:
    evaluated: int = 0
    changed: int = 0
    sent: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}


class PageSync:
    """Brings one page of profiles to the job's target, profile by profile (see the module doc)."""

    def __init__(self, worker: Worker, job: Mapping[str, Any]):
        self.store = worker.store
        self.worker = worker
        self.seq = int(job.get("seq") or 0)
        self.target_view = _target_view(job)
        self.base_view = str(job.get("base_view") or view_of(config.parse_settings(job["base"])))
        self.full_since = int(job.get("full_since") or 0)
        self.nothing_view = view_of(NOTHING_SENT)
        self.settings: dict[str, ConnectorSettings] = {
            self.target_view: config.parse_settings(job["target"]),
            self.base_view: config.parse_settings(job["base"]),
            self.nothing_view: NOTHING_SENT,
        }
        self.planner = PagePlanner(self.store, format_time(worker.now))

    def run(self, items: list[UserProfile | Account]) -> PageCount:
        count = PageCount(evaluated=len(items))
        remaining = {sync_key(item): item for item in items}
        for _ in range(CLAIM_ROUNDS):
            markers = self.store.syncs.markers(remaining)
            self._check_newer(markers.values())
            self._complete_pending(remaining, markers, count)
            remaining = self._own_transitions(remaining, markers, count)
            if not remaining:
                return count
        raise RuntimeError(f"{len(remaining)} profiles kept changing under other workers; the page is retried")

    def _check_newer(self, markers: Iterable[Mapping[str, Any]]) -> None:
        for marker in markers:
            pending = marker.get("pending") or {}
            if int(marker.get("seq") or 0) > self.seq or int(pending.get("seq") or 0) > self.seq:
                raise Superseded()

    def _settings(self, views: Iterable[str]) -> None:
        missing = [view for view in views if view not in self.settings]
        for view, document in self.store.resync.views(missing).items():
            self.settings[view] = config.parse_settings(document)
        lost = [view for view in missing if view not in self.settings]
        if lost:
            raise RuntimeError(f"settings of synced views {lost} are not kept")

    def _complete_pending(
        self, items: dict[str, UserProfile | Account], markers: dict[str, dict[str, Any]], count: PageCount
    ) -> None:
        """Send again the transitions other (or crashed) workers claimed and did not commit, as they would have."""
        pending = {key: markers[key]["pending"] for key in items if markers.get(key, {}).get("pending")}
        if not pending:
            return
        self._settings(view for claim in pending.values() for view in (claim["from"], claim["to"]))
        work = [(items[key], self._transition(claim)) for key, claim in pending.items()]
        plans = self.planner.plan(work)
        count.changed += sum(plan.changed for plan in plans)
        self._send_and_commit(plans, pending, count)
        for key, claim in pending.items():  # as the commit left them (whoever committed)
            markers[key] = {"view": claim["to"], "seq": claim["seq"]}

    def _transition(self, claim: Mapping[str, Any]) -> Transition:
        before, after, seq = str(claim["from"]), str(claim["to"]), int(claim["seq"])
        return Transition(self.settings[before], self.settings[after], transition_id(seq, before, after))

    def _before_view(self, marker: Mapping[str, Any] | None) -> str:
        view = str((marker or {}).get("view") or "")
        if self.full_since:
            return view if view and int((marker or {}).get("seq") or 0) >= self.full_since else self.nothing_view
        return view or self.base_view

    def _own_transitions(
        self, items: dict[str, UserProfile | Account], markers: dict[str, dict[str, Any]], count: PageCount
    ) -> dict[str, UserProfile | Account]:
        """Plan, claim, send and commit this job's transition of each profile; the profiles whose
        conditional write lost (another worker wrote them meanwhile)."""
        befores = {key: self._before_view(markers.get(key)) for key in items}
        todo = {key: view for key, view in befores.items() if view != self.target_view}
        self._settings(set(todo.values()))
        claims = {key: {"from": view, "to": self.target_view, "seq": self.seq} for key, view in todo.items()}
        plans = self.planner.plan([(items[key], self._transition(claims[key])) for key in todo])
        changed = [plan for plan in plans if plan.changed]
        observed = {key: markers.get(key, {}).get("view") for key in todo}
        lost = self.store.syncs.claim(
            [(sync_key(p.item), observed[sync_key(p.item)], claims[sync_key(p.item)]) for p in changed], self.seq
        )
        # a profile whose transition sends nothing: its recorded view advances (none recorded: the base stands for it)
        advanced = [(sync_key(p.item), observed[sync_key(p.item)]) for p in plans if not p.changed]
        lost |= self.store.syncs.advance([(key, view) for key, view in advanced if view], self.target_view, self.seq)
        claimed = [plan for plan in changed if sync_key(plan.item) not in lost]
        count.changed += len(claimed)
        self._send_and_commit(claimed, claims, count)
        return {key: items[key] for key in lost}

    def _send_and_commit(self, plans: list[ItemPlan], claims: Mapping[str, Any], count: PageCount) -> None:
        # Entered/Left Segment: claimed in the person's segment history, then stored (sent by the stream)
        self.planner.announce(plans)
        sent, failed = self.worker.send([entry for plan in plans for entry in plan.entries])
        count.sent += sent
        count.failed += failed
        self.store.syncs.commit([(sync_key(plan.item), claims[sync_key(plan.item)]) for plan in plans])


class Worker:
    def __init__(
        self,
        store: ProfileStore,
        clients: ClientPool,
        invoker: FunctionInvoker,
        function: str,
        context: Any,
        now: datetime,
    ):
        self.store, self.clients, self.invoker, self.function = store, clients, invoker, function
        self.context = context
        self.now = now
        self.client: Any = None
        self.deadline = 0.0

    def run(self, resync_id: str, segment: int) -> Result:
        job = self.store.resync.job()
        if job is None or job["id"] != resync_id or job["status"] != "running":
            return Result({"resync_id": resync_id, "segment": segment, "stopped": "superseded or ended"})
        progress = job["progress"][str(segment)]
        if progress.get("done"):
            return Result({"resync_id": resync_id, "segment": segment, "stopped": "segment done"})
        try:
            return self._work(job, segment, progress)
        except Exception as error:  # noqa: BLE001 - record it, retry a few times, then fail the job
            return self._failed(job, segment, error)

    def _work(self, job: dict[str, Any], segment: int, progress: dict[str, Any]) -> Result:
        sync = PageSync(self, job)
        target = sync.settings[sync.target_view]
        write_key = config.get_secret("write-key")
        self.client = self.clients.client(write_key, config.segment_api_url(target)) if write_key else None
        self.deadline = self.clients.deadline(self.context)
        resume = str(progress.get("resume") or "")
        totals = dict.fromkeys(COUNTERS, 0)
        while True:
            items, next_key = self.store.profiles.scan(
                segment, job["segments"], json.loads(resume) if resume else None, PAGE_SIZE
            )
            try:
                counters = sync.run(items).as_dict()
            except Superseded:
                log.info("resync %s: a newer job wrote its profiles; segment %d stops", job["id"], segment)
                return self._result(job["id"], segment, totals, "superseded")
            for name, value in counters.items():
                totals[name] += value
            next_resume = json.dumps(next_key) if next_key else ""
            recorded = {"resume": next_resume, "done": next_key is None, "attempts": 0}
            updated = self.store.resync.record_progress(
                job["id"],
                segment,
                {**recorded, "at": format_time(utcnow())},
                counters,
                next_key is None,
                format_time(utcnow()),
                expected_resume=resume,
            )
            if updated is None:
                log.info("resync %s: superseded, ended or recorded elsewhere; segment %d stops", job["id"], segment)
                return self._result(job["id"], segment, totals, "superseded")
            if next_key is None:
                if updated["segments_done"] >= updated["segments"]:
                    self._finish(updated)
                return self._result(job["id"], segment, totals, "segment done")
            resume = next_resume
            resume_stale(self.store, self.invoker, self.function, updated, utcnow())
            if self._time_left() < TIME_MARGIN:
                self.invoker.invoke_async(self.function, {"action": "work", "resync_id": job["id"], "segment": segment})
                return self._result(job["id"], segment, totals, "continues")

    def send(self, entries: list[Entry]) -> tuple[int, int]:
        """(sent, failed); what cannot be sent is kept as dead letters (segment-connector replay)."""
        if not entries:
            return 0, 0
        if self.client is None:
            log.warning(
                "resync: no write key (SecureString %s): %d calls not sent",
                config.parameter_name("write-key"),
                len(entries),
            )
            reasons = dict.fromkeys((entry.message_id for entry in entries), "no write key")
        else:
            outcome = deliver(entries, self.client, self.deadline)
            reasons = {**outcome.failed, **outcome.rejected}
        DeadLetters(self.store, utcnow()).keep(
            [(entry, f"resync: {reasons[entry.message_id]}") for entry in entries if entry.message_id in reasons]
        )
        return len(entries) - len(reasons), len(reasons)

    def _finish(self, job: Mapping[str, Any]) -> None:
        at = format_time(utcnow())
        fields = {"finished_at": at, "base": job["target"], "base_view": _target_view(job)}
        if self.store.resync.end(job["id"], "done", fields):
            log.info("resync %s done: %s", job["id"], {name: job.get(name) for name in COUNTERS})

    def _failed(self, job: dict[str, Any], segment: int, error: Exception) -> Result:
        """Count the attempt on the recorded progress (pages recorded by this invocation stay
        recorded) and try again from there, or fail the job after MAX_STEP_ATTEMPTS."""
        updated = self.store.resync.count_attempt(job["id"], segment, format_time(utcnow()))
        if updated is None:
            return Result({"resync_id": job["id"], "segment": segment, "stopped": "superseded or ended"})
        attempts = int(updated["progress"][str(segment)].get("attempts", 0))
        log.warning(
            "resync %s: segment %d failed (attempt %d): %r",
            job["id"],
            segment,
            attempts,
            error,
            extra={"resync_id": job["id"], "segment": segment},
        )
        if attempts < MAX_STEP_ATTEMPTS:
            self.invoker.invoke_async(self.function, {"action": "work", "resync_id": job["id"], "segment": segment})
            return Result({"resync_id": job["id"], "segment": segment, "retrying": attempts})
        message = f"segment {segment} failed {attempts} times: {error!r}"[:1000]
        self.store.resync.end(job["id"], "failed", {"error": message, "finished_at": format_time(utcnow())})
        log.error("resync %s failed: %s", job["id"], message)
        return Result({"resync_id": job["id"], "segment": segment, "failed": message}, {"ResyncRunsFailed": 1})

    def _time_left(self) -> float:
        if self.context is not None and hasattr(self.context, "get_remaining_time_in_millis"):
            return float(self.context.get_remaining_time_in_millis()) / 1000
        return float("inf")

    @staticmethod
    def _result(resync_id: str, segment: int, totals: dict[str, int], state: str) -> Result:
        metrics = {f"Resync{name.capitalize()}": value for name, value in totals.items() if value}
        return Result({"resync_id": resync_id, "segment": segment, "state": state, **totals}, metrics)

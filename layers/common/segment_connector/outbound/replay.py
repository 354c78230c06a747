"""Replay of dead letters: one job at a time, worked page by page by OutboundFunction, asynchronously.

`{"action": "replay"}` (the console, the CLI) starts a job and answers at once with its summary.
The job is one item (`pk` `replay`, `sk` `job`): its conditional write is the lock (a second start
while one runs gets the running job back), `lease_until` makes a crashed worker's lock expire (its
job is then "stalled", and the next start replaces it), `cursor` is the sk of the last letter
tried, and the counts and first errors are what status and the dashboard show.

A worker invocation (`{"action": "replay_work", "id", "token"}`, queued by the start or by the
previous worker) takes the lease with the token it was handed, works pages of PAGE_SIZE letters
oldest first while it has time, then hands the lease to the next invocation and queues it. Each
letter is deleted (conditionally) only after Segment accepted it, and a letter that still fails
only has its reason updated if it still exists: a delivered letter is never sent again by a later
page or run, nor re-created. A worker killed mid-page leaves its page's letters in place: the next
run sends the ones not deleted again, with their original messageIds (Segment deduplicates on them).

A letter that holds a whole stream record (it could not be planned) is planned now, with the
settings and the profiles of now, and its calls are sent with the messageIds the original
planning would have given them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from segment_connector.domain.errors import SettingsInvalid
from segment_connector.runtime import config
from segment_connector.runtime.invoker import FunctionInvoker
from segment_connector.segment_api.client import SegmentClient
from segment_connector.segment_api.delivery import (
    RETRY_SECONDS,
    STREAM_RECORD,
    ClientPool,
    DeadLetters,
    RecordPlan,
)
from segment_connector.store.profile_store import ProfileStore
from segment_connector.views import jobs

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # letters per page: one Segment request, one progress write
PAGE_SECONDS = 40.0  # a page after the first starts only with this much of the invocation left
HANDOFF_SECONDS = 300  # the next invocation takes the lease within this, or the job is stalled
LEASE_MARGIN = 5.0  # seconds past the invocation's end before its lease expires
ERRORS_KEPT = 5
REASON_LENGTH = 300


def wall_clock() -> float:
    """Epoch seconds: leases are compared across invocations (tests replace this)."""
    return time.time()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def invoker() -> FunctionInvoker:
    return FunctionInvoker()


# -- start ----------------------------------------------------------------------------------------


def start(store: ProfileStore, context: Any, limit: int | None) -> dict[str, Any]:
    """Start a replay (the oldest `limit` letters, or all) unless one runs: the job's summary and
    `started` (False: a replay was running already; its progress is returned)."""
    now = wall_clock()
    total = store.inventory.count_dead_letters()
    token, job_id = uuid.uuid4().hex, uuid.uuid4().hex
    job: dict[str, Any] = {
        "id": job_id,
        "status": "running",
        "started_at": _iso(now),
        "updated_at": _iso(now),
        "limit": limit,
        "total": total if limit is None else min(limit, total),
        "tried": 0,
        "replayed": 0,
        "failed": 0,
        "errors": [],
        "cursor": "",
        "lease_owner": token,
        "lease_until": now + HANDOFF_SECONDS,
    }
    if not store.replay.start(job, now):
        running = store.replay.job()
        log.info("outbound replay: a replay is running already (%s)", (running or {}).get("id"))
        return {"started": False, **public(running, now)}
    try:
        invoker().invoke_async(_function_name(context), {"action": "replay_work", "id": job_id, "token": token})
    except Exception as error:
        store.replay.update(
            job_id, token, {"status": "failed", "reason": f"could not queue the work: {error!r}", "lease_until": 0}
        )
        raise
    log.info("outbound replay %s started: %d dead letter(s) to try", job["id"], job["total"])
    return {"started": True, **public(job, now)}


def _function_name(context: Any) -> str:
    return str(getattr(context, "function_name", "") or "OutboundFunction")


def public(job: Mapping[str, Any] | None, now: float | None = None) -> dict[str, Any]:
    """What status, the dashboard and the answers show of a job (no lease, no cursor)."""
    return jobs.replay_view(job, wall_clock() if now is None else now)


# -- work -----------------------------------------------------------------------------------------


@dataclass
class PageResult:
    replayed: int = 0
    failed: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)


def work(
    event: Mapping[str, Any], context: Any, store: ProfileStore, clients: ClientPool
) -> tuple[dict[str, Any], int]:
    """One worker invocation: take the lease, work pages while there is time, hand over or finish.
    Its answer, and how many letters it replayed (the DeadLettersReplayed metric)."""
    job_id, token = str(event.get("id") or ""), str(event.get("token") or "")
    now = wall_clock()
    owner = uuid.uuid4().hex
    remaining = _remaining_seconds(context)
    if not store.replay.take_lease(job_id, token, owner, now, now + remaining + LEASE_MARGIN):
        log.info("outbound replay %s: not taken (another invocation works it, or it ended)", job_id)
        return {"working": False}, 0
    job = store.replay.job() or {}
    client, problem = _client(clients)
    if client is None:
        store.replay.update(
            job_id, owner, {"status": "failed", "reason": problem, "finished_at": _iso(wall_clock()), "lease_until": 0}
        )
        log.error("outbound replay %s failed: %s", job_id, problem)
        return {"working": False, "status": "failed"}, 0
    worker = _Worker(store, client, clients, job_id, owner, job)
    return worker.run(context), worker.replayed


def _remaining_seconds(context: Any) -> float:
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        return float(context.get_remaining_time_in_millis()) / 1000
    return 60.0


def _client(clients: ClientPool) -> tuple[SegmentClient | None, str]:
    try:
        settings = config.load_settings()
    except SettingsInvalid as error:
        return None, f"the settings cannot be used: {error.message}"
    write_key = config.get_secret("write-key")
    if not write_key:
        return None, f"no write key ({config.parameter_name('write-key')}): nothing can be sent"
    return clients.client(write_key, config.segment_api_url(settings)), ""


class _Worker:
    def __init__(
        self,
        store: ProfileStore,
        client: SegmentClient,
        clients: ClientPool,
        job_id: str,
        owner: str,
        job: Mapping[str, Any],
    ) -> None:
        self.store, self.client, self.clients = store, client, clients
        self.job_id, self.owner = job_id, owner
        self.cursor = str(job.get("cursor") or "")
        self.limit = job.get("limit")
        self.tried = int(job.get("tried") or 0)
        self.errors: list[dict[str, str]] = list(job.get("errors") or [])
        self.replayed = 0  # by this invocation

    def run(self, context: Any) -> dict[str, Any]:
        deadline = self.clients.deadline(context)
        pages = 0
        while pages == 0 or self.clients.clock() + PAGE_SECONDS < deadline:
            size = PAGE_SIZE if self.limit is None else min(PAGE_SIZE, int(self.limit) - self.tried)
            letters = self.store.dead_letters.after(self.cursor, size) if size > 0 else []
            if not letters:
                return self._finish()
            result = replay_page(letters, self.store, self.client, deadline)
            pages += 1
            if not self._record(letters, result):
                log.warning("outbound replay %s: the lease was lost; this invocation stops", self.job_id)
                return {"working": False}
        return self._hand_over(context)

    def _record(self, letters: list[dict[str, Any]], result: PageResult) -> bool:
        self.cursor = str(letters[-1]["sk"])
        self.tried += len(letters)
        self.replayed += result.replayed
        self.errors = (self.errors + result.errors)[:ERRORS_KEPT]
        fields = {"cursor": self.cursor, "errors": self.errors, "updated_at": _iso(wall_clock())}
        add = {"tried": len(letters), "replayed": result.replayed, "failed": result.failed}
        log.info(
            "outbound replay %s: page of %d: %d replayed, %d failed",
            self.job_id,
            len(letters),
            result.replayed,
            result.failed,
        )
        return self.store.replay.update(self.job_id, self.owner, fields, add)

    def _finish(self) -> dict[str, Any]:
        now = wall_clock()
        self.store.replay.update(
            self.job_id,
            self.owner,
            {"status": "done", "finished_at": _iso(now), "updated_at": _iso(now), "lease_until": 0},
        )
        job = public(self.store.replay.job(), now)
        log.info("outbound replay %s done: %s replayed, %s failed", self.job_id, job.get("replayed"), job.get("failed"))
        return {"working": False, **job}

    def _hand_over(self, context: Any) -> dict[str, Any]:
        token = uuid.uuid4().hex
        if not self.store.replay.update(
            self.job_id, self.owner, {"lease_owner": token, "lease_until": wall_clock() + HANDOFF_SECONDS}
        ):
            return {"working": False}
        try:
            invoker().invoke_async(
                _function_name(context), {"action": "replay_work", "id": self.job_id, "token": token}
            )
        except Exception:  # the job is stalled once the handed lease expires; a new start replaces it
            log.exception("outbound replay %s: could not queue the next page", self.job_id)
            raise
        return {"working": True, "id": self.job_id, "tried": self.tried}


# -- one page -------------------------------------------------------------------------------------


def replay_page(
    letters: list[dict[str, Any]], store: ProfileStore, client: SegmentClient, deadline: float
) -> PageResult:
    """Send one page of letters (message letters as they are, record letters planned now) in one
    send; delete each delivered letter, update the reason of the others (never re-create one)."""
    plans = _plan_records([letter for letter in letters if _is_record(letter)], store)
    messages: list[dict[str, Any]] = [letter["payload"] for letter in letters if _is_message(letter)]
    messages += [entry.payload for plan in plans.values() if not plan.error for entry in plan.entries]
    report = client.send(messages, deadline=deadline, retry_for=RETRY_SECONDS) if messages else None
    delivered = set(report.delivered) if report else set()
    failed = {**report.failed, **report.rejected} if report else {}
    rejected = dict(report.rejected) if report else {}
    result = PageResult()
    kept = DeadLetters(store, datetime.now(UTC))
    for letter in letters:
        reason = _outcome(letter, plans, delivered, failed, rejected, kept)
        if reason is None:
            gone = store.dead_letters.delete(letter["sk"])
            result.replayed += gone  # False: another run deleted it first; it counts there
            continue
        store.dead_letters.set_reason(letter["sk"], reason[:REASON_LENGTH])
        result.failed += 1
        if len(result.errors) < ERRORS_KEPT:
            result.errors.append({"message_id": str(letter.get("message_id")), "reason": reason[:REASON_LENGTH]})
    return result


def _outcome(
    letter: dict[str, Any],
    plans: dict[str, RecordPlan],
    delivered: set[str],
    failed: dict[str, str],
    rejected: dict[str, str],
    kept: DeadLetters,
) -> str | None:
    """None: the letter is done (delete it); else why it stays."""
    if _is_message(letter):
        message_id = letter["payload"]["messageId"]
        if message_id in delivered:
            return None
        return f"replay: {failed.get(message_id, 'not sent: the replay ran out of time')}"
    plan = plans.get(letter["sk"])
    if plan is None:
        return f"not replayable (neither a message nor a stream record): {letter.get('reason')}"
    if plan.error:
        return f"replay: {plan.error}"
    waiting = [entry for entry in plan.entries if entry.message_id not in delivered | rejected.keys()]
    if waiting:
        return f"replay: {failed.get(waiting[0].message_id, 'not sent: the replay ran out of time')}"
    # Every call went out or was rejected for good: those rejected are kept as message letters.
    kept.keep(
        [(entry, f"replay: {rejected[entry.message_id]}") for entry in plan.entries if entry.message_id in rejected]
    )
    return None


def _plan_records(letters: list[dict[str, Any]], store: ProfileStore) -> dict[str, RecordPlan]:
    """Record letters planned now (one Planner: the batch's reads are shared), by letter sk; their
    Entered/Left Segment events are recorded (idempotent); a failure is the plan's error."""
    if not letters:
        return {}
    from segment_connector.outbound.planner import Planner  # outbound imports delivery; planning is its job

    records = [letter["payload"][STREAM_RECORD] for letter in letters]
    try:
        plans = Planner(config.load_settings(), store).plan(records)
    except Exception as error:  # noqa: BLE001 - the letters stay, with the reason
        plans = [RecordPlan(seq="", created=None, raw=record) for record in records]
        for plan in plans:
            plan.fail(f"record not planned: {error!r}")
    for plan in plans:
        if plan.error:
            continue
        try:
            for event in plan.events:
                store.events.put(event)
        except Exception as error:  # noqa: BLE001 - the letter stays, with the reason
            plan.fail(f"could not record Entered/Left Segment events: {error!r}")
    return {letter["sk"]: plan for letter, plan in zip(letters, plans, strict=True)}


def _is_message(letter: Mapping[str, Any]) -> bool:
    payload = letter.get("payload")
    return isinstance(payload, dict) and isinstance(payload.get("messageId"), str) and "type" in payload


def _is_record(letter: Mapping[str, Any]) -> bool:
    payload = letter.get("payload")
    return isinstance(payload, dict) and isinstance(payload.get(STREAM_RECORD), dict)

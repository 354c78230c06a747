"""Resync: one scan segment's work ({"action": "work"}): pages scanned, synced (page_sync.py) and
recorded one by one until the invocation's time runs short, then handed over to the next
invocation; a failure is counted and retried, then fails the job (job.py's module doc tells the whole).

The table being unavailable (throttled, unreachable: StoreUnavailable) is not such a failure: the
segment waits and tries again from its recorded page inside the invocation, then hands over to the
next invocation, never counting an attempt. Lambda's own retries of a failed invocation (two, a
minute or two apart) end in the on-failure queue, and stale detection (stale.py) would resume the
segment only after STALE_SECONDS; a burst of throttling must not stall a segment that long."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from segment_connector.domain.errors import StoreUnavailable
from segment_connector.domain.times import format_time
from segment_connector.resync import clock
from segment_connector.resync.page_sync import PageSync, job_target_view
from segment_connector.resync.plan import Superseded
from segment_connector.resync.stale import resume_stale
from segment_connector.runtime import config
from segment_connector.runtime.invoker import FunctionInvoker
from segment_connector.segment_api.delivery import ClientPool, DeadLetters, Entry, deliver
from segment_connector.store.profile_store import ProfileStore
from segment_connector.views.jobs import RESYNC_COUNTERS as COUNTERS

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # profiles per scan page (a page is at most 1 MB anyway)
TIME_MARGIN = 60.0  # seconds left when a work invocation hands over to the next one
MAX_STEP_ATTEMPTS = 3
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 30.0  # seconds between tries while the table is unavailable


@dataclass
class Result:
    response: dict[str, Any]
    metrics: dict[str, int] = field(default_factory=dict)


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
        pause = FIRST_PAUSE
        while True:
            try:
                return self._run(resync_id, segment)
            except StoreUnavailable as error:
                if self._time_left() < TIME_MARGIN + pause:
                    return self._hand_over(resync_id, segment, error)
                log.warning(
                    "resync %s: segment %d: the table is unavailable (%r); trying again in %.0f s",
                    resync_id,
                    segment,
                    error,
                    pause,
                    extra={"resync_id": resync_id, "segment": segment},
                )
                clock.sleep(pause)
                pause = min(2 * pause, LONGEST_PAUSE)

    def _run(self, resync_id: str, segment: int) -> Result:
        job = self.store.resync.job()
        if job is None or job["id"] != resync_id or job["status"] != "running":
            return Result({"resync_id": resync_id, "segment": segment, "stopped": "superseded or ended"})
        progress = job["progress"][str(segment)]
        if progress.get("done"):
            return Result({"resync_id": resync_id, "segment": segment, "stopped": "segment done"})
        try:
            return self._work(job, segment, progress)
        except StoreUnavailable:
            raise  # run() waits and tries again
        except Exception as error:  # noqa: BLE001 - record it, retry a few times, then fail the job
            return self._failed(job, segment, error)

    def _hand_over(self, resync_id: str, segment: int, error: StoreUnavailable) -> Result:
        """The table is still unavailable and the invocation's time runs short: the next invocation
        goes on from the recorded page (no attempt counted: nothing is wrong with the segment)."""
        log.warning(
            "resync %s: segment %d: the table is still unavailable (%r); handed over to the next invocation",
            resync_id,
            segment,
            error,
            extra={"resync_id": resync_id, "segment": segment},
        )
        self.invoker.invoke_async(self.function, {"action": "work", "resync_id": resync_id, "segment": segment})
        return Result({"resync_id": resync_id, "segment": segment, "state": "continues", "unavailable": True})

    def _work(self, job: dict[str, Any], segment: int, progress: dict[str, Any]) -> Result:
        sync = PageSync(self.store, self.send, job, format_time(self.now))
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
                {**recorded, "at": format_time(clock.utcnow())},
                counters,
                next_key is None,
                format_time(clock.utcnow()),
                expected_resume=resume,
            )
            if updated is None:
                log.info("resync %s: superseded, ended or recorded elsewhere; segment %d stops", job["id"], segment)
                return self._result(job["id"], segment, totals, "superseded")
            log.info(
                "resync %s: segment %d: page of %d profiles recorded%s",
                job["id"],
                segment,
                len(items),
                "" if next_key else " (the segment's last)",
                extra={"resync_id": job["id"], "segment": segment, **counters},
            )
            if next_key is None:
                if updated["segments_done"] >= updated["segments"]:
                    self._finish(updated)
                return self._result(job["id"], segment, totals, "segment done")
            resume = next_resume
            resume_stale(self.store, self.invoker, self.function, updated, clock.utcnow())
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
        DeadLetters(self.store, clock.utcnow()).keep(
            [(entry, f"resync: {reasons[entry.message_id]}") for entry in entries if entry.message_id in reasons]
        )
        return len(entries) - len(reasons), len(reasons)

    def _finish(self, job: Mapping[str, Any]) -> None:
        at = format_time(clock.utcnow())
        fields = {"finished_at": at, "base": job["target"], "base_view": job_target_view(job)}
        if self.store.resync.end(job["id"], "done", fields):
            log.info("resync %s done: %s", job["id"], {name: job.get(name) for name in COUNTERS})

    def _failed(self, job: dict[str, Any], segment: int, error: Exception) -> Result:
        """Count the attempt on the recorded progress (pages recorded by this invocation stay
        recorded) and try again from there, or fail the job after MAX_STEP_ATTEMPTS."""
        updated = self.store.resync.count_attempt(job["id"], segment, format_time(clock.utcnow()))
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
        self.store.resync.end(job["id"], "failed", {"error": message, "finished_at": format_time(clock.utcnow())})
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

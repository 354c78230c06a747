"""Resync: after a settings change, every stored user and account whose outbound view changed is
brought up to date (resync_plan.py says what that means for one profile).

`handle()` is the one entry point of ResyncFunction:
- a "Parameter Store Change" event of `<prefix>/settings` (EventBridge), or {"action": "start"},
  starts a job: one record in the table (pk "resync") holding the target settings, the settings
  Segment was last fully synchronized with (`base`), and per scan segment its progress;
- the job fans out one chain of invocations per parallel-scan segment ({"action": "work"}); each
  invocation works through pages until its time runs short, records its progress, and invokes
  itself to go on, so any table size fits in Lambda's limits and a failed step resumes where it
  stopped. The live stream is never involved: calls go straight to Segment.
- settings changed again while a job runs restart it from the newest settings. What the old job
  had done is kept as a `layer` (its settings and how far each segment got): a profile the old
  job reached is compared from the old job's settings, the others from the base, so nothing is
  sent twice for one change. Message ids derive from the job and the profile (Segment dedups a
  page sent again after a retry).
- {"action": "status"} returns the job.

A manual start ({"action": "start"}, `segment-connector resync`) compares against "nothing sent"
and so sends every user and account in the filters again (e.g. after restoring the table).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from segment_connector import config
from segment_connector.delivery import ClientPool, DeadLetters, Entry, deliver
from segment_connector.errors import SettingsInvalid
from segment_connector.invoker import FunctionInvoker
from segment_connector.models.items import Account, UserProfile
from segment_connector.models.messages import format_time
from segment_connector.models.settings import ConnectorSettings
from segment_connector.resync_plan import PagePlanner, same_view
from segment_connector.storage import ProfileStore

log = logging.getLogger(__name__)

DEFAULT_SEGMENTS = 16
PAGE_SIZE = 500  # profiles per scan page (a page is at most 1 MB anyway)
TIME_MARGIN = 60.0  # seconds left when a work invocation hands over to the next one
MAX_STEP_ATTEMPTS = 3
NOTHING_SENT = ConnectorSettings(synchronized_account_segments=[])  # filters empty: nobody was sent
COUNTERS = ("evaluated", "changed", "sent", "failed")
PUBLIC_FIELDS = (
    "id",
    "status",
    "reason",
    "started_at",
    "updated_at",
    "finished_at",
    "segments",
    "segments_done",
    *COUNTERS,
    "error",
)


@dataclass
class Result:
    response: dict[str, Any]
    metrics: dict[str, int] = field(default_factory=dict)


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
    now = now or datetime.now(UTC)
    function = getattr(context, "function_name", None) or os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    action = event.get("action") if isinstance(event, Mapping) else None
    if is_settings_change(event):
        return start(store, invoker, function, "settings changed", full=False, now=now)
    if action == "start":
        return start(store, invoker, function, str(event.get("reason") or "manual"), full=True, now=now)
    if action == "status":
        return Result(public(store.resync_job()))
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


def public(job: Mapping[str, Any] | None) -> dict[str, Any]:
    """The job as the CLI and the console show it."""
    if job is None:
        return {"status": "none"}
    return {name: job.get(name) for name in PUBLIC_FIELDS if name in job}


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
    current = store.resync_job()
    unfinished = current is not None and current["status"] in ("running", "failed")
    if (
        current is not None
        and unfinished
        and not full
        and current["target"] == target
        and current["status"] == "running"
    ):
        return Result(public(current))  # the same change announced twice
    if full:
        base, layers = NOTHING_SENT.model_dump_json(), []
    elif current is not None and unfinished:
        base = current["base"]
        layers = [
            {"settings": current["target"], "segments": current["segments"], "progress": current["progress"]},
            *json.loads(current.get("layers") or "[]"),
        ]
    else:
        base, layers = _synchronized_settings(current), []
    at = format_time(now)
    job: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "reason": reason,
        "target": target,
        "base": base,
        "layers": json.dumps(layers),
        "segments": segments(),
        "segments_done": 0,
        **dict.fromkeys(COUNTERS, 0),
        "started_at": at,
        "updated_at": at,
    }
    if not layers and same_view(config.parse_settings(base), target_settings):
        job.update(status="done", finished_at=at, base=target, segments_done=job["segments"])  # nothing to send
    else:
        job.update(status="running", progress={str(n): _fresh_progress() for n in range(job["segments"])})
    if not store.put_resync_job(job, current["id"] if current else None):
        return Result(public(store.resync_job()))  # another start won the race: it does the work
    if job["status"] == "running":
        for segment in range(job["segments"]):
            invoker.invoke_async(function, {"action": "work", "resync_id": job["id"], "segment": segment})
        log.info("resync %s started (%s): %d segments", job["id"], reason, job["segments"])
    return Result(public(job))


def _synchronized_settings(current: Mapping[str, Any] | None) -> str:
    """What Segment got everything with: the last finished job's target; before any job, the
    settings version before this change (parameter history), else the template's defaults."""
    if current is not None:
        synchronized: str = current["target"] if current["status"] == "done" else current["base"]
        return synchronized
    return config.previous_settings_document() or ConnectorSettings().model_dump_json()


def _fresh_progress() -> dict[str, Any]:
    return {"resume": "", "covered": "", "done": False, "passed": [], "attempts": 0}


# -- working one segment --------------------------------------------------------------------------


class Coverage:
    """Which settings a profile of one segment was last synchronized with.

    A layer (an unfinished earlier job) covers the profiles its scan of this segment reached:
    all of them when it finished the segment, else those up to its last profile (`covered`).
    Scans of one segment with the same number of segments return profiles in the same order, so
    a layer stops covering once that profile has been passed. The newest covering layer wins.
    """

    def __init__(
        self, base: ConnectorSettings, layers: list[tuple[ConnectorSettings, dict[str, Any]]], passed: list[int]
    ):
        self.base = base
        self.layers = layers
        self.passed = set(passed)

    def before(self, item: UserProfile | Account) -> ConnectorSettings:
        chosen = None
        key = _key_text(item.pk, item.sk)
        for index, (settings, progress) in enumerate(self.layers):
            covers = progress.get("done") or (progress.get("covered") and index not in self.passed)
            if covers and chosen is None:
                chosen = settings
            if progress.get("covered") == key:
                self.passed.add(index)
        return chosen or self.base


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

    def run(self, resync_id: str, segment: int) -> Result:
        job = self.store.resync_job()
        if job is None or job["id"] != resync_id or job["status"] != "running":
            return Result({"resync_id": resync_id, "segment": segment, "stopped": "superseded or ended"})
        progress = job["progress"][str(segment)]
        if progress.get("done"):
            return Result({"resync_id": resync_id, "segment": segment, "stopped": "segment done"})
        try:
            return self._work(job, segment, progress)
        except Exception as error:  # noqa: BLE001 - record it, retry a few times, then fail the job
            return self._failed(job, segment, progress, error)

    def _work(self, job: dict[str, Any], segment: int, progress: dict[str, Any]) -> Result:
        target = config.parse_settings(job["target"])
        layers = [
            (config.parse_settings(layer["settings"]), layer["progress"].get(str(segment), {}))
            for layer in json.loads(job.get("layers") or "[]")
            if layer.get("segments") == job["segments"]
        ]
        coverage = Coverage(config.parse_settings(job["base"]), layers, progress.get("passed", []))
        planner = PagePlanner(self.store, target, job["id"], format_time(self.now))
        write_key = config.get_secret("write-key")
        client = self.clients.client(write_key, config.segment_api_url(target)) if write_key else None
        deadline = self.clients.deadline(self.context)
        start = json.loads(progress["resume"]) if progress.get("resume") else None
        totals = dict.fromkeys(COUNTERS, 0)
        while True:
            items, next_key = self.store.scan_profiles(segment, job["segments"], start, PAGE_SIZE)
            page = planner.plan(items, coverage.before)
            if page.events:  # Entered/Left Segment: sent by the stream like any event
                self.store.put_new_events(page.events)
            sent, failed = self._send(page.entries, client, deadline)
            counters = {"evaluated": page.evaluated, "changed": page.changed, "sent": sent, "failed": failed}
            for name, value in counters.items():
                totals[name] += value
            progress = {
                **progress,
                "resume": json.dumps(next_key) if next_key else "",
                "done": next_key is None,
                "passed": sorted(coverage.passed),
                "attempts": 0,
                "covered": _key_text(items[-1].pk, items[-1].sk) if items else progress.get("covered", ""),
            }
            updated = self.store.record_resync_progress(
                job["id"], segment, progress, counters, next_key is None, format_time(datetime.now(UTC))
            )
            if updated is None:
                log.info("resync %s: superseded; segment %d stops", job["id"], segment)
                return self._result(job["id"], segment, totals, "superseded")
            if next_key is None:
                if updated["segments_done"] >= updated["segments"]:
                    self._finish(updated)
                return self._result(job["id"], segment, totals, "segment done")
            start = next_key
            if self._time_left() < TIME_MARGIN:
                self.invoker.invoke_async(self.function, {"action": "work", "resync_id": job["id"], "segment": segment})
                return self._result(job["id"], segment, totals, "continues")

    def _send(self, entries: list[Entry], client: Any, deadline: float) -> tuple[int, int]:
        """(sent, failed); what cannot be sent is kept as dead letters (segment-connector replay)."""
        if not entries:
            return 0, 0
        if client is None:
            log.warning(
                "resync: no write key (SecureString %s): %d calls not sent",
                config.parameter_name("write-key"),
                len(entries),
            )
            reasons = dict.fromkeys((entry.message_id for entry in entries), "no write key")
        else:
            outcome = deliver(entries, client, deadline)
            reasons = {**outcome.failed, **outcome.rejected}
        DeadLetters(self.store, datetime.now(UTC)).keep(
            [(entry, f"resync: {reasons[entry.message_id]}") for entry in entries if entry.message_id in reasons]
        )
        return len(entries) - len(reasons), len(reasons)

    def _finish(self, job: Mapping[str, Any]) -> None:
        at = format_time(datetime.now(UTC))
        if self.store.end_resync(job["id"], "done", {"finished_at": at, "base": job["target"], "layers": "[]"}):
            log.info("resync %s done: %s", job["id"], {name: job.get(name) for name in COUNTERS})

    def _failed(self, job: dict[str, Any], segment: int, progress: dict[str, Any], error: Exception) -> Result:
        attempts = int(progress.get("attempts", 0)) + 1
        log.warning(
            "resync %s: segment %d failed (attempt %d): %r",
            job["id"],
            segment,
            attempts,
            error,
            extra={"resync_id": job["id"], "segment": segment},
        )
        if attempts < MAX_STEP_ATTEMPTS:
            retry = {**progress, "attempts": attempts}
            if (
                self.store.record_resync_progress(job["id"], segment, retry, {}, False, format_time(datetime.now(UTC)))
                is not None
            ):
                self.invoker.invoke_async(self.function, {"action": "work", "resync_id": job["id"], "segment": segment})
            return Result({"resync_id": job["id"], "segment": segment, "retrying": attempts})
        message = f"segment {segment} failed {attempts} times: {error!r}"[:1000]
        self.store.end_resync(job["id"], "failed", {"error": message, "finished_at": format_time(datetime.now(UTC))})
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


def _key_text(pk: str, sk: str) -> str:
    return f"{pk}\n{sk}"

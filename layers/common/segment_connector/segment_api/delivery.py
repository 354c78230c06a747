"""Delivery of planned Segment calls: per-user order, the retry budget, dead letters and replay.

`outbound.py` turns stream records into `RecordPlan`s; this module sends their messages with one
`SegmentClient` per warm container, decides which records Lambda must retry, keeps what cannot be
delivered as dead letters (replay.py sends them again).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from segment_connector.domain.models.items import StoredEvent
from segment_connector.segment_api.client import HELD_BACK, SegmentClient
from segment_connector.store.profile_store import ProfileStore

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

SAFETY_MARGIN = 10.0  # seconds kept between the delivery deadline and the Lambda's end
DEFAULT_BUDGET = 60.0  # seconds of delivery when there is no Lambda context
DEFAULT_ATTEMPTS = 4
DEFAULT_AGE_SECONDS = 3000
# Seconds one invocation retries Segment's 429/5xx/network errors before it takes Segment as down
# and stops: the stream retries the records (counted: dead letters after the attempts), so that a
# long outage never holds a shard for minutes per batch while the records behind it age out.
RETRY_SECONDS = 20.0


def dead_letter_after_attempts() -> int:
    return _env_int("DEAD_LETTER_AFTER_ATTEMPTS", DEFAULT_ATTEMPTS)


def dead_letter_after_age() -> int:
    return _env_int("DEAD_LETTER_AFTER_AGE_SECONDS", DEFAULT_AGE_SECONDS)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        log.warning("%s is not a whole number; using %d", name, default)
        return default


def _new_session() -> requests.Session:
    import requests  # only when there is something to send: not on every cold start

    return requests.Session()


class ClientPool:
    """The SegmentClient of a warm container: one requests.Session, renewed when key or URL change.

    `sleep`/`clock` go to the client (tests inject fakes so that retries never wait); the
    delivery deadline is computed on the same clock. `client_options` are SegmentClient options
    (e.g. max_batch_messages). Also remembers that a missing write key was reported already.
    """

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        session_factory: Callable[[], requests.Session] | None = None,
        safety_margin: float = SAFETY_MARGIN,
        **client_options: Any,
    ) -> None:
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        self.safety_margin = safety_margin
        self._session_factory = session_factory
        self._options = client_options
        self._client: SegmentClient | None = None
        self._session: requests.Session | None = None
        self._target: tuple[str, str] | None = None
        self.missing_write_key_reported = False

    def client(self, write_key: str, api_url: str) -> SegmentClient:
        if self._client is None or self._target != (write_key, api_url):
            if self._session is not None:
                self._session.close()
            self._session = self._session_factory() if self._session_factory else _new_session()
            self._client = SegmentClient(
                write_key, api_url, session=self._session, sleep=self.sleep, clock=self.clock, **self._options
            )
            self._target = (write_key, api_url)
        return self._client

    def deadline(self, context: Any) -> float:
        """Now + the Lambda's remaining time - a safety margin (at most half of what remains)."""
        remaining = DEFAULT_BUDGET
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            remaining = context.get_remaining_time_in_millis() / 1000
        return self.clock() + max(0.0, remaining - min(self.safety_margin, remaining / 2))


# -- what the planner hands over ------------------------------------------------------------------


@dataclass
class Entry:
    """One Segment call of a record, with the user whose order it must keep."""

    message_id: str
    user: str
    payload: dict[str, Any]
    hold: str | None = None  # set: not sent (the record could not be completed)


@dataclass
class RecordPlan:
    """What one stream record leads to: calls to send and Entered/Left events to record."""

    seq: str
    created: float | None  # ApproximateCreationDateTime, epoch seconds
    raw: dict[str, Any]
    entries: list[Entry] = field(default_factory=list)
    events: list[StoredEvent] = field(default_factory=list)
    error: str | None = None  # the record could not be planned or its events not recorded

    def fail(self, reason: str) -> None:
        self.error = reason
        for entry in self.entries:
            entry.hold = entry.hold or reason


@dataclass
class Outcome:
    delivered: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # transient or held back
    rejected: dict[str, str] = field(default_factory=dict)  # permanent (4xx, too large)
    requests: int = 0


@dataclass
class Settlement:
    failed: dict[str, str] = field(default_factory=dict)  # sequence number -> reason
    dead_lettered: int = 0


# -- sending --------------------------------------------------------------------------------------


def deliver(entries: list[Entry], client: SegmentClient, deadline: float) -> Outcome:
    """Send the entries in order; once a user's message is held or not delivered, that user's
    later messages are held back (not sent) so that Segment never sees them first."""
    outcome = Outcome()
    blocked: set[str] = set()
    sendable: list[Entry] = []
    for entry in entries:
        if entry.hold or entry.user in blocked:
            outcome.failed[entry.message_id] = entry.hold or HELD_BACK
            blocked.add(entry.user)
        else:
            sendable.append(entry)
    if sendable:
        report = client.send(
            [entry.payload for entry in sendable],
            deadline=deadline,
            order={entry.message_id: entry.user for entry in sendable},
            retry_for=RETRY_SECONDS,
        )
        outcome.requests = report.requests
        outcome.delivered.update(report.delivered)
        outcome.rejected.update(report.rejected)
        outcome.failed.update(report.failed)
    return outcome


# -- retry budget and dead letters ----------------------------------------------------------------


def settle(plans: list[RecordPlan], outcome: Outcome, store: ProfileStore, now: datetime) -> Settlement:
    """Decide, per record, between success, failure (Lambda retries it) and dead letters.

    A record whose messages were all delivered (or rejected for good) succeeds; its rejected
    messages become dead letters. A record with a message not delivered fails, unless it failed
    DEAD_LETTER_AFTER_ATTEMPTS times or is older than DEAD_LETTER_AFTER_AGE_SECONDS: then every
    undelivered message is kept as a dead letter and the record succeeds.
    """
    settlement = Settlement()
    letters = DeadLetters(store, now)
    max_attempts, max_age = dead_letter_after_attempts(), dead_letter_after_age()
    for plan in plans:
        failing = [(e, outcome.failed[e.message_id]) for e in plan.entries if e.message_id in outcome.failed]
        rejected = [(e, outcome.rejected[e.message_id]) for e in plan.entries if e.message_id in outcome.rejected]
        try:
            if not plan.error and not failing:
                settlement.dead_lettered += letters.keep(rejected, plan.seq)
                continue
            reason = plan.error or failing[0][1]
            attempts = store.dead_letters.count_attempt(plan.seq)
            age = now.timestamp() - plan.created if plan.created is not None else 0.0
            if attempts < max_attempts and age <= max_age:
                settlement.failed[plan.seq] = reason
                continue
            log.error(
                "outbound: record %s keeps failing (%d attempts, %.0f s old): keeping %d message(s) as dead "
                "letters; last reason: %s",
                plan.seq,
                attempts,
                age,
                len(failing) + len(rejected),
                reason,
                extra={"sequence_number": plan.seq},
            )
            if plan.error:  # kept whole: a replay plans it again, with the settings of that time
                settlement.dead_lettered += letters.keep_record(plan, f"{reason} (after {attempts} attempts)")
            else:
                kept = [(entry, f"{why} (after {attempts} attempts)") for entry, why in failing] + rejected
                settlement.dead_lettered += letters.keep(kept, plan.seq)
        except Exception as error:  # noqa: BLE001 - the store failed: let Lambda retry the record
            log.warning(
                "outbound: could not settle record %s: %r", plan.seq, error, extra={"sequence_number": plan.seq}
            )
            settlement.failed[plan.seq] = f"could not settle the record: {error!r}"
    return settlement


class DeadLetters:
    """Dead letters written by one invocation, in planning order (sk = `<time>#<counter>#<messageId>`:
    the time in the one format, milliseconds and `Z`, then a counter that keeps the order)."""

    def __init__(self, store: ProfileStore, now: datetime) -> None:
        self.store = store
        self.now = now.astimezone(UTC)
        self.count = 0

    def _at(self) -> str:
        self.count += 1
        # models.messages.format_time's format (that module is not imported by outbound)
        return f"{self.now.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}#{self.count:06d}"

    def keep(self, entries: list[tuple[Entry, str]], sequence_number: str | None = None) -> int:
        """Keep each (entry, reason); `sequence_number`: the stream record they came from, if any."""
        ids = {"sequence_number": sequence_number} if sequence_number else {}
        for entry, reason in entries:
            self.store.dead_letters.put(entry.message_id, entry.payload, reason, self._at())
            log.warning(
                "message %s kept as a dead letter: %s",
                entry.message_id,
                reason,
                extra={"message_id": entry.message_id, **ids},
            )
        return len(entries)

    def keep_record(self, plan: RecordPlan, reason: str) -> int:
        """A record that could not be planned (invalid settings, a failed read, its events not
        recorded): kept with what planning it needs, the stream record's keys and images; a replay
        plans it then, with the settings of that time."""
        self.store.dead_letters.put(
            record_letter_id(plan.seq), {STREAM_RECORD: kept_record(plan.raw)}, reason, self._at()
        )
        log.warning(
            "record %s kept whole as a dead letter (replay plans it again): %s",
            plan.seq,
            reason,
            extra={"sequence_number": plan.seq},
        )
        return 1


STREAM_RECORD = "stream_record"
STREAM_FIELDS = ("Keys", "NewImage", "OldImage", "SequenceNumber", "ApproximateCreationDateTime")


def record_letter_id(sequence_number: str) -> str:
    return f"record-{sequence_number}"


def kept_record(raw: dict[str, Any]) -> dict[str, Any]:
    """What planning a stream record reads: its event name, keys, images, sequence number and time."""
    dynamodb: dict[str, Any] = raw["dynamodb"] if isinstance(raw.get("dynamodb"), dict) else {}
    return {
        "eventName": raw.get("eventName"),
        "dynamodb": {key: dynamodb[key] for key in STREAM_FIELDS if key in dynamodb},
    }


def bare_plan(raw: dict[str, Any], reason: str) -> RecordPlan:
    """A record that could not be planned at all (the settings or the batch's reads failed)."""
    dynamodb: dict[str, Any] = raw["dynamodb"] if isinstance(raw.get("dynamodb"), dict) else {}
    created = dynamodb.get("ApproximateCreationDateTime")
    plan = RecordPlan(
        seq=str(dynamodb.get("SequenceNumber", "")), created=float(created) if created is not None else None, raw=raw
    )
    plan.fail(reason)
    return plan

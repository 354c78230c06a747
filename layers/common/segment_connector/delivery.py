"""Delivery of planned Segment calls: per-user order, the retry budget, dead letters and replay.

`outbound.py` turns stream records into `RecordPlan`s; this module sends their messages with one
`SegmentClient` per warm container, decides which records Lambda must retry, keeps what cannot be
delivered as dead letters, and sends dead letters again on request (replay).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from segment_connector.models.items import StoredEvent
from segment_connector.segment_client import HELD_BACK, SegmentClient
from segment_connector.storage import ProfileStore

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

SAFETY_MARGIN = 10.0  # seconds kept between the delivery deadline and the Lambda's end
DEFAULT_BUDGET = 60.0  # seconds of delivery when there is no Lambda context
DEFAULT_ATTEMPTS = 4
DEFAULT_AGE_SECONDS = 3000


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
            attempts = store.count_attempt(plan.seq)
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
            kept = [(entry, f"{why} (after {attempts} attempts)") for entry, why in failing] + rejected
            settlement.dead_lettered += letters.keep(kept, plan.seq)
            if plan.error:
                settlement.dead_lettered += letters.keep_record(plan, reason)
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
            self.store.put_dead_letter(entry.message_id, entry.payload, reason, self._at())
            log.warning(
                "message %s kept as a dead letter: %s",
                entry.message_id,
                reason,
                extra={"message_id": entry.message_id, **ids},
            )
        return len(entries)

    def keep_record(self, plan: RecordPlan, reason: str) -> int:
        """A record that could not be turned into calls: kept whole for the operator (not replayable)."""
        self.store.put_dead_letter(f"record-{plan.seq}", {"stream_record": plan.raw}, reason, self._at())
        return 1


# -- replay ---------------------------------------------------------------------------------------


def replay(
    store: ProfileStore, client: SegmentClient | None, deadline: float, limit: int | None = None
) -> dict[str, Any]:
    """Send the dead letters again (all, or the `limit` oldest) with their messageIds; delete the
    delivered ones, keep the others with their new reason. Without a client (no write key) nothing
    is sent and all are kept.

    The result counts `replayed` and `failed` letters (of those tried) and `remaining` (the dead
    letters still kept), and lists each letter tried, oldest first, in `letters`:
    `{"message_id", "outcome": "replayed"|"failed", "reason"}` (reason None when replayed).
    """
    letters = store.all_dead_letters() if limit is None else store.oldest_dead_letters(limit)
    sendable = [letter for letter in letters if _is_message(letter.get("payload"))]
    delivered: set[str] = set()
    reasons: dict[str, str] = {}
    if client is not None and sendable:
        report = client.send([letter["payload"] for letter in sendable], deadline=deadline)
        delivered = set(report.delivered)
        reasons = {**report.failed, **report.rejected}
    replayed = 0
    outcomes: list[dict[str, Any]] = []
    for letter in letters:
        if not _is_message(letter.get("payload")):
            reason = f"not replayable (a stream record kept whole for the operator): {letter.get('reason')}"
        elif client is None:
            reason = "no write key: not sent"
        else:
            message_id = letter["payload"]["messageId"]
            if message_id in delivered:
                store.delete_dead_letter(letter["sk"])
                replayed += 1
                outcomes.append({"message_id": letter["message_id"], "outcome": "replayed", "reason": None})
                continue
            if message_id in reasons:
                reason = f"replay: {reasons[message_id]}"
                store.put_dead_letter(letter["message_id"], letter["payload"], reason, _letter_time(letter))
            else:
                reason = "not sent: the replay ran out of time"
        outcomes.append({"message_id": letter["message_id"], "outcome": "failed", "reason": reason})
    failed = len(letters) - replayed
    everything_read = limit is None or len(letters) < limit
    remaining = failed if everything_read else store.count_dead_letters()
    return {"replayed": replayed, "failed": failed, "remaining": remaining, "letters": outcomes}


def _is_message(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("messageId"), str) and "type" in payload


def _letter_time(letter: dict[str, Any]) -> str:
    """The `<time>` part of sk `<time>#<messageId>`: rewriting there keeps the letter's place."""
    sk: str = letter["sk"]
    message_id: str = letter["message_id"]
    suffix = f"#{message_id}"
    return sk[: -len(suffix)] if sk.endswith(suffix) else sk.partition("#")[0]

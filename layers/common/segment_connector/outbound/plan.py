"""Outbound: DynamoDB stream records -> Segment calls (filter, whitelists, change detection).

`handle()` is the one entry point of OutboundFunction. A stream batch is processed in three
steps: plan every record (reads shared by the whole batch: one profiles_at, one accounts read),
record the Entered/Left Segment events, then deliver (delivery.py) and report the records that
Lambda must retry (ReportBatchItemFailures). `{"action": "replay"}` starts a replay of the dead
letters, `{"action": "replay_work"}` works it (replay.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from segment_connector.domain.errors import SettingsInvalid
from segment_connector.domain.models.items import Account, StoredEvent, UserProfile
from segment_connector.domain.models.outbound import (
    GroupCall,
    IdentifyCall,
    OutboundContext,
    Page,
    PageCall,
    ScreenCall,
    TrackCall,
)
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.domain.outbound_view import (
    Rules,
    message_id,
    segment_events,
    send_ids,
)
from segment_connector.outbound import deletion, replay
from segment_connector.runtime import config
from segment_connector.segment_api.delivery import ClientPool, Entry, Outcome, RecordPlan, bare_plan, deliver, settle
from segment_connector.store import segment_history
from segment_connector.store.identities import profiles_at
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.segment_history import Announced
from segment_connector.store.table import deserialize

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

log = logging.getLogger(__name__)

CONTEXT_KEYS = ("ip", "userAgent", "locale", "timezone")
PAGE_KEYS = ("url", "referrer", "path", "title", "search")


class RecordFailed(Exception):
    """Raised for a record that Lambda must deliver again (reported in batchItemFailures)."""


@dataclass
class Result:
    response: dict[str, Any]
    metrics: dict[str, int]


def handle(event: Any, context: Any, store: ProfileStore, clients: ClientPool, now: datetime | None = None) -> Result:
    """OutboundFunction: a DynamoDB stream batch, or {"action": "replay"}."""
    now = now or datetime.now(UTC)
    if isinstance(event, Mapping) and event.get("action") == "replay":
        return Result(replay.start(store, context, _replay_limit(event.get("limit"))), {})
    if isinstance(event, Mapping) and event.get("action") == "replay_work":
        answer, replayed = replay.work(event, context, store, clients)
        return Result(answer, {"DeadLettersReplayed": replayed} if replayed else {})
    records = list(event.get("Records") or []) if isinstance(event, Mapping) else []
    # GDPR deletions in progress: one step each, nothing sent to Segment for them (deletion.py)
    records, tombstones = deletion.split(records)
    if tombstones:
        failed_steps, steps = deletion.work(tombstones, context, store)
        if not records:
            return Result(_respond(event, context, failed_steps), {"DeletionSteps": steps} if steps else {})
    if not records:
        return Result({"batchItemFailures": []}, {})
    metrics: Counter[str] = Counter(RecordsProcessed=len(records))
    try:
        settings = config.load_settings()
    except SettingsInvalid as error:
        log.error(
            "outbound: %s; the %d records are retried, then kept whole as dead letters (a replay sends them "
            "once the settings are fixed): %s",
            error.message,
            len(records),
            error.details,
        )
        failed = _unplanned(records, f"settings invalid: {error.message}", store, now, metrics)
    else:
        failed = _process(records, settings, store, clients, context, now, metrics)
    if tombstones:
        failed |= failed_steps
        metrics["DeletionSteps"] += steps
    metrics["RecordsFailed"] += len(failed)
    return Result(_respond(event, context, failed), {name: value for name, value in metrics.items() if value})


def _process(
    records: list[dict[str, Any]],
    settings: ConnectorSettings,
    store: ProfileStore,
    clients: ClientPool,
    context: Any,
    now: datetime,
    metrics: Counter[str],
) -> dict[str, str]:
    try:
        write_key = config.get_secret("write-key")
        planner = Planner(settings, store)
        plans = planner.plan(records)
    except Exception as error:
        log.exception(
            "outbound: the batch could not be planned; the %d records are retried, then kept whole as dead letters",
            len(records),
        )
        return _unplanned(records, f"batch not planned: {error!r}", store, now, metrics)
    metrics["SegmentEventsRecorded"] += _announce_segments(store, planner, plans)
    entries = [entry for plan in plans for entry in plan.entries]
    outcome = Outcome()
    if entries and not write_key:
        if not clients.missing_write_key_reported:
            clients.missing_write_key_reported = True
            log.warning(
                "outbound: no write key (SecureString %s): nothing is sent to Segment",
                config.parameter_name("write-key"),
            )
    elif entries and write_key:  # (entries without a write key: the branch above)
        client = clients.client(write_key, config.segment_api_url(settings))
        outcome = deliver(entries, client, clients.deadline(context))
    settlement = settle(plans, outcome, store, now)
    metrics["MessagesSent"] += len(outcome.delivered)
    metrics["MessagesDeadLettered"] += settlement.dead_lettered
    if settlement.failed:
        first, reason = next(iter(settlement.failed.items()))
        log.warning(
            "outbound: %d of %d records failed and will be retried; first reason: %s",
            len(settlement.failed),
            len(records),
            reason,
            extra={"sequence_number": first},
        )
    return settlement.failed


def _unplanned(
    records: list[dict[str, Any]], reason: str, store: ProfileStore, now: datetime, metrics: Counter[str]
) -> dict[str, str]:
    """Records that could not be planned: each attempt is counted and, past the attempts or the
    age, the record is kept whole as a dead letter (its images), before the stream gives up on it."""
    settlement = settle([bare_plan(record, reason) for record in records], Outcome(), store, now)
    metrics["MessagesDeadLettered"] += settlement.dead_lettered
    return settlement.failed


def _announce_segments(store: ProfileStore, planner: Planner, plans: list[RecordPlan]) -> int:
    """Claim the people's new segment histories, then store their Entered/Left events (segment_history);
    how many events were stored. Not for a person one of whose records failed (its retry plans again
    from the recorded history). A claim lost to another writer (a resync page, another shard) fails
    its records: their retry plans again from the winner's history, whose events are the only ones."""
    failed = {plan.seq for plan in plans if plan.error}
    claimed: list[tuple[Announced, set[str]]] = []
    for group in planner.claims():
        states = [planner.history_writes[uid][0] for uid in group]
        seqs = {seq for uid in group for seq in planner.history_writes[uid][1]}
        if seqs & failed:
            continue
        try:
            written = segment_history.claim(store, states)
        except Exception as error:  # noqa: BLE001 - the records are retried: their events' ids are stable
            written, reason = None, f"could not record the segment history: {error!r}"
        else:
            reason = "the segment history changed meanwhile: planned again"
        if written is None:
            log.warning("outbound: %s (person %s)", reason, group[0])
            failed |= _fail(plans, seqs, reason)
            continue
        claimed += [(state, seqs) for state in written]
    found = [h for uid, h in planner.found.items() if h.pending and uid not in planner.history_writes]
    return _complete(store, plans, claimed + [(history, set()) for history in found])


def _complete(store: ProfileStore, plans: list[RecordPlan], claimed: list[tuple[Announced, set[str]]]) -> int:
    """Store the claimed (or found pending) events; a failure fails the records (a retry stores them)."""
    try:
        return segment_history.complete(store, [history for history, _ in claimed])
    except Exception as error:  # noqa: BLE001 - the claims keep them pending: the retries store them
        log.warning("outbound: could not record Entered/Left Segment events: %r", error)
        _fail(
            plans,
            {seq for _, seqs in claimed for seq in seqs},
            f"could not record Entered/Left Segment events: {error!r}",
        )
        return 0


def _fail(plans: list[RecordPlan], seqs: set[str], reason: str) -> set[str]:
    for plan in plans:
        if plan.seq in seqs and not plan.error:
            plan.fail(reason)
    return seqs


def _respond(event: Mapping[str, Any], context: Any, failed: dict[str, str]) -> dict[str, Any]:
    # Imported by the first stream batch, not at a cold start: the batch utility imports
    # Powertools' parser models (DynamoDB, Kinesis, SQS records: pydantic models built at import,
    # about half of what OutboundFunction imports beyond the floor), which a replay never uses.
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)

    def record_handler(record: DynamoDBRecord) -> None:
        reason = failed.get((record.dynamodb.sequence_number if record.dynamodb else None) or "")
        if reason:
            raise RecordFailed(reason)

    return dict(
        process_partial_response(event=dict(event), record_handler=record_handler, processor=processor, context=context)
    )


def _replay_limit(value: Any) -> int | None:
    """`{"action": "replay", "limit": N}`: only the N oldest dead letters (absent or null: all)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"replay: limit must be a whole number of at least 1, got {value!r}")
    return value


def _sequence_number(record: Any) -> str:
    dynamodb = record.get("dynamodb") if isinstance(record, Mapping) else None
    return str((dynamodb or {}).get("SequenceNumber", ""))


# -- planning -------------------------------------------------------------------------------------


@dataclass
class _Change:
    """A stream record with its images read into items."""

    plan: RecordPlan
    pk: str
    kind: str
    event_name: str
    new: UserProfile | Account | StoredEvent | None = None
    old: UserProfile | Account | None = None

    @property
    def seq(self) -> str:
        return self.plan.seq


def _parse(raw: dict[str, Any]) -> _Change:
    dynamodb = raw.get("dynamodb") or {}
    created = dynamodb.get("ApproximateCreationDateTime")
    plan = RecordPlan(seq=_sequence_number(raw), created=float(created) if created is not None else None, raw=raw)
    new_image = deserialize(dynamodb["NewImage"]) if dynamodb.get("NewImage") else {}
    old_image = deserialize(dynamodb["OldImage"]) if dynamodb.get("OldImage") else {}
    kind = str(new_image.get("kind", ""))
    change = _Change(plan, str(new_image.get("pk", "")), kind, str(raw.get("eventName", "")))
    if kind == "user":
        change.new = UserProfile.model_validate(new_image)
        change.old = UserProfile.model_validate(old_image) if old_image.get("kind") == "user" else None
    elif kind == "account":
        change.new = Account.model_validate(new_image)
        change.old = Account.model_validate(old_image) if old_image.get("kind") == "account" else None
    elif kind == "event" and change.event_name == "INSERT":
        change.new = StoredEvent.model_validate(new_image)
    return change


class Planner:
    """Turns one batch of stream records into RecordPlans (reads shared by the whole batch)."""

    def __init__(self, settings: ConnectorSettings, store: ProfileStore):
        self.settings = settings
        self.store = store
        self.rules = Rules(settings)
        self.profiles: dict[str, UserProfile | None] = {}
        self.accounts: dict[str, Account] = {}
        self.account_users: dict[str, list[str]] = {}
        self.linked: set[tuple[str, str]] = set()  # (profile uid, group id) linked by a user record here
        self.histories: dict[str, Announced] = {}  # by uid: what each person was last told (segment_history)
        self.history_writes: dict[str, tuple[Announced, set[str]]] = {}  # by uid: (to record, its records)
        self.found: dict[str, Announced] = {}  # the histories as read
        self.absorbed: dict[str, list[str]] = {}  # by survivor uid: the uids it united (claimed with it)

    def plan(self, records: list[dict[str, Any]]) -> list[RecordPlan]:
        changes: list[_Change] = []
        plans: list[RecordPlan] = []
        for raw in records:
            try:
                change = _parse(raw)
            except Exception as error:
                seq = _sequence_number(raw)
                log.exception("outbound: record %s cannot be read", seq, extra={"sequence_number": seq})
                plan = RecordPlan(seq=seq, created=None, raw=raw)
                plan.fail(f"record cannot be read: {error!r}")
                plans.append(plan)
                continue
            changes.append(change)
            plans.append(change.plan)
        self._read(changes)
        for change in changes:
            try:
                if isinstance(change.new, UserProfile):
                    self._plan_user(change)
                elif isinstance(change.new, Account):
                    self._plan_account(change)
                elif isinstance(change.new, StoredEvent):
                    self._plan_event(change)
            except Exception as error:
                log.exception(
                    "outbound: record %s cannot be planned", change.seq, extra={"sequence_number": change.seq}
                )
                change.plan.fail(f"record cannot be planned: {error!r}")
        return plans

    # -- the batch's reads ------------------------------------------------------------------------

    def _read(self, changes: list[_Change]) -> None:
        """One users_of_account per changed account, one profiles_at, one accounts read."""
        images = self._account_images(changes)
        self._read_account_users(changes)
        self._read_profiles(changes)
        missing = self._accounts_needed(changes) - images.keys()
        self.accounts = {**(self.store.profiles.accounts(sorted(missing)) if missing else {}), **images}
        self._read_histories(changes)

    def _read_histories(self, changes: list[_Change]) -> None:
        """The segment history of every person whose segments this batch may change (one BatchGet)."""
        uids = [uid for change in changes if isinstance(change.new, UserProfile) for uid in _people(change)]
        uids += [
            user.uid
            for pk in dict.fromkeys(p for users in self.account_users.values() for p in users)
            if (user := self.profiles.get(pk)) is not None
        ]
        if uids:
            self.found = segment_history.read(self.store, uids)
            self.histories = dict(self.found)

    def _account_images(self, changes: list[_Change]) -> dict[str, Account]:
        """The batch's account images (the latest one wins); notes the users that link to an account."""
        images: dict[str, Account] = {}
        for change in changes:
            if isinstance(change.new, Account):
                images[change.new.group_id] = change.new  # the latest image in the batch wins
            elif isinstance(change.new, UserProfile) and change.new.account_id and self._links(change):
                self.linked.add((change.new.uid, change.new.account_id))
        return images

    def _read_account_users(self, changes: list[_Change]) -> None:
        """The users of each changed account whose change may concern them (one query per account)."""
        for change in changes:
            if isinstance(change.new, Account) and any(self._account_work(change)):
                gid = change.new.group_id
                if gid not in self.account_users:
                    self.account_users[gid] = self.store.profiles.users_of_account(gid)

    def _read_profiles(self, changes: list[_Change]) -> None:
        """The profiles of the events' users and of the changed accounts' users (one profiles_at)."""
        pks = [c.new.pk for c in changes if isinstance(c.new, StoredEvent)]
        pks += [pk for users in self.account_users.values() for pk in users]
        if pks:
            self.profiles = profiles_at(self.store, list(dict.fromkeys(pks)))

    def _accounts_needed(self, changes: list[_Change]) -> set[str]:
        """Accounts whose traits the plan reads: the changed users' (old and new) and, when segments
        use account traits, those of every profile read."""
        needed: set[str] = set()
        if self.settings.handle_accounts or self.rules.uses_account_traits:
            for change in changes:
                if isinstance(change.new, UserProfile):
                    needed.update(
                        p.account_id for p in (change.new, change.old) if isinstance(p, UserProfile) and p.account_id
                    )
        if self.rules.uses_account_traits:
            needed.update(p.account_id for p in self.profiles.values() if p and p.account_id)
        return needed

    def _links(self, change: _Change) -> bool:
        """Whether a user record links its user to a(nother) account."""
        new, old = change.new, change.old
        assert isinstance(new, UserProfile)
        if old is None:
            return not _moved(change)
        assert isinstance(old, UserProfile)
        return old.account_id != new.account_id

    def _account_work(self, change: _Change) -> tuple[bool, bool]:
        """(group traits changed, user segments may change) for an account record."""
        new, old = change.new, change.old
        if old is None:  # INSERT: the users linked with it send their group call themselves
            return False, False
        assert isinstance(new, Account) and isinstance(old, Account)
        group_changed = self.rules.account_in_filter(new) and (
            not self.rules.account_in_filter(old) or self.rules.group_traits(old) != self.rules.group_traits(new)
        )
        segments_may_change = self.rules.uses_account_traits and old.traits != new.traits
        return group_changed, segments_may_change

    def _account(self, group_id: str | None) -> Account | None:
        return self.accounts.get(group_id) if group_id else None

    # -- users ------------------------------------------------------------------------------------

    def _plan_user(self, change: _Change) -> None:
        new, old = change.new, change.old
        assert isinstance(new, UserProfile)
        moved = _moved(change)
        new_segments = self.rules.user_segments(new, self._account(new.account_id))
        if moved:
            old_segments = new_segments  # its old item is now an alias: no image of it here
        elif old is None:
            old_segments = []
        else:
            assert isinstance(old, UserProfile)
            old_segments = self.rules.user_segments(old, self._account(old.account_id))
        # a moved profile's previous state is its own history: none recorded means nothing was told
        # (its first records may still be in another shard), so it is diffed from nothing
        fallback = [] if moved else old_segments
        self._segment_change(change, new, new.updated_at, fallback, new_segments, _people(change)[1:], moved, "")
        is_in = self.rules.in_filter(new_segments)
        was_in = is_in if moved else old is not None and self.rules.in_filter(old_segments)
        if not any(send_ids(new)):
            return
        if is_in or was_in:
            traits = self.rules.identify_traits(new, new_segments)
            unchanged = (
                not moved
                and is_in
                and was_in
                and isinstance(old, UserProfile)
                and (send_ids(old), self.rules.identify_traits(old, old_segments)) == (send_ids(new), traits)
            )
            if not unchanged:
                self._identify(change, new, traits, new.updated_at, "identify")
        if (
            is_in
            and new.account_id
            and (self._links(change) or not was_in)
            and self.rules.account_in_filter(self._account(new.account_id))
        ):
            self._group(change, new, new.account_id, new.updated_at, "group")

    def _segment_change(
        self,
        change: _Change,
        user: UserProfile,
        at: str,
        fallback: list[str],
        segments: list[str],
        merged: list[str],
        moved: bool,
        scope: str,
    ) -> None:
        """The Entered/Left events of the person's change: `segments` against what it was last told
        (none for a stale record, superseded by a newer change already announced); notes the
        history to claim with them (segment_history: the events are stored once it is claimed).

        Without a recorded history (profiles from before it was kept) `fallback`, the previous
        image's segments, stands for it. The profiles merged into it (`merged` uids) are united
        in once, and marked as merged into it.
        """
        own = self.histories.get(user.uid)
        if own is not None and own.stale(at):
            return
        uniting = [uid for uid in merged if uid != user.uid and _unmerged(self.histories.get(uid), user.uid)]
        told = segment_history.prior(own, fallback, [self.histories.get(uid) for uid in uniting], user.uid)
        events = segment_events(user, at, change.pk, change.seq, scope, told, segments)
        change.plan.events += events
        if own is None:
            state = segment_history.start(user.uid, segments, at, events)
        else:
            state = own.then(segments, max(at, own.at), events)
        self.histories[user.uid] = state
        # a move or a merge is recorded always: late records of the pk it left are older than it
        if own is None or moved or uniting or events or not own.same(segments):
            self._note(change.seq, state)
        for uid in uniting:
            other = self.histories.get(uid)
            mark = (
                other.then(other.segments, other.at, [], merged_into=user.uid)
                if other
                else Announced(uid, [], at, merged_into=user.uid)
            )
            self.histories[uid] = mark
            self._note(change.seq, mark)
            self.absorbed.setdefault(user.uid, []).append(uid)

    def claims(self) -> list[list[str]]:
        """The uids whose histories are claimed together: a person, then the profiles it absorbed
        (all or none: a survivor's united history never stands without their marks)."""
        marks = {uid for uids in self.absorbed.values() for uid in uids}
        seen: set[str] = set()
        groups = []
        for root in [uid for uid in self.history_writes if uid not in marks] + list(self.history_writes):
            group, todo = [], [root]
            while todo:
                uid = todo.pop(0)
                if uid in seen or uid not in self.history_writes:
                    continue
                seen.add(uid)
                group.append(uid)
                todo += self.absorbed.get(uid, [])
            groups += [group] if group else []
        return groups

    def _note(self, seq: str, state: Announced) -> None:
        _, seqs = self.history_writes.get(state.uid, (state, set()))
        self.history_writes[state.uid] = (state, seqs | {seq})

    def _identify(self, change: _Change, user: UserProfile, traits: dict[str, Any], at: str, purpose: str) -> None:
        user_id, anonymous_id = send_ids(user)
        call = IdentifyCall(
            message_id=message_id(change.pk, change.seq, purpose),
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=at,
            traits=traits,
        )
        change.plan.entries.append(Entry(call.message_id, user.uid, call.payload()))

    def _group(self, change: _Change, user: UserProfile, group_id: str, at: str, purpose: str) -> None:
        user_id, anonymous_id = send_ids(user)
        call = GroupCall(
            message_id=message_id(change.pk, change.seq, purpose),
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=at,
            group_id=group_id,
            traits=self.rules.group_traits(self._account(group_id)),
        )
        change.plan.entries.append(Entry(call.message_id, user.uid, call.payload()))

    # -- accounts ---------------------------------------------------------------------------------

    def _plan_account(self, change: _Change) -> None:
        group_changed, segments_may_change = self._account_work(change)
        if not (group_changed or segments_may_change):
            return
        new, old = change.new, change.old
        assert isinstance(new, Account) and isinstance(old, Account)
        for pk in self.account_users.get(new.group_id, []):
            user = self.profiles.get(pk)
            if user is None or user.account_id != new.group_id or (user.uid, new.group_id) in self.linked:
                continue
            new_segments = self.rules.user_segments(user, new)
            old_segments = self.rules.user_segments(user, old) if segments_may_change else new_segments
            self._segment_change(change, user, new.updated_at, old_segments, new_segments, [], False, f"{user.uid}:")
            is_in, was_in = self.rules.in_filter(new_segments), self.rules.in_filter(old_segments)
            if not any(send_ids(user)):
                continue
            if (is_in or was_in) and old_segments != new_segments:
                self._identify(
                    change, user, self.rules.identify_traits(user, new_segments), new.updated_at, f"{user.uid}:identify"
                )
            if is_in and (group_changed or not was_in) and self.rules.account_in_filter(new):
                self._group(change, user, new.group_id, new.updated_at, f"{user.uid}:group")

    # -- events -----------------------------------------------------------------------------------

    def _plan_event(self, change: _Change) -> None:
        event = change.new
        assert isinstance(event, StoredEvent)
        if event.source == "segment" and not self.settings.forward_events:
            return
        if not self.settings.sends_event(event.event if event.type == "track" else event.type):
            return
        user = self.profiles.get(event.pk) or UserProfile(
            pk=event.pk,
            uid=event.pk,
            user_id=event.user_id,
            created_at="",
            updated_at="",
            anonymous_ids=[event.anonymous_id] if event.anonymous_id else [],
        )
        if not self.rules.in_filter(self.rules.user_segments(user, self._account(user.account_id))):
            return
        user_id, anonymous_id = send_ids(user)
        common: dict[str, Any] = {
            "message_id": message_id(change.pk, change.seq, "event"),
            "user_id": user_id or event.user_id,
            "anonymous_id": event.anonymous_id or anonymous_id,
            "timestamp": event.timestamp,
            "context": _context(event.context),
            "properties": event.properties,
        }
        if not (common["user_id"] or common["anonymous_id"]):
            return
        if event.type == "track":
            call: TrackCall | PageCall | ScreenCall = TrackCall(event=event.event, **common)
        else:
            name = None if event.event == event.type else event.event  # a page stored without name
            call = (PageCall if event.type == "page" else ScreenCall)(name=name, **common)
        change.plan.entries.append(Entry(call.message_id, user.uid, call.payload()))


def _people(change: _Change) -> list[str]:
    """The uid of a user record's profile, then those of the profiles this change merged into it."""
    new, old = change.new, change.old
    assert isinstance(new, UserProfile)
    before = set(old.merged_uids or []) if isinstance(old, UserProfile) else set()
    return [new.uid] + [uid for uid in new.merged_uids or [] if uid not in before]


def _unmerged(history: Announced | None, survivor: str) -> bool:
    return history is None or history.merged_into != survivor


def _moved(change: _Change) -> bool:
    """A profile re-written at a better key (anonymous -> user_id): new here, but not a new user."""
    return change.old is None and isinstance(change.new, UserProfile) and change.new.version > 1


def _context(stored: dict[str, Any]) -> OutboundContext:
    """The useful part of the event's context (strings only); the library is always ours."""
    picked = {key: stored[key] for key in CONTEXT_KEYS if isinstance(stored.get(key), str)}
    stored_page = stored.get("page")
    page: Mapping[str, Any] = stored_page if isinstance(stored_page, Mapping) else {}
    page_fields = {key: page[key] for key in PAGE_KEYS if isinstance(page.get(key), str)}
    return OutboundContext.model_validate({**picked, **({"page": Page(**page_fields)} if page_fields else {})})

"""What a settings change means for one profile: the calls and events that bring Segment from the
settings it last got the profile with (`before`) to the new ones (`after`).

A user or account is brought up to date exactly as if its own data had just changed, comparing
its outbound view under both settings: users entering the filter get an identify (and their
group call); users whose segments change get an identify and Entered/Left Segment events; users
whose whitelisted traits change get an identify; accounts whose group traits change (or that
enter the account filter) get group calls for their users in the filter. Users and accounts
leaving a filter are simply no longer sent.

Message ids derive from the profile's stable key (its uid, or the account's group id) and the
transition (`tx`: the claiming job's sequence number and both views), never from the worker that
sends them: any worker that (re)sends one transition sends the same ids, which Segment dedups,
and the same Entered/Left event items, which the table stores once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from segment_connector.domain.activity import Activity, Occurrence
from segment_connector.domain.models.items import Account, StoredEvent, UserProfile
from segment_connector.domain.models.outbound import GroupCall, IdentifyCall
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.domain.outbound_view import Rules, message_id, segment_events, send_ids
from segment_connector.domain.times import parse_time
from segment_connector.segment_api.delivery import Entry
from segment_connector.store import segment_history
from segment_connector.store.event_facts import EventFacts, reads_more
from segment_connector.store.identities import profiles_at
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.segment_history import Announced

CLAIM_ATTEMPTS = 5  # a page's claims of one person's segment history lost in a row before it gives up


class Superseded(Exception):
    """A newer job has written a profile of this page (its sync item or its segment history): this
    job's work ends, and the newer job brings the profile to the newest settings."""


# The settings that change what is sent; a change of any other setting needs no resync.
VIEW_FIELDS = (
    "segments",
    "computed_traits",
    "event_retention_days",
    "account_segments",
    "synchronized_segments",
    "synchronized_account_segments",
    "synchronized_properties",
    "synchronized_account_properties",
    "handle_accounts",
)


def same_view(before: ConnectorSettings, after: ConnectorSettings) -> bool:
    return view_of(before) == view_of(after)


def view_of(settings: ConnectorSettings) -> str:
    """The view's id: a hash of the settings' VIEW_FIELDS (settings that send the same have one id)."""
    fields = settings.model_dump(mode="json", include=set(VIEW_FIELDS))
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def sync_key(item: UserProfile | Account) -> str:
    """What a profile's synced view is recorded under: stable when a user moves (anonymous ->
    known keeps its uid) and never reused by another profile (a new profile has a new uid)."""
    return f"user#{item.uid}" if isinstance(item, UserProfile) else f"account#{item.group_id}"


@dataclass(frozen=True)
class Transition:
    """From the settings Segment has a profile with to the settings it gets; `tx` names the
    transition in message ids (the claiming job's sequence number and both views)."""

    before: ConnectorSettings
    after: ConnectorSettings
    tx: str


def transition_id(seq: int, before_view: str, after_view: str) -> str:
    return f"resync-{seq}-{before_view}-{after_view}"


@dataclass
class ItemPlan:
    item: UserProfile | Account
    transition: Transition
    entries: list[Entry] = field(default_factory=list)
    events: list[StoredEvent] = field(default_factory=list)
    history: Announced | None = None  # what the person is told now, claimed before its events are stored
    segments: tuple[list[str], list[str]] = ([], [])  # a user's (before, after), to plan its events again

    @property
    def changed(self) -> bool:
        return bool(self.entries or self.events)


class PagePlanner:
    """Plans a page of profiles, each with its own transition (accounts read once per page)."""

    def __init__(self, store: ProfileStore, now: str, seq: int = 0):
        self.store = store
        self.now = now
        self.seq = seq  # the job's: a segment history a newer job wrote ends this job's work
        self._rules: dict[int, Rules] = {}
        self.histories: dict[str, Announced] = {}

    def announce(self, plans: list[ItemPlan]) -> None:
        """Claim each person's new history, then store the claimed Entered/Left events
        (segment_history). A claim lost to another writer (the live stream, another page) is planned
        again from the history that won; still lost after CLAIM_ATTEMPTS: raised (the page is retried)."""
        todo = [plan for plan in plans if plan.history]
        claimed: list[Announced] = []
        for _ in range(CLAIM_ATTEMPTS):
            if not todo:
                break
            todo = self._claim(todo, claimed)
        if todo:
            raise RuntimeError(f"segment histories of {len(todo)} profiles kept changing: the page is retried")
        done = {history.uid for history in claimed}
        found = [self.histories.get(plan.item.uid) for plan in plans if isinstance(plan.item, UserProfile)]
        segment_history.complete(self.store, claimed + [h for h in found if h and h.pending and h.uid not in done])

    def _claim(self, todo: list[ItemPlan], claimed: list[Announced]) -> list[ItemPlan]:
        """One round of claims (the written states added to `claimed`); the plans of the lost ones,
        planned again from the histories that won (those that still announce something)."""
        lost: list[ItemPlan] = []
        for plan in todo:
            assert plan.history is not None
            written = segment_history.claim(self.store, [plan.history])
            lost += [plan] if written is None else []
            claimed += written or []
        users = [plan.item for plan in lost if isinstance(plan.item, UserProfile)]
        if users:
            self._read_histories([user.uid for user in users])
        for plan, user in zip(lost, users, strict=True):
            plan.events, plan.history = [], None
            self._segment_events(plan, user, *plan.segments)
        return [plan for plan in lost if plan.history]

    def plan(self, work: list[tuple[UserProfile | Account, Transition]]) -> list[ItemPlan]:
        accounts = self._accounts(work)
        uids = [item.uid for item, _ in work if isinstance(item, UserProfile)]
        self.histories = {}
        if uids:
            self._read_histories(uids)
        plans = []
        for item, transition in work:
            plan = ItemPlan(item, transition)
            old, new = self._rules_for(transition.before), self._rules_for(transition.after)
            if isinstance(item, UserProfile):
                self._user(plan, item, old, new, accounts.get(item.account_id or ""))
            else:
                self._account(plan, item, old, new)
            plans.append(plan)
        return plans

    def _read_histories(self, uids: list[str]) -> None:
        """The people's segment histories; Superseded when a newer job wrote one: what this job
        would announce (its settings' segments) must not follow what the newer job announced."""
        found = segment_history.read(self.store, uids)
        if any(history.seq > self.seq for history in found.values()):
            raise Superseded()
        self.histories.update(found)

    def _rules_for(self, settings: ConnectorSettings) -> Rules:
        if id(settings) not in self._rules:
            self._rules[id(settings)] = Rules(settings)
        return self._rules[id(settings)]

    def _accounts(self, work: list[tuple[UserProfile | Account, Transition]]) -> dict[str, Account]:
        """The accounts of this page's users, when a segment or a group call needs them (one read)."""
        needs = any(
            rules.uses_account_traits or rules.settings.handle_accounts
            for _, transition in work
            for rules in (self._rules_for(transition.before), self._rules_for(transition.after))
        )
        items = [item for item, _ in work]
        group_ids = {item.account_id for item in items if isinstance(item, UserProfile) and item.account_id}
        if not (needs and group_ids):
            return {}
        known = {item.group_id: item for item in items if isinstance(item, Account)}
        missing = sorted(group_ids - known.keys())
        return {**(self.store.profiles.accounts(missing) if missing else {}), **known}

    # -- users ------------------------------------------------------------------------------------

    def _user(self, plan: ItemPlan, user: UserProfile, old: Rules, new: Rules, account: Account | None) -> None:
        before, after = self._activities(user, old, new)
        old_segments = old.user_segments(user, account, before)
        new_segments = new.user_segments(user, account, after)
        self._segment_events(plan, user, old_segments, new_segments)
        was_in, is_in = old.in_filter(old_segments), new.in_filter(new_segments)
        if not is_in or not any(send_ids(user)):
            return  # leaving (or never in) the filter: no longer sent
        traits = new.identify_traits(user, new_segments, after)
        if not was_in or traits != old.identify_traits(user, old_segments, before):
            self._identify(plan, user, traits)
        if not was_in and user.account_id and new.account_in_filter(account):
            self._group(plan, user, user.account_id, new.group_traits(account), account, "group")

    def _segment_events(self, plan: ItemPlan, user: UserProfile, old: list[str], new: list[str]) -> None:
        """Entered/Left against what the person was last told (the live stream records it too), else
        against its view under the settings before; none for a profile the stream has seen newer."""
        plan.segments = (old, new)
        own = self.histories.get(user.uid)
        if own is not None and own.stale(user.updated_at):
            return
        told = own.segments if own else old
        plan.events += segment_events(user, self.now, user.uid, plan.transition.tx, "", told, new)
        if own is None and plan.events:
            plan.history = segment_history.start(user.uid, new, user.updated_at, plan.events)
        elif own is not None and (plan.events or not own.same(new)):
            plan.history = own.then(new, max(own.at, user.updated_at), plan.events)
        if plan.history is not None:
            plan.history.seq = max(plan.history.seq, self.seq)

    def _activities(self, user: UserProfile, old: Rules, new: Rules) -> tuple[Activity | None, Activity | None]:
        """The user's events as the settings before and after see them (None: those read no events)."""
        readers = [rules for rules in (old, new) if rules.reads_events]
        if not readers:
            return None, None
        now = parse_time(self.now) or datetime.now(UTC)
        since = min(rules.settings.activity_spec.since(now, rules.settings.event_retention_days) for rules in readers)
        read = self._occurrences(user.activity_partitions(), old, new, now, since)
        before, after = (
            Activity(now, occurrences, rules.settings.event_retention_days) if rules.reads_events else None
            for rules, occurrences in zip((old, new), read, strict=True)
        )
        return before, after

    def _occurrences(
        self, partitions: list[str], old: Rules, new: Rules, now: datetime, since: datetime
    ) -> tuple[list[Occurrence], list[Occurrence]]:
        """From the index; when the settings after read an event name or a property path that those
        before did not, the stored events lack it: they are tagged (store/event_facts.py), and each
        settings sees what it reads of the events' properties as read."""
        specs = (old.settings.activity_spec, new.settings.activity_spec)
        if not (new.reads_events and reads_more(*specs)):
            occurrences = self.store.activity.occurrences(partitions, since)
            return occurrences, occurrences
        kept = min(since, now - timedelta(days=new.settings.event_retention_days))
        before, after = EventFacts(self.store.db).retag(partitions, specs[1], kept, specs, since).occurrences
        return before, after

    # -- accounts ---------------------------------------------------------------------------------

    def _account(self, plan: ItemPlan, account: Account, old: Rules, new: Rules) -> None:
        if not new.account_in_filter(account):
            return
        traits = new.group_traits(account)
        if old.account_in_filter(account) and traits == old.group_traits(account):
            return
        users = profiles_at(self.store, self.store.profiles.users_of_account(account.group_id))
        for user in users.values():
            if user is None or user.account_id != account.group_id or not any(send_ids(user)):
                continue
            # Users entering the filter now send their own group call (see _user).
            before, after = self._activities(user, old, new)
            if new.in_filter(new.user_segments(user, account, after)) and old.in_filter(
                old.user_segments(user, account, before)
            ):
                self._group(plan, user, account.group_id, traits, account, f"{account.group_id}:group")

    # -- calls --------------------------------------------------------------------------------------

    def _identify(self, plan: ItemPlan, user: UserProfile, traits: dict[str, Any]) -> None:
        user_id, anonymous_id = send_ids(user)
        call = IdentifyCall(
            message_id=message_id(user.uid, plan.transition.tx, "identify"),
            user_id=user_id,
            anonymous_id=anonymous_id,
            # the profile's own time: a newer live change of it is never overwritten downstream
            timestamp=user.updated_at or self.now,
            traits=traits,
        )
        plan.entries.append(Entry(call.message_id, user.uid, call.payload()))

    def _group(
        self,
        plan: ItemPlan,
        user: UserProfile,
        group_id: str,
        traits: dict[str, Any],
        account: Account | None,
        purpose: str,
    ) -> None:
        user_id, anonymous_id = send_ids(user)
        call = GroupCall(
            message_id=message_id(user.uid, plan.transition.tx, purpose),
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=(account.updated_at if account else "") or user.updated_at or self.now,
            group_id=group_id,
            traits=traits,
        )
        plan.entries.append(Entry(call.message_id, user.uid, call.payload()))

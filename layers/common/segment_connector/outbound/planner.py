"""Outbound: one batch of stream records -> RecordPlans (the calls each record sends to Segment and
the Entered/Left Segment events it announces). Users' and accounts' changes are planned here;
events in events.py; the batch's shared reads in reads.py; segment histories in announce.py."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from segment_connector.domain.models.items import Account, StoredEvent, UserProfile
from segment_connector.domain.models.outbound import GroupCall, IdentifyCall
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.domain.outbound_view import message_id, send_ids
from segment_connector.outbound.activity import ActivityPlans
from segment_connector.outbound.announce import SegmentHistories
from segment_connector.outbound.events import plan_event
from segment_connector.outbound.reads import BatchReads
from segment_connector.outbound.records import Change, moved, parse, people, sequence_number
from segment_connector.segment_api.delivery import Entry, RecordPlan
from segment_connector.store.due import Due
from segment_connector.store.event_facts import EventFacts
from segment_connector.store.profile_store import ProfileStore

log = logging.getLogger(__name__)


class Planner:
    """Turns one batch of stream records into RecordPlans (reads shared by the whole batch)."""

    def __init__(self, settings: ConnectorSettings, store: ProfileStore, now: datetime | None = None):
        self.reads = BatchReads(settings, store, now)
        self.rules = self.reads.rules
        self.histories = SegmentHistories()
        self.activity = ActivityPlans(self.reads, self.histories, self._identify)

    def plan(self, records: list[dict[str, Any]]) -> list[RecordPlan]:
        changes: list[Change] = []
        plans: list[RecordPlan] = []
        for raw in records:
            try:
                change = parse(raw)
            except Exception as error:
                seq = sequence_number(raw)
                log.exception("outbound: record %s cannot be read", seq, extra={"sequence_number": seq})
                plan = RecordPlan(seq=seq, created=None, raw=raw)
                plan.fail(f"record cannot be read: {error!r}")
                plans.append(plan)
                continue
            changes.append(change)
            plans.append(change.plan)
        self.reads.read(changes)
        self.histories.load(self.reads.found)
        self.activity.find_arrivals()
        for change in changes:
            try:
                if isinstance(change.new, UserProfile):
                    self._plan_user(change)
                elif isinstance(change.new, Account):
                    self._plan_account(change)
                elif isinstance(change.new, StoredEvent):
                    plan_event(self.reads, change)
            except Exception as error:
                log.exception(
                    "outbound: record %s cannot be planned", change.seq, extra={"sequence_number": change.seq}
                )
                change.plan.fail(f"record cannot be planned: {error!r}")
        self.activity.plan_arrivals(changes)
        self.activity.schedule()
        if self.reads.tags:  # so that later evaluations read what the settings of now read
            EventFacts(self.reads.store.db).write_all(self.reads.tags)
        return plans

    def plan_due(self, due: list[Due]) -> list[tuple[RecordPlan, list[Due]]]:
        """A re-evaluation of the users whose windows ended (recompute.py): a plan per user."""
        self.reads.read_users([item.profile_pk for item in due])
        self.histories.load(self.reads.found)
        plans = self.activity.plan_due(due)
        self.activity.schedule()
        return plans

    # -- users ------------------------------------------------------------------------------------

    def _plan_user(self, change: Change) -> None:
        new, old = change.new, change.old
        assert isinstance(new, UserProfile)
        is_moved = moved(change)
        activity = self.reads.activity(new)
        # the user's first record here also takes in the batch's new events (then evaluated once)
        arrived = self.activity.take_arrivals(new.uid)
        before = self.reads.activity(new, without=arrived) if arrived else activity
        new_segments = self.rules.user_segments(new, self.reads.account(new.account_id), activity)
        if is_moved:
            old_segments = new_segments  # its old item is now an alias: no image of it here
        elif old is None:
            old_segments = []
        else:
            assert isinstance(old, UserProfile)
            old_segments = self.rules.user_segments(old, self.reads.account(old.account_id), before)
        self.activity.note_due(new, activity)
        # a moved profile's previous state is its own history: none recorded means nothing was told
        # (its first records may still be in another shard), so it is diffed from nothing
        fallback = [] if is_moved else old_segments
        self.histories.change(change, new, new.updated_at, fallback, new_segments, people(change)[1:], is_moved, "")
        is_in = self.rules.in_filter(new_segments)
        was_in = is_in if is_moved else old is not None and self.rules.in_filter(old_segments)
        if not any(send_ids(new)):
            return
        if is_in or was_in:
            traits = self.rules.identify_traits(new, new_segments, activity)
            unchanged = (
                not is_moved
                and is_in
                and was_in
                and isinstance(old, UserProfile)
                and (send_ids(old), self.rules.identify_traits(old, old_segments, before)) == (send_ids(new), traits)
            )
            if not unchanged:
                self._identify(change, new, traits, new.updated_at, "identify")
        if (
            is_in
            and new.account_id
            and (self.reads.links(change) or not was_in)
            and self.rules.account_in_filter(self.reads.account(new.account_id))
        ):
            self._group(change, new, new.account_id, new.updated_at, "group")

    def _identify(self, change: Change, user: UserProfile, traits: dict[str, Any], at: str, purpose: str) -> None:
        user_id, anonymous_id = send_ids(user)
        call = IdentifyCall(
            message_id=message_id(change.pk, change.seq, purpose),
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=at,
            traits=traits,
        )
        change.plan.entries.append(Entry(call.message_id, user.uid, call.payload()))

    def _group(self, change: Change, user: UserProfile, group_id: str, at: str, purpose: str) -> None:
        user_id, anonymous_id = send_ids(user)
        call = GroupCall(
            message_id=message_id(change.pk, change.seq, purpose),
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=at,
            group_id=group_id,
            traits=self.rules.group_traits(self.reads.account(group_id)),
        )
        change.plan.entries.append(Entry(call.message_id, user.uid, call.payload()))

    # -- accounts ---------------------------------------------------------------------------------

    def _plan_account(self, change: Change) -> None:
        group_changed, segments_may_change = self.reads.account_work(change)
        if not (group_changed or segments_may_change):
            return
        new, old = change.new, change.old
        assert isinstance(new, Account) and isinstance(old, Account)
        for pk in self.reads.account_users.get(new.group_id, []):
            user = self.reads.profiles.get(pk)
            if user is None or user.account_id != new.group_id or (user.uid, new.group_id) in self.reads.linked:
                continue
            activity = self.reads.activity(user)
            new_segments = self.rules.user_segments(user, new, activity)
            old_segments = self.rules.user_segments(user, old, activity) if segments_may_change else new_segments
            self.histories.change(change, user, new.updated_at, old_segments, new_segments, [], False, f"{user.uid}:")
            is_in, was_in = self.rules.in_filter(new_segments), self.rules.in_filter(old_segments)
            if not any(send_ids(user)):
                continue
            if (is_in or was_in) and old_segments != new_segments:
                traits = self.rules.identify_traits(user, new_segments, activity)
                self._identify(change, user, traits, new.updated_at, f"{user.uid}:identify")
            if is_in and (group_changed or not was_in) and self.rules.account_in_filter(new):
                self._group(change, user, new.group_id, new.updated_at, f"{user.uid}:group")

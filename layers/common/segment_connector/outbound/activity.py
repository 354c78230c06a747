"""Outbound, issue 15: what users did and time passing change segments and computed traits.

- Arrivals: a stream batch's new events that the rules read. For each stored user with some, the
  segments and computed traits before and after them are announced (Entered/Left) and sent
  (identify) like a change of the profile, on the plan of the user's last event record here (its
  retry sends the same message ids). A profile record of the same user in the batch takes them in
  instead (`take_arrivals`): one evaluation, one identify.
- Due: the users whose counted events leave a window (store/due.py), evaluated just before that
  moment and now (recompute.py).
- Every evaluation notes when the user's next event leaves a window (`note_due`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from segment_connector.domain.activity import Activity
from segment_connector.domain.models.items import StoredEvent, UserProfile
from segment_connector.domain.outbound_view import send_ids
from segment_connector.domain.times import format_time
from segment_connector.outbound.announce import SegmentHistories
from segment_connector.outbound.reads import BatchReads
from segment_connector.outbound.records import Change
from segment_connector.segment_api.delivery import RecordPlan
from segment_connector.store.due import Due

log = logging.getLogger(__name__)

Identify = Callable[[Change, UserProfile, dict[str, Any], str, str], None]
JUST_BEFORE = timedelta(milliseconds=1)


class ActivityPlans:
    """The batch's evaluations of users because of their events or of time."""

    def __init__(self, reads: BatchReads, histories: SegmentHistories, identify: Identify):
        self.reads, self.histories, self.identify = reads, histories, identify
        self.rules = reads.rules
        self.due: list[Due] = []  # users to evaluate again when an event leaves a window
        self.arrivals: dict[str, tuple[UserProfile, frozenset[str]]] = {}  # by uid: not evaluated yet

    # -- arrivals -------------------------------------------------------------------------------

    def find_arrivals(self) -> None:
        """By uid: the stored users whose new events the rules read, and those events' ids."""
        self.arrivals = {}
        for user in self.reads.users_with_arrivals():
            arrived = (o.message_id for pk in user.activity_partitions() for o in self.reads.arrived.get(pk, []))
            self.arrivals[user.uid] = (user, frozenset(arrived))

    def take_arrivals(self, uid: str) -> frozenset[str]:
        """The user's new events, for a profile record that evaluates them itself."""
        return self.arrivals.pop(uid, (None, frozenset[str]()))[1]

    def plan_arrivals(self, changes: list[Change]) -> None:
        last: dict[str, Change] = {}
        for change in changes:
            event = change.new
            if isinstance(event, StoredEvent) and event.pk in self.reads.arrived and change.plan.error is None:
                last[event.pk] = change
        at = format_time(self.reads.now)
        for user, arrived in self.arrivals.values():
            record = next((last[pk] for pk in reversed(user.activity_partitions()) if pk in last), None)
            if record is None:
                continue
            try:
                before = self.reads.activity(user, without=arrived)
                self.plan(record, user, before, self.reads.activity(user), at, "activity:")
            except Exception as error:
                log.exception("outbound: the events of %s cannot be evaluated", user.uid)
                record.plan.fail(f"events cannot be evaluated: {error!r}")

    # -- time passing ------------------------------------------------------------------------------

    def plan_due(self, due: list[Due]) -> list[tuple[RecordPlan, list[Due]]]:
        """One plan per user due: its state just before its earliest due moment against now."""
        by_uid: dict[str, list[Due]] = {}
        for item in due:
            by_uid.setdefault(item.uid, []).append(item)
        if due:
            self.reads.looks_back_from = min(item.at for item in due) - JUST_BEFORE
        at = format_time(self.reads.now)
        plans: list[tuple[RecordPlan, list[Due]]] = []
        for uid, items in by_uid.items():
            edge = min(item.at for item in items)
            plan = RecordPlan(seq=f"due-{uid}-{format_time(edge)}", created=self.reads.now.timestamp(), raw={})
            plans.append((plan, items))
            user = self.reads.profiles.get(items[0].profile_pk)
            if user is None:
                continue  # deleted: nothing to tell
            change = Change(plan, user.pk, "due", "RECOMPUTE", new=user)
            try:
                self.plan(
                    change,
                    user,
                    self.reads.activity_at(user, edge - JUST_BEFORE),
                    self.reads.activity(user),
                    at,
                    "due:",
                )
            except Exception as error:
                log.exception("outbound: the due user %s cannot be evaluated", uid)
                plan.fail(f"due user cannot be evaluated: {error!r}")
        return plans

    # -- both ---------------------------------------------------------------------------------------

    def plan(
        self, change: Change, user: UserProfile, before: Activity | None, after: Activity | None, at: str, scope: str
    ) -> None:
        """Segments and computed traits before and after: Entered/Left, and an identify when what is
        sent of the user changes (in the filter before or after)."""
        account = self.reads.account(user.account_id)
        old_segments = self.rules.user_segments(user, account, before)
        new_segments = self.rules.user_segments(user, account, after)
        self.histories.change(change, user, at, old_segments, new_segments, [], False, scope)
        self.note_due(user, after)
        is_in, was_in = self.rules.in_filter(new_segments), self.rules.in_filter(old_segments)
        if not any(send_ids(user)) or not (is_in or was_in):
            return
        traits = self.rules.identify_traits(user, new_segments, after)
        if not (is_in and was_in and traits == self.rules.identify_traits(user, old_segments, before)):
            self.identify(change, user, traits, at, f"{scope}identify")

    def note_due(self, user: UserProfile, activity: Activity | None) -> None:
        """When an event of the user leaves a window: evaluated again then (store/due.py)."""
        edge = activity.next_change(self.rules.settings.event_filters()) if activity else None
        if edge is not None:
            self.due.append(Due(edge, user.uid, user.pk))

    def schedule(self) -> None:
        if self.due:
            self.reads.store.due.schedule(self.due)
            self.due = []

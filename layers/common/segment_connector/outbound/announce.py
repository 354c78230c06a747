"""Outbound: the people's segment histories (what each was last told) through one batch, and the
Entered/Left Segment events they announce: claimed in the history, then stored (segment_history)."""

from __future__ import annotations

import logging

from segment_connector.domain.models.items import UserProfile
from segment_connector.domain.outbound_view import segment_events
from segment_connector.outbound.records import Change
from segment_connector.segment_api.delivery import RecordPlan
from segment_connector.store import segment_history
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.segment_history import Announced

log = logging.getLogger(__name__)


class SegmentHistories:
    """The batch's segment histories: as read (`found`), as planned so far (`current`), and the
    ones to claim (`writes`: by uid, the history and the sequence numbers of its records)."""

    def __init__(self) -> None:
        self.found: dict[str, Announced] = {}  # the histories as read
        self.current: dict[str, Announced] = {}  # by uid: what each person was last told
        self.writes: dict[str, tuple[Announced, set[str]]] = {}  # by uid: (to record, its records)
        self.absorbed: dict[str, list[str]] = {}  # by survivor uid: the uids it united (claimed with it)

    def load(self, found: dict[str, Announced]) -> None:
        self.found = found
        self.current = dict(found)

    def change(
        self,
        change: Change,
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
        own = self.current.get(user.uid)
        if own is not None and own.stale(at):
            return
        uniting = [uid for uid in merged if uid != user.uid and _unmerged(self.current.get(uid), user.uid)]
        told = segment_history.prior(own, fallback, [self.current.get(uid) for uid in uniting], user.uid)
        events = segment_events(user, at, change.pk, change.seq, scope, told, segments)
        change.plan.events += events
        if own is None:
            state = segment_history.start(user.uid, segments, at, events)
        else:
            state = own.then(segments, max(at, own.at), events)
        self.current[user.uid] = state
        # a move or a merge is recorded always: late records of the pk it left are older than it
        if own is None or moved or uniting or events or not own.same(segments):
            self._note(change.seq, state)
        for uid in uniting:
            other = self.current.get(uid)
            mark = (
                other.then(other.segments, other.at, [], merged_into=user.uid)
                if other
                else Announced(uid, [], at, merged_into=user.uid)
            )
            self.current[uid] = mark
            self._note(change.seq, mark)
            self.absorbed.setdefault(user.uid, []).append(uid)

    def claims(self) -> list[list[str]]:
        """The uids whose histories are claimed together: a person, then the profiles it absorbed
        (all or none: a survivor's united history never stands without their marks)."""
        marks = {uid for uids in self.absorbed.values() for uid in uids}
        seen: set[str] = set()
        groups = []
        for root in [uid for uid in self.writes if uid not in marks] + list(self.writes):
            group, todo = [], [root]
            while todo:
                uid = todo.pop(0)
                if uid in seen or uid not in self.writes:
                    continue
                seen.add(uid)
                group.append(uid)
                todo += self.absorbed.get(uid, [])
            groups += [group] if group else []
        return groups

    def _note(self, seq: str, state: Announced) -> None:
        _, seqs = self.writes.get(state.uid, (state, set()))
        self.writes[state.uid] = (state, seqs | {seq})


def _unmerged(history: Announced | None, survivor: str) -> bool:
    return history is None or history.merged_into != survivor


def announce(store: ProfileStore, histories: SegmentHistories, plans: list[RecordPlan]) -> int:
    """Claim the people's new segment histories, then store their Entered/Left events (segment_history);
    how many events were stored. Not for a person one of whose records failed (its retry plans again
    from the recorded history). A claim lost to another writer (a resync page, another shard) fails
    its records: their retry plans again from the winner's history, whose events are the only ones."""
    failed = {plan.seq for plan in plans if plan.error}
    claimed: list[tuple[Announced, set[str]]] = []
    for group in histories.claims():
        states = [histories.writes[uid][0] for uid in group]
        seqs = {seq for uid in group for seq in histories.writes[uid][1]}
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
    found = [h for uid, h in histories.found.items() if h.pending and uid not in histories.writes]
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

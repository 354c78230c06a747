"""Resync: one page of profiles brought to the job's target, profile by profile: each profile's
transition is claimed (its sync item), sent, then committed; a pending transition another (or a
crashed) worker left is sent again as it would have been (job.py's module doc tells the whole)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from segment_connector.domain.models.items import Account, UserProfile
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.resync.plan import (
    ItemPlan,
    PagePlanner,
    Superseded,
    Transition,
    sync_key,
    transition_id,
    view_of,
)
from segment_connector.runtime import config
from segment_connector.segment_api.delivery import Entry
from segment_connector.store.profile_store import ProfileStore
from segment_connector.views.jobs import RESYNC_COUNTERS as COUNTERS

CLAIM_ROUNDS = 5  # a profile another worker wrote meanwhile is read and planned again
NOTHING_SENT = ConnectorSettings(synchronized_account_segments=[])  # filters empty: nobody was sent

Send = Callable[[list[Entry]], tuple[int, int]]  # entries -> (sent, failed)


def job_target_view(job: Mapping[str, Any]) -> str:
    return str(job.get("target_view") or view_of(config.parse_settings(job["target"])))


@dataclass
class PageCount:
    evaluated: int = 0
    changed: int = 0
    sent: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}


class PageSync:
    """Brings one page of profiles to the job's target, profile by profile (see the module doc)."""

    def __init__(self, store: ProfileStore, send: Send, job: Mapping[str, Any], now: str):
        self.store = store
        self.send = send
        self.seq = int(job.get("seq") or 0)
        self.target_view = job_target_view(job)
        self.base_view = str(job.get("base_view") or view_of(config.parse_settings(job["base"])))
        self.full_since = int(job.get("full_since") or 0)
        self.nothing_view = view_of(NOTHING_SENT)
        self.settings: dict[str, ConnectorSettings] = {
            self.target_view: config.parse_settings(job["target"]),
            self.base_view: config.parse_settings(job["base"]),
            self.nothing_view: NOTHING_SENT,
        }
        self.planner = PagePlanner(self.store, now, self.seq)

    def run(self, items: list[UserProfile | Account]) -> PageCount:
        count = PageCount(evaluated=len(items))
        remaining = {sync_key(item): item for item in items}
        for _ in range(CLAIM_ROUNDS):
            markers = self.store.syncs.markers(remaining)
            self._check_newer(markers.values())
            self._complete_pending(remaining, markers, count)
            remaining = self._own_transitions(remaining, markers, count)
            if not remaining:
                return count
        raise RuntimeError(f"{len(remaining)} profiles kept changing under other workers; the page is retried")

    def _check_newer(self, markers: Iterable[Mapping[str, Any]]) -> None:
        for marker in markers:
            pending = marker.get("pending") or {}
            if int(marker.get("seq") or 0) > self.seq or int(pending.get("seq") or 0) > self.seq:
                raise Superseded()

    def _settings(self, views: Iterable[str]) -> None:
        missing = [view for view in views if view not in self.settings]
        for view, document in self.store.resync.views(missing).items():
            self.settings[view] = config.parse_settings(document)
        lost = [view for view in missing if view not in self.settings]
        if lost:
            raise RuntimeError(f"settings of synced views {lost} are not kept")

    def _complete_pending(
        self, items: dict[str, UserProfile | Account], markers: dict[str, dict[str, Any]], count: PageCount
    ) -> None:
        """Send again the transitions other (or crashed) workers claimed and did not commit, as they would have."""
        pending = {key: markers[key]["pending"] for key in items if markers.get(key, {}).get("pending")}
        if not pending:
            return
        self._settings(view for claim in pending.values() for view in (claim["from"], claim["to"]))
        work = [(items[key], self._transition(claim)) for key, claim in pending.items()]
        plans = self.planner.plan(work)
        count.changed += sum(plan.changed for plan in plans)
        self._send_and_commit(plans, pending, count)
        for key, claim in pending.items():  # as the commit left them (whoever committed)
            markers[key] = {"view": claim["to"], "seq": claim["seq"]}

    def _transition(self, claim: Mapping[str, Any]) -> Transition:
        before, after, seq = str(claim["from"]), str(claim["to"]), int(claim["seq"])
        return Transition(self.settings[before], self.settings[after], transition_id(seq, before, after))

    def _before_view(self, marker: Mapping[str, Any] | None) -> str:
        view = str((marker or {}).get("view") or "")
        if self.full_since:
            return view if view and int((marker or {}).get("seq") or 0) >= self.full_since else self.nothing_view
        return view or self.base_view

    def _own_transitions(
        self, items: dict[str, UserProfile | Account], markers: dict[str, dict[str, Any]], count: PageCount
    ) -> dict[str, UserProfile | Account]:
        """Plan, claim, send and commit this job's transition of each profile; the profiles whose
        conditional write lost (another worker wrote them meanwhile)."""
        befores = {key: self._before_view(markers.get(key)) for key in items}
        todo = {key: view for key, view in befores.items() if view != self.target_view}
        self._settings(set(todo.values()))
        claims = {key: {"from": view, "to": self.target_view, "seq": self.seq} for key, view in todo.items()}
        plans = self.planner.plan([(items[key], self._transition(claims[key])) for key in todo])
        changed = [plan for plan in plans if plan.changed]
        observed = {key: markers.get(key, {}).get("view") for key in todo}
        lost = self.store.syncs.claim(
            [(sync_key(p.item), observed[sync_key(p.item)], claims[sync_key(p.item)]) for p in changed], self.seq
        )
        # a profile whose transition sends nothing: its recorded view advances, and this job's seq
        # marks it (none recorded too) so that an older job's page still running stops at it
        advanced = [(sync_key(p.item), observed[sync_key(p.item)]) for p in plans if not p.changed]
        lost |= self.store.syncs.advance(advanced, self.target_view, self.seq)
        claimed = [plan for plan in changed if sync_key(plan.item) not in lost]
        count.changed += len(claimed)
        self._send_and_commit(claimed, claims, count)
        return {key: items[key] for key in lost}

    def _send_and_commit(self, plans: list[ItemPlan], claims: Mapping[str, Any], count: PageCount) -> None:
        # Entered/Left Segment: claimed in the person's segment history, then stored (sent by the stream)
        self.planner.announce(plans)
        sent, failed = self.send([entry for plan in plans for entry in plan.entries])
        count.sent += sent
        count.failed += failed
        self.store.syncs.commit([(sync_key(plan.item), claims[sync_key(plan.item)]) for plan in plans])

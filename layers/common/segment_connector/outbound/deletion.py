"""GDPR delete: accepted by inbound as a tombstone, carried out by OutboundFunction in bounded steps.

Inbound (`change_for`) writes, in one transaction with the delete's dedup marker, a tombstone item
(`deletion#<messageId>`, kind `deletion`) that lists every identity the person had and deletes the
profile items: from then on the person is gone for the Profile API and later messages start a new
profile. The tombstone reaches OutboundFunction through the table's stream; each record is one step
(`work`): sweep as much as a budget (time and requests) allows, then record the cursor on the
tombstone (conditional on its `step`), which is a new stream record and so the next step. What a
step did is safe to do again: deletes are idempotent and the queries start from what is left.

Order: the overflow items of the person's uids (ids dropped from the bounded profile lists: each
id's events, then its alias, then the item), the events of every listed partition, the alias items,
the `sync#user#<uid>` and `seghist#<uid>` items (resync marker, segment history) of every uid
(merged ones included), then the tombstone with its registration (deletions_pending.py: the
deletions in progress, which status shows and the scheduled check resumes when stalled). Only
events that happened before the delete's receipt (`event_time` < `deleted_at`, the `by_time`
index) are swept, so events of a profile made after the delete survive; an alias is deleted only
while it is one (`kind = alias`), never a profile written at that key after the delete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from segment_connector.domain.times import format_time
from segment_connector.store import segment_history
from segment_connector.store.deletion import KIND, PAGE_EVENTS, DeletionStore
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.table import WRITE_BATCH, deserialize_image

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


STEP_SECONDS = 20.0  # one step's work; the stream's other records wait behind it
RESERVE_SECONDS = 30.0  # of the invocation's remaining time, never used by a step
STEP_REQUESTS = 400  # DynamoDB requests per step
PAGE_COST = 1 + -(-PAGE_EVENTS // WRITE_BATCH)  # one query + its batch deletes


def split(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(other records, tombstone records) of a stream batch."""
    others: list[dict[str, Any]] = []
    tombstones: list[dict[str, Any]] = []
    for record in records:
        image = (record.get("dynamodb") or {}).get("NewImage") or {}
        (tombstones if image.get("kind", {}).get("S") == KIND else others).append(record)
    return others, tombstones


def work(records: list[dict[str, Any]], context: Any, store: ProfileStore) -> tuple[dict[str, str], int]:
    """One step for each tombstone record: (failed sequence numbers -> reason, steps done)."""
    failed: dict[str, str] = {}
    steps = 0
    for record in records:
        dynamodb = record.get("dynamodb") or {}
        seq = str(dynamodb.get("SequenceNumber", ""))
        image = deserialize_image(dynamodb.get("NewImage") or {})
        try:
            steps += Sweep(DeletionStore(store), image, Budget.of(context)).run()
        except Exception as error:
            log.exception("deletion %s: the step failed; the stream retries it", image.get("pk"))
            failed[seq] = f"deletion step failed: {error!r}"
    return failed, steps


@dataclass
class Budget:
    """What one step may spend: a deadline and a number of DynamoDB requests."""

    deadline: float
    requests: int = STEP_REQUESTS
    used: int = 0

    @classmethod
    def of(cls, context: Any) -> Budget:
        seconds = STEP_SECONDS
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            seconds = min(seconds, context.get_remaining_time_in_millis() / 1000 - RESERVE_SECONDS)
        return cls(time.monotonic() + max(0.0, seconds), STEP_REQUESTS)

    def allows(self, cost: int = 1) -> bool:
        return self.used + cost <= self.requests and time.monotonic() < self.deadline

    def spend(self, cost: int = 1) -> None:
        self.used += cost


@dataclass
class Sweep:
    """One step of a deletion: from the tombstone's cursor, as far as the budget goes."""

    db: DeletionStore
    image: Mapping[str, Any]
    budget: Budget
    cursor: dict[str, Any] = field(default_factory=dict)
    tombstone: dict[str, Any] = field(default_factory=dict)

    def run(self) -> int:
        """1 when this step ran (and recorded its cursor or finished), 0 when another one owns it."""
        tombstone = self.db.tombstone(str(self.image["pk"]))
        self.budget.spend()
        if tombstone is None or tombstone["step"] != self.image.get("step"):
            return 0  # finished, or a newer record of it exists (a duplicate or retried record)
        self.tombstone = tombstone
        self.cursor = {name: tombstone[name] for name in ("next_uid", "next_partition", "next_alias")}
        self.cursor["uids"] = list(tombstone["uids"])
        done = self._sweep(tombstone)
        if done:
            for uid in self.cursor["uids"]:
                self.db.delete_item(f"sync#user#{uid}", "sync")
                self.db.delete_item(f"{segment_history.PK_PREFIX}{uid}", segment_history.SK)
            self.db.finish(tombstone)
            log.info("deletion %s: done after %d steps", tombstone["pk"], tombstone["step"] + 1)
        else:
            self.db.advance(tombstone, {**self.cursor, "stepped_at": format_time(datetime.now(UTC))})
        return 1

    def _sweep(self, tombstone: dict[str, Any]) -> bool:
        """True when everything is gone but the sync items and the tombstone."""
        cut = f"{tombstone['deleted_at']}$"  # every event_time `<deleted_at>#<messageId>` or earlier sorts below
        while self.cursor["next_uid"] < len(self.cursor["uids"]):
            if not self._overflow(self.cursor["uids"][self.cursor["next_uid"]], cut):
                return False
            self.cursor["next_uid"] += 1
        partitions = [pk for pk in tombstone["ids"] if not pk.startswith("id#email#")]
        while self.cursor["next_partition"] < len(partitions):
            if not self._events(partitions[self.cursor["next_partition"]], cut):
                return False
            self.cursor["next_partition"] += 1
        aliases = [pk for pk in tombstone["ids"] if pk not in tombstone["profile_pks"]]
        while self.cursor["next_alias"] < len(aliases):
            if not self.budget.allows():
                return False
            self.db.delete_alias(aliases[self.cursor["next_alias"]])
            self.budget.spend()
            self.cursor["next_alias"] += 1
        return self.budget.allows(2 * len(self.cursor["uids"]) + 1)

    def _events(self, partition: str, cut: str) -> bool:
        """True when the partition holds no event from before the delete."""
        if partition.startswith("id#email#"):
            return True
        while self.budget.allows(PAGE_COST):
            keys = self.db.event_keys(partition, cut)
            self.budget.spend(1 + self.db.delete_keys(keys))
            if len(keys) < PAGE_EVENTS:
                return True
        return False

    def _overflow(self, uid: str, cut: str) -> bool:
        """True when the uid's overflow items (ids dropped from the profile's lists) are all worked."""
        while self.budget.allows():
            items = self.db.overflow(uid)
            self.budget.spend()
            if not items:
                return True
            for item in items:
                if not self._overflow_item(item, cut):
                    return False
        return False

    def _overflow_item(self, item: dict[str, Any], cut: str) -> bool:
        """Each id's events, then its alias; the item shrinks as it goes (it holds what is left)."""
        merged = [uid for uid in item.get("uids", []) if uid not in self.cursor["uids"]]
        if merged:  # a merged profile's own overflow items: queued on the tombstone before this item goes
            if not self.db.add_uids(self.tombstone, [*self.cursor["uids"], *merged]):
                raise RuntimeError("the tombstone changed under this step")
            self.cursor["uids"] += merged
            self.budget.spend()
        ids = list(item.get("ids", []))
        while ids:
            if not (self._events(ids[0], cut) and self.budget.allows()):
                if ids != item.get("ids"):
                    self.db.put_overflow({**item, "ids": ids})
                    self.budget.spend()
                return False
            self.db.delete_alias(ids.pop(0))
            self.budget.spend()
        self.db.delete_item(item["pk"], item["sk"])
        self.budget.spend()
        return True

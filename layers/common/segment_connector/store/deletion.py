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

from botocore.exceptions import ClientError

from segment_connector.domain.models.items import PROFILE_SK
from segment_connector.domain.models.messages import format_time
from segment_connector.store import deletions_pending, segment_history
from segment_connector.store.profile_store import WRITE_BATCH, ProfileChange, ProfileStore, deserialize, serialize

if TYPE_CHECKING:
    from segment_connector.inbound.identity import Resolution

log = logging.getLogger(__name__)

KIND = "deletion"
SK = "deletion"
OVERFLOW_PREFIX = "ids#"
STEP_SECONDS = 20.0  # one step's work; the stream's other records wait behind it
RESERVE_SECONDS = 30.0  # of the invocation's remaining time, never used by a step
STEP_REQUESTS = 400  # DynamoDB requests per step
PAGE_EVENTS = 500  # event keys per query page
PAGE_COST = 1 + -(-PAGE_EVENTS // WRITE_BATCH)  # one query + its batch deletes


def change_for(resolution: Resolution, claimed: list[str], message_id: str | None, now: str) -> ProfileChange:
    """The delete as one transaction: the tombstone, and the stored profiles deleted at the version read."""
    deleted = [(alias.pk, version) for alias, version in resolution.retired]
    if resolution.expected is not None:
        deleted.append((resolution.profile.pk, resolution.expected))
    stored = bool(deleted)
    profile = resolution.profile
    ids = [*profile.identities, *resolution.dropped, *claimed] if stored else list(claimed)
    ids = list(dict.fromkeys([*(pk for pk, _ in deleted), *ids]))
    merged = [*resolution.merged_uids, *(profile.merged_uids or [])]
    uids = list(dict.fromkeys([profile.uid, *merged])) if stored else []
    tombstone = {
        "pk": f"{KIND}#{message_id}",
        "sk": SK,
        "kind": KIND,
        "deleted_at": now,
        "ids": ids,
        "profile_pks": [pk for pk, _ in deleted],
        "uids": uids,
        "next_uid": 0,
        "next_partition": 0,
        "next_alias": 0,
        "step": 0,
    }
    registration = deletions_pending.registration(str(tombstone["pk"]), now)
    return ProfileChange(message_id=message_id, tombstone=tombstone, registration=registration, deleted=deleted)


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
        image = deserialize(dynamodb.get("NewImage") or {})
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


class DeletionStore:
    """The sweep's data access (through ProfileStore's client and error mapping)."""

    def __init__(self, store: ProfileStore):
        self.store = store
        self.table = store.table

    def tombstone(self, pk: str) -> dict[str, Any] | None:
        raw = self.store._call("get_item", TableName=self.table, Key=_key(pk, SK), ConsistentRead=True).get("Item")
        return deserialize(raw) if raw else None

    def event_keys(self, partition: str, before: str) -> list[tuple[str, str]]:
        """A page of the partition's events that happened before `before` (strongly consistent)."""
        response = self.store._call(
            "query",
            TableName=self.table,
            IndexName="by_time",
            KeyConditionExpression="pk = :pk AND event_time < :cut",
            ExpressionAttributeValues={":pk": {"S": partition}, ":cut": {"S": before}},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
            Limit=PAGE_EVENTS,
        )
        return [(raw["pk"]["S"], raw["sk"]["S"]) for raw in response.get("Items", [])]

    def delete_keys(self, keys: list[tuple[str, str]]) -> int:
        """Batch deletes (unconditional), 25 at a time; returns the requests made."""
        for start in range(0, len(keys), WRITE_BATCH):
            self.store._batch_write(
                [{"DeleteRequest": {"Key": _key(pk, sk)}} for pk, sk in keys[start : start + WRITE_BATCH]]
            )
        return -(-len(keys) // WRITE_BATCH)

    def delete_alias(self, pk: str) -> None:
        """The identity item, while it is an alias (a profile written there after the delete stays)."""
        self._delete_if(_key(pk, PROFILE_SK), "kind = :alias", {":alias": {"S": "alias"}})

    def delete_item(self, pk: str, sk: str) -> None:
        self.store._call("delete_item", TableName=self.table, Key=_key(pk, sk))

    def overflow(self, uid: str) -> list[dict[str, Any]]:
        response = self.store._call(
            "query",
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"{OVERFLOW_PREFIX}{uid}"}},
            ConsistentRead=True,
            Limit=10,
        )
        return [deserialize(raw) for raw in response.get("Items", [])]

    def put_overflow(self, item: dict[str, Any]) -> None:
        self.store._call("put_item", TableName=self.table, Item=serialize(item))

    def advance(self, tombstone: dict[str, Any], fields: dict[str, Any]) -> bool:
        """Record the cursor (the next step's stream record), if no other step did since."""
        names = {f"#{name}": name for name in fields}
        values = {f":{name}": value for name, value in fields.items()}
        sets = ", ".join(f"#{name} = :{name}" for name in fields)
        return self._update_if(
            tombstone["pk"],
            f"SET {sets}, #step = #step + :one",
            "#step = :step",
            {**names, "#step": "step"},
            {**serialize(values), ":one": {"N": "1"}, ":step": {"N": str(tombstone["step"])}},
        )

    def add_uids(self, tombstone: dict[str, Any], uids: list[str]) -> bool:
        """Queue more uids' overflow items, in place (the same step goes on)."""
        return self._update_if(
            tombstone["pk"],
            "SET uids = :uids",
            "#step = :step",
            {"#step": "step"},
            {":uids": serialize({"u": uids})["u"], ":step": {"N": str(tombstone["step"])}},
        )

    def finish(self, tombstone: dict[str, Any]) -> bool:
        """The tombstone (if no other step moved it) and its registration, in one transaction."""
        step = {
            "TableName": self.table,
            "Key": _key(tombstone["pk"], SK),
            "ConditionExpression": "#step = :step",
            "ExpressionAttributeNames": {"#step": "step"},
            "ExpressionAttributeValues": {":step": {"N": str(tombstone["step"])}},
        }
        registration = {"TableName": self.table, "Key": deletions_pending.registration_key(tombstone["pk"])}
        try:
            self.store._call("transact_write_items", TransactItems=[{"Delete": step}, {"Delete": registration}])
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            return False
        return True

    def _update_if(
        self, pk: str, expression: str, condition: str, names: dict[str, str], values: dict[str, Any]
    ) -> bool:
        return self._conditional(
            "update_item",
            Key=_key(pk, SK),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def _delete_if(
        self, key: dict[str, Any], condition: str, values: dict[str, Any], names: dict[str, str] | None = None
    ) -> bool:
        extra = {"ExpressionAttributeNames": names} if names else {}
        return self._conditional(
            "delete_item", Key=key, ConditionExpression=condition, ExpressionAttributeValues=values, **extra
        )

    def _conditional(self, operation: str, **kwargs: Any) -> bool:
        try:
            self.store._call(operation, TableName=self.table, **kwargs)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


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

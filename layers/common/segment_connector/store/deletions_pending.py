"""GDPR deletions in progress: registered in one small partition, shown by status, resumed when stalled.

Inbound's delete transaction writes, next to the tombstone (`deletion#<messageId>`, deletion.py), a
registration item: pk `deletions`, sk the tombstone's pk, kind `deletion_pending`, `deleted_at`,
`ids` (the tombstone's identity pks).
The sweep's last step deletes the tombstone and its registration in one transaction, so the
partition lists exactly the deletions not finished, and is as small as their number.

- Status (`segment-connector status`, the console's dashboard) counts that partition and shows the
  oldest's age (one Query of it; nothing else of the table is read).
- A deletion step that fails until the stream gives up (6 retries, or the record's age) leaves its
  tombstone with no stream record to carry on. ResyncFunction's scheduled check ({"action":
  "status"}, every 10 minutes) queries the partition, reads those tombstones, and touches each whose
  last step (`stepped_at`, else `deleted_at`) is older than STALLED_SECONDS: a conditional update
  that bumps its `step`, which is a new stream record and so the next step. A step still running
  then finds its `step` moved and records nothing; the sweep is idempotent, so the new step redoes
  at most what that one did. With no deletion in progress the check makes one Query and no write.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from segment_connector.domain.times import format_time, parse_time
from segment_connector.store.profile_store import ProfileStore

log = logging.getLogger(__name__)

PK = "deletions"
KIND = "deletion_pending"
TOMBSTONE_SK = "deletion"  # deletion.SK (deletion.py imports this module)
# A step is 20 s of work in a 120 s invocation; the stream retries a failing one within minutes.
# Ten minutes without a step: its record is gone (or stuck far behind), so the check starts another.
STALLED_SECONDS = 600
RESUME_LIMIT = 25  # tombstones read and touched per scheduled check (the next check takes the rest)


def registration(tombstone_pk: str, deleted_at: str, ids: list[str]) -> dict[str, Any]:
    """The item that lists a deletion as in progress (written with its tombstone), with the
    tombstone's identity pks: being_deleted reads them here, in the partition's one Query."""
    return {"pk": PK, "sk": tombstone_pk, "kind": KIND, "deleted_at": deleted_at, "ids": ids}


def registration_key(tombstone_pk: str) -> dict[str, Any]:
    return {"pk": {"S": PK}, "sk": {"S": tombstone_pk}}


class InProgress:
    """How many deletions are not finished, and since when the oldest waits. (A plain class: see
    inventory.KindCounts.)"""

    __slots__ = ("count", "oldest_deleted_at")

    def __init__(self, count: int, oldest_deleted_at: str | None) -> None:
        self.count = count
        self.oldest_deleted_at = oldest_deleted_at

    def public(self, now: datetime) -> dict[str, Any]:
        oldest = parse_time(self.oldest_deleted_at) if self.oldest_deleted_at else None
        age = max(0, round((now - oldest).total_seconds())) if oldest else None
        return {"in_progress": self.count, "oldest_deleted_at": self.oldest_deleted_at, "oldest_age_seconds": age}


def in_progress(store: ProfileStore) -> InProgress:
    """Count the registrations (every page of the one partition) and find the oldest."""
    request: dict[str, Any] = {
        "TableName": store.table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": PK}},
        "ProjectionExpression": "deleted_at",
    }
    count, oldest = 0, None
    while True:
        response = store.db.call("query", **request)
        for raw in response.get("Items", []):
            count += 1
            at = raw.get("deleted_at", {}).get("S")
            oldest = at if at and (oldest is None or at < oldest) else oldest
        if "LastEvaluatedKey" not in response:
            return InProgress(count, oldest)
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def being_deleted(store: ProfileStore, pks: list[str]) -> set[str]:
    """Those of these identity pks that a deletion in progress lists: what the sweep has not removed
    yet (events, aliases) is the deleted person's, never to be shown. Every page of the partition
    (as small as the deletions not finished) with their identity lists; the tombstones' lists only
    for registrations written before they carried one."""
    request: dict[str, Any] = {
        "TableName": store.table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": PK}},
        "ProjectionExpression": "sk, ids",
    }
    listed: set[str] = set()
    without_ids: list[str] = []
    while True:
        response = store.db.call("query", **request)
        for raw in response.get("Items", []):
            if "ids" in raw:
                listed.update(value["S"] for value in raw["ids"]["L"])
            else:
                without_ids.append(raw["sk"]["S"])
        if "LastEvaluatedKey" not in response:
            break
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    if without_ids:
        keys = [{"pk": {"S": pk}, "sk": {"S": TOMBSTONE_SK}} for pk in without_ids]
        listed.update(str(pk) for item in store.db.batch_get(keys, projection="ids") for pk in item.get("ids") or [])
    return listed & set(pks)


def resume_stalled(store: ProfileStore, now: datetime) -> list[str]:
    """Touch the tombstones of stalled deletions (see the module's doc); their pks."""
    response = store.db.call(
        "query",
        TableName=store.table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": PK}},
        ProjectionExpression="sk",
        Limit=RESUME_LIMIT,
    )
    pks = [raw["sk"]["S"] for raw in response.get("Items", [])]
    if not pks:
        return []
    tombstones = store.db.batch_get([{"pk": {"S": pk}, "sk": {"S": TOMBSTONE_SK}} for pk in pks])
    before = format_time(now - timedelta(seconds=STALLED_SECONDS))
    touched = []
    for tombstone in tombstones:
        if str(tombstone.get("stepped_at") or tombstone["deleted_at"]) < before and _touch(store, tombstone, now):
            touched.append(str(tombstone["pk"]))
    if touched:
        log.warning("deletions stalled for over %d s resumed: %s", STALLED_SECONDS, ", ".join(touched))
    return touched


def _touch(store: ProfileStore, tombstone: dict[str, Any], now: datetime) -> bool:
    """Bump the step (the stream record that starts the next one), if no step moved it meanwhile."""
    try:
        store.db.call(
            "update_item",
            TableName=store.table,
            Key={"pk": {"S": str(tombstone["pk"])}, "sk": {"S": TOMBSTONE_SK}},
            UpdateExpression="SET #step = #step + :one, stepped_at = :now ADD resumed :one",
            ConditionExpression="#step = :step",
            ExpressionAttributeNames={"#step": "step"},
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":now": {"S": format_time(now)},
                ":step": {"N": str(tombstone["step"])},
            },
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return False
    return True

"""Events: stored once per messageId in their partition, read newest first (LSI `by_time`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from segment_connector.domain.errors import StoreUnavailable
from segment_connector.domain.models.items import PROFILE_SK, StoredEvent
from segment_connector.store.table import WRITE_BATCH, Table, deserialize, is_condition_failure, serialize


class Events:
    """Event reads and writes."""

    def __init__(self, table: Table):
        self.table = table

    def recent(self, partitions: Iterable[str], limit: int) -> list[StoredEvent]:
        """Newest first across the partitions (LSI `by_time`)."""
        from segment_connector.store.event_pages import whole_events

        entries: list[dict[str, Any]] = []
        for pk in dict.fromkeys(partitions):
            response = self.table.call(
                "query",
                TableName=self.table.name,
                IndexName="by_time",
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": pk}},
                ScanIndexForward=False,
                Limit=limit,
            )
            entries.extend(deserialize(raw) for raw in response.get("Items", []))
        entries.sort(key=lambda entry: str(entry["event_time"]), reverse=True)
        return list(whole_events(self.table, entries[:limit]))

    def newest_first(
        self, partitions: Iterable[str], before: tuple[str, str] | None = None, page: int = 100
    ) -> Iterator[StoredEvent]:
        """The events of the partitions, newest first (by `event_time`, then pk), read lazily:
        each partition's pages (LSI `by_time`, at most `page` items or 1 MB each) are queried only
        when the merge reaches them. `before` = (event_time, pk) of the last event already seen."""
        from segment_connector.store.event_pages import EventRange, ordered_events  # not at a cold start

        return ordered_events(self.table, partitions, EventRange(newest_first=True, after=before), page)

    def put(self, event: StoredEvent) -> bool:
        """Store an event once: False when its messageId is already stored in that partition."""
        try:
            self.table.call(
                "put_item",
                TableName=self.table.name,
                Item=serialize(event.to_item()),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def put_new(self, events: list[StoredEvent]) -> list[bool]:
        """Store the events whose messageId is not stored yet in their partition; for each event,
        whether it was stored (False: a duplicate). An event keyed by its messageId is idempotent,
        so a plain BatchWriteItem is safe; the (eventually consistent) read before it keeps a
        redelivery from writing, and counting, the event twice.
        """
        keys = [{"pk": {"S": event.pk}, "sk": {"S": event.sk}} for event in events]
        existing = {(raw["pk"], raw["sk"]) for raw in self.table.batch_get(keys, consistent=False, projection="pk, sk")}
        stored: list[bool] = []
        writes: list[dict[str, Any]] = []
        for event in events:
            key = (event.pk, event.sk)
            stored.append(key not in existing)
            if key not in existing:
                existing.add(key)  # the same message twice in one delivery
                writes.append({"PutRequest": {"Item": serialize(event.to_item())}})
        for start in range(0, len(writes), WRITE_BATCH):
            self.table.batch_write(writes[start : start + WRITE_BATCH])
        return stored

    def put_of_linked(self, event: StoredEvent, identity: str) -> bool | None:
        """put, in one request with a check that `identity` already points at a profile.

        None when it does not (nothing written): the caller links that identity first.
        """
        check = {
            "ConditionCheck": {
                "TableName": self.table.name,
                "Key": {"pk": {"S": identity}, "sk": {"S": PROFILE_SK}},
                "ConditionExpression": "kind = :alias",
                "ExpressionAttributeValues": {":alias": {"S": "alias"}},
            }
        }
        put = self.table.put_action(event.to_item(), "attribute_not_exists(pk)")
        try:
            self.table.call("transact_write_items", TransactItems=[put, check])
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]
            if reasons[:1] == ["ConditionalCheckFailed"]:
                return False
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                return None
            raise StoreUnavailable() from None
        return True

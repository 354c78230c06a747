"""A profile's events in time order, either way, within a time range, from a cursor (LSI `by_time`).

The Segment-compatible Profile API's events (views/segment_profiles): each partition's pages are
read lazily and merged by (`event_time`, pk), so that a page costs one Query per partition it
reaches, and a cursor (the last event's (`event_time`, pk)) is stable under concurrent writes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from segment_connector.domain.models.items import StoredEvent
from segment_connector.store.table import Table, deserialize

Position = tuple[str, str]  # (event_time, pk)


@dataclass(frozen=True)
class EventRange:
    """What to read: `newest_first` or oldest first; `start` <= event_time < `end` (both
    `format_time` strings, or None); strictly after `after` in that order; only the events whose
    name is in `include`, or not in `exclude` (None: any)."""

    newest_first: bool = True
    start: str | None = None
    end: str | None = None
    after: Position | None = None
    include: frozenset[str] | None = None
    exclude: frozenset[str] | None = None

    def bounds(self) -> tuple[str | None, str | None]:
        """Inclusive bounds on `event_time` for the key condition (exclusive ones are checked on
        the items: an `event_time` is `<timestamp>#<messageId>`, never equal to `end` itself)."""
        low, high = self.start, self.end
        if self.after is not None:
            if self.newest_first:
                high = self.after[0] if high is None else min(high, self.after[0])
            else:
                low = self.after[0] if low is None else max(low, self.after[0])
        return low, high

    def beyond_entry(self, entry: dict[str, Any]) -> bool:
        """Whether an index entry (its `event_time`, pk) comes after the cursor in this order."""
        if self.after is None:
            return True
        position = (str(entry.get("event_time", "")), str(entry.get("pk", "")))
        return position < self.after if self.newest_first else position > self.after

    def wanted_name(self, name: str) -> bool:
        if self.include is not None and name not in self.include:
            return False
        return not (self.exclude is not None and name in self.exclude)


def ordered_events(table: Table, partitions: Iterable[str], wanted: EventRange, page: int) -> Iterator[StoredEvent]:
    """The events of the partitions in the order `wanted` asks, read lazily (each partition's
    Query pages of at most `page` items or 1 MB are asked for only when the merge reaches them)."""
    streams = [_partition(table, pk, wanted, page) for pk in dict.fromkeys(partitions)]
    return heapq.merge(*streams, key=lambda event: (event.event_time, event.pk), reverse=wanted.newest_first)


def _partition(table: Table, pk: str, wanted: EventRange, page: int) -> Iterator[StoredEvent]:
    low, high = wanted.bounds()
    if low is not None and high is not None and low > high:
        return  # an empty range (DynamoDB refuses BETWEEN with its bounds reversed)
    request = _query(table, pk, wanted, page)
    while True:
        response = table.call("query", **request)
        entries = [deserialize(raw) for raw in response.get("Items", [])]
        chosen = [e for e in entries if wanted.beyond_entry(e) and wanted.wanted_name(str(e.get("event", "")))]
        yield from whole_events(table, chosen)
        if "LastEvaluatedKey" not in response:
            return
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def whole_events(table: Table, entries: list[dict[str, Any]]) -> Iterator[StoredEvent]:
    """The events of index entries (keys), in the entries' order: one BatchGetItem (per 100). An
    event deleted between the two reads (a GDPR delete, its TTL) is left out."""
    if not entries:
        return
    keys = [{"pk": {"S": str(e["pk"])}, "sk": {"S": str(e["sk"])}} for e in entries]
    found = {(item["pk"], item["sk"]): item for item in table.batch_get(keys)}
    for entry in entries:
        item = found.get((entry["pk"], entry["sk"]))
        if item is not None:
            yield StoredEvent.from_item(item)


def _query(table: Table, pk: str, wanted: EventRange, page: int) -> dict[str, Any]:
    values: dict[str, Any] = {":pk": {"S": pk}}
    condition = "pk = :pk"
    low, high = wanted.bounds()
    if low is not None and high is not None:
        condition += " AND event_time BETWEEN :low AND :high"
    elif low is not None:
        condition += " AND event_time >= :low"
    elif high is not None:
        condition += " AND event_time <= :high"
    if low is not None:
        values[":low"] = {"S": low}
    if high is not None:
        values[":high"] = {"S": high}
    request: dict[str, Any] = {
        "TableName": table.name,
        "IndexName": "by_time",
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": not wanted.newest_first,
        "Limit": page,
    }
    names = wanted.include if wanted.include is not None else wanted.exclude
    if names:
        # Fewer bytes back (the names are checked on the items again): at most 100 names in an IN.
        keys = [f":n{index}" for index in range(len(names))]
        test = f"#event IN ({', '.join(keys)})"
        request["FilterExpression"] = test if wanted.include is not None else f"NOT ({test})"
        request["ExpressionAttributeNames"] = {"#event": "event"}
        values.update({key: {"S": name} for key, name in zip(keys, sorted(names), strict=True)})
    return request

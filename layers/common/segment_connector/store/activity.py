"""A user's events as rules see them: the entries of LSI `by_time` of the events that segment rules
and computed traits read (those with `facts`, the properties they read), one Query per event
partition from the oldest moment a window can reach."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from segment_connector.domain.activity import Occurrence
from segment_connector.domain.models.items import EVENT_SK_PREFIX
from segment_connector.domain.times import format_time, parse_time
from segment_connector.store.table import Table, deserialize

INDEX = "by_time"


def occurrence(item: dict[str, object]) -> Occurrence | None:
    """An index entry (or an event item) as an Occurrence; None without a readable time."""
    try:
        at = parse_time(item.get("timestamp"))
    except ValueError:
        return None
    if at is None:
        return None
    facts = item.get("facts")
    return Occurrence(
        at,
        Occurrence.rule_name(str(item.get("type", "")), str(item.get("event", ""))),
        str(item.get("sk", "")).removeprefix(EVENT_SK_PREFIX),
        facts if isinstance(facts, dict) else {},
    )


class ActivityReads:
    """Reads of the index."""

    def __init__(self, table: Table):
        self.table = table

    def occurrences(self, partitions: Iterable[str], since: datetime) -> list[Occurrence]:
        """The indexed events of the partitions later than `since` (every page of each)."""
        found: list[Occurrence] = []
        for pk in dict.fromkeys(partitions):
            items = self.table.query_all(
                IndexName=INDEX,
                KeyConditionExpression="pk = :pk AND event_time > :since",
                FilterExpression="attribute_exists(facts)",
                ExpressionAttributeValues={":pk": {"S": pk}, ":since": {"S": format_time(since)}},
            )
            found += [o for raw in items if (o := occurrence(deserialize(raw))) is not None]
        return found

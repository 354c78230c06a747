"""Keeping what rules read of stored events in step with the settings (issue 15).

An event keeps `facts` (the properties segment rules and computed traits read, projected into its
entry of LSI `by_time`) as the settings of its arrival saw it. When newer
settings read an event name or a property path that older ones did not, the stored events lack
it. Two writers bring them up to date:
- the resync (resync/plan.py): for each user whose transition's settings read something new, it
  reads the user's stored events of the names the settings read (LSI `by_time`, page by page,
  within the retention, then the events themselves by their keys), tags them, and evaluates the
  user with what it read;
- outbound (outbound/reads.py, planner.py): an event stored with an older (cached) settings
  document is tagged when its stream record is planned.

Facts are only ever added (merged into what the event keeps), never taken away: an event's
properties never change, so what any settings read of them stays true, and a writer holding older
settings cannot remove what newer ones need. Each write is conditional on the event still existing
(a GDPR delete may be racing: it is not recreated) and on its facts being as read (another writer's
facts are merged in again): safe to run twice, from any number of workers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from segment_connector.domain.activity import PAGE_AND_SCREEN, ActivitySpec, Occurrence
from segment_connector.domain.models.items import StoredEvent
from segment_connector.domain.times import format_time, parse_time
from segment_connector.store.event_pages import whole_events
from segment_connector.store.table import Table, deserialize, serialize_value

log = logging.getLogger(__name__)

ATTEMPTS = 3  # writes of one event whose facts another writer changed meanwhile
MAX_NAMES = 99  # operands of the IN of the reads' filter (DynamoDB allows 100)
FIELDS = ("pk", "sk", "type", "event", "event_time")  # of the index entries read first


def merged(stored: Mapping[str, Any] | None, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The stored facts with `facts` added (both are parts of the same properties)."""
    result = dict(stored or {})
    for name, value in facts.items():
        kept = result.get(name)
        result[name] = merged(kept, value) if isinstance(kept, Mapping) and isinstance(value, Mapping) else value
    return result


def reads_more(before: ActivitySpec, after: ActivitySpec) -> bool:
    """Whether `after` reads an event name or a property path that `before` does not (events
    stored under `before` may lack it)."""
    return any(name not in before.paths or not paths <= before.paths[name] for name, paths in after.paths.items())


@dataclass(frozen=True)
class Tag:
    """One event's facts to add (`stored`: its facts attribute as stored, typed; None: none)."""

    pk: str
    sk: str
    facts: dict[str, Any]
    stored: dict[str, Any] | None = None

    @classmethod
    def of(cls, event: StoredEvent, facts: Mapping[str, Any]) -> Tag | None:
        """The tag an event (as stored) needs for `facts`; None when it has them already."""
        if not _needs(event.facts, facts):
            return None
        stored = serialize_value(event.facts) if event.facts is not None else None
        return cls(event.pk, event.sk, dict(facts), stored)


def _needs(stored: Mapping[str, Any] | None, facts: Mapping[str, Any]) -> bool:
    return stored is None or merged(stored, facts) != stored


@dataclass
class Retagged:
    """What a re-tagging did, and the occurrences later than `since` as each spec sees them."""

    occurrences: list[list[Occurrence]]
    tagged: int = 0
    gone: int = 0


class EventFacts:
    """Re-tagging of stored events."""

    def __init__(self, table: Table):
        self.table = table

    def retag(
        self,
        partitions: Sequence[str],
        tag: ActivitySpec,
        kept_since: datetime,
        views: Sequence[ActivitySpec],
        since: datetime,
    ) -> Retagged:
        """Tag the partitions' events that `tag` reads, back to `kept_since` (the retention: an
        event older than a window today may count in a longer one tomorrow); the occurrences later
        than `since` as each of `views` sees them (from the events' properties)."""
        names = set(tag.paths).union(*(view.paths for view in views))
        done = Retagged([[] for _ in views])
        for pk in dict.fromkeys(partitions):
            for event in self._events(pk, names, kept_since):
                self._one(event, tag, views, since, done)
        return done

    def _one(
        self, event: StoredEvent, tag: ActivitySpec, views: Sequence[ActivitySpec], since: datetime, done: Retagged
    ) -> None:
        if event.source == "connector":
            return  # Entered/Left Segment: the connector's own announcements are no activity
        name = Occurrence.rule_name(event.type, event.event)
        properties = event.properties
        facts = tag.facts(name, properties)
        if facts is not None and _needs(event.facts, facts):
            stored = serialize_value(event.facts) if event.facts is not None else None
            if not self.write(Tag(event.pk, event.sk, facts, stored), strict=True):
                done.gone += 1
                return  # deleted meanwhile: it no longer counts
            done.tagged += 1
        try:
            at = parse_time(event.timestamp)
        except ValueError:
            return
        if at is None or at <= since:
            return
        for view, occurrences in zip(views, done.occurrences, strict=True):
            seen = view.facts(name, properties)
            if seen is not None:
                occurrences.append(Occurrence(at, name, event.message_id, seen))

    def _events(self, pk: str, names: set[str], since: datetime) -> Iterator[StoredEvent]:
        """The partition's events later than `since` whose rule name may be in `names`, page by
        page: entries of LSI `by_time` (at most 1 MB a page), then those events by their keys."""
        if not names:
            return
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "IndexName": "by_time",
            "KeyConditionExpression": "#pk = :pk AND #event_time > :since",
            "ProjectionExpression": ", ".join(f"#{name}" for name in FIELDS),
            "ExpressionAttributeNames": {f"#{name}": name for name in FIELDS},
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":since": {"S": format_time(since)}},
        }
        if len(names) <= MAX_NAMES:
            _filter(request, names)
        while True:
            response = self.table.call("query", **request)
            yield from whole_events(self.table, [deserialize(raw) for raw in response.get("Items", [])])
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def write_all(self, tags: Sequence[Tag]) -> None:
        """Outbound's tags, best effort: an event another writer keeps changing is left as it is."""
        for tag in tags:
            self.write(tag, strict=False)

    def write(self, tag: Tag, strict: bool) -> bool:
        """Add the tag's facts to its event; False when the event is gone. Still changing under
        other writers after ATTEMPTS: raised when `strict`, else logged."""
        stored = tag.stored
        for _ in range(ATTEMPTS):
            current = deserialize({"facts": stored})["facts"] if stored is not None else None
            facts = merged(current, tag.facts)
            if not _needs(current, tag.facts):
                return True
            values: dict[str, Any] = {":facts": serialize_value(facts)}
            condition = "attribute_exists(pk) AND "
            if stored is None:
                condition += "attribute_not_exists(facts)"
            else:
                condition += "facts = :old"
                values[":old"] = stored
            if self.table.conditional(
                "update_item",
                Key={"pk": {"S": tag.pk}, "sk": {"S": tag.sk}},
                UpdateExpression="SET facts = :facts",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            ):
                return True
            response = self.table.call(
                "get_item",
                TableName=self.table.name,
                Key={"pk": {"S": tag.pk}, "sk": {"S": tag.sk}},
                ConsistentRead=True,
                ProjectionExpression="facts",
            )
            if "Item" not in response:
                return False
            stored = response["Item"].get("facts")
        if strict:
            raise RuntimeError(f"the facts of event {tag.pk} {tag.sk} kept changing under other writers")
        log.warning("the facts of event %s %s kept changing under other writers; left as they are", tag.pk, tag.sk)
        return True


def _filter(request: dict[str, Any], names: set[str]) -> None:
    """Fewer bytes back (the rule names are checked on the items again): events by name, and
    page and screen calls by type when the rules read those."""
    keys = [f":n{index}" for index in range(len(names))]
    test = f"#event IN ({', '.join(keys)})"
    values = request["ExpressionAttributeValues"]
    values.update({key: {"S": name} for key, name in zip(keys, sorted(names), strict=True)})
    types = [name for name in PAGE_AND_SCREEN if name in names]
    if types:
        test += f" OR #type IN ({', '.join(f':t{index}' for index in range(len(types)))})"
        values.update({f":t{index}": {"S": kind} for index, kind in enumerate(types)})
    request["FilterExpression"] = test

"""A user's events as segment rules and computed traits see them (issue 15).

`Activity` holds the user's occurrences (one per messageId: the same message stored under two of
the user's identities counts once) and answers, at a given time:
- `count(filter)`: how many occurrences an event leaf's filter selects;
- `computed(trait)`: a computed trait's value (MISSING when it has none);
- `next_change(filters)`: the first moment after now at which a windowed filter loses an
  occurrence, i.e. when memberships and values may change only because time passes.

A window of D days holds an occurrence while its timestamp is later than now minus D days: at
exactly `timestamp + D days` it has left. A filter without a window reads the events still kept:
the retention is its window (the table's TTL removes them up to two days later).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any, Final

from segment_connector.domain.models.event_rules import ComputedTrait, EventFilter
from segment_connector.domain.models.rule_predicates import dig, number
from segment_connector.domain.times import parse_time

PAGE_AND_SCREEN = ("page", "screen")


def expiry(timestamp: str, retention_days: int) -> int | None:
    """When an event (and what rules read of it) expires: its timestamp plus the retention, as the
    epoch seconds of the table's TTL attribute; None for a time that cannot be read."""
    at = parse_time(timestamp)
    return None if at is None else int((at + timedelta(days=retention_days)).timestamp())


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""A computed trait without a value (no matching event with the property): not set on the user."""


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One stored event: when it happened, what it is called for rules, its properties."""

    at: datetime  # aware, UTC
    name: str  # a track's event name; "page" / "screen" for page and screen calls
    message_id: str
    properties: Mapping[str, Any] = field(default_factory=dict)

    @staticmethod
    def rule_name(call_type: str, event_name: str) -> str:
        return call_type if call_type in PAGE_AND_SCREEN else event_name


@dataclass(frozen=True)
class ActivitySpec:
    """What the settings read of events: by rule name, the property paths (the `facts` an event
    keeps in its LSI `by_time` entry; an event whose name no rule reads keeps none), and
    how far back the windows look (`since`)."""

    paths: Mapping[str, frozenset[str]]
    longest_days: int | None  # None: some filter reads every stored event

    @classmethod
    def of(cls, filters: Iterable[EventFilter], extra_paths: Mapping[str, Iterable[str]] | None = None) -> ActivitySpec:
        paths: dict[str, set[str]] = {}
        windows: list[int | None] = []
        for events in filters:
            paths.setdefault(events.name, set()).update(events.paths())
            windows.append(events.within_days)
        for name, extra in (extra_paths or {}).items():
            paths.setdefault(name, set()).update(extra)
        longest = None if not windows or None in windows else max(w for w in windows if w is not None)
        return cls({name: frozenset(p) for name, p in paths.items()}, longest)

    def reads(self, name: str) -> bool:
        return name in self.paths

    def facts(self, name: str, properties: Mapping[str, Any]) -> dict[str, Any] | None:
        """The properties the rules read of an event named `name`, nested as sent (None: none read)."""
        if name not in self.paths:
            return None
        facts: dict[str, Any] = {}
        for path in sorted(self.paths[name]):
            parts = path.split(".")
            value = dig(properties, parts)
            if value is None or _inside_taken(facts, parts):
                continue
            target = facts
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
        return facts

    def since(self, now: datetime, retention_days: int) -> datetime:
        """The oldest timestamp any window can count at `now`."""
        return now - timedelta(days=self.longest_days or retention_days)


def _inside_taken(facts: Mapping[str, Any], parts: list[str]) -> bool:
    """Whether a parent of the path is already kept whole (a path inside it adds nothing)."""
    node: Any = facts
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            return False
        if not isinstance(node, Mapping):
            return True
    return False


@dataclass
class Activity:
    """The occurrences of one user, evaluated at `now`."""

    now: datetime
    occurrences: Iterable[Occurrence] = ()
    retention_days: int | None = None  # a filter without a window reads the events still kept
    _by_name: dict[str, list[Occurrence]] = field(init=False, repr=False)
    _computed: dict[int, dict[str, Any]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        self._by_name = {}
        for occurrence in sorted(self.occurrences, key=lambda o: (o.at, o.message_id, o.name)):
            if occurrence.message_id not in seen:  # the earliest copy: any order of reading, one answer
                seen.add(occurrence.message_id)
                self._by_name.setdefault(occurrence.name, []).append(occurrence)

    def selected(self, events: EventFilter) -> list[Occurrence]:
        """The occurrences a filter selects now, oldest first."""
        candidates = self._by_name.get(events.name, [])
        days = self._days(events)
        if days is not None:
            start = self.now - timedelta(days=days)
            candidates = [o for o in candidates if o.at > start and o.at <= self.now]
        else:
            candidates = [o for o in candidates if o.at <= self.now]
        if events.where is not None:
            where = events.where
            candidates = [o for o in candidates if where.matches(o.properties)]
        return candidates

    def count(self, events: EventFilter) -> int:
        return len(self.selected(events))

    def computed(self, trait: ComputedTrait) -> Any:
        selected = self.selected(trait.event_filter())
        if trait.type == "count":
            return len(selected)
        parts = tuple((trait.property or "").split("."))
        values = [value for o in selected if (value := dig(o.properties, parts)) is not None]
        return _COMPUTE[trait.type](values)

    def computed_traits(self, traits: Sequence[ComputedTrait]) -> dict[str, Any]:
        """name -> value of every computed trait that has one (computed once per list of traits:
        segments, identify traits and views all ask for them)."""
        if id(traits) not in self._computed:
            values = {trait.name: self.computed(trait) for trait in traits}
            self._computed[id(traits)] = {name: value for name, value in values.items() if value is not MISSING}
        return self._computed[id(traits)]

    def next_change(self, filters: Iterable[EventFilter]) -> datetime | None:
        """When the first occurrence leaves a windowed filter (None: nothing will leave)."""
        ends = [
            selected[0].at + timedelta(days=days)
            for events in filters
            if (days := self._days(events)) is not None and (selected := self.selected(events))
        ]
        return min(ends, default=None)

    def _days(self, events: EventFilter) -> int | None:
        return events.within_days if events.within_days is not None else self.retention_days


DIGITS = 38  # DynamoDB's precision for numbers


def _numbers(values: list[Any]) -> list[Decimal]:
    return [n for value in values if (n := number(value)) is not None]


def _plain(n: Decimal) -> int | float:
    """A JSON number, as the store reads numbers back (store.table.from_dynamo): int when whole."""
    return int(n) if n == n.to_integral_value() else float(n)


def _sum(values: list[Any]) -> Any:
    numbers = _numbers(values)
    with localcontext(prec=DIGITS):
        return _plain(sum(numbers, Decimal(0))) if numbers else MISSING


def _avg(values: list[Any]) -> Any:
    numbers = _numbers(values)
    with localcontext(prec=DIGITS):
        return _plain(sum(numbers, Decimal(0)) / len(numbers)) if numbers else MISSING


def _min(values: list[Any]) -> Any:
    numbers = _numbers(values)
    return _plain(min(numbers)) if numbers else MISSING


def _max(values: list[Any]) -> Any:
    numbers = _numbers(values)
    return _plain(max(numbers)) if numbers else MISSING


def _first(values: list[Any]) -> Any:
    return values[0] if values else MISSING


def _last(values: list[Any]) -> Any:
    return values[-1] if values else MISSING


def _text(value: Any) -> str:
    """The key two equal values share (1 and 1.0 alike), and their alphabetical order."""
    if isinstance(value, str):
        return value
    n = number(value)
    if n is not None:
        return str(_plain(n))
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _order(value: Any) -> tuple[int, Any]:
    """Numbers (numerically), then strings (alphabetically), then anything else by its JSON text."""
    if (n := number(value)) is not None:
        return (0, n)
    if isinstance(value, str):
        return (1, value)
    return (2, _text(value))


def _distinct(values: list[Any]) -> dict[str, Any]:
    distinct: dict[str, Any] = {}
    for value in values:
        distinct.setdefault(_text(value), value)
    return distinct


def _most_frequent(values: list[Any]) -> Any:
    if not values:
        return MISSING
    counts: dict[str, int] = {}
    for value in values:
        counts[_text(value)] = counts.get(_text(value), 0) + 1
    best = min(counts, key=lambda text: (-counts[text], text))
    return _distinct(values)[best]


def _unique_list(values: list[Any]) -> Any:
    return sorted(_distinct(values).values(), key=_order)


def _unique_count(values: list[Any]) -> Any:
    return len(_distinct(values))


_COMPUTE = {
    "sum": _sum,
    "avg": _avg,
    "min": _min,
    "max": _max,
    "first": _first,
    "last": _last,
    "most_frequent": _most_frequent,
    "unique_list": _unique_list,
    "unique_count": _unique_count,
}

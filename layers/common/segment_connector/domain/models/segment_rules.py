"""Segment definitions: JSON rules parsed once into a tree of predicates, then matched per record.

A rule is `{"all": [rule, ...]}`, `{"any": [rule, ...]}`, `{"not": rule}`, a trait leaf
`{"trait": "<path>", "op": OP, "value": V}` or (user segments) an event leaf
`{"event": NAME, "count": {"op": OP, "value": N}, "within_days": D, "where": RULE}` (see
event_rules.py: the user's events named NAME in the last D days whose properties match `where`,
counted and compared with N; `count` defaults to at least one). Matching never raises; its semantics:

* A trait path is dotted for nested traits (`address.country`). Absent and `null` are both
  "missing": `exists`/`missing` test exactly that.
* `neq` is `not eq` and `nin` is `not in`, so a missing trait (or one of another type) matches
  them; it matches no other op.
* Equality is typed: numbers compare numerically (int, float and Decimal alike, floats via their
  shortest repr so 0.1 == Decimal("0.1")), booleans only equal booleans (True is not 1), strings
  compare exactly. A numeric string is not a number.
* `gt`/`gte`/`lt`/`lte` with a number compare numbers; with an ISO-8601 date or datetime they
  compare the trait read as ISO-8601 (naive = UTC). If either side is a date without a time, both
  are compared as UTC calendar days, so "2024-01-05T10:00:00Z" is `gte` and `lte` "2024-01-05"
  but not `gt` it.
* `contains`: substring of a string trait, or an element (typed equality) of a list/set trait.
  `starts_with`/`ends_with`: string traits only.

User segments may also test the reserved paths `email`, `user_id` (the profile's fields, not the
traits of that name) and `account.<path>` (the linked account's traits); a bare `account` is an
ordinary user trait. Account segments may test trait paths only.
"""

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from segment_connector.domain.models.event_rules import AT_LEAST_ONE, CountTest, EventFilter, PropertyRule
from segment_connector.domain.models.rule_predicates import Op, combinator, dig, dotted_path, leaf_test, not_null

Lookup = Callable[[tuple[str, ...]], Any]
"""Resolves a split trait path to its value (None when missing)."""
EventCount = Callable[[EventFilter], int]
"""How many of the user's events an event leaf's filter selects (now)."""


def no_events(_: EventFilter) -> int:
    """The count of a subject without events (an account; a rule without event leaves)."""
    return 0


_USER_ONLY_PATHS = ("email", "user_id")
_EVENT_KEYS = {"event", "count", "within_days", "where"}


_NO_KIND = "a rule needs 'all', 'any', 'not', or a leaf's 'trait' and 'op' (or an event leaf's 'event')"
_LEAF_KEYS = ("trait", "op", "value", "event", "count", "within_days", "where")


def _keys(given: set[str]) -> list[str]:
    """The keys given, in the order a leaf's keys are documented."""
    return [key for key in _LEAF_KEYS if key in given]


class Rule(BaseModel):
    """One node of a rule tree; validation compiles it into a predicate (`matches`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    all_: list["Rule"] | None = Field(None, alias="all", min_length=1)
    any_: list["Rule"] | None = Field(None, alias="any", min_length=1)
    not_: "Rule | None" = Field(None, alias="not")
    trait: str | None = None
    op: Op | None = None
    value: Any = None
    event: Annotated[str, StringConstraints(min_length=1)] | None = None
    count: CountTest | None = None
    within_days: Annotated[StrictInt, Field(ge=1)] | None = None
    where: PropertyRule | None = None

    _match: Callable[[Lookup, EventCount], bool] = PrivateAttr()
    _events: EventFilter | None = PrivateAttr(None)

    _not_null = field_validator(
        "all_", "any_", "not_", "trait", "op", "event", "count", "within_days", "where", mode="before"
    )(not_null)

    @field_validator("trait")
    @classmethod
    def _dotted_path(cls, v: str) -> str:
        return dotted_path(v, "trait")

    @model_validator(mode="after")
    def _compile(self) -> "Rule":
        given = self.model_fields_set
        combined = combinator(self, given, "'trait'/'op'/'value' or 'event'/'count'/'within_days'/'where'")
        if combined is not None:
            self._match = combined
        elif self.event is not None:
            self._compile_event_leaf(given)
        elif self.trait is None or self.op is None:
            raise ValueError(_NO_KIND)
        elif given & _EVENT_KEYS:
            extra = ", ".join(_keys(given & _EVENT_KEYS))
            raise ValueError(f"a trait leaf takes no {extra}: those are an event leaf's")
        else:
            test, parts = leaf_test(self.op, self.value, "value" in given), tuple(self.trait.split("."))
            self._match = lambda lookup, count: test(lookup(parts))
        return self

    def _compile_event_leaf(self, given: set[str]) -> None:
        if given & {"trait", "op", "value"}:
            raise ValueError(
                f"an event leaf takes no {', '.join(_keys(given & {'trait', 'op', 'value'}))}: "
                'its test is \'count\' ({"op": ..., "value": N})'
            )
        events = EventFilter(self.event or "", self.within_days, self.where)
        test = self.count or AT_LEAST_ONE
        self._events = events
        self._match = lambda lookup, count: test.passes(count(events))

    def __repr_args__(self) -> list[tuple[str | None, Any]]:  # show only the keys this node uses
        return [(k, v) for k, v in super().__repr_args__() if v is not None]

    def matches(self, lookup: Lookup, count: EventCount = no_events) -> bool:
        return self._match(lookup, count)

    @property
    def events(self) -> EventFilter | None:
        """An event leaf's filter (None for other nodes)."""
        return self._events

    def leaves(self, loc: str = "rule") -> Iterator[tuple[str, "Rule"]]:
        """(location, leaf) pairs, e.g. ("rule.all.0", leaf), for checks on trait paths."""
        if self.not_ is not None:
            yield from self.not_.leaves(f"{loc}.not")
        for key, children in (("all", self.all_), ("any", self.any_)):
            for i, child in enumerate(children or ()):
                yield from child.leaves(f"{loc}.{key}.{i}")
        if self.trait is not None or self.event is not None:
            yield loc, self

    def event_filters(self) -> list[EventFilter]:
        return [leaf.events for _, leaf in self.leaves() if leaf.events is not None]


class SegmentDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    rule: Rule


class UserSegmentDefinition(SegmentDefinition):
    """May also test `email`, `user_id` and `account.<path>`."""


class AccountSegmentDefinition(SegmentDefinition):
    @field_validator("rule")
    @classmethod
    def _trait_paths_only(cls, rule: Rule) -> Rule:
        for loc, leaf in rule.leaves():
            if leaf.event is not None:
                raise ValueError(f"{loc}.event: event conditions are only allowed in user segments")
            path = leaf.trait or ""
            if path in _USER_ONLY_PATHS or path.startswith("account."):
                raise ValueError(
                    f"{loc}.trait: {path!r} is only allowed in user segments;"
                    " account segments test account trait paths only"
                )
        return rule


def validate_unique_names[D: SegmentDefinition](definitions: list[D]) -> list[D]:
    seen: dict[str, int] = {}
    for i, d in enumerate(definitions):
        if d.name in seen:
            raise ValueError(f"duplicate segment name {d.name!r} (items {seen[d.name]} and {i})")
        seen[d.name] = i
    return definitions


UserSegments = Annotated[list[UserSegmentDefinition], AfterValidator(validate_unique_names)]
AccountSegments = Annotated[list[AccountSegmentDefinition], AfterValidator(validate_unique_names)]
"""Field types for the settings model: `segments: UserSegments = []`."""


def user_segment_names(
    definitions: list[UserSegmentDefinition],
    *,
    traits: dict[str, Any],
    email: str | None,
    user_id: str | None,
    account_traits: dict[str, Any] | None,
    events: EventCount = no_events,
) -> list[str]:
    """The user segments a user is in; `events` counts the user's events for event leaves (the
    traits given include the computed ones, see domain/activity.py)."""

    def lookup(parts: tuple[str, ...]) -> Any:
        if parts == ("email",):
            return email
        if parts == ("user_id",):
            return user_id
        if parts[0] == "account" and len(parts) > 1:
            return dig(account_traits, parts[1:])
        return dig(traits, parts)

    return [d.name for d in definitions if d.rule.matches(lookup, events)]


def account_segment_names(definitions: list[AccountSegmentDefinition], *, traits: dict[str, Any]) -> list[str]:
    def lookup(parts: tuple[str, ...]) -> Any:
        return dig(traits, parts)

    return [d.name for d in definitions if d.rule.matches(lookup)]

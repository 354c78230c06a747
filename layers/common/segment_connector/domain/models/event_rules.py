"""What segments and computed traits read of a user's events (issue 15).

* `EventFilter`: which stored events count: a name (a track's event name, or `page` / `screen` for
  page and screen calls), an optional window (`within_days`: an event counts while its timestamp is
  later than now minus that many days) and an optional `where` over the event's properties.
* `PropertyRule` (`where`): the rule grammar of segment_rules.py with `property` where a trait leaf
  has `trait`: dotted paths, the same ops, the same typing.
* `CountTest` (`count`): how many such events an event leaf asks for (default: at least one).
* `ComputedTrait` (setting `computed_traits`): a value made from the events of a filter.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictInt, field_validator, model_validator

from segment_connector.domain.models.rule_predicates import Op, combinator, dig, dotted_path, leaf_test, not_null

CountOp = Literal["eq", "neq", "gt", "gte", "lt", "lte"]
ComputedType = Literal[
    "count", "sum", "avg", "min", "max", "first", "last", "most_frequent", "unique_list", "unique_count",
]  # fmt: skip
NUMERIC_TYPES = ("sum", "avg", "min", "max")
DEFAULT_RETENTION_DAYS = 365
MAX_RETENTION_DAYS = 3650
RESERVED_TRAIT_PREFIX = "hull_"

_COUNT_TESTS: dict[str, Callable[[int, int], bool]] = {
    "eq": lambda n, v: n == v,
    "neq": lambda n, v: n != v,
    "gt": lambda n, v: n > v,
    "gte": lambda n, v: n >= v,
    "lt": lambda n, v: n < v,
    "lte": lambda n, v: n <= v,
}


class PropertyRule(BaseModel):
    """One node of a `where`: `all`/`any`/`not`, or a leaf `{"property", "op", "value"}`."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    all_: list["PropertyRule"] | None = Field(None, alias="all", min_length=1)
    any_: list["PropertyRule"] | None = Field(None, alias="any", min_length=1)
    not_: "PropertyRule | None" = Field(None, alias="not")
    property: str | None = None
    op: Op | None = None
    value: Any = None

    _match: Callable[[Mapping[str, Any]], bool] = PrivateAttr()

    _not_null = field_validator("all_", "any_", "not_", "property", "op", mode="before")(not_null)

    @field_validator("property")
    @classmethod
    def _dotted_path(cls, v: str) -> str:
        return dotted_path(v, "property")

    @model_validator(mode="after")
    def _compile(self) -> "PropertyRule":
        given = self.model_fields_set
        combined = combinator(self, given, "'property'/'op'/'value'")
        if combined is not None:
            self._match = combined
        elif self.property is None or self.op is None:
            raise ValueError("a `where` rule needs 'all', 'any', 'not', or a leaf's 'property' and 'op'")
        else:
            test, parts = leaf_test(self.op, self.value, "value" in given), tuple(self.property.split("."))
            self._match = lambda properties: test(dig(properties, parts))
        return self

    def matches(self, properties: Mapping[str, Any]) -> bool:
        return self._match(properties)

    def paths(self) -> set[str]:
        """The property paths this rule reads."""
        found = {self.property} if self.property else set()
        for child in [*(self.all_ or ()), *(self.any_ or ()), *([self.not_] if self.not_ else [])]:
            found |= child.paths()
        return found


class CountTest(BaseModel):
    """`{"op": "gte", "value": 2}`: how many matching events an event leaf asks for."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    op: CountOp = "gte"
    value: Annotated[StrictInt, Field(ge=0)] = 1

    def passes(self, count: int) -> bool:
        return _COUNT_TESTS[self.op](count, self.value)


AT_LEAST_ONE = CountTest()


@dataclass(frozen=True, eq=False)  # compared by identity: one per leaf or computed trait
class EventFilter:
    """Which of a user's events an event leaf or a computed trait reads."""

    name: str
    within_days: int | None = None
    where: PropertyRule | None = None

    def paths(self) -> set[str]:
        return self.where.paths() if self.where else set()


class ComputedTrait(BaseModel):
    """A user trait computed from the user's events (setting `computed_traits`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: Annotated[str, Field(min_length=1, max_length=100)]
    type: ComputedType
    event: Annotated[str, Field(min_length=1)]
    property: str | None = None
    within_days: Annotated[StrictInt, Field(ge=1)] | None = None
    where: PropertyRule | None = None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.startswith(RESERVED_TRAIT_PREFIX):
            raise ValueError(f"must not start with {RESERVED_TRAIT_PREFIX!r}: those traits are the connector's own")
        return name

    @field_validator("property")
    @classmethod
    def _dotted_path(cls, v: str | None) -> str | None:
        return None if v is None else dotted_path(v, "property")

    @model_validator(mode="after")
    def _property_for_type(self) -> "ComputedTrait":
        if self.type == "count" and self.property is not None:
            raise ValueError("a 'count' counts events: it takes no 'property'")
        if self.type != "count" and self.property is None:
            kind = "a numeric property" if self.type in NUMERIC_TYPES else "a property"
            raise ValueError(f"a {self.type!r} needs 'property': {kind} of the event")
        return self

    def event_filter(self) -> EventFilter:
        return EventFilter(self.event, self.within_days, self.where)

    def paths(self) -> set[str]:
        return self.event_filter().paths() | ({self.property} if self.property else set())


def validate_computed_traits(traits: list[ComputedTrait]) -> list[ComputedTrait]:
    seen: dict[str, int] = {}
    for i, trait in enumerate(traits):
        if trait.name in seen:
            raise ValueError(f"duplicate computed trait name {trait.name!r} (items {seen[trait.name]} and {i})")
        seen[trait.name] = i
    return traits

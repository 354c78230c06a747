"""Segment definitions: JSON rules parsed once into a tree of predicates, then matched per record.

A rule is `{"all": [rule, ...]}`, `{"any": [rule, ...]}`, `{"not": rule}` or a leaf
`{"trait": "<path>", "op": OP, "value": V}`. Matching never raises; its semantics:

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

import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
    model_validator,
)

Op = Literal[
    "eq", "neq", "in", "nin", "exists", "missing",
    "gt", "gte", "lt", "lte", "contains", "starts_with", "ends_with",
]  # fmt: skip
Lookup = Callable[[tuple[str, ...]], Any]
"""Resolves a split trait path to its value (None when missing)."""

_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
_USER_ONLY_PATHS = ("email", "user_id")


def _number(x: Any) -> Decimal | None:
    if isinstance(x, bool) or not isinstance(x, int | float | Decimal):
        return None
    d = Decimal(str(x)) if isinstance(x, float) else Decimal(x)
    return d if d.is_finite() else None  # NaN would raise on ordering


def _scalar(x: Any) -> str | bool | Decimal | None:
    return x if isinstance(x, str | bool) else _number(x)


def _moment(x: Any) -> date | None:
    """An ISO-8601 string, date or datetime as a date or an aware datetime (naive = UTC)."""
    if isinstance(x, str):
        try:
            return date.fromisoformat(x)
        except ValueError:
            try:
                x = datetime.fromisoformat(x)
            except ValueError:
                return None
    if isinstance(x, datetime):
        return x if x.utcoffset() is not None else x.replace(tzinfo=UTC)
    return x if isinstance(x, date) else None


def _day(d: date) -> date:
    return d.astimezone(UTC).date() if isinstance(d, datetime) else d


def _equals(actual: Any, expected: str | bool | Decimal) -> bool:
    if isinstance(expected, Decimal):
        return (n := _number(actual)) is not None and n == expected
    if isinstance(expected, bool):
        return isinstance(actual, bool) and actual == expected
    return isinstance(actual, str) and actual == expected


def _ordered(actual: Any, expected: Decimal | date) -> tuple[Any, Any] | None:
    if isinstance(expected, Decimal):
        return None if (n := _number(actual)) is None else (n, expected)
    if (m := _moment(actual)) is None:
        return None
    if not isinstance(m, datetime) or not isinstance(expected, datetime):
        return _day(m), _day(expected)
    return m, expected


def _contains(actual: Any, expected: str | bool | Decimal) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list | tuple | set | frozenset):
        return any(_equals(item, expected) for item in actual)
    return False


def _leaf_test(op: Op, value: Any, has_value: bool) -> Callable[[Any], bool]:
    """Validate a leaf's value for its op and return the predicate on the trait's value."""
    if op in ("exists", "missing"):
        return _presence_test(op, has_value)
    if not has_value:
        raise ValueError(f"op '{op}' requires a 'value'")
    if value is None:
        raise ValueError(f"op '{op}': 'value' must not be null (use 'exists'/'missing')")
    if op in ("in", "nin"):
        return _membership_test(op, value)
    if op in _ORDER:
        return _order_test(op, value)
    if op in ("starts_with", "ends_with"):
        return _affix_test(op, value)
    return _scalar_test(op, value)  # eq, neq, contains


def _presence_test(op: Op, has_value: bool) -> Callable[[Any], bool]:
    """exists / missing: no value."""
    if has_value:
        raise ValueError(f"op '{op}' takes no 'value'")
    return (lambda a: a is not None) if op == "exists" else (lambda a: a is None)


def _membership_test(op: Op, value: Any) -> Callable[[Any], bool]:
    """in / nin: a non-empty list of scalars."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"op '{op}' requires a non-empty list 'value', got {value!r}")
    scalars = [_scalar(v) for v in value]
    options = [option for option in scalars if option is not None]
    if len(options) != len(scalars):
        raise ValueError(f"op '{op}': list items must be strings, numbers or booleans")

    def test(actual: Any) -> bool:
        return any(_equals(actual, option) for option in options)

    return (lambda a: not test(a)) if op == "nin" else test


def _order_test(op: Op, value: Any) -> Callable[[Any], bool]:
    """gt / gte / lt / lte: a number, or an ISO date compared as a date."""
    bound = _moment(value) if isinstance(value, str) else _number(value)
    if bound is None:
        raise ValueError(f"op '{op}' requires a number or an ISO-8601 date/datetime 'value', got {value!r}")
    cmp = _ORDER[op]
    return lambda a: (pair := _ordered(a, bound)) is not None and cmp(*pair)


def _affix_test(op: Op, value: Any) -> Callable[[Any], bool]:
    """starts_with / ends_with: a string."""
    if not isinstance(value, str):
        raise ValueError(f"op '{op}' requires a string 'value', got {value!r}")
    if op == "starts_with":
        return lambda a: isinstance(a, str) and a.startswith(value)
    return lambda a: isinstance(a, str) and a.endswith(value)


def _scalar_test(op: Op, value: Any) -> Callable[[Any], bool]:
    """eq / neq / contains: a string, number or boolean."""
    expected = _scalar(value)
    if expected is None:
        raise ValueError(f"op '{op}' requires a string, number or boolean 'value', got {value!r}")
    if op == "contains":
        return lambda a: _contains(a, expected)
    return (lambda a: not _equals(a, expected)) if op == "neq" else (lambda a: _equals(a, expected))


class Rule(BaseModel):
    """One node of a rule tree; validation compiles it into a predicate (`matches`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    all_: list["Rule"] | None = Field(None, alias="all", min_length=1)
    any_: list["Rule"] | None = Field(None, alias="any", min_length=1)
    not_: "Rule | None" = Field(None, alias="not")
    trait: str | None = None
    op: Op | None = None
    value: Any = None

    _match: Callable[[Lookup], bool] = PrivateAttr()

    @field_validator("all_", "any_", "not_", "trait", "op", mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("must not be null")
        return v

    @field_validator("trait")
    @classmethod
    def _dotted_path(cls, v: str) -> str:
        if not all(v.split(".")):
            raise ValueError(f"trait path {v!r} must be a name or a dotted path like 'a.b'")
        return v

    @model_validator(mode="after")
    def _compile(self) -> "Rule":
        given = self.model_fields_set
        kinds = [k for k in ("all", "any", "not") if f"{k}_" in given]
        if len(kinds) > 1:
            raise ValueError(f"a rule takes only one of 'all', 'any', 'not'; got {kinds}")
        if kinds and given & {"trait", "op", "value"}:
            raise ValueError(f"'{kinds[0]}' cannot be combined with 'trait'/'op'/'value'")
        if kinds == ["all"] or kinds == ["any"]:
            children, combine = (self.all_ or [], all) if kinds == ["all"] else (self.any_ or [], any)
            self._match = lambda lookup: combine(c.matches(lookup) for c in children)
        elif kinds == ["not"] and self.not_ is not None:
            child = self.not_
            self._match = lambda lookup: not child.matches(lookup)
        elif self.trait is None or self.op is None:
            raise ValueError("a rule needs 'all', 'any', 'not', or a leaf's 'trait' and 'op'")
        else:
            test, parts = _leaf_test(self.op, self.value, "value" in given), tuple(self.trait.split("."))
            self._match = lambda lookup: test(lookup(parts))
        return self

    def __repr_args__(self) -> list[tuple[str | None, Any]]:  # show only the keys this node uses
        return [(k, v) for k, v in super().__repr_args__() if v is not None]

    def matches(self, lookup: Lookup) -> bool:
        return self._match(lookup)

    def leaves(self, loc: str = "rule") -> Iterator[tuple[str, "Rule"]]:
        """(location, leaf) pairs, e.g. ("rule.all.0", leaf), for checks on trait paths."""
        if self.not_ is not None:
            yield from self.not_.leaves(f"{loc}.not")
        for key, children in (("all", self.all_), ("any", self.any_)):
            for i, child in enumerate(children or ()):
                yield from child.leaves(f"{loc}.{key}.{i}")
        if self.trait is not None:
            yield loc, self


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


def _dig(obj: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part)
    return obj


def user_segment_names(
    definitions: list[UserSegmentDefinition],
    *,
    traits: dict[str, Any],
    email: str | None,
    user_id: str | None,
    account_traits: dict[str, Any] | None,
) -> list[str]:
    def lookup(parts: tuple[str, ...]) -> Any:
        if parts == ("email",):
            return email
        if parts == ("user_id",):
            return user_id
        if parts[0] == "account" and len(parts) > 1:
            return _dig(account_traits, parts[1:])
        return _dig(traits, parts)

    return [d.name for d in definitions if d.rule.matches(lookup)]


def account_segment_names(definitions: list[AccountSegmentDefinition], *, traits: dict[str, Any]) -> list[str]:
    def lookup(parts: tuple[str, ...]) -> Any:
        return _dig(traits, parts)

    return [d.name for d in definitions if d.rule.matches(lookup)]

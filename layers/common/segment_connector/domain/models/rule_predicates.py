"""The tests a rule's leaf applies to one value (a trait, or an event's property): `leaf_test`
validates an op and its value once and returns the predicate. Semantics: see segment_rules.py."""

import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

Op = Literal[
    "eq", "neq", "in", "nin", "exists", "missing",
    "gt", "gte", "lt", "lte", "contains", "starts_with", "ends_with",
]  # fmt: skip
_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def number(x: Any) -> Decimal | None:
    if isinstance(x, bool) or not isinstance(x, int | float | Decimal):
        return None
    d = Decimal(str(x)) if isinstance(x, float) else Decimal(x)
    return d if d.is_finite() else None  # NaN would raise on ordering


def _scalar(x: Any) -> str | bool | Decimal | None:
    return x if isinstance(x, str | bool) else number(x)


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
        return (n := number(actual)) is not None and n == expected
    if isinstance(expected, bool):
        return isinstance(actual, bool) and actual == expected
    return isinstance(actual, str) and actual == expected


def _ordered(actual: Any, expected: Decimal | date) -> tuple[Any, Any] | None:
    if isinstance(expected, Decimal):
        return None if (n := number(actual)) is None else (n, expected)
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


def leaf_test(op: Op, value: Any, has_value: bool) -> Callable[[Any], bool]:
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
    bound = _moment(value) if isinstance(value, str) else number(value)
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


def not_null(value: Any) -> Any:
    """A rule key given as null is an error (absent is the way to leave a key out)."""
    if value is None:
        raise ValueError("must not be null")
    return value


def dotted_path(value: str, what: str) -> str:
    if not all(value.split(".")):
        raise ValueError(f"{what} path {value!r} must be a name or a dotted path like 'a.b'")
    return value


def combinator(node: Any, given: set[str], leaf_keys: str) -> Callable[..., bool] | None:
    """The predicate of an `all`/`any`/`not` node (its children's `matches`, called with the same
    arguments); None for a leaf. `given`: the node's keys given (field names, `all_`...);
    `leaf_keys`: how the error names the keys a combinator cannot take."""
    kinds = [kind for kind in ("all", "any", "not") if f"{kind}_" in given]
    if len(kinds) > 1:
        raise ValueError(f"a rule takes only one of 'all', 'any', 'not'; got {kinds}")
    if not kinds:
        return None
    others = sorted(key.rstrip("_") for key in given - {f"{kinds[0]}_"})
    if others:
        raise ValueError(f"'{kinds[0]}' cannot be combined with {leaf_keys} (got {', '.join(others)})")
    if kinds[0] == "not":
        child = node.not_
        return lambda *facts: not child.matches(*facts)
    children, combine = (node.all_, all) if kinds[0] == "all" else (node.any_, any)
    return lambda *facts: combine(c.matches(*facts) for c in children)


def dig(obj: Any, parts: Sequence[str]) -> Any:
    """The value at a split dotted path (None when any step is missing or not an object)."""
    for part in parts:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part)
    return obj

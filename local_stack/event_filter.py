"""Lambda event-source-mapping FilterCriteria: the EventBridge-style pattern language.

Implemented: nested keys, lists of allowed literal values (strings, numbers, booleans, null),
and the content filters `prefix`, `suffix`, `equals-ignore-case`, `anything-but`, `numeric`,
`exists` and `wildcard`, plus `$or`. A record passes a FilterCriteria when any of its filters
matches (Lambda ORs the filters). Not implemented: `cidr`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

_MISSING = object()


def compile_filters(filter_criteria: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Patterns (as dicts) from a template's `FilterCriteria: {Filters: [{Pattern: '<json>'}]}`."""
    if not filter_criteria:
        return []
    patterns = []
    for entry in filter_criteria.get("Filters") or []:
        pattern = entry["Pattern"]
        patterns.append(json.loads(pattern) if isinstance(pattern, str) else pattern)
    return patterns


def passes(patterns: Iterable[Mapping[str, Any]], record: Mapping[str, Any]) -> bool:
    """True when there are no patterns, or when any pattern matches (how Lambda applies them)."""
    patterns = list(patterns)
    return not patterns or any(matches(pattern, record) for pattern in patterns)


def matches(pattern: Mapping[str, Any], event: Any) -> bool:
    """True when every key of `pattern` matches `event` (a JSON-like dict)."""
    if not isinstance(pattern, Mapping):
        raise ValueError(f"a pattern must be an object, got {pattern!r}")
    for key, expected in pattern.items():
        if key == "$or":
            if not any(matches(alternative, event) for alternative in expected):
                return False
            continue
        actual = event.get(key, _MISSING) if isinstance(event, Mapping) else _MISSING
        if isinstance(expected, Mapping):
            # Nested object: the event must have an object here that matches too.
            if actual is _MISSING or not matches(expected, actual):
                return False
        elif isinstance(expected, list):
            if not _matches_any(expected, actual):
                return False
        else:
            raise ValueError(f"pattern value for {key!r} must be an object or a list, got {expected!r}")
    return True


def _matches_any(allowed: list[Any], actual: Any) -> bool:
    # An array in the event matches when any of its elements matches.
    values = actual if isinstance(actual, list) else [actual]
    for condition in allowed:
        if isinstance(condition, Mapping) and "exists" in condition:
            if bool(condition["exists"]) == (actual is not _MISSING):
                return True
            continue
        if actual is _MISSING:
            continue
        if any(_matches_value(condition, value) for value in values):
            return True
    return False


def _matches_value(condition: Any, value: Any) -> bool:
    if not isinstance(condition, Mapping):
        return _literal_equal(condition, value)
    if len(condition) != 1:
        raise ValueError(f"a content filter has exactly one operator, got {condition!r}")
    ((operator, operand),) = condition.items()
    if operator == "prefix":
        return _string_test(operand, value, str.startswith)
    if operator == "suffix":
        return _string_test(operand, value, str.endswith)
    if operator == "equals-ignore-case":
        return isinstance(value, str) and value.casefold() == str(operand).casefold()
    if operator == "wildcard":
        return isinstance(value, str) and _wildcard(operand).fullmatch(value) is not None
    if operator == "anything-but":
        if isinstance(operand, Mapping):
            return not _matches_value(operand, value)
        excluded = operand if isinstance(operand, list) else [operand]
        return not any(_literal_equal(item, value) for item in excluded)
    if operator == "numeric":
        return _numeric(operand, value)
    raise ValueError(f"unsupported content filter {operator!r}")


def _literal_equal(expected: Any, value: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool) or expected is None or value is None:
        return expected is value or (type(expected) is type(value) and expected == value)
    if isinstance(expected, (int, float)) and isinstance(value, (int, float)):
        return float(expected) == float(value)
    return type(expected) is type(value) and expected == value


def _string_test(operand: Any, value: Any, test: Any) -> bool:
    if not isinstance(value, str):
        return False
    if isinstance(operand, Mapping) and "equals-ignore-case" in operand:
        return bool(test(value.casefold(), str(operand["equals-ignore-case"]).casefold()))
    return bool(test(value, str(operand)))


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in str(pattern).split("*")), re.DOTALL)


_NUMERIC_OPS = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _numeric(operand: list[Any], value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if len(operand) % 2:
        raise ValueError(f"numeric filter needs operator/value pairs, got {operand!r}")
    for index in range(0, len(operand), 2):
        op, bound = operand[index], operand[index + 1]
        if op not in _NUMERIC_OPS:
            raise ValueError(f"unsupported numeric operator {op!r}")
        if not _NUMERIC_OPS[op](float(value), float(bound)):
            return False
    return True

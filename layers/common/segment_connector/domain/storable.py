"""Values a sender controls, made fit for DynamoDB before anything is written.

Anyone who can send to Segment chooses trait names and values. DynamoDB stores UTF-8 strings,
numbers of at most 38 significant digits between 1e-130 and 1e126, and documents nested at most
32 levels. A lone UTF-16 surrogate (`"\\ud800"`, valid JSON but not unicode) is replaced by
U+FFFD: the rest of the text is kept. A number or a nesting DynamoDB cannot hold faithfully is
refused with the path of the field, so the sender learns which value it was.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from segment_connector.domain.errors import ConnectorError

MAX_DEPTH = 32
MAX_DIGITS = 38
_LARGEST = 1e126
_SMALLEST = 1e-130
# Compiled (and cached by `re`) by the first text that has one: compiling this character class builds
# a 64K-entry map, ~0.4 ms that every cold start paid for a text that is rarely sent.
_SURROGATE = "[\ud800-\udfff]"
REPLACEMENT = "\ufffd"
MAX_FIELD_CHARS = 200  # of a path quoted in an error
MAX_ITEM_BYTES = 400 * 1024  # DynamoDB refuses a larger item (names and values, as item_size counts them)


class Unstorable(ValueError):
    """A value DynamoDB cannot hold as sent; `field` is its dotted path."""

    def __init__(self, field: str, reason: str):
        field = field if len(field) <= MAX_FIELD_CHARS else field[:MAX_FIELD_CHARS] + "..."
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def storable(value: Any, field: str = "", depth: int = 0) -> Any:
    """`value` with lone surrogates replaced; raises Unstorable for numbers and depths DynamoDB refuses.

    `depth` counts the containers above `value` (a message's `traits` object is at depth 1).
    """
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        check_number(value, field)
        return value
    if isinstance(value, (dict, list)):
        if depth >= MAX_DEPTH:
            raise Unstorable(field or "(message)", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, list):
            return [storable(item, _join(field, str(index)), depth + 1) for index, item in enumerate(value)]
        if "" in value:
            raise Unstorable(_join(field, '""'), "empty key (DynamoDB cannot store an empty attribute name)")
        return {clean_text(key): storable(item, _join(field, key), depth + 1) for key, item in value.items()}
    return value


def clean_text(text: str) -> str:
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return re.sub(_SURROGATE, REPLACEMENT, text)
    return text


def check_number(value: int | float, field: str) -> None:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unstorable(field, "number out of range (stored numbers lie between 1e-130 and 1e126)")
        if value and not _SMALLEST <= abs(value) < _LARGEST:
            raise Unstorable(field, "number out of range (stored numbers lie between 1e-130 and 1e126)")
        return
    if -(10**MAX_DIGITS) < value < 10**MAX_DIGITS:
        return
    digits = str(abs(value))
    if len(digits.rstrip("0")) > MAX_DIGITS:
        raise Unstorable(field, f"number has more than {MAX_DIGITS} significant digits")
    if len(digits) > 126:
        raise Unstorable(field, "number out of range (stored numbers lie between 1e-130 and 1e126)")


def exact_decimal(value: int) -> Decimal:
    """A whole number as a Decimal without its trailing zeros (10**45 is 1E+45, one digit)."""
    digits = str(abs(value))
    significant = digits.rstrip("0") or "0"
    return Decimal(f"{'-' if value < 0 else ''}{significant}E{len(digits) - len(significant)}")


def _join(field: str, key: str) -> str:
    key = clean_text(key)
    return f"{field}.{key}" if field else key


class ProfileTooLarge(ConnectorError):
    """A profile (or account) that no longer fits in one DynamoDB item: 500, so that Segment keeps
    retrying the delivery (never a 4xx, which it would drop), with the ProfilesTooLarge metric and
    its alarm for an operator to act (README "Errors and limits")."""

    status = 500
    code = "profile_too_large"

    def __init__(self, pk: str, size: int | None = None):
        super().__init__(
            "a profile this delivery changes no longer fits in one DynamoDB item (400 KB); an operator must act "
            "(the function's log names it); the delivery is retried meanwhile"
        )
        self.pk = pk
        self.size = size


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it against its 400 KB limit: each attribute's name (UTF-8)
    plus its value; strings their UTF-8 bytes, numbers 1 byte per two significant digits plus 1,
    booleans and nulls 1, lists and maps 3 bytes plus 1 per element plus their elements (a map's
    keys counted like names). https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
    """
    return sum(_utf8(name) + _value_size(value) for name, value in item.items())


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return _utf8(value)
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, (int, float, Decimal)):
        return _number_size(value)
    if isinstance(value, dict):
        return 3 + sum(1 + _utf8(key) + _value_size(item) for key, item in value.items())
    if isinstance(value, (list, tuple, set)):
        return 3 + sum(1 + _value_size(item) for item in value)
    return _utf8(str(value))


def _number_size(value: int | float | Decimal) -> int:
    digits = Decimal(repr(value) if isinstance(value, float) else value).normalize().as_tuple().digits
    significant = len(digits) if any(digits) else 1
    return (significant + 1) // 2 + 1


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))

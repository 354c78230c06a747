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

MAX_DEPTH = 32
MAX_DIGITS = 38
_LARGEST = 1e126
_SMALLEST = 1e-130
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"
MAX_FIELD_CHARS = 200  # of a path quoted in an error


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
        return _SURROGATE.sub(REPLACEMENT, text)
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

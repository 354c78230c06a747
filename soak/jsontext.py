"""JSON text from Python values, with `Raw` pieces written verbatim.

`json.dumps` cannot write what a hostile sender can: number tokens such as `1e400` or a
45-digit integer that a parser turns into inf or a huge int, nesting thousands of levels deep,
or invalid UTF-8. `Raw` holds such a piece of JSON text; everything else is written as
`json.dumps` would (lone surrogates in strings become `\\ud800` escapes when `ensure_ascii`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Raw:
    """A piece of JSON text written as is (it need not be valid JSON)."""

    text: str


def dumps(value: Any, ensure_ascii: bool = True) -> str:
    parts: list[str] = []
    _write(value, parts, ensure_ascii)
    return "".join(parts)


def encode(value: Any, ensure_ascii: bool = True) -> bytes:
    """UTF-8 bytes; lone surrogates written raw (ensure_ascii=False) become invalid UTF-8 on purpose."""
    return dumps(value, ensure_ascii).encode("utf-8", "surrogatepass")


def _write(value: Any, parts: list[str], ensure_ascii: bool) -> None:
    if isinstance(value, Raw):
        parts.append(value.text)
    elif isinstance(value, dict):
        parts.append("{")
        for position, (key, item) in enumerate(value.items()):
            if position:
                parts.append(",")
            parts.append(json.dumps(str(key), ensure_ascii=ensure_ascii))
            parts.append(":")
            _write(item, parts, ensure_ascii)
        parts.append("}")
    elif isinstance(value, (list, tuple)):
        parts.append("[")
        for position, item in enumerate(value):
            if position:
                parts.append(",")
            _write(item, parts, ensure_ascii)
        parts.append("]")
    else:
        parts.append(json.dumps(value, ensure_ascii=ensure_ascii))

"""Hostile JSON values: what a sender can put in any field of a Segment message.

Every function takes a `random.Random` so that a seed gives the same values again. Values are
Python objects for `jsontext` (a `Raw` is JSON text written verbatim).
"""

from __future__ import annotations

import random
from typing import Any

from soak.jsontext import Raw

SURROGATES = ("\ud800", "\udfff", "\udc00", "a\ud83dz", "\ud83d")  # lone halves (not pairs)
UNICODE = (
    "😀",
    "👩‍👩‍👧‍👦",
    "مرحبا بالعالم",
    "\u202eevil\u202c",
    "שלום",
    "\u0000",
    "a\u0000b",
    "\ufeff",
    "\u200b",
    "\uffff",
    "\U0010ffff",
    "é",
    "ñ̃",
    "Ωmega",
    "中文字符",
    "\t\n\r",
    "\x7f",
    "\\",
    '"',
    "'; DROP TABLE users; --",
    "${jndi:ldap://x}",
    "{{7*7}}",
    "<script>alert(1)</script>",
    "#",
    "%ff",
    "%00",
    "user_id:x",
    "id#user_id#x",
)
# Numbers a JSON parser accepts but DynamoDB cannot store (range 1e-130..1e126, 38 significant digits).
BAD_NUMBERS = (
    "1e400",
    "-1e400",
    "1e-300",
    "-1e-300",
    "1e126",
    "1e-131",
    "9.99e125",
    str(10**45),
    str(-(10**45)),
    "1.23456789012345678901234567890123456789012",
    "123456789012345678901234567890123456789",
    "0.000000000000000000000000000000000000000000001",
    "1E+999",
    "-0",
    "0e0",
    "1.0e-129",
    str(2**64),
    "3.141592653589793238462643383279502884197169399",
)
# Times: valid in every shape the contract names, and out of range or not times at all.
GOOD_TIMES: tuple[Any, ...] = (
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00.1Z",
    "2026-01-01T00:00:00.123456789Z",
    "2026-01-01T02:00:00+02:00",
    "2026-01-01T00:00:00",
    "2026-01-01T00:00:00.5-05:30",
    1767225600,
    1767225600123,
    1767225600.5,
)
BAD_TIMES: tuple[Any, ...] = (
    "1969-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59+00:00",
    "10000-01-01T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "yesterday",
    "",
    " ",
    "2026-01-01T00:00:00ZZ",
    -1,
    -62135596800,
    253402300800,
    253402300800000,
    10**20,
    Raw("1e400"),
    Raw("-1e400"),
    True,
    [],
    {},
    None,
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:00+25:00",
    "\ud800",
    "2026-01-01T00:00:00.Z",
    Raw("1e-300"),
)


def surrogate_text(rng: random.Random) -> str:
    return rng.choice(("", "x", "id-")) + rng.choice(SURROGATES) + rng.choice(("", "y", "\ud800"))


def unicode_text(rng: random.Random) -> str:
    return "".join(rng.choice(UNICODE) for _ in range(rng.randint(1, 4)))


def huge_text(rng: random.Random) -> str:
    """Long strings; 33,000 characters put a message past the 32 KB per-message limit."""
    return rng.choice(("a", "é", "😀", "\u0000")) * rng.choice((1_000, 5_000, 33_000))


def bad_number(rng: random.Random) -> Raw:
    return Raw(rng.choice(BAD_NUMBERS))


def nested_object(depth: int) -> Raw:
    """{"a":{"a":...1...}} nested `depth` levels."""
    return Raw('{"a":' * depth + "1" + "}" * depth)


def nested_array(depth: int) -> Raw:
    return Raw("[" * depth + "]" * depth)


def deep_object(rng: random.Random) -> Raw:
    """Nested from 33 levels (just past the contract's 32) to thousands."""
    return nested_object(rng.choice((33, 40, 64, 200, 1_000, 3_000)))


def deep_array(rng: random.Random) -> Raw:
    return nested_array(rng.choice((33, 100, 1_000, 5_000)))


def very_deep(rng: random.Random) -> Raw:
    """Deeper than a recursive parser goes (json.loads gives up before 100,000 levels)."""
    return nested_array(100_000) if rng.random() < 0.7 else nested_object(100_000)


def wrong_type(rng: random.Random) -> Any:
    return rng.choice((None, True, False, 0, -1, 1.5, "", "x", [], [1, "a"], {}, {"k": "v"}, [[[]]], {"": None}))


def random_json(rng: random.Random, depth: int = 3) -> Any:
    """Any JSON value, hostile leaves included."""
    roll = rng.random()
    if depth > 0 and roll < 0.15:
        return {random_key(rng): random_json(rng, depth - 1) for _ in range(rng.randint(0, 4))}
    if depth > 0 and roll < 0.25:
        return [random_json(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    return hostile_leaf(rng)


def random_key(rng: random.Random) -> str:
    return rng.choice(
        (
            "a",
            "plan",
            "email",
            "",
            " ",
            "$set",
            "__proto__",
            "constructor",
            "a.b",
            "id",
            "firstname",
            "CreatedAt",
            "k" * 300,
            "😀",
            "\u0000",
            "\ud800",
            "null",
            "traits",
            "#",
            "hull_segments",
        )
    )


LEAVES = (
    (surrogate_text, 16),
    (unicode_text, 14),
    (bad_number, 16),
    (wrong_type, 16),
    (deep_object, 5),
    (deep_array, 3),
    (huge_text, 1),
    (lambda r: r.choice(GOOD_TIMES + BAD_TIMES), 8),
    (lambda r: r.randint(-(2**70), 2**70), 6),
    (lambda r: r.uniform(-1e300, 1e300), 4),
    (lambda r: r.choice((1e-320, 5e-324, 1.7976931348623157e308)), 4),
)


def hostile_leaf(rng: random.Random) -> Any:
    maker = rng.choices([leaf for leaf, _ in LEAVES], [weight for _, weight in LEAVES])[0]
    return maker(rng)

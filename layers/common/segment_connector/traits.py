"""Trait normalisation, as Hull's connector did it, and the merge rule for traits."""

from __future__ import annotations

import re
from typing import Any

RENAMED = {"firstname": "first_name", "lastname": "last_name", "createdat": "created_at"}
DROPPED = {"id", "external_id", "guest_id", "uniqToken", "visitToken"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_traits(traits: dict[str, Any]) -> dict[str, Any]:
    """Rename firstname/lastname/createdat (any case), drop id-like keys and null values.

    Nested objects (address, company) are kept nested as they came.
    """
    normalized: dict[str, Any] = {}
    for key, value in traits.items():
        if value is None or key in DROPPED:
            continue
        normalized[RENAMED.get(key.lower(), key)] = value
    return normalized


def valid_email(value: Any) -> str | None:
    if isinstance(value, str) and _EMAIL.match(value.strip()):
        return value.strip().lower()
    return None


def merge_traits(
    traits: dict[str, Any], trait_times: dict[str, str], incoming: dict[str, Any], at: str
) -> bool:
    """Apply `incoming` (observed at time `at`) in place; a trait set by a newer call is kept.

    Returns whether anything changed.
    """
    changed = False
    for key, value in incoming.items():
        if trait_times.get(key, "") > at:
            continue
        if traits.get(key) != value:
            traits[key] = value
            changed = True
        if trait_times.get(key) != at:
            trait_times[key] = at
    return changed

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
        normalized[RENAMED.get(key.lower(), key)] = _without_nulls(value) if isinstance(value, dict) else value
    return normalized


def _without_nulls(traits: dict[str, Any]) -> dict[str, Any]:
    return {k: _without_nulls(v) if isinstance(v, dict) else v for k, v in traits.items() if v is not None}


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
        if isinstance(value, dict) and isinstance(traits.get(key), dict):
            value = _deep_merge(traits[key], value)
        if traits.get(key) != value:
            traits[key] = value
            changed = True
        if trait_times.get(key) != at:
            trait_times[key] = at
    return changed


def _deep_merge(current: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """Nested traits merge too: {"address": {"zip": ...}} keeps the address's city."""
    merged = dict(current)
    for key, value in incoming.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged

"""Valid Segment Spec messages (identify, track, page, screen, group, alias), as a library sends them."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

KINDS = ("identify", "track", "page", "screen", "group", "alias")
EVENTS = ("Signed Up", "Order Completed", "Product Viewed", "Checkout Started", "Video Played", "Search")
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def context(rng: random.Random) -> dict[str, Any]:
    return {
        "ip": f"203.0.113.{rng.randint(1, 254)}",
        "library": {"name": rng.choice(("analytics.js", "analytics-python", "analytics-ios")), "version": "2.1.0"},
        "locale": rng.choice(("en-US", "fr-FR", "ar-EG")),
        "timezone": "Europe/Paris",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
        "page": {"path": "/pricing", "url": "https://example.com/pricing", "title": "Pricing", "referrer": ""},
    }


def traits(rng: random.Random, name: str) -> dict[str, Any]:
    return {
        "email": f"{name}@example.com",
        "name": name.title(),
        "plan": rng.choice(("free", "pro", "enterprise")),
        "logins": rng.randint(0, 500),
        "address": {"city": rng.choice(("Paris", "Lyon", "Cairo")), "zip": f"{rng.randint(10000, 99999)}"},
        "tags": ["a", "b"],
    }


def properties(rng: random.Random) -> dict[str, Any]:
    return {
        "revenue": round(rng.uniform(1, 500), 2),
        "currency": "EUR",
        "items": [{"sku": "S1", "qty": 2}],
        "coupon": None,
        "first": rng.random() < 0.5,
    }


def message(
    rng: random.Random,
    kind: str,
    *,
    message_id: str,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    group_id: str | None = None,
    previous_id: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """One valid message of `kind`; ids left None are omitted (alias needs user_id and previous_id)."""
    at = at or BASE_TIME + timedelta(seconds=rng.randint(0, 10**7))
    body: dict[str, Any] = {
        "type": kind,
        "messageId": message_id,
        "timestamp": iso(at),
        "context": context(rng),
        "integrations": {"All": True},
        "sentAt": iso(at + timedelta(seconds=1)),
    }
    for key, value in (("userId", user_id), ("anonymousId", anonymous_id)):
        if value is not None:
            body[key] = value
    name = user_id or anonymous_id or message_id
    if kind == "identify":
        body["traits"] = traits(rng, name)
    elif kind == "track":
        body["event"] = rng.choice(EVENTS)
        body["properties"] = properties(rng)
    elif kind in ("page", "screen"):
        body["name"] = rng.choice(("Home", "Pricing", "Docs"))
        body["properties"] = {"path": "/pricing", "title": "Pricing"}
    elif kind == "group":
        body["groupId"] = group_id or f"{name}-group"
        body["traits"] = {"name": "Initech", "employees": rng.randint(1, 5000), "industry": "Software"}
    elif kind == "alias":
        body["previousId"] = previous_id or f"{name}-previous"
    return body

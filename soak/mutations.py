"""Hostile message bodies: valid Spec messages with hostile values put in random fields.

Each mutated message carries a *tag*: an id of the reserved prefix that no other message uses,
in a slot the mutation leaves alone (anonymousId, or userId for alias, groupId for group). If the
connector rejects the message, nothing may become readable under the tag.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from soak import spec, values
from soak.jsontext import Raw

ID_FIELDS = ("userId", "anonymousId", "messageId", "groupId", "previousId", "user_id", "anonymous_id")
NAME_FIELDS = ("event", "name", "category", "type")
TIME_FIELDS = ("timestamp", "originalTimestamp", "receivedAt", "sentAt")
OBJECT_FIELDS = ("traits", "properties", "context", "integrations")
NESTED_FIELDS = (
    "traits.{k}",
    "properties.{k}",
    "context.{k}",
    "context.traits.{k}",
    "context.page.{k}",
    "integrations.{k}",
    "traits.address.{k}",
    "properties.items",
    "context.library.name",
    "traits.email",
    "traits.plan",
    "properties.{k}.{k}.{k}",
    "traits.{k}.{k}",
)


@dataclass(frozen=True)
class Tagged:
    """A message and the Profile API paths that must stay 404 unless it was stored."""

    body: dict[str, Any]
    references: tuple[str, ...]
    message_id: str  # as generated (a mutation may replace it)


def tagged_message(rng: random.Random, kind: str, tag: str) -> Tagged:
    """A valid message of `kind` whose writes would all be readable under `tag`."""
    if kind == "alias":
        body = spec.message(rng, kind, message_id=f"{tag}-m", user_id=tag, previous_id=f"{tag}-prev")
        return Tagged(body, (f"/v1/users/user_id:{tag}",), f"{tag}-m")
    user_id = f"{tag}-user" if rng.random() < 0.5 else None
    body = spec.message(rng, kind, message_id=f"{tag}-m", user_id=user_id, anonymous_id=tag, group_id=f"{tag}-group")
    references = [f"/v1/users/anonymous_id:{tag}"]
    if user_id:
        references.append(f"/v1/users/user_id:{user_id}")
    if kind == "group":
        references.append(f"/v1/accounts/{tag}-group")
    return Tagged(body, tuple(references), f"{tag}-m")


def protected_fields(kind: str) -> set[str]:
    """The tag's slots: a mutation never touches them."""
    if kind == "alias":
        return {"userId"}
    return {"anonymousId", "groupId"} if kind == "group" else {"anonymousId"}


def mutate(rng: random.Random, message: dict[str, Any], protected: set[str]) -> list[str]:
    """Put 1-3 hostile values into random fields of `message` (in place); returns the paths."""
    placed = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        path, value = _placement(rng)
        if path.split(".", 1)[0] in protected:
            continue
        _set_path(message, path, value)
        placed.append(path)
    return placed


def _placement(rng: random.Random) -> tuple[str, Any]:
    family = rng.choices(("id", "name", "time", "object", "nested", "new"), (18, 8, 16, 10, 40, 8))[0]
    if family == "id":
        return rng.choice(ID_FIELDS), _id_value(rng)
    if family == "name":
        return rng.choice(NAME_FIELDS), values.random_json(rng, 1)
    if family == "time":
        return rng.choice(TIME_FIELDS), rng.choice(values.GOOD_TIMES + values.BAD_TIMES)
    if family == "object":
        return rng.choice(OBJECT_FIELDS), values.random_json(rng, 2)
    if family == "nested":
        template = rng.choice(NESTED_FIELDS)
        path = template.replace("{k}", "KEY").replace("KEY", values.random_key(rng).replace(".", "_") or "k")
        return path, _nested_value(rng)
    return values.random_key(rng).replace(".", "_") or "extra", values.random_json(rng, 2)


def _id_value(rng: random.Random) -> Any:
    return rng.choice(
        (
            values.surrogate_text,
            values.unicode_text,
            values.wrong_type,
            values.bad_number,
            values.huge_text,
            lambda r: r.randint(-(10**50), 10**50),
            lambda r: r.choice(("a\u0000b", "#", "x#y", "%ff", " ", "id#user_id#x", "user_id:x")),
        )
    )(rng)


def _nested_value(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.25:
        return values.surrogate_text(rng)
    if roll < 0.45:
        return values.bad_number(rng)
    if roll < 0.60:
        return values.deep_object(rng) if rng.random() < 0.7 else values.deep_array(rng)
    return values.random_json(rng, 3)


def _set_path(message: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = message
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def batch_messages(rng: random.Random, tag_of: Any, size: int) -> list[tuple[Any, Tagged | None]]:
    """`size` items mixing valid and mutated messages, and a few non-objects (no tag)."""
    items: list[tuple[Any, Tagged | None]] = []
    for index in range(size):
        roll = rng.random()
        if roll < 0.05:
            items.append((values.wrong_type(rng), None))
            continue
        kind = rng.choice(spec.KINDS)
        tagged = tagged_message(rng, kind, tag_of(index))
        if roll < 0.55:
            mutate(rng, tagged.body, protected_fields(kind))
        items.append((tagged.body, tagged))
    return items


def wrap_batch(rng: random.Random, items: list[Any], route: str) -> Any:
    """As an array (only /segment takes one) or as {"batch": [...]} with shared context sometimes."""
    if route == "/segment" and rng.random() < 0.5:
        return items
    body: dict[str, Any] = {"batch": items}
    if rng.random() < 0.3:
        body["context"] = rng.choice(({"ip": "203.0.113.9"}, values.random_json(rng, 2), Raw("1e400")))
    if rng.random() < 0.2:
        body["integrations"] = rng.choice(({"All": True}, {"segment-connector": False}, values.wrong_type(rng)))
    return body

"""The load phase's traffic: users, their messages in order, and the bodies that carry them.

Every user belongs to one sender, which sends its bodies one after the other: a user's
messages are stored in the order they were planned. Each message carries markers (traits or
properties `soak_user`, `soak_seq`, `soak_mid`) so that what reaches the Segment sink can be
traced back to it; `soak_seq` grows with the user's messages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from soak import spec

EVENT_KINDS = ("track", "page", "screen")
LATER_KINDS = (("track", 55), ("page", 15), ("screen", 10), ("identify", 20))
ANONYMOUS_FIRST_EVERY = 5  # every 5th user is first seen anonymously (page, track), then identified
TRAIT_VALUES = ("café ☕", "naïve", "😀 emoji", "עברית", 42, 3.25, True, ["x", "y"], {"nested": {"deep": 1}})


@dataclass(frozen=True)
class Sent:
    user: str  # the user's userId
    seq: int
    kind: str
    message_id: str
    message: dict[str, Any]


@dataclass
class User:
    user_id: str
    anonymous_id: str
    email: str
    messages: list[Sent] = field(default_factory=list)

    def events(self) -> list[Sent]:
        return [sent for sent in self.messages if sent.kind in EVENT_KINDS]

    def identifies(self) -> list[Sent]:
        return [sent for sent in self.messages if sent.kind == "identify"]


@dataclass(frozen=True)
class Body:
    method: str
    path: str
    payload: Any
    messages: tuple[Sent, ...]


def make_users(rng: random.Random, run: str, count: int, messages_per_user: int) -> list[User]:
    users = []
    for index in range(count):
        user = User(f"{run}-u{index:05d}", f"{run}-a{index:05d}", f"{run}-u{index:05d}@example.com")
        start = spec.BASE_TIME + timedelta(minutes=index)
        kinds = ["page", "track", "identify"] if index % ANONYMOUS_FIRST_EVERY == 0 else ["identify"]
        while len(kinds) < messages_per_user:
            kinds.append(rng.choices([k for k, _ in LATER_KINDS], [w for _, w in LATER_KINDS])[0])
        for seq, kind in enumerate(kinds, start=1):
            anonymous_only = index % ANONYMOUS_FIRST_EVERY == 0 and seq < 3
            user.messages.append(_message(rng, user, seq, kind, start + timedelta(seconds=seq), anonymous_only))
        users.append(user)
    return users


def _message(rng: random.Random, user: User, seq: int, kind: str, at: Any, anonymous_only: bool) -> Sent:
    message_id = f"{user.user_id}-m{seq}"
    message = spec.message(
        rng,
        kind,
        message_id=message_id,
        user_id=None if anonymous_only else user.user_id,
        anonymous_id=user.anonymous_id,
        at=at,
    )
    markers = {"soak_user": user.user_id, "soak_seq": seq, "soak_mid": message_id}
    if kind == "identify":
        message["traits"] = {
            "email": user.email,
            "plan": rng.choice(("pro", "free")),
            **markers,
            f"t_{seq}": rng.choice(TRAIT_VALUES),
        }
    else:
        message["properties"] = {**message.get("properties", {}), **markers, "label": "café ☕"}
    return Sent(user.user_id, seq, kind, message_id, message)


def plan_bodies(
    rng: random.Random, users: list[User], batch_sizes: tuple[tuple[int, int], ...], put_patch_share: float
) -> list[Body]:
    """One sender's bodies: its users' messages interleaved, each user's in order."""
    queues = [list(user.messages) for user in users]
    bodies = []
    turn = 0
    while any(queues):
        size = rng.choices([s for s, _ in batch_sizes], [w for _, w in batch_sizes])[0]
        taken: list[Sent] = []
        while len(taken) < size and any(queues):
            queue = queues[turn % len(queues)]
            turn += 1
            if queue:
                taken.append(queue.pop(0))
        bodies.append(_body(rng, taken, put_patch_share))
    return bodies


def _body(rng: random.Random, taken: list[Sent], put_patch_share: float) -> Body:
    messages = [sent.message for sent in taken]
    method = rng.choice(("PUT", "PATCH")) if rng.random() < put_patch_share else "POST"
    if len(taken) == 1 and method == "POST" and rng.random() < 0.5:
        return Body("POST", f"/v1/{taken[0].kind}", messages[0], tuple(taken))
    if len(taken) == 1:
        return Body(method, "/segment", messages[0], tuple(taken))
    if method == "POST" and rng.random() < 0.3:
        return Body("POST", "/v1/batch", {"batch": messages}, tuple(taken))
    payload = messages if rng.random() < 0.5 else {"batch": messages}
    return Body(method, "/segment", payload, tuple(taken))

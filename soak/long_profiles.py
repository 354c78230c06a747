"""(i) one user with thousands of anonymous ids, (j) the delete of a user with thousands of events."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any
from urllib.parse import quote

from boto3.dynamodb.types import TypeDeserializer

from segment_connector.domain.storable import item_size
from soak.report import Check, say
from soak.session import Session
from soak.table import Table

ITEM_LIMIT = 400 * 1024
BATCH = 100
ANONYMOUS_BATCH = 5  # calls per request: each call rewrites the profile (moto: ~0.4 s here; inbound has 10 s)
API_LOOKUPS = 300  # anonymous ids read through the Profile API (all are checked in the table)
DELETE_ANSWER_SECONDS = 10.0  # "answers fast": well inside Segment's 10 s delivery timeout
DELETE_DEADLINE_SECONDS = 180.0  # every item of the user gone within this
KEYS_PER_READ = 100
PROGRESS_SECONDS = 30  # BatchGetItem's limit


def _problem(what: str, status: int, body: bytes) -> str:
    return f"{what}: {status} {body[:200]!r}"


# -- (i) anonymous ids ------------------------------------------------------------------------------


def anonymous_ids(session: Session, table: Table, seed: int, count: int, check: Check) -> None:
    """Identify and track calls alternating, each with a new anonymousId, in batches of
    ANONYMOUS_BATCH sent one after the other (they all write the same profile)."""
    user = f"soak{seed}-anon"
    ids = [f"{user}-a{n:05d}" for n in range(count)]
    started = time.monotonic()

    def message(number: int) -> dict[str, Any]:
        kind = "identify" if number % 2 == 0 else "track"
        extra = {"traits": {"plan": "free", "visits": number}} if kind == "identify" else {"event": "Visited"}
        return {"type": kind, "userId": user, "anonymousId": ids[number], "messageId": f"{ids[number]}-m", **extra}

    shown = [time.monotonic()]

    def send(start: int) -> tuple[int, str | None]:
        if time.monotonic() - shown[0] >= PROGRESS_SECONDS:
            shown[0] = time.monotonic()
            say(f"  {start:,}/{count:,} calls sent")
        reply = session.client().post(
            "/segment", [message(n) for n in range(start, min(count, start + ANONYMOUS_BATCH))]
        )
        ok = reply.status == 200 and not (reply.json() or {}).get("rejected")
        return reply.status, None if ok else _problem(f"calls from {ids[start]}", reply.status, reply.body)

    answers = session.in_parallel(send, list(range(0, count, ANONYMOUS_BATCH)), workers=1)
    statuses = Counter(status for status, _ in answers)
    sent_seconds = time.monotonic() - started
    for _, problem in answers:
        if problem:
            check.fail(problem)
    started = time.monotonic()
    profile_pk = f"id#user_id#{user}"
    unlinked = unlinked_ids(table, ids, profile_pk)
    check.expect(not unlinked, f"{len(unlinked)} anonymous ids lead nowhere in the table, e.g. {unlinked[:3]}")

    def resolves(anonymous_id: str) -> str | None:
        answer = session.client().get(f"/v1/users/{quote('anonymous_id:' + anonymous_id, safe=':')}")
        found = (answer.json() or {}).get("user_id") if answer.status == 200 else None
        return None if found == user else _problem(f"GET anonymous_id:{anonymous_id}", answer.status, answer.body)

    looked_up = spread(ids, API_LOOKUPS)
    unresolved = [problem for problem in session.in_parallel(resolves, looked_up) if problem]
    for problem in unresolved:
        check.fail(problem)
    size = profile_size(table, profile_pk)
    check.expect(0 < size < ITEM_LIMIT, f"the profile item of {user} is {size:,} bytes (limit {ITEM_LIMIT:,})")
    check.figure(
        f"{count:,} calls with a new anonymousId ({len(answers)} requests of {ANONYMOUS_BATCH}) in "
        f"{sent_seconds:.0f} s: statuses {dict(statuses)}; {count - len(unlinked):,}/{count:,} ids lead to the "
        f"profile in the table; {len(looked_up) - len(unresolved)}/{len(looked_up)} (oldest, newest, spread) "
        f"resolve through the Profile API ({time.monotonic() - started:.0f} s); profile item {size:,} bytes"
    )


def spread(values: list[str], count: int) -> list[str]:
    """The first and last third of `count`, and the rest evenly spread over the middle."""
    if len(values) <= count:
        return values
    edge = count // 3
    middle = values[edge:-edge]
    step = max(1, len(middle) // (count - 2 * edge))
    return values[:edge] + middle[::step][: count - 2 * edge] + values[-edge:]


def unlinked_ids(table: Table, ids: list[str], profile_pk: str) -> list[str]:
    """The anonymous ids whose identity item is not an alias of `profile_pk` (BatchGetItem)."""
    linked: set[str] = set()
    for start in range(0, len(ids), KEYS_PER_READ):
        keys = [(f"id#anonymous_id#{value}", "identity") for value in ids[start : start + KEYS_PER_READ]]
        for item in table.existing(keys):
            if item.get("profile_pk", {}).get("S") == profile_pk:
                linked.add(item["pk"]["S"].removeprefix("id#anonymous_id#"))
    return [value for value in ids if value not in linked]


def profile_size(table: Table, pk: str) -> int:
    """The profile item's size as DynamoDB counts it (0: not found)."""
    found = table.existing([(pk, "identity")])
    if not found:
        return 0
    deserializer = TypeDeserializer()
    return item_size({name: deserializer.deserialize(value) for name, value in found[0].items()})


# -- (j) delete ---------------------------------------------------------------------------------------


def delete_user(session: Session, table: Table, seed: int, count: int, check: Check) -> None:
    user = f"soak{seed}-del"
    ids = [f"{user}-e{n:05d}" for n in range(count)]
    started = time.monotonic()
    identify = {"type": "identify", "userId": user, "messageId": f"{user}-id", "traits": {"plan": "free"}}
    answer = session.client().post("/segment", identify)
    check.expect(answer.status == 200, _problem("identify", answer.status, answer.body))

    def send(start: int) -> str | None:
        body = [
            {"type": "track", "userId": user, "messageId": message_id, "event": "Clicked", "properties": {"n": start}}
            for message_id in ids[start : start + BATCH]
        ]
        reply = session.client().post("/segment", body)
        ok = reply.status == 200 and not (reply.json() or {}).get("rejected")
        return None if ok else _problem(f"tracks from {start}", reply.status, reply.body)

    for problem in session.in_parallel(send, list(range(0, count, BATCH)), workers=4):
        if problem:
            check.fail(problem)
    stored = len(existing_events(table, user, ids))
    say(f"  {stored:,}/{count:,} events of {user} stored in {time.monotonic() - started:.0f} s")
    check.expect(stored == count, f"{stored:,} of {count:,} events stored before the delete")

    started = time.monotonic()
    reply = session.client().post("/segment", {"type": "delete", "userId": user, "messageId": f"{user}-delete"})
    answered = time.monotonic() - started
    check.expect(reply.status == 200, _problem("delete", reply.status, reply.body))
    check.expect(answered <= DELETE_ANSWER_SECONDS, f"the delete answered after {answered:.1f} s")
    left: dict[str, int] = {}

    def gone() -> bool:
        left["events"] = len(existing_events(table, user, ids))
        left["identity"] = len(table.existing([(f"id#user_id#{user}", "identity")]))
        left["api"] = session.client().get(f"/v1/users/user_id:{user}").status
        return left["events"] == 0 and left["identity"] == 0 and left["api"] == 404

    erased = session.wait_until(gone, DELETE_DEADLINE_SECONDS)
    check.expect(
        erased,
        f"{DELETE_DEADLINE_SECONDS:.0f} s after the delete: {left.get('events')} events and "
        f"{left.get('identity')} identity items left, Profile API answers {left.get('api')}",
    )
    check.figure(
        f"delete of a user with {count:,} events: answered {reply.status} in {answered:.1f} s; "
        f"{'everything gone' if erased else 'NOT all gone'} after {time.monotonic() - started:.0f} s"
    )


def existing_events(table: Table, user: str, message_ids: list[str]) -> list[dict[str, Any]]:
    """The events of `message_ids` still stored under the user's identity (BatchGetItem, 100 keys a read)."""
    pk = f"id#user_id#{user}"
    found: list[dict[str, Any]] = []
    for start in range(0, len(message_ids), KEYS_PER_READ):
        found += table.existing([(pk, f"event#{mid}") for mid in message_ids[start : start + KEYS_PER_READ]])
    return found

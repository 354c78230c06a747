"""Helpers of the Segment-compatible Profile API's tests (tests/test_profile_api_segment*.py): its
space and token, paths, and users, accounts and events written straight through the store (fast
set-up of users with thousands of traits, ids and events)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, urlencode

from harness import Api
from segment_connector.domain.models.items import Account, StoredEvent, UserProfile, account_pk, identity_pk
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.table import serialize

Message = Any  # the `message` fixture: message(type, **fields) -> a Segment message

SPACE = "spa_test"
TOKEN = "test-profile-token"
CREATED = "2026-01-01T00:00:00.000Z"
UPDATED = "2026-02-01T00:00:00.000Z"


def path(profile: str, resource: str, collection: str = "users", space: str = SPACE, **query: Any) -> str:
    """The route of `resource` for `<id_type>:<id>` (the id URL-encoded), with the query."""
    kind, _, value = profile.partition(":")
    route = f"/v1/spaces/{space}/collections/{collection}/profiles/{kind}:{quote(value, safe='')}/{resource}"
    return route + (f"?{urlencode(query)}" if query else "")


def pages(client: Api, first: str) -> list[dict[str, Any]]:
    """Every answer from `first`, following `cursor.next` until `has_more` is false."""
    answers = []
    url = first
    for _ in range(10_000):
        status, body = client.get(url)
        assert status == 200, body
        answers.append(body)
        if not body["cursor"]["has_more"]:
            assert body["cursor"]["next"] == ""
            return answers
        url = first + ("&" if "?" in first else "?") + urlencode({"next": body["cursor"]["next"]})
    raise AssertionError("no last page")


def store_of(client: Api) -> ProfileStore:
    store: ProfileStore = client.module.store()
    return store


def put_user(store: ProfileStore, user_id: str, **fields: Any) -> UserProfile:
    """A user profile at user_id:<user_id> with an alias item for each of its other identities."""
    profile = UserProfile(
        pk=identity_pk("user_id", user_id),
        user_id=user_id,
        created_at=CREATED,
        updated_at=UPDATED,
        **fields,
    )
    others = [identity_pk("anonymous_id", a) for a in profile.anonymous_ids]
    if profile.email:
        others.append(identity_pk("email", profile.email))
    profile.identities = list(dict.fromkeys([profile.pk, *others, *profile.identities]))
    store.db.put_item(profile.to_item())
    aliases = [{"PutRequest": {"Item": serialize(_alias(pk, profile.pk))}} for pk in others]
    for start in range(0, len(aliases), 25):
        store.db.batch_write(aliases[start : start + 25])
    return profile


def _alias(pk: str, profile_pk: str) -> dict[str, Any]:
    return {"pk": pk, "sk": "identity", "kind": "alias", "profile_pk": profile_pk}


def put_account(store: ProfileStore, group_id: str, traits: dict[str, Any]) -> None:
    account = Account(pk=account_pk(group_id), group_id=group_id, traits=traits, created_at=CREATED, updated_at=UPDATED)
    store.db.put_item(account.to_item())


def put_events(store: ProfileStore, partition: str, count: int, name: str = "Viewed", day: int = 1) -> list[str]:
    """`count` track events in the partition, one a second from day `day` of 2026-01; their message ids."""
    events = []
    for index in range(count):
        minute, second = divmod(index, 60)
        hour, minute = divmod(minute, 60)
        at = f"2026-01-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.000Z"
        kind, value = partition.split("#")[1:]
        events.append(
            StoredEvent.build(
                partition,
                f"{partition}-{name}-{day}-{index}",
                at,
                type="track",
                event=name,
                properties={"n": index},
                source="api",
                **{kind: value},
            )
        )
    writes = [{"PutRequest": {"Item": serialize(event.to_item())}} for event in events]
    for start in range(0, len(writes), 25):
        store.db.batch_write(writes[start : start + 25])
    return [event.message_id for event in events]


def tampered(cursor: str) -> str:
    """The cursor with its key changed (still valid base64url JSON)."""
    document = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    document["k"] = 12
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def identify_ann(api: Api, message: Message, **traits: Any) -> None:
    """Given Ann: user_id u1, anonymous_id a1, an email in mixed case and nested traits."""
    body = message(
        "identify",
        userId="u1",
        anonymousId="a1",
        traits={"email": "Ann@Example.com", "plan": "pro", "address": {"city": "Oslo", "zip": "0150"}, **traits},
    )
    assert api.post("/segment", body)[0] == 200

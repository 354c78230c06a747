"""Profile API: users, their events and accounts as stored, with their current segments."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from segment_connector.domain.errors import BadRequest, NotFound
from segment_connector.domain.models.items import IDENTITY_ORDER, Account, StoredEvent, UserProfile, identity_pk
from segment_connector.domain.models.segment_rules import account_segment_names
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.store import deletions_pending
from segment_connector.store.identities import user_at
from segment_connector.store.profile_store import ProfileStore

if TYPE_CHECKING:
    from segment_connector.domain.activity import Activity

DEFAULT_EVENT_LIMIT = 50
MAX_EVENT_LIMIT = 500
MAX_ANSWER_BYTES = 5_000_000  # of an events answer, as Lambda returns it (it refuses more than 6 MB)


def parse_reference(reference: str) -> str:
    """`user_id:<v>`, `anonymous_id:<v>` or `email:<v>` (URL-encoded) -> identity pk."""
    kind, sep, value = unquote(reference).partition(":")
    if not sep or kind not in IDENTITY_ORDER or not value:
        raise BadRequest(
            "user reference must be user_id:<id>, anonymous_id:<id> or email:<address>",
            [{"field": "id", "error": f"got {reference!r}"}],
        )
    return identity_pk(kind, value.strip().lower() if kind == "email" else value)


REFERENCE_KINDS = ("user_id", "anonymous_id", "email")


def reference_candidates(text: str) -> list[tuple[str, str]]:
    """What a typed id may mean (the console's lookup and `users get`): `user_id:x`, `anonymous_id:x`
    or `email:x` as given, else the bare text tried as a user_id, an anonymous_id, then an email."""
    kind, sep, value = text.partition(":")
    if sep and kind in REFERENCE_KINDS and value:
        return [(kind, value)]
    return [(kind, text) for kind in REFERENCE_KINDS]


def not_found_message(text: str, candidates: list[tuple[str, str]]) -> str:
    if len(candidates) > 1:
        return f"no user with user_id, anonymous_id or email {text!r}"
    return f"no user {text}"


def find_user(store: ProfileStore, reference: str) -> UserProfile:
    """The user an id names: two DynamoDB requests at most (one Query where the profile lives, a
    BatchGet more through an alias; an events-only visitor's Query, then the deletions' one)."""
    pk = parse_reference(reference)
    profile, has_events = user_at(store, pk)
    if profile is not None:
        return profile
    if has_events and not pk.startswith("id#email#") and not deletions_pending.being_deleted(store, [pk]):
        # Seen only through events so far (e.g. an anonymous visitor): a profile without traits. Not
        # the events of a deleted person the sweep has not reached yet.
        _, kind, value = pk.split("#", 2)
        return UserProfile(
            pk=pk,
            uid=f"{kind}:{value}",
            identities=[pk],
            created_at="",
            updated_at="",
            user_id=value if kind == "user_id" else None,
            anonymous_ids=[value] if kind == "anonymous_id" else [],
        )
    raise NotFound(f"no user {unquote(reference)}")


def user_activity(store: ProfileStore, settings: ConnectorSettings, user: UserProfile) -> Activity | None:
    """The user's events as the settings' event leaves and computed traits see them now: one Query
    of the index `by_time` per event partition; None (no request) when the settings read no
    events. What the views of a user (the console's, `users get`, both Profile APIs) evaluate with."""
    if not settings.reads_events():
        return None
    from segment_connector.domain.activity import Activity

    now = datetime.now(UTC)
    since = settings.activity_spec.since(now, settings.event_retention_days)
    occurrences = store.activity.occurrences(user.activity_partitions(), since)
    return Activity(now, occurrences, settings.event_retention_days)


def rules_account(store: ProfileStore, settings: ConnectorSettings, user: UserProfile) -> Account | None:
    """The user's account when the segment rules read its traits (one BatchGet), else None."""
    if not (user.account_id and settings.segments_use_account_traits()):
        return None
    return store.profiles.accounts([user.account_id]).get(user.account_id)


def user_view(store: ProfileStore, settings: ConnectorSettings, reference: str) -> dict[str, Any]:
    """The user as the settings make it: its traits are the received ones with the computed traits
    in their place (a received trait of a computed trait's name is shadowed), its segments evaluated
    on those traits and on its events."""
    from segment_connector.domain.outbound_view import Rules

    profile = find_user(store, reference)
    rules = Rules(settings)
    activity = user_activity(store, settings, profile)
    traits = rules.user_traits(profile, activity)
    segments = rules.user_segments(profile, rules_account(store, settings, profile), activity)
    return {
        "id": profile.uid,
        "user_id": profile.user_id,
        "anonymous_ids": profile.anonymous_ids,
        "email": profile.email,
        "traits": traits,
        "segments": segments,
        "account_id": profile.account_id,
        "created_at": profile.created_at or None,
        "updated_at": profile.updated_at or None,
    }


def user_events(store: ProfileStore, reference: str, limit: str | None) -> list[dict[str, Any]]:
    """The first page of a user's events, newest first (user_events_page without its cursor)."""
    events, _ = user_events_page(store, reference, limit)
    return events


def user_events_page(
    store: ProfileStore, reference: str, limit: str | None, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """`limit` events of the user, newest first, from every partition (all their pages), after
    `cursor`; and the cursor of the next page (None: no more events). Fewer than `limit` when the
    answer would exceed MAX_ANSWER_BYTES as Lambda returns it (never fewer than one)."""
    count = _event_limit(limit)
    before = decode_cursor(cursor)
    profile = find_user(store, reference)
    found = store.events.newest_first(profile.event_partitions(), before, page=min(count + 1, MAX_EVENT_LIMIT))
    views: list[dict[str, Any]] = []
    size = 2  # []
    last = None
    for event in found:
        view = event_view(event)
        grown = size + answer_bytes(view) + (1 if views else 0)
        if len(views) == count or (views and grown > MAX_ANSWER_BYTES):
            assert last is not None
            return views, encode_cursor(last.event_time, last.pk)
        views.append(view)
        size, last = grown, event
    return views, None


def _event_limit(limit: str | None) -> int:
    try:
        count = DEFAULT_EVENT_LIMIT if limit in (None, "") else int(limit)
    except ValueError:
        count = -1
    if not 1 <= count <= MAX_EVENT_LIMIT:
        raise BadRequest(
            f"limit must be a whole number from 1 to {MAX_EVENT_LIMIT}", [{"field": "limit", "error": f"got {limit!r}"}]
        )
    return count


def event_view(event: StoredEvent) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "type": event.type,
        "event": event.event,
        "properties": event.properties,
        "context": event.context,
        "timestamp": event.timestamp,
        "source": event.source,
    }


def answer_bytes(value: Any) -> int:
    """Bytes `value` takes in Lambda's answer: JSON as the resolver writes it (ASCII, compact),
    escaped again as the answer's `body` string. Lambda refuses an answer over 6 MB."""
    return len(json.dumps(json.dumps(value, separators=(",", ":")))) - 2


def encode_cursor(event_time: str, pk: str) -> str:
    raw = json.dumps([event_time, pk], separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[str, str] | None:
    if cursor in (None, ""):
        return None
    assert cursor is not None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8", "surrogatepass"))
    except ValueError:
        value = None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) and part for part in value)):
        raise BadRequest(
            "next must be the cursor of a previous answer (its X-Next-Cursor header)",
            [{"field": "next", "error": "not a cursor of this API"}],
        )
    return value[0], value[1]


def account_view(store: ProfileStore, settings: ConnectorSettings, group_id: str) -> dict[str, Any]:
    group_id = unquote(group_id)
    account = store.profiles.accounts([group_id]).get(group_id)
    if account is None:
        raise NotFound(f"no account {group_id}")
    return {
        "id": account.group_id,
        "traits": account.traits,
        "segments": account_segment_names(settings.account_segments, traits=account.traits),
    }


TRAIT_SAMPLE_PER_SEGMENT = 250  # user profiles per parallel-scan segment, one page (1 MB) at most
TRAIT_SAMPLE_SEGMENTS = 4


def received_trait_names(store: ProfileStore, names: Iterable[str]) -> set[str]:
    """Which of `names` users send as (top-level) traits, as far as a bounded sample of the user
    profiles shows: one page of a parallel Scan per segment, spread over the whole table (the
    console's name pickers sample the same way). No request when `names` is empty."""
    wanted = set(names)
    if not wanted:
        return set()
    sample = store.inventory.sample_kinds(["user"], TRAIT_SAMPLE_PER_SEGMENT, TRAIT_SAMPLE_SEGMENTS, max_pages=1)
    found: set[str] = set()
    for item in sample:
        traits = item.get("traits")
        if isinstance(traits, dict):
            found.update(wanted.intersection(traits))
    return found

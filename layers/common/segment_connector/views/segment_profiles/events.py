"""A user's events as Segment's Profile API answers them: newest (or oldest) first, in a time
range, by event name, a page at a time under a cursor that is the last event's position."""

from __future__ import annotations

from typing import Any

from segment_connector.domain.models.items import Account, StoredEvent, UserProfile
from segment_connector.store.event_pages import EventRange, ordered_events
from segment_connector.store.profile_store import ProfileStore
from segment_connector.views.segment_profiles.request import (
    ProfileRequest,
    cursor,
    decode_cursor,
    encode_cursor,
    invalid,
    is_text_list,
    sized,
    take,
)

EVENT_LIMITS = (10, 100)  # (default, most)
SORTS = ("desc", "asc")


def events_page(store: ProfileStore, request: ProfileRequest, subject: UserProfile | Account) -> dict[str, Any]:
    """`{"data": [...], "cursor": {...}}`. An account has no events of its own in the connector
    (group calls are not stored as events): its answer is an empty page."""
    limit = request.limit(*EVENT_LIMITS)
    sort = request.choice("sort", SORTS, "desc")
    start, end = request.time("start"), request.time("end")
    include, exclude = request.names("include"), request.names("exclude")
    if include is not None and exclude is not None:
        raise invalid("exclude", "cannot be given with include")
    after = decode_cursor(request, lambda key: is_text_list(key, 3) and key[2] == sort)
    if isinstance(subject, Account):
        return {"data": [], "cursor": cursor(request, limit, None)}
    wanted = EventRange(
        newest_first=sort == "desc",
        start=start,
        end=end,
        after=None if after is None else (after[0], after[1]),
        include=include,
        exclude=exclude,
    )
    found = ordered_events(store.db, subject.event_partitions(), wanted, page=min(limit + 1, EVENT_LIMITS[1]))
    page, more = take(found, limit, lambda event: sized(event_view(event)))
    following = encode_cursor(request.resource, [page[-1].event_time, page[-1].pk, sort]) if more else None
    return {"data": [event_view(event) for event in page], "cursor": cursor(request, limit, following)}


def event_view(event: StoredEvent) -> dict[str, Any]:
    """Segment's shape of an event: `event` for a track, `name` for a page or screen."""
    view: dict[str, Any] = {"type": event.type, "message_id": event.message_id, "timestamp": event.timestamp}
    if event.type == "track":
        view["event"] = event.event
    elif event.event:
        view["name"] = event.event
    ids = [("user_id", event.user_id), ("anonymous_id", event.anonymous_id)]
    view.update(
        properties=event.properties,
        context=event.context,
        external_ids=[
            {"id": value, "type": kind, "collection": "users", "encoding": "none"} for kind, value in ids if value
        ],
    )
    return view

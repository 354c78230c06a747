"""Outbound: a stored event (track, page, screen) -> its Segment call, when its user is in the filters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segment_connector.domain.models.items import StoredEvent, UserProfile
from segment_connector.domain.models.outbound import OutboundContext, Page, PageCall, ScreenCall, TrackCall
from segment_connector.domain.outbound_view import message_id, send_ids
from segment_connector.outbound.reads import BatchReads
from segment_connector.outbound.records import Change
from segment_connector.segment_api.delivery import Entry

CONTEXT_KEYS = ("ip", "userAgent", "locale", "timezone")
PAGE_KEYS = ("url", "referrer", "path", "title", "search")


def plan_event(reads: BatchReads, change: Change) -> None:
    """Adds the event's call to the record's plan (nothing for an event the settings do not send)."""
    event = change.new
    assert isinstance(event, StoredEvent)
    if event.source == "segment" and not reads.settings.forward_events:
        return
    if not reads.settings.sends_event(event.event if event.type == "track" else event.type):
        return
    stored = reads.profiles.get(event.pk)
    user = stored or UserProfile(
        pk=event.pk,
        uid=event.pk,
        user_id=event.user_id,
        created_at="",
        updated_at="",
        anonymous_ids=[event.anonymous_id] if event.anonymous_id else [],
    )
    # a visitor without a profile is not a user yet: no rule counts its events until it is known
    activity = reads.activity(stored) if stored else None
    segments = reads.rules.user_segments(user, reads.account(user.account_id), activity)
    if not reads.rules.in_filter(segments):
        return
    user_id, anonymous_id = send_ids(user)
    common: dict[str, Any] = {
        "message_id": message_id(change.pk, change.seq, "event"),
        "user_id": user_id or event.user_id,
        "anonymous_id": event.anonymous_id or anonymous_id,
        "timestamp": event.timestamp,
        "context": _context(event.context),
        "properties": event.properties,
    }
    if not (common["user_id"] or common["anonymous_id"]):
        return
    if event.type == "track":
        call: TrackCall | PageCall | ScreenCall = TrackCall(event=event.event, **common)
    else:
        name = None if event.event == event.type else event.event  # a page stored without name
        call = (PageCall if event.type == "page" else ScreenCall)(name=name, **common)
    change.plan.entries.append(Entry(call.message_id, user.uid, call.payload()))


def _context(stored: dict[str, Any]) -> OutboundContext:
    """The useful part of the event's context (strings only); the library is always ours."""
    picked = {key: stored[key] for key in CONTEXT_KEYS if isinstance(stored.get(key), str)}
    stored_page = stored.get("page")
    page: Mapping[str, Any] = stored_page if isinstance(stored_page, Mapping) else {}
    page_fields = {key: page[key] for key in PAGE_KEYS if isinstance(page.get(key), str)}
    return OutboundContext.model_validate({**picked, **({"page": Page(**page_fields)} if page_fields else {})})

"""The outbound view of users and accounts: what the settings' segment rules, filters and
whitelists make of a profile, the Entered/Left Segment events a change of segments means, and the
message ids that make every send retry-safe. Plain functions of the domain models: OutboundFunction,
the resync and the console's user lookup all use it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from segment_connector.domain.activity import Activity
from segment_connector.domain.models.items import Account, StoredEvent, UserProfile
from segment_connector.domain.models.segment_rules import account_segment_names, no_events, user_segment_names
from segment_connector.domain.models.settings import ConnectorSettings

MESSAGE_ID_PREFIX = "sc-"  # inbound ids are the sender's (uuid, ajs-...) or "generated-...": never this
ENTERED, LEFT = "Entered Segment", "Left Segment"
SEGMENTS_TRAIT = "hull_segments"


def message_id(pk: str, sequence_number: str, purpose: str) -> str:
    """Stable for one change: a retry of the same stream record reuses it; 43 characters."""
    digest = hashlib.sha256(f"{pk}\n{sequence_number}\n{purpose}".encode()).hexdigest()
    return f"{MESSAGE_ID_PREFIX}{digest[:40]}"


class Rules:
    """The settings' segment rules, filter and whitelists applied to users and accounts."""

    def __init__(self, settings: ConnectorSettings):
        self.settings = settings
        self.uses_account_traits = settings.segments_use_account_traits()
        self.reads_events = settings.reads_events()

    def user_traits(self, profile: UserProfile, activity: Activity | None) -> dict[str, Any]:
        """The user's traits as rules and whitelists see them: the received ones, shadowed by the
        computed traits (a received trait of a computed trait's name is hidden even when the
        computed one has no value) (`activity`: the user's events; None for a caller whose settings read no
        events)."""
        if not self.settings.computed_traits:
            return profile.traits
        names = {trait.name for trait in self.settings.computed_traits}
        received = {name: value for name, value in profile.traits.items() if name not in names}
        return {**received, **(activity.computed_traits(self.settings.computed_traits) if activity else {})}

    def user_segments(self, profile: UserProfile, account: Account | None, activity: Activity | None) -> list[str]:
        return user_segment_names(
            self.settings.segments,
            traits=self.user_traits(profile, activity),
            email=profile.email,
            user_id=profile.user_id,
            account_traits=account.traits if account else None,
            events=activity.count if activity else no_events,
        )

    def in_filter(self, segments: list[str]) -> bool:
        return self.settings.sends_all_users() or any(name in self.settings.synchronized_segments for name in segments)

    def identify_traits(self, profile: UserProfile, segments: list[str], activity: Activity | None) -> dict[str, Any]:
        return self.sent_traits(self.user_traits(profile, activity), segments)

    def sent_traits(self, traits: dict[str, Any], segments: list[str]) -> dict[str, Any]:
        """The traits of the identify call a user in the filter is sent with."""
        return {**_pick(traits, self.settings.synchronized_properties), SEGMENTS_TRAIT: segments}

    def group_traits(self, account: Account | None) -> dict[str, Any]:
        traits = account.traits if account else {}
        segments = account_segment_names(self.settings.account_segments, traits=traits)
        return {**_pick(traits, self.settings.synchronized_account_properties), SEGMENTS_TRAIT: segments}

    def account_in_filter(self, account: Account | None) -> bool:
        """The account filter (synchronized_account_segments): whether its group calls are sent."""
        if not self.settings.handle_accounts:
            return False
        traits = account.traits if account else {}
        return self.settings.sends_account(account_segment_names(self.settings.account_segments, traits=traits))


def _pick(traits: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """The whitelisted traits, nested as stored: "address.city" -> {"address": {"city": ...}}.

    Paths under one parent merge; a path inside an object that is itself whitelisted adds nothing
    (the whole object is sent); missing values are left out. A trait stored flat under a dotted
    name ("a.b") is sent under that name, when there is no nested value at that path.
    """
    picked: dict[str, Any] = {}
    taken: set[tuple[str, ...]] = set()
    for path in sorted(dict.fromkeys(paths), key=lambda p: p.count(".")):  # parents first
        parts = tuple(path.split("."))
        if any(parts[:depth] in taken for depth in range(1, len(parts))):
            continue
        value: Any = traits
        for part in parts:
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is None:
            if len(parts) > 1 and traits.get(path) is not None:
                picked[path] = traits[path]
            continue
        target = picked
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
        taken.add(parts)
    return picked


def send_ids(profile: UserProfile) -> tuple[str | None, str | None]:
    return profile.user_id, profile.anonymous_ids[-1] if profile.anonymous_ids else None


def segment_events(
    user: UserProfile, at: str, pk: str, seq: str, scope: str, old: list[str], new: list[str]
) -> list[StoredEvent]:
    """Entered/Left Segment events on the user's profile; ids derived from the change (retry-safe)."""
    user_id, anonymous_id = send_ids(user)
    changes = [(LEFT, name) for name in old if name not in new] + [(ENTERED, name) for name in new if name not in old]
    return [
        StoredEvent.build(
            user.pk,
            message_id(pk, seq, f"{scope}{'entered' if kind == ENTERED else 'left'}:{name}"),
            at,
            type="track",
            event=kind,
            properties={"segment": name},
            source="connector",
            user_id=user_id,
            anonymous_id=anonymous_id,
        )
        for kind, name in changes
    ]

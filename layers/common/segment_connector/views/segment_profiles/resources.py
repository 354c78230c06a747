"""The resources of a profile as Segment's Profile API answers them: traits, external_ids,
metadata and links (events: events.py). A profile is a user (UserProfile) or an account."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from segment_connector.domain.models.items import Account, UserProfile
from segment_connector.domain.models.segment_rules import account_segment_names
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.domain.times import format_time
from segment_connector.domain.traits import encode_path
from segment_connector.store.event_pages import EventRange, ordered_events
from segment_connector.store.profile_store import ProfileStore
from segment_connector.views import profiles
from segment_connector.views.segment_profiles.request import (
    ProfileRequest,
    cursor,
    decode_cursor,
    encode_cursor,
    invalid,
    is_text,
    is_text_list,
    sized,
    take,
)

if TYPE_CHECKING:
    from segment_connector.domain.activity import Activity

Subject = UserProfile | Account
TRAIT_LIMITS = (10, 200)  # (default, most)
EXTERNAL_ID_LIMITS = (10, 100)
LINK_LIMITS = (20, 100)
TRAIT_CLASSES = ("audience", "computed_trait")


# -- traits ------------------------------------------------------------------------------------------


def traits(
    store: ProfileStore, request: ProfileRequest, subject: Subject, settings: Callable[[], ConnectorSettings]
) -> dict[str, Any]:
    """`{"traits": {...}, "cursor": {...}}` in name order; the cursor's key is the last name."""
    limit = request.limit(*TRAIT_LIMITS)
    verbose = request.flag("verbose")
    kind = request.text("class")
    if kind is not None and kind not in TRAIT_CLASSES:
        raise invalid("class", f"must be one of {', '.join(TRAIT_CLASSES)}")
    include = request.names("include")
    after = decode_cursor(request, is_text)
    seen = _Seen.of(store, subject, settings())
    if kind == "audience":
        values: dict[str, Any] = dict.fromkeys(seen.audiences(), True)
    elif kind == "computed_trait":
        values = seen.computed
    else:
        values = seen.traits

    def shown(name: str) -> Any:
        if not verbose:
            return values[name]
        at = seen.trait_time(name) if kind != "audience" else None
        return {"value": values[name], "updated_at": at}

    names = sorted(name for name in values if (include is None or name in include) and (after is None or name > after))
    page, more = take(iter(names), limit, lambda name: sized({name: shown(name)}))
    following = encode_cursor(request.resource, page[-1]) if more else None
    return {"traits": {name: shown(name) for name in page}, "cursor": cursor(request, limit, following)}


@dataclass
class _Seen:
    """A user or account as the settings make it: a user's traits are the received ones with the
    computed traits in their place (`computed`: those with a value; a received trait of a computed
    trait's name is shadowed), evaluated on its events (read only when the settings read events)."""

    store: ProfileStore
    subject: Subject
    settings: ConnectorSettings
    activity: Activity | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    computed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, store: ProfileStore, subject: Subject, settings: ConnectorSettings) -> _Seen:
        if isinstance(subject, Account) or not settings.computed_traits:
            return cls(store, subject, settings, traits=subject.traits)
        from segment_connector.domain.outbound_view import Rules

        activity = profiles.user_activity(store, settings, subject)
        computed = activity.computed_traits(settings.computed_traits) if activity else {}
        return cls(store, subject, settings, activity, Rules(settings).user_traits(subject, activity), computed)

    def audiences(self) -> list[str]:
        """The names of the segments (the connector's audiences) the user or account is in now."""
        if isinstance(self.subject, Account):
            return account_segment_names(self.settings.account_segments, traits=self.subject.traits)
        from segment_connector.domain.outbound_view import Rules

        if self.activity is None:
            self.activity = profiles.user_activity(self.store, self.settings, self.subject)
        account = profiles.rules_account(self.store, self.settings, self.subject)
        return Rules(self.settings).user_segments(self.subject, account, self.activity)

    def trait_time(self, name: str) -> str | None:
        """When the trait last changed: a computed trait's newest counted event (None: none
        counted), else the newest time at the received trait's path or below, else the profile's."""
        for trait in self.settings.computed_traits if isinstance(self.subject, UserProfile) else ():
            if trait.name == name:
                counted = self.activity.selected(trait.event_filter()) if self.activity else []
                return format_time(counted[-1].at) if counted else None
        return trait_time(self.subject, name)


def trait_time(subject: Subject, name: str) -> str | None:
    """When the trait last changed: the newest time at its path or below, else the profile's."""
    path = encode_path([name])
    times = [at for key, at in subject.trait_times.items() if key == path or key.startswith(path + "/")]
    return max(times) if times else subject.updated_at or None


# -- external ids ------------------------------------------------------------------------------------


def external_ids(subject: Subject) -> list[tuple[str, str]]:
    """(type, id) of every id of the user or account, in that order."""
    if isinstance(subject, Account):
        return [("group_id", subject.group_id)]
    found = {tuple(pk.split("#", 2)[1:]) for pk in subject.identities if pk.count("#") >= 2}
    found.update(("anonymous_id", value) for value in subject.anonymous_ids)
    if subject.user_id:
        found.add(("user_id", subject.user_id))
    if subject.email:
        found.add(("email", subject.email))
    return sorted((kind, value) for kind, value in found)


def external_id_view(subject: Subject, kind: str, value: str) -> dict[str, Any]:
    """Segment's shape; `created_at` is the profile's (the connector keeps no time per id)."""
    collection = "accounts" if isinstance(subject, Account) else "users"
    created = subject.created_at or None
    return {"id": value, "type": kind, "collection": collection, "created_at": created, "encoding": "none"}


def external_ids_page(request: ProfileRequest, subject: Subject) -> dict[str, Any]:
    """`{"data": [...], "cursor": {...}}` in (type, id) order; the cursor's key is the last pair."""
    limit = request.limit(*EXTERNAL_ID_LIMITS)
    include = request.names("include")
    after = decode_cursor(request, lambda key: is_text_list(key, 2))
    pairs = [
        pair
        for pair in external_ids(subject)
        if (include is None or pair[0] in include) and (after is None or pair > tuple(after))
    ]
    page, more = take(iter(pairs), limit, lambda pair: sized(external_id_view(subject, *pair)))
    following = encode_cursor(request.resource, list(page[-1])) if more else None
    data = [external_id_view(subject, *pair) for pair in page]
    return {"data": data, "cursor": cursor(request, limit, following)}


# -- metadata ----------------------------------------------------------------------------------------


def metadata(store: ProfileStore, subject: Subject) -> dict[str, Any]:
    """When the profile was created and updated; its first and last stored events' message ids
    (accounts keep no events: null). One Query per event partition and end."""
    first = last = None
    if isinstance(subject, UserProfile):
        partitions = subject.event_partitions()
        newest = next(ordered_events(store.db, partitions, EventRange(newest_first=True), page=1), None)
        if newest is not None:
            oldest = next(ordered_events(store.db, partitions, EventRange(newest_first=False), page=1), None)
            last, first = newest.message_id, (oldest or newest).message_id
    return {
        "metadata": {
            "created_at": subject.created_at or None,
            "updated_at": subject.updated_at or None,
            "expires_at": None,
            "first_message_id": first,
            "last_message_id": last,
        }
    }


# -- links -------------------------------------------------------------------------------------------


def links(store: ProfileStore, request: ProfileRequest, subject: Subject) -> dict[str, Any]:
    """A user's account, or an account's users (in the order of their profiles' keys; the cursor's
    key is the last one), each with its external ids."""
    limit = request.limit(*LINK_LIMITS)
    after = decode_cursor(request, is_text)
    if isinstance(subject, UserProfile):  # one account at most: one page
        data = [_account_link(subject)] if subject.account_id and after is None else []
        return {"data": data, "cursor": cursor(request, limit, None)}
    keys = sorted(pk for pk in store.profiles.users_of_account(subject.group_id) if after is None or pk > after)
    found = store.profiles.identity_items(keys[:limit])
    users = [user for pk in keys[:limit] if isinstance(user := found.get(pk), UserProfile)]
    page, cut = take(iter(users), limit, lambda user: sized(_user_link(user)))
    more = cut or len(keys) > limit
    following = encode_cursor(request.resource, page[-1].pk if page else keys[limit - 1]) if more else None
    return {"data": [_user_link(user) for user in page], "cursor": cursor(request, limit, following)}


def _account_link(user: UserProfile) -> dict[str, Any]:
    assert user.account_id is not None
    linked = user.account_linked_at or user.updated_at or None
    group = {"id": user.account_id, "type": "group_id", "collection": "accounts", "created_at": linked}
    return {"to_collection": "accounts", "external_ids": [{**group, "encoding": "none"}]}


def _user_link(user: UserProfile) -> dict[str, Any]:
    return {"to_collection": "users", "external_ids": [external_id_view(user, *pair) for pair in external_ids(user)]}

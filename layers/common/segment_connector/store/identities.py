"""Identity items read with their alias chains followed to the profile (a profile that moved
leaves an alias at its old pk; a merge leaves aliases at the absorbed pks)."""

from __future__ import annotations

from segment_connector.domain.models.items import IdentityAlias, UserProfile
from segment_connector.store.profile_store import ProfileStore

MAX_ALIAS_HOPS = 5


class IdentityLookup:
    """Identity items read so far, with alias chains followed to their profile."""

    def __init__(self, store: ProfileStore, pks: list[str]):
        self.store = store
        self.items = store.profiles.identity_items(pks)
        for _ in range(MAX_ALIAS_HOPS):
            missing = {
                item.profile_pk
                for item in self.items.values()
                if isinstance(item, IdentityAlias) and item.profile_pk not in self.items
            }
            if not missing:
                break
            self.items.update(store.profiles.identity_items(missing))

    def profile_at(self, pk: str) -> UserProfile | None:
        for _ in range(MAX_ALIAS_HOPS + 1):
            item = self.items.get(pk)
            if item is None or isinstance(item, UserProfile):
                return item
            pk = item.profile_pk
        return None


def profiles_at(store: ProfileStore, pks: list[str]) -> dict[str, UserProfile | None]:
    """The profile each identity pk belongs to (aliases followed), None where there is none."""
    lookup = IdentityLookup(store, pks)
    return {pk: lookup.profile_at(pk) for pk in pks}


def identity_owners(store: ProfileStore, pks: list[str]) -> dict[str, tuple[str | None, bool]]:
    """For each identity pk: the pk of the profile it belongs to (None: unknown) and whether the
    identity is already linked to a profile (stored as an alias item)."""
    lookup = IdentityLookup(store, pks)
    owners: dict[str, tuple[str | None, bool]] = {}
    for pk in pks:
        profile = lookup.profile_at(pk)
        owners[pk] = (profile.pk if profile else None, isinstance(lookup.items.get(pk), IdentityAlias))
    return owners


def user_at(store: ProfileStore, pk: str) -> tuple[UserProfile | None, bool]:
    """The profile an identity pk belongs to (None: none), and whether the pk's partition holds
    events when it holds no identity item. One Query, then one BatchGet per alias followed (one:
    aliases point at their profile, store/alias_repoints.py; older chains are followed too)."""
    item, has_events = store.profiles.identity_head(pk)
    for _ in range(MAX_ALIAS_HOPS):
        if not isinstance(item, IdentityAlias):
            break
        item = store.profiles.identity_items([item.profile_pk]).get(item.profile_pk)
    return (item if isinstance(item, UserProfile) else None), has_events

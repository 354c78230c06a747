"""Aliases point at their profile, not at a pk it left: a lookup follows one alias, never a chain."""

from __future__ import annotations

from typing import Any

from harness import TABLE
from segment_connector.domain.errors import StoreUnavailable
from segment_connector.domain.models.items import IdentityAlias, UserProfile, identity_pk
from segment_connector.store.alias_repoints import repoint
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.table import serialize


def put(aws: Any, item: IdentityAlias | UserProfile) -> None:
    aws.dynamodb.put_item(TableName=TABLE, Item=serialize(item.to_item()))


def test_only_aliases_still_pointing_at_a_retired_pk_are_repointed(aws):
    store = ProfileStore(TABLE)
    old, new, other = identity_pk("anonymous_id", "a"), identity_pk("user_id", "u"), identity_pk("user_id", "z")
    x, y, z, w = (identity_pk("anonymous_id", name) for name in ("x", "y", "z", "w"))
    # Given x an alias of the retired pk, y an alias of another user, z a profile, w nothing
    put(aws, IdentityAlias(pk=x, profile_pk=old))
    put(aws, IdentityAlias(pk=y, profile_pk=other))
    put(aws, UserProfile(pk=z, created_at="t", updated_at="t", version=1))
    # When they are repointed at the profile's new pk (twice: at-least-once)
    assert repoint(store.db, [x, y, z, w], [old], new) == 1
    assert repoint(store.db, [x, y, z, w], [old], new) == 0
    # Then only x moved; y still points at the other user, z is a profile, w does not exist
    items = store.profiles.identity_items([x, y, z, w])
    assert items[x] == IdentityAlias(pk=x, profile_pk=new)
    assert items[y] == IdentityAlias(pk=y, profile_pk=other)
    assert isinstance(items[z], UserProfile) and w not in items


def test_a_busy_table_leaves_the_chain_and_the_message_stored(aws, monkeypatch):
    store = ProfileStore(TABLE)
    old, new = identity_pk("anonymous_id", "a"), identity_pk("user_id", "u")
    x = identity_pk("anonymous_id", "x")
    put(aws, IdentityAlias(pk=x, profile_pk=old))

    def busy(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable()

    monkeypatch.setattr(store.db, "call", busy)
    # When the table refuses: Then nothing is raised, nothing repointed
    assert repoint(store.db, [x], [old], new) == 0
    monkeypatch.undo()
    assert store.profiles.identity_items([x])[x] == IdentityAlias(pk=x, profile_pk=old)

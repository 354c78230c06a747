"""A GDPR delete as inbound records it: one transaction with the tombstone, its registration and
the stored profiles deleted at the version read (outbound/deletion.py sweeps the rest)."""

from __future__ import annotations

import logging

from segment_connector.inbound.identity import Resolution
from segment_connector.store import deletions_pending
from segment_connector.store.deletion import KIND, SK
from segment_connector.store.profiles import ProfileChange

log = logging.getLogger(__name__)


def change_for(resolution: Resolution, claimed: list[str], message_id: str | None, now: str) -> ProfileChange:
    """The delete as one transaction: the tombstone, and the stored profiles deleted at the version read."""
    deleted = [(alias.pk, version) for alias, version in resolution.retired]
    if resolution.expected is not None:
        deleted.append((resolution.profile.pk, resolution.expected))
    stored = bool(deleted)
    profile = resolution.profile
    ids = [*profile.identities, *resolution.dropped, *claimed] if stored else list(claimed)
    ids = list(dict.fromkeys([*(pk for pk, _ in deleted), *ids]))
    merged = [*resolution.merged_uids, *(profile.merged_uids or [])]
    uids = list(dict.fromkeys([profile.uid, *merged])) if stored else []
    tombstone = {
        "pk": f"{KIND}#{message_id}",
        "sk": SK,
        "kind": KIND,
        "deleted_at": now,
        "ids": ids,
        "profile_pks": [pk for pk, _ in deleted],
        "uids": uids,
        "next_uid": 0,
        "next_partition": 0,
        "next_alias": 0,
        "step": 0,
    }
    registration = deletions_pending.registration(str(tombstone["pk"]), now, ids)
    return ProfileChange(message_id=message_id, tombstone=tombstone, registration=registration, deleted=deleted)

"""resolve_identity: find (or start) the one profile a message's identities belong to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segment_connector.domain.models.items import (
    IdentityAlias,
    IdentityType,
    UserProfile,
    identity_pk,
)
from segment_connector.store.identities import IdentityLookup
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.profiles import ProfileChange

# A profile lists at most this many anonymous ids (the newest) and identities: a shared or test
# userId collects anonymous ids without end, and a profile must fit in one DynamoDB item. An id
# dropped from the lists keeps its alias item, so it still resolves to the user.
MAX_ANONYMOUS_IDS = 1_000
MAX_IDENTITIES = 1_100  # the anonymous ids', the user_id's, the email's and user_ids merged by alias
MAX_ID_BYTES = 120_000  # of the two lists together: ids may be 1 KB each (100 KB for 1,000 uuids)
# uids of merged profiles a profile lists (the newest): outbound unites their segment history when
# it first sees the merge, so only the latest few matter
MAX_MERGED_UIDS = 20
# aliases a change points again at a profile that moved or absorbed another (the newest identities
# first; beyond that an older id resolves through a chain of aliases: store/alias_repoints.py)
MAX_REPOINTS = 50


@dataclass
class Claims:
    """The identities a message names, best first."""

    user_id: str | None = None
    anonymous_id: str | None = None
    email: str | None = None

    def pks(self) -> list[tuple[IdentityType, str]]:
        pairs: list[tuple[IdentityType, str | None]] = [
            ("user_id", self.user_id),
            ("anonymous_id", self.anonymous_id),
            ("email", self.email),
        ]
        return [(kind, identity_pk(kind, value)) for kind, value in pairs if value]

    def __bool__(self) -> bool:
        return bool(self.user_id or self.anonymous_id or self.email)


@dataclass
class Resolution:
    """The profile to write, the version it was read at (None: new at its pk) and side effects."""

    profile: UserProfile
    expected: int | None
    retired: list[tuple[IdentityAlias, int]] = field(default_factory=list)
    aliases: list[IdentityAlias] = field(default_factory=list)
    before: dict[str, Any] | None = None
    dropped: list[str] = field(default_factory=list)  # identity pks _bound let go (kept in overflow items)
    stale_aliases: list[str] = field(default_factory=list)  # aliases pointing at a retired pk
    merged_uids: list[str] = field(default_factory=list)  # of the profiles absorbed

    def changed(self) -> bool:
        return (
            bool(self.retired or self.aliases or self.dropped)
            or self.profile.model_dump(exclude={"updated_at"}) != self.before
        )

    def to_change(self, message_id: str | None, now: str) -> ProfileChange:
        self.profile.updated_at = now
        return ProfileChange(
            message_id=message_id,
            profiles=[(self.profile, self.expected)],
            retired=self.retired,
            aliases=self.aliases,
            dropped=self.dropped,
            merged_uids=self.merged_uids,
            stale_aliases=self.stale_aliases,
        )


def resolve_identity(store: ProfileStore, claims: Claims, now: str, force_merge: tuple[str, ...] = ()) -> Resolution:
    """Resolve claims (user_id, then anonymous_id, then email) to one profile.

    Profiles found through other claims are merged in when they carry no other user_id (the
    anonymous-then-known case); `force_merge` pks (alias calls) are merged in regardless.
    A claim owned by a different known user is left alone: a shared device never fuses two users.
    """
    claimed = claims.pks()
    lookup = IdentityLookup(store, [pk for _, pk in claimed] + list(force_merge))
    candidates = [lookup.profile_at(pk) for _, pk in claimed]
    forced = [p for p in (lookup.profile_at(pk) for pk in force_merge) if p is not None]
    target = _target(claims, candidates, forced)
    resolution = _start(target, claimed[0][1], now)
    profile = resolution.profile

    absorbed = {id(target)}
    for source in [p for p in candidates if _mergeable(p, claims)] + forced:
        if source is not None and id(source) not in absorbed and source.pk != profile.pk:
            absorbed.add(id(source))
            _absorb(profile, source)
            resolution.merged_uids.append(source.uid)
            _note_merged(profile, source)
            resolution.retired.append((IdentityAlias(pk=source.pk, profile_pk=""), source.version))

    _claim(profile, claims, lookup, absorbed, resolution)
    _place(profile, resolution)
    resolution.dropped = _bound(profile)
    resolution.stale_aliases = _stale_aliases(profile, resolution)
    return resolution


def _stale_aliases(profile: UserProfile, resolution: Resolution) -> list[str]:
    """The profile's other identities when it leaves a pk (moved, or profiles merged in): their
    aliases may point at a retired pk. Newest first, at most MAX_REPOINTS."""
    if not resolution.retired:
        return []
    written = {profile.pk} | {alias.pk for alias in resolution.aliases} | {alias.pk for alias, _ in resolution.retired}
    return [pk for pk in reversed(profile.identities) if pk not in written][:MAX_REPOINTS]


def _mergeable(profile: UserProfile | None, claims: Claims) -> bool:
    """A found profile joins the claims' user unless it belongs to another known user."""
    return profile is not None and (not claims.user_id or profile.user_id in (None, claims.user_id))


def _target(claims: Claims, candidates: list[UserProfile | None], forced: list[UserProfile]) -> UserProfile | None:
    """The profile the claims resolve to: the user_id's (else the first mergeable other one), or
    without a user_id the first one found; else the first profile an alias call merges."""
    if claims.user_id:
        target = candidates[0]
        if target is None:
            target = next((p for p in candidates[1:] if _mergeable(p, claims)), None)
    else:
        target = next((p for p in candidates if p is not None), None)
    if target is None and forced:
        target = forced[0]
    return target


def _start(target: UserProfile | None, pk: str, now: str) -> Resolution:
    """A copy of the target to merge into (read at its version), or a new profile at `pk`."""
    if target is None:
        return Resolution(profile=UserProfile(pk=pk, created_at=now, updated_at=now), expected=None)
    return Resolution(
        profile=target.model_copy(deep=True), expected=target.version, before=target.model_dump(exclude={"updated_at"})
    )


def _claim(
    profile: UserProfile, claims: Claims, lookup: IdentityLookup, absorbed: set[int], resolution: Resolution
) -> None:
    for kind, pk in claims.pks():
        owner = lookup.profile_at(pk)
        if owner is not None and id(owner) not in absorbed and owner.pk != profile.pk:
            continue  # belongs to another known user
        if owner is None and pk not in lookup.items:
            resolution.aliases.append(IdentityAlias(pk=pk, profile_pk=""))
        if pk not in profile.identities:
            profile.identities.append(pk)
        if kind == "user_id" and not profile.user_id:
            profile.user_id = claims.user_id
        elif kind == "anonymous_id" and claims.anonymous_id:  # pks() names only the ids it has
            if claims.anonymous_id in profile.anonymous_ids:
                profile.anonymous_ids.remove(claims.anonymous_id)
            profile.anonymous_ids.append(claims.anonymous_id)  # the most recent one last
        elif kind == "email":
            profile.email = claims.email


def _absorb(profile: UserProfile, source: UserProfile) -> None:
    """Merge `source` into `profile`: each trait leaf keeps the newer of the two (see traits.merge_leaves)."""
    from segment_connector.domain.traits import merge_leaves, timed_leaves

    merge_leaves(
        profile.traits, profile.trait_times, timed_leaves(source.traits, source.trait_times, source.updated_at)
    )
    for anonymous_id in source.anonymous_ids:
        if anonymous_id not in profile.anonymous_ids:
            profile.anonymous_ids.insert(0, anonymous_id)
    profile.email = profile.email or source.email
    if source.user_id and source.user_id != profile.user_id:
        pk = identity_pk("user_id", source.user_id)
        if pk not in profile.identities:
            profile.identities.append(pk)
    for pk in source.identities:
        if pk not in profile.identities:
            profile.identities.append(pk)
    if source.account_id and (source.account_linked_at or "") > (profile.account_linked_at or ""):
        profile.account_id, profile.account_linked_at = source.account_id, source.account_linked_at
    profile.created_at = min(profile.created_at, source.created_at)


def _note_merged(profile: UserProfile, source: UserProfile) -> None:
    """Record the absorbed profile's uid: its segment history joins this profile's (segment_history.py)."""
    merged = [uid for uid in profile.merged_uids or [] if uid != source.uid] + [source.uid]
    profile.merged_uids = merged[-MAX_MERGED_UIDS:]


def _place(profile: UserProfile, resolution: Resolution) -> None:
    """Move the profile to its best identity pk; whatever it leaves becomes an alias to it."""
    best = profile.best_pk()
    if best != profile.pk and resolution.expected is not None:
        resolution.retired.append((IdentityAlias(pk=profile.pk, profile_pk=""), resolution.expected))
        resolution.expected = None
    profile.pk = best
    if best not in profile.identities:
        profile.identities.insert(0, best)
    resolution.aliases = [a for a in resolution.aliases if a.pk != best]
    resolution.retired = [(a, v) for a, v in resolution.retired if a.pk != best]
    for alias in resolution.aliases:
        alias.profile_pk = best
    for alias, _ in resolution.retired:
        alias.profile_pk = best


def _bound(profile: UserProfile) -> list[str]:
    """Keep the newest MAX_ANONYMOUS_IDS anonymous ids and at most MAX_IDENTITIES identities, the
    profile's own pk always (an anonymous profile lives at its first anonymous id); returns the
    identity pks dropped (a delete must still find them: ProfileChange.dropped)."""
    own = profile.pk
    listed = list(profile.identities)
    excess = max(len(profile.anonymous_ids) - MAX_ANONYMOUS_IDS, _over_bytes(profile))
    if excess > 0:
        keep_first = identity_pk("anonymous_id", profile.anonymous_ids[0]) == own
        start = 1 if keep_first else 0
        dropped = {identity_pk("anonymous_id", value) for value in profile.anonymous_ids[start : start + excess]}
        del profile.anonymous_ids[start : start + excess]
        profile.identities = [pk for pk in profile.identities if pk not in dropped or pk == own]
    excess = len(profile.identities) - MAX_IDENTITIES
    if excess > 0:  # the oldest first, never the profile's own
        dropped = set([pk for pk in profile.identities if pk != own][:excess])
        profile.identities = [pk for pk in profile.identities if pk not in dropped]
    kept = set(profile.identities)
    return [pk for pk in listed if pk not in kept]


def _over_bytes(profile: UserProfile) -> int:
    """How many of the oldest anonymous ids to drop for the id lists to fit MAX_ID_BYTES."""
    total = sum(len(pk.encode()) + 1 for pk in profile.identities)
    total += sum(len(value.encode()) + 1 for value in profile.anonymous_ids)
    count = 0
    for value in profile.anonymous_ids[1:]:  # the first may be the profile's own: never counted out
        if total <= MAX_ID_BYTES:
            break
        total -= 2 * len(value.encode()) + len("id#anonymous_id#") + 2
        count += 1
    return count

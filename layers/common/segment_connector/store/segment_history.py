"""Per person, the segments Segment was last told about (Entered/Left Segment), kept across moves
and merges (see docs/design.md, "Segment history").

One small item per profile uid: pk `seghist#<uid>`, sk `seghist`, kind `seghist`, `segments` (the
names announced), `at` (the profile time they reflect: a stream record of the person older than it
is stale), `version` (how many times it was written: every write is conditional on the version it
was planned from), `seq` (the newest resync job that wrote it: an older job's page, still running
after a newer one passed the person, must not announce its own settings' segments over the newer
job's), `pending` (the Entered/Left events of the last transitions, stored by whoever
sees them: kept until they are) and, for a profile merged into another, `merged_into` (the
survivor's uid: its history was united into the survivor's, and its own late records announce
nothing). The stream's filter never passes these items; they hold no personal data (a uid, segment
names, and the events' ids, names and send ids).

Outbound (outbound.Planner) and resync (resync_plan.PagePlanner) both diff against it. A
transition is announced by claiming it first (`claim`: the new history with the transition's
events as `pending`, written only if the history is still the one read), then storing its events
and clearing `pending` (`complete`). A claim that loses (another writer wrote the history since it
was read) announces nothing: its writer plans again from the winner's history. A crash after the
claim leaves `pending`, which the next writer or reader of that history stores (the events' ids
are fixed in the claim, so they are stored once).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError

from segment_connector.domain.models.items import StoredEvent
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.table import serialize

PK_PREFIX = "seghist#"
SK = "seghist"
KIND = "seghist"


@dataclass
class Announced:
    """The segments a person's Entered/Left events have announced, as of the profile time `at`.

    `version` is the stored version this state was planned from (0: none stored), `pending` the
    events claimed and maybe not stored yet (the ones read, then the ones planned here).
    """

    uid: str
    segments: list[str]
    at: str
    merged_into: str | None = None
    version: int = 0
    pending: list[StoredEvent] = field(default_factory=list)
    stored: bool = False  # planned from a stored item (one written before versions were kept: version 0)
    seq: int = 0  # the newest resync job that wrote it (0: none)

    def to_item(self, version: int) -> dict[str, object]:
        item: dict[str, object] = {
            "pk": f"{PK_PREFIX}{self.uid}",
            "sk": SK,
            "kind": KIND,
            "segments": list(self.segments),
            "at": self.at,
            "version": version,
        }
        if self.merged_into:
            item["merged_into"] = self.merged_into
        if self.seq:
            item["seq"] = self.seq
        if self.pending:
            item["pending"] = [event.to_item() for event in self.pending]
        return item

    def stale(self, at: str) -> bool:
        """Whether a change of the person at profile time `at` comes after what is recorded here
        already (a late record of the pk it moved from) or after it was merged into another."""
        return bool(self.merged_into) or at < self.at

    def same(self, segments: list[str]) -> bool:
        return set(self.segments) == set(segments)

    def then(
        self, segments: list[str], at: str, events: list[StoredEvent], merged_into: str | None = None
    ) -> Announced:
        """The next state planned from this one: its version, its pending events and its resync job carried."""
        return replace(self, segments=list(segments), at=at, merged_into=merged_into, pending=[*self.pending, *events])


def start(uid: str, segments: list[str], at: str, events: list[StoredEvent]) -> Announced:
    """The first state of a person without a stored history."""
    return Announced(uid, list(segments), at, pending=list(events))


def read(store: ProfileStore, uids: Iterable[str]) -> dict[str, Announced]:
    """The recorded history of each uid that has one (strongly consistent BatchGetItem)."""
    keys = [{"pk": {"S": f"{PK_PREFIX}{uid}"}, "sk": {"S": SK}} for uid in dict.fromkeys(uids)]
    if not keys:
        return {}
    found: dict[str, Announced] = {}
    for raw in store.db.batch_get(keys):
        uid = str(raw["pk"]).removeprefix(PK_PREFIX)
        merged_into = raw.get("merged_into")
        found[uid] = Announced(
            uid=uid,
            segments=[str(name) for name in raw.get("segments") or []],
            at=str(raw.get("at") or ""),
            merged_into=str(merged_into) if merged_into else None,
            version=int(raw.get("version") or 0),
            pending=[StoredEvent.from_item(event) for event in raw.get("pending") or []],
            stored=True,
            seq=int(raw.get("seq") or 0),
        )
    return found


def claim(store: ProfileStore, histories: list[Announced]) -> list[Announced] | None:
    """Write `histories` (a person's, then the marks of the profiles it absorbed: all or none, in
    one transaction when there are several) if each stored one is still the version it was
    planned from; the states as written (their new versions), or None when another writer got
    there first (nothing written)."""
    written = [replace(h, version=h.version + 1, stored=True) for h in histories]
    puts = [_conditional_put(store, state, read) for state, read in zip(written, histories, strict=True)]
    try:
        if len(puts) == 1:
            store.db.call("put_item", **puts[0])
        elif puts:
            store.db.call("transact_write_items", TransactItems=[{"Put": put} for put in puts])
    except ClientError as error:
        if error.response["Error"]["Code"] in LOST:
            return None
        raise
    return written


# A conditional write that lost: the condition failed, or (transaction) another one wrote an item.
LOST = ("ConditionalCheckFailedException", "TransactionCanceledException")


def _conditional_put(store: ProfileStore, state: Announced, read: Announced) -> dict[str, Any]:
    """PutItem of `state` if the stored history is still `read` (none stored, or of that version)."""
    put: dict[str, Any] = {"TableName": store.table, "Item": serialize(state.to_item(state.version))}
    if not read.stored:
        put["ConditionExpression"] = "attribute_not_exists(pk)"
    elif read.version == 0:  # written before versions were kept
        put["ConditionExpression"] = "attribute_exists(pk) AND attribute_not_exists(version)"
    else:
        put["ConditionExpression"] = "version = :read"
        put["ExpressionAttributeValues"] = {":read": {"N": str(read.version)}}
    return put


def complete(store: ProfileStore, histories: list[Announced]) -> int:
    """Store the pending events of claimed (or read) histories, in batches (put_new_events: an
    event already stored is not written again), then clear each history's `pending` if it is still
    that version (else the newer claim carries them and its writer clears them); how many events
    were new."""
    pending = [history for history in histories if history.pending]
    if not pending:
        return 0
    stored = sum(store.events.put_new([event for history in pending for event in history.pending]))
    for history in pending:
        done = replace(history, pending=[], stored=True)
        try:
            store.db.call("put_item", **_conditional_put(store, done, history))
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        history.pending = []
    return stored


def prior(own: Announced | None, fallback: list[str], absorbed: Iterable[Announced | None], survivor: str) -> list[str]:
    """What the person was last told: its own history (none recorded: `fallback`, what its previous
    image says), united with the histories of the profiles merged into it and not united yet.

    So a segment either side had announced is not entered again, one neither had is entered once,
    and one the merged person is no longer in is left once.
    """
    told = list(own.segments if own else fallback)
    for other in absorbed:
        if other is None or other.merged_into == survivor:
            continue
        told += [name for name in other.segments if name not in told]
    return told

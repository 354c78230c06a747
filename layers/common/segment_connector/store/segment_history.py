"""Per person, the segments Segment was last told about (Entered/Left Segment), kept across moves
and merges (see docs/design.md, "Segment history").

One small item per profile uid: pk `seghist#<uid>`, sk `seghist`, kind `seghist`, `segments` (the
names announced), `at` (the profile time they reflect: a stream record of the person older than it
is stale) and, for a profile merged into another, `merged_into` (the survivor's uid: its history
was united into the survivor's, and its own late records announce nothing). The stream's filter
never passes these items; they hold no personal data (a uid and segment names).

Outbound (outbound.Planner) and resync (resync_plan.PagePlanner) both diff against it and write it
after the Entered/Left events they imply are stored, so neither announces again what the other did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from segment_connector.store.profile_store import ProfileStore

PK_PREFIX = "seghist#"
SK = "seghist"
KIND = "seghist"


@dataclass
class Announced:
    """The segments a person's Entered/Left events have announced, as of the profile time `at`."""

    uid: str
    segments: list[str]
    at: str
    merged_into: str | None = None

    def to_item(self) -> dict[str, object]:
        item: dict[str, object] = {
            "pk": f"{PK_PREFIX}{self.uid}",
            "sk": SK,
            "kind": KIND,
            "segments": list(self.segments),
            "at": self.at,
        }
        if self.merged_into:
            item["merged_into"] = self.merged_into
        return item

    def stale(self, at: str) -> bool:
        """Whether a change of the person at profile time `at` comes after what is recorded here
        already (a late record of the pk it moved from) or after it was merged into another."""
        return bool(self.merged_into) or at < self.at

    def same(self, segments: list[str]) -> bool:
        return set(self.segments) == set(segments)


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
        )
    return found


def write(store: ProfileStore, histories: Iterable[Announced]) -> None:
    """Record histories, in order (a survivor's before the marks of the profiles merged into it:
    a crash between them unites again, and the events' change-derived ids keep that exact)."""
    for history in histories:
        store.db.put_item(history.to_item())


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

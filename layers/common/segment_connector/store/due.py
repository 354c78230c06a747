"""When users' memberships and computed traits may change only because time passes: the moment
an event leaves a window (issue 15). One item per (moment, user) in a partition per UTC hour, so
that the scheduled re-evaluation reads only the hours that have passed since its last run, and
only the users whose windows end in them.

`due#<YYYY-MM-DDTHH>` / `<due_at>#<uid>`: kind `due`, `uid`, `profile_pk`, `due_at`, `expires_at`.
`due` / `cursor`: kind `due_cursor`, `hour`: every hour before it has been read through.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from segment_connector.domain.times import format_time, parse_time
from segment_connector.store.table import WRITE_BATCH, Table, deserialize, key, serialize

PREFIX = "due#"
KEPT = timedelta(days=8)  # a due item the re-evaluation never reached expires (TTL) after this
LAG = timedelta(minutes=15)  # an hour is read again this long after it ends: a late write still counts


CURSOR = key("due", "cursor")
HOUR = timedelta(hours=1)


def hour_partition(at: datetime) -> str:
    return f"{PREFIX}{format_time(at)[:13]}"


def hour_start(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Due:
    """A user to evaluate again at `at`."""

    at: datetime
    uid: str
    profile_pk: str

    @classmethod
    def from_item(cls, item: dict[str, object]) -> Due | None:
        try:
            at = parse_time(item.get("due_at"))
        except ValueError:
            return None
        if at is None:
            return None
        return cls(at, str(item.get("uid", "")), str(item.get("profile_pk", "")))

    def item(self) -> dict[str, object]:
        due_at = format_time(self.at)
        return {
            "pk": hour_partition(self.at),
            "sk": f"{due_at}#{self.uid}",
            "kind": "due",
            "uid": self.uid,
            "profile_pk": self.profile_pk,
            "due_at": due_at,
            "expires_at": int((self.at + KEPT).timestamp()),
        }


class DueItems:
    """Writes of due items (the scheduled re-evaluation reads and removes them)."""

    def __init__(self, table: Table):
        self.table = table

    def schedule(self, due: Iterable[Due]) -> int:
        """Put each (idempotent: the same moment and user is one item); how many were written."""
        items = {(d.uid, d.at): d.item() for d in due}
        requests = [{"PutRequest": {"Item": serialize(item)}} for item in items.values()]
        for start in range(0, len(requests), WRITE_BATCH):
            self.table.batch_write(requests[start : start + WRITE_BATCH])
        return len(requests)

    def reached(self, now: datetime) -> tuple[list[Due], datetime]:
        """The due items of every hour from the cursor's (at most KEPT back) to now's, due at or
        before `now`; and the hour the cursor may move to once they are done (the hour of `now`
        minus LAG: an item is written due after the writer's now, which may lag behind)."""
        start = max(self.cursor() or now - KEPT, now - KEPT)
        hour, found = hour_start(start), []
        bound = format_time(now) + "$"  # after "<now>#<uid>" ('$' sorts after '#')
        while hour <= now:
            items = self.table.query_all(
                KeyConditionExpression="pk = :pk AND sk < :bound",
                ExpressionAttributeValues={":pk": {"S": hour_partition(hour)}, ":bound": {"S": bound}},
            )
            found += [due for raw in items if (due := Due.from_item(deserialize(raw))) is not None]
            hour += HOUR
        return found, hour_start(now - LAG)

    def done(self, due: Iterable[Due]) -> None:
        """Remove the due items that were evaluated (their calls delivered or kept)."""
        keys = {(hour_partition(d.at), f"{format_time(d.at)}#{d.uid}") for d in due}
        requests = [{"DeleteRequest": {"Key": key(pk, sk)}} for pk, sk in sorted(keys)]
        for start in range(0, len(requests), WRITE_BATCH):
            self.table.batch_write(requests[start : start + WRITE_BATCH])

    def cursor(self) -> datetime | None:
        item = self.table.get(CURSOR)
        try:
            return parse_time(item.get("hour")) if item else None
        except ValueError:
            return None

    def move_cursor(self, hour: datetime) -> None:
        """Forward only: a slower run that read less never moves it back."""
        self.table.update_if(
            CURSOR,
            "SET #hour = :hour, kind = :kind",
            "attribute_not_exists(#hour) OR #hour < :hour",
            {":hour": {"S": format_time(hour)}, ":kind": {"S": "due_cursor"}},
            {"#hour": "hour"},
        )

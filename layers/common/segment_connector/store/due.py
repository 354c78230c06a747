"""When users' memberships and computed traits may change only because time passes: the moment
an event leaves a window (issue 15). One item per (moment, user) in a partition per UTC hour, so
that the scheduled re-evaluation reads only the hours that have passed since its last run, and
only the users whose windows end in them.

`due#<YYYY-MM-DDTHH>` / `<due_at>#<uid>`: kind `due`, `uid`, `profile_pk`, `due_at`, `expires_at`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from segment_connector.domain.times import format_time
from segment_connector.store.table import WRITE_BATCH, Table, serialize

PREFIX = "due#"
KEPT = timedelta(days=8)  # a due item the re-evaluation never reached expires (TTL) after this


def hour_partition(at: datetime) -> str:
    return f"{PREFIX}{format_time(at)[:13]}"


@dataclass(frozen=True)
class Due:
    """A user to evaluate again at `at`."""

    at: datetime
    uid: str
    profile_pk: str

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

"""ProfileStore: the handle the functions pass around, one store per job on one table.

store.profiles      identity items, accounts, a message's ProfileChange, the resync scan
store.events        event reads and writes
store.activity      the events segment rules and computed traits read (their LSI by_time entries)
store.due           when users must be evaluated again because time passes (issue 15)
store.dead_letters  delivery attempts and the dead-letter queue
store.replay        the dead-letter replay's job item
store.resync        the resync's job item and settings documents
store.syncs         the profiles' sync items (resync)
store.inventory     counts and samples for operators
store.db            the table gateway (table.py) that all of them, and the small store modules
                    (identities, segment_history, deletion, deletions_pending), call through
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from segment_connector.store.table import Table

if TYPE_CHECKING:
    from segment_connector.store.activity import ActivityReads
    from segment_connector.store.dead_letters import DeadLetterQueue
    from segment_connector.store.due import DueItems
    from segment_connector.store.events import Events
    from segment_connector.store.inventory import Inventory
    from segment_connector.store.jobs import ReplayJobs, ResyncJobs
    from segment_connector.store.profiles import Profiles
    from segment_connector.store.syncs import SyncItems


class ProfileStore:
    """The table (`db`, its `table` name and boto3 `client`) and its job stores."""

    def __init__(self, table_name: str, client: Any = None):
        self.db = Table(table_name, client)
        self.table = table_name

    # Each job store is made (and imported) on first use. InboundFunction's requests read and write
    # only profiles and events (its entry imports their modules at init); the others' modules cost
    # its cold start ~3 ms. The console's status and dashboard need neither profiles nor events,
    # whose modules and the table's item models (domain.models.items) cost its cold start ~4 ms.
    @cached_property
    def profiles(self) -> Profiles:
        from segment_connector.store.profiles import Profiles

        return Profiles(self.db)

    @cached_property
    def events(self) -> Events:
        from segment_connector.store.events import Events

        return Events(self.db)

    @cached_property
    def activity(self) -> ActivityReads:
        from segment_connector.store.activity import ActivityReads

        return ActivityReads(self.db)

    @cached_property
    def due(self) -> DueItems:
        from segment_connector.store.due import DueItems

        return DueItems(self.db)

    @cached_property
    def dead_letters(self) -> DeadLetterQueue:
        from segment_connector.store.dead_letters import DeadLetterQueue

        return DeadLetterQueue(self.db)

    @cached_property
    def replay(self) -> ReplayJobs:
        from segment_connector.store.jobs import ReplayJobs

        return ReplayJobs(self.db)

    @cached_property
    def resync(self) -> ResyncJobs:
        from segment_connector.store.jobs import ResyncJobs

        return ResyncJobs(self.db)

    @cached_property
    def syncs(self) -> SyncItems:
        from segment_connector.store.syncs import SyncItems

        return SyncItems(self.db)

    @cached_property
    def inventory(self) -> Inventory:
        from segment_connector.store.inventory import Inventory

        return Inventory(self.db)

    @property
    def client(self) -> Any:
        """The boto3 client every job store calls through (tests swap it for a wrapped one)."""
        return self.db.client

    @client.setter
    def client(self, client: Any) -> None:
        self.db.client = client


_shared: ProfileStore | None = None


def shared_store(table_name: str) -> ProfileStore:
    """One store, so one boto3 client, per warm container (made on first use, not at import)."""
    global _shared
    if _shared is None or _shared.table != table_name:
        _shared = ProfileStore(table_name)
    return _shared


def forget_shared_store() -> None:
    global _shared
    _shared = None

"""Outbound: the reads one stream batch shares (one profiles_at, one accounts read, one segment
history read, one users_of_account per changed account), and the questions they answer."""

from __future__ import annotations

from datetime import UTC, datetime

from segment_connector.domain.activity import Activity, Occurrence
from segment_connector.domain.models.items import Account, StoredEvent, UserProfile
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.domain.outbound_view import Rules
from segment_connector.domain.times import parse_time
from segment_connector.outbound.records import Change, moved, people
from segment_connector.store import segment_history
from segment_connector.store.event_facts import Tag
from segment_connector.store.identities import profiles_at
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.segment_history import Announced


class BatchReads:
    """What a batch's planning reads, read once for the whole batch (`read`)."""

    def __init__(self, settings: ConnectorSettings, store: ProfileStore, now: datetime | None = None):
        self.settings = settings
        self.store = store
        self.now = now or datetime.now(UTC)
        self.looks_back_from = self.now  # the earliest moment an evaluation of this batch looks at
        self.rules = Rules(settings)
        self.arrived: dict[str, list[Occurrence]] = {}  # by partition: the batch's events that rules read
        self._occurrences: dict[str, list[Occurrence]] = {}  # by uid: the user's, as read
        self.profiles: dict[str, UserProfile | None] = {}
        self.accounts: dict[str, Account] = {}
        self.account_users: dict[str, list[str]] = {}
        self.linked: set[tuple[str, str]] = set()  # (profile uid, group id) linked by a user record here
        self.found: dict[str, Announced] = {}  # the segment histories as read (by uid)
        self.tags: list[Tag] = []  # events stored with an older settings document (store/event_facts.py)

    def read(self, changes: list[Change]) -> None:
        """One users_of_account per changed account, one profiles_at, one accounts read."""
        self.arrived = self._arrived(changes)
        images = self._account_images(changes)
        self._read_account_users(changes)
        self._read_profiles(changes)
        missing = self._accounts_needed(changes) - images.keys()
        self.accounts = {**(self.store.profiles.accounts(sorted(missing)) if missing else {}), **images}
        self._read_histories(changes)

    def _read_histories(self, changes: list[Change]) -> None:
        """The segment history of every person whose segments this batch may change (one BatchGet)."""
        uids = [uid for change in changes if isinstance(change.new, UserProfile) for uid in people(change)]
        uids += [user.uid for user in self.users_with_arrivals()]
        uids += [
            user.uid
            for pk in dict.fromkeys(p for users in self.account_users.values() for p in users)
            if (user := self.profiles.get(pk)) is not None
        ]
        if uids:
            self.found = segment_history.read(self.store, uids)

    def _account_images(self, changes: list[Change]) -> dict[str, Account]:
        """The batch's account images (the latest one wins); notes the users that link to an account."""
        images: dict[str, Account] = {}
        for change in changes:
            if isinstance(change.new, Account):
                images[change.new.group_id] = change.new  # the latest image in the batch wins
            elif isinstance(change.new, UserProfile) and change.new.account_id and self.links(change):
                self.linked.add((change.new.uid, change.new.account_id))
        return images

    def _read_account_users(self, changes: list[Change]) -> None:
        """The users of each changed account whose change may concern them (one query per account)."""
        for change in changes:
            if isinstance(change.new, Account) and any(self.account_work(change)):
                gid = change.new.group_id
                if gid not in self.account_users:
                    self.account_users[gid] = self.store.profiles.users_of_account(gid)

    def _read_profiles(self, changes: list[Change]) -> None:
        """The profiles of the events' users and of the changed accounts' users (one profiles_at)."""
        pks = [c.new.pk for c in changes if isinstance(c.new, StoredEvent)]
        pks += [pk for users in self.account_users.values() for pk in users]
        if pks:
            self.profiles = profiles_at(self.store, list(dict.fromkeys(pks)))

    def _accounts_needed(self, changes: list[Change]) -> set[str]:
        """Accounts whose traits the plan reads: the changed users' (old and new) and, when segments
        use account traits, those of every profile read."""
        needed: set[str] = set()
        if self.settings.handle_accounts or self.rules.uses_account_traits:
            for change in changes:
                if isinstance(change.new, UserProfile):
                    needed.update(
                        p.account_id for p in (change.new, change.old) if isinstance(p, UserProfile) and p.account_id
                    )
        if self.rules.uses_account_traits:
            needed.update(p.account_id for p in self.profiles.values() if p and p.account_id)
        return needed

    def links(self, change: Change) -> bool:
        """Whether a user record links its user to a(nother) account."""
        new, old = change.new, change.old
        assert isinstance(new, UserProfile)
        if old is None:
            return not moved(change)
        assert isinstance(old, UserProfile)
        return old.account_id != new.account_id

    def account_work(self, change: Change) -> tuple[bool, bool]:
        """(group traits changed, user segments may change) for an account record."""
        new, old = change.new, change.old
        if old is None:  # INSERT: the users linked with it send their group call themselves
            return False, False
        assert isinstance(new, Account) and isinstance(old, Account)
        group_changed = self.rules.account_in_filter(new) and (
            not self.rules.account_in_filter(old) or self.rules.group_traits(old) != self.rules.group_traits(new)
        )
        segments_may_change = self.rules.uses_account_traits and old.traits != new.traits
        return group_changed, segments_may_change

    def account(self, group_id: str | None) -> Account | None:
        return self.accounts.get(group_id) if group_id else None

    # -- what rules read of events (issue 15) -----------------------------------------------------

    def _arrived(self, changes: list[Change]) -> dict[str, list[Occurrence]]:
        """The batch's new events that the rules read, by partition (what they read of them taken
        from the images, with the settings of now)."""
        arrived: dict[str, list[Occurrence]] = {}
        if not self.rules.reads_events:
            return arrived
        spec = self.settings.activity_spec
        for change in changes:
            event = change.new
            if not isinstance(event, StoredEvent) or event.source == "connector":
                continue
            name = Occurrence.rule_name(event.type, event.event)
            facts = spec.facts(name, event.properties)
            at = parse_time(event.timestamp)
            if facts is not None and at is not None:
                arrived.setdefault(event.pk, []).append(Occurrence(at, name, event.message_id, facts))
                self.tags += [tag] if (tag := Tag.of(event, facts)) else []
        return arrived

    def users_with_arrivals(self) -> list[UserProfile]:
        """The stored users whose events in this batch the rules read (visitors without a profile
        are not users yet: their events count once they are known)."""
        users = {user.uid: user for pk in self.arrived if (user := self.profiles.get(pk)) is not None}
        return list(users.values())

    def read_users(self, pks: list[str]) -> None:
        """For a re-evaluation without records (recompute.py): the users at these pks, their
        accounts when the rules read them, their segment histories."""
        self.profiles = profiles_at(self.store, list(dict.fromkeys(pks)))
        users = [user for user in self.profiles.values() if user is not None]
        if self.rules.uses_account_traits or self.settings.handle_accounts:
            group_ids = sorted({user.account_id for user in users if user.account_id})
            self.accounts = self.store.profiles.accounts(group_ids) if group_ids else {}
        uids = list(dict.fromkeys(user.uid for user in users))
        self.found = segment_history.read(self.store, uids) if uids else {}

    def activity(self, user: UserProfile, without: frozenset[str] = frozenset()) -> Activity | None:
        """The user's events as the rules see them now (None when no rule reads events), read once
        per batch: the `by_time` entries with facts of every partition of the user, plus this batch's
        arrivals (the index may not show them yet); `without` leaves those messageIds out."""
        if not self.rules.reads_events:
            return None
        if user.uid not in self._occurrences:
            partitions = user.activity_partitions()
            since = self.settings.activity_spec.since(self.looks_back_from, self.settings.event_retention_days)
            read = self.store.activity.occurrences(partitions, since)
            self._occurrences[user.uid] = read + [o for pk in partitions for o in self.arrived.get(pk, [])]
        found = self._occurrences[user.uid]
        kept = [o for o in found if o.message_id not in without] if without else found
        return Activity(self.now, kept, self.settings.event_retention_days)

    def activity_at(self, user: UserProfile, moment: datetime) -> Activity | None:
        """The user's events (as read now) as the rules saw them at an earlier `moment`."""
        now = self.activity(user)
        return None if now is None else Activity(moment, now.occurrences, self.settings.event_retention_days)

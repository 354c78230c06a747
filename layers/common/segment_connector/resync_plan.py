"""What a settings change means for one page of stored profiles: the calls and events to send.

A user or account is brought up to date exactly as if its own data had just changed, comparing
its outbound view under the settings Segment last got it with (`before`) and the new ones:
users entering the filter get an identify (and their group call); users whose segments change
get an identify and Entered/Left Segment events; users whose whitelisted traits change get an
identify; accounts whose group traits change (or that enter the account filter) get group calls
for their users in the filter. Users and accounts leaving a filter are simply no longer sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from segment_connector.delivery import Entry
from segment_connector.identity import profiles_at
from segment_connector.models.items import Account, StoredEvent, UserProfile
from segment_connector.models.outbound import GroupCall, IdentifyCall
from segment_connector.models.settings import ConnectorSettings
from segment_connector.outbound import Rules, message_id, segment_events, send_ids
from segment_connector.storage import ProfileStore

# The settings that change what is sent; a change of any other setting needs no resync.
VIEW_FIELDS = (
    "segments",
    "account_segments",
    "synchronized_segments",
    "synchronized_account_segments",
    "synchronized_properties",
    "synchronized_account_properties",
    "handle_accounts",
)


def same_view(before: ConnectorSettings, after: ConnectorSettings) -> bool:
    fields = set(VIEW_FIELDS)
    return before.model_dump(include=fields) == after.model_dump(include=fields)


@dataclass
class PagePlan:
    entries: list[Entry] = field(default_factory=list)
    events: list[StoredEvent] = field(default_factory=list)
    evaluated: int = 0
    changed: int = 0


class PagePlanner:
    """Plans one page; `before(item)` gives the settings the item was last synchronized with."""

    def __init__(self, store: ProfileStore, target: ConnectorSettings, resync_id: str, now: str):
        self.store = store
        self.rules = Rules(target)
        self.resync_id = resync_id
        self.now = now
        self._rules: dict[int, Rules] = {}

    def plan(
        self, items: list[UserProfile | Account], before: Callable[[UserProfile | Account], ConnectorSettings]
    ) -> PagePlan:
        page = PagePlan()
        previous = {id(item): self._rules_for(before(item)) for item in items}
        accounts = self._accounts(items, previous)
        for item in items:
            old = previous[id(item)]
            size = (len(page.entries), len(page.events))
            if isinstance(item, UserProfile):
                self._user(page, item, old, accounts.get(item.account_id or ""))
            else:
                self._account(page, item, old)
            page.evaluated += 1
            page.changed += (len(page.entries), len(page.events)) != size
        return page

    def _rules_for(self, settings: ConnectorSettings) -> Rules:
        if id(settings) not in self._rules:
            self._rules[id(settings)] = Rules(settings)
        return self._rules[id(settings)]

    def _accounts(self, items: list[UserProfile | Account], previous: dict[int, Rules]) -> dict[str, Account]:
        """The accounts of this page's users, when a segment or a group call needs them (one read)."""
        needs = (
            self.rules.uses_account_traits
            or self.rules.settings.handle_accounts
            or any(rules.uses_account_traits for rules in previous.values())
        )
        group_ids = {item.account_id for item in items if isinstance(item, UserProfile) and item.account_id}
        if not (needs and group_ids):
            return {}
        known = {item.group_id: item for item in items if isinstance(item, Account)}
        missing = sorted(group_ids - known.keys())
        return {**(self.store.accounts(missing) if missing else {}), **known}

    # -- users ------------------------------------------------------------------------------------

    def _user(self, page: PagePlan, user: UserProfile, old: Rules, account: Account | None) -> None:
        new = self.rules
        old_segments, new_segments = old.user_segments(user, account), new.user_segments(user, account)
        page.events += segment_events(user, self.now, user.pk, self._sequence(), "", old_segments, new_segments)
        was_in, is_in = old.in_filter(old_segments), new.in_filter(new_segments)
        if not is_in or not any(send_ids(user)):
            return  # leaving (or never in) the filter: no longer sent
        traits = new.identify_traits(user, new_segments)
        if not was_in or traits != old.identify_traits(user, old_segments):
            self._identify(page, user, traits)
        if not was_in and user.account_id and new.account_in_filter(account):
            self._group(page, user, user.account_id, new.group_traits(account), "group")

    # -- accounts ---------------------------------------------------------------------------------

    def _account(self, page: PagePlan, account: Account, old: Rules) -> None:
        new = self.rules
        if not new.account_in_filter(account):
            return
        traits = new.group_traits(account)
        if old.account_in_filter(account) and traits == old.group_traits(account):
            return
        users = profiles_at(self.store, self.store.users_of_account(account.group_id))
        for user in users.values():
            if user is None or user.account_id != account.group_id or not any(send_ids(user)):
                continue
            # Users entering the filter now send their own group call (see _user).
            if new.in_filter(new.user_segments(user, account)) and old.in_filter(old.user_segments(user, account)):
                self._group(page, user, account.group_id, traits, f"{account.group_id}:group")

    # -- calls --------------------------------------------------------------------------------------

    def _sequence(self) -> str:
        """Stands for the stream sequence number: message ids are stable within one resync."""
        return f"resync-{self.resync_id}"

    def _identify(self, page: PagePlan, user: UserProfile, traits: dict[str, Any]) -> None:
        user_id, anonymous_id = send_ids(user)
        call = IdentifyCall(
            message_id=message_id(user.pk, self._sequence(), "identify"),
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=self.now,
            traits=traits,
        )
        page.entries.append(Entry(call.message_id, user.uid, call.payload()))

    def _group(self, page: PagePlan, user: UserProfile, group_id: str, traits: dict[str, Any], purpose: str) -> None:
        user_id, anonymous_id = send_ids(user)
        call = GroupCall(
            message_id=message_id(user.pk, self._sequence(), purpose),
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=self.now,
            group_id=group_id,
            traits=traits,
        )
        page.entries.append(Entry(call.message_id, user.uid, call.payload()))

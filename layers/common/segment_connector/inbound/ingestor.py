"""One validated message -> the store: identify, track/page/screen, group, alias and delete,
each applied idempotently (a redelivered messageId is a duplicate) under optimistic locking."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from segment_connector.domain.activity import Occurrence, expiry
from segment_connector.domain.errors import BadRequest, DuplicateMessage, StoreUnavailable, VersionConflict
from segment_connector.domain.models.items import Account, StoredEvent, account_pk, identity_pk
from segment_connector.domain.models.messages import (
    AliasMessage,
    DeleteMessage,
    GroupMessage,
    IdentifyMessage,
    PageMessage,
    ScreenMessage,
    TrackMessage,
    format_time,
)
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.domain.traits import merge_traits, normalize_traits, valid_email
from segment_connector.inbound import deletion
from segment_connector.inbound.identity import Claims, resolve_identity
from segment_connector.inbound.outcomes import (
    ALIAS_IGNORED,
    ALIAS_TO_ITSELF,
    Applied,
    Ignored,
    Outcome,
    names_nobody,
    setting_off,
)
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.profiles import ProfileChange

MAX_WRITE_ATTEMPTS = 8
GENERATED_ID_PREFIX = "generated-"


class Ingestor:
    """Applies validated messages to the store, one at a time, each idempotently."""

    def __init__(
        self,
        store: ProfileStore,
        settings: ConnectorSettings,
        source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store = store
        self.settings = settings
        self.source = source
        self.clock = clock

    def apply(self, message: Any) -> Outcome:
        reason = message.ignored_reason()
        if reason is not None:
            return Ignored(reason)
        self._with_id(message)
        now = self.clock()
        at = format_time(message.event_time(now))
        handlers: dict[str, Callable[[Any, str, str], Outcome]] = {
            "identify": self._identify,
            "track": self._event,
            "page": self._event,
            "screen": self._event,
            "group": self._group,
            "alias": self._alias,
            "delete": self._delete,
        }
        handler = handlers[message.type]
        return handler(message, at, format_time(now))

    @staticmethod
    def _with_id(message: Any) -> Any:
        if not message.message_id:
            # Without a messageId there is nothing to recognise a redelivery by: each call is new.
            message.message_id = f"{GENERATED_ID_PREFIX}{uuid.uuid4().hex}"
        return message

    def _user_id(self, message: Any) -> str | None:
        return None if self.settings.ignore_segment_userId else message.user_id

    def _identify(self, message: IdentifyMessage, at: str, now: str) -> Outcome:
        traits = normalize_traits(message.traits)
        claims = Claims(self._user_id(message), message.anonymous_id, valid_email(traits.get("email")))
        if not claims:
            return names_nobody("identify")
        return self._resolve(claims, now, message.message_id, traits, at)

    def _event(self, message: TrackMessage | PageMessage | ScreenMessage, at: str, now: str) -> Outcome:
        event = self._build_event(message, at)
        if isinstance(event, Ignored):
            return event
        if event.user_id and event.anonymous_id:
            # Both ids: the anonymous id joins the user (as identify would) the first time it is seen.
            anonymous = identity_pk("anonymous_id", event.anonymous_id)
            stored = self.store.events.put_of_linked(event, anonymous)
            if stored is None:
                self._resolve(Claims(event.user_id, event.anonymous_id), now)
                stored = self.store.events.put(event)
        else:
            stored = self.store.events.put(event)
        return "stored" if stored else "duplicate"

    def _build_event(self, message: TrackMessage | PageMessage | ScreenMessage, at: str) -> StoredEvent | Ignored:
        """The event to store, or why not: the settings ignore its call type, or it names nobody."""
        if message.type == "page" and not self.settings.handle_pages:
            return setting_off("page", "handle_pages")
        if message.type == "screen" and not self.settings.handle_screens:
            return setting_off("screen", "handle_screens")
        user_id = self._user_id(message)
        if user_id:
            partition = identity_pk("user_id", user_id)
        elif message.anonymous_id:
            partition = identity_pk("anonymous_id", message.anonymous_id)
        else:
            return names_nobody(message.type)
        if isinstance(message, TrackMessage):
            name, properties = message.event, message.properties
        else:
            name = message.name or message.type
            properties = {**message.properties}
            if message.category and "category" not in properties:
                properties["category"] = message.category
        assert message.message_id is not None  # apply() gave it one (_with_id)
        given = message.sent_time()
        original = format_time(given) if given is not None else None
        facts = self.settings.activity_spec.facts(Occurrence.rule_name(message.type, name), properties)
        return StoredEvent.build(
            partition,
            message.message_id,
            at,
            type=message.type,
            event=name,
            properties=properties,
            context=message.context,
            source=self.source,
            user_id=user_id,
            anonymous_id=message.anonymous_id,
            original_timestamp=original if original != at else None,
            facts=facts,
            expires_at=expiry(at, self.settings.event_retention_days),
        )

    def store_events(self, messages: list[tuple[int, Any]]) -> list[tuple[int, Outcome, BadRequest | None]]:
        """track/page/screen calls of known identities, stored together (see store.events.put_new)."""
        now = self.clock()
        applied: list[tuple[int, Outcome, BadRequest | None]] = []
        events: list[tuple[int, StoredEvent]] = []
        for index, message in messages:
            reason = message.ignored_reason()
            event = (
                Ignored(reason)
                if reason is not None
                else self._build_event(self._with_id(message), format_time(message.event_time(now)))
            )
            if isinstance(event, Ignored):
                applied.append((index, event, None))
            else:
                events.append((index, event))
        try:
            stored = self.store.events.put_new([event for _, event in events])
        except BadRequest:
            # DynamoDB refused the batch (ValidationException): store one by one, so that only
            # the event it cannot hold is rejected.
            return applied + apply_in_order(
                self, [(index, message) for index, message in messages if index in {i for i, _ in events}], single=False
            )
        applied += [
            (index, "stored" if was_stored else "duplicate", None)
            for (index, _), was_stored in zip(events, stored, strict=False)
        ]
        return applied

    def _resolve(
        self,
        claims: Claims,
        now: str,
        message_id: str | None = None,
        traits: dict[str, Any] | None = None,
        at: str = "",
    ) -> Outcome:
        """Link the claimed identities to one profile (and merge `traits` observed at `at`)."""

        def change() -> ProfileChange | None:
            resolution = resolve_identity(self.store, claims, now)
            if traits:
                merge_traits(resolution.profile.traits, resolution.profile.trait_times, traits, at)
            return resolution.to_change(message_id, now) if resolution.changed() else None

        return self._commit(change)

    def _group(self, message: GroupMessage, at: str, now: str) -> Outcome:
        if not self.settings.handle_accounts:
            return setting_off("group", "handle_accounts")
        claims = Claims(self._user_id(message), message.anonymous_id)
        if not claims:
            return names_nobody("group")
        traits = normalize_traits(message.traits)

        def change() -> ProfileChange | None:
            resolution = resolve_identity(self.store, claims, now)
            profile = resolution.profile
            existing = self.store.profiles.accounts([message.group_id]).get(message.group_id)
            account = (
                existing.model_copy(deep=True)
                if existing
                else Account(pk=account_pk(message.group_id), group_id=message.group_id, created_at=now, updated_at=now)
            )
            merge_traits(account.traits, account.trait_times, traits, at)
            # A newer observation of the same value changes only its time: keep that too, or a
            # late older call would win later.
            account_changed = existing is None or account.model_dump() != existing.model_dump()
            if (profile.account_linked_at or "") <= at and profile.account_id != message.group_id:
                profile.account_id, profile.account_linked_at = message.group_id, at
            result = (
                resolution.to_change(message.message_id, now)
                if resolution.changed()
                else ProfileChange(message_id=message.message_id)
            )
            if account_changed:
                account.updated_at = now
                result.accounts.append((account, existing.version if existing else None))
            return None if result.is_empty() else result

        return self._commit(change)

    def _alias(self, message: AliasMessage, at: str, now: str) -> Outcome:
        if self.settings.ignore_segment_userId:
            return ALIAS_IGNORED
        if message.previous_id == message.user_id:
            return ALIAS_TO_ITSELF
        previous = (identity_pk("user_id", message.previous_id), identity_pk("anonymous_id", message.previous_id))

        def change() -> ProfileChange | None:
            resolution = resolve_identity(self.store, Claims(user_id=message.user_id), now, force_merge=previous)
            if not any(pk in resolution.profile.identities for pk in previous):
                # previousId was never seen: remember it as an anonymous id of the user
                resolution = resolve_identity(
                    self.store, Claims(user_id=message.user_id, anonymous_id=message.previous_id), now
                )
            return resolution.to_change(message.message_id, now) if resolution.changed() else None

        return self._commit(change)

    def _delete(self, message: DeleteMessage, at: str, now: str) -> Outcome:
        """Accepted once durably recorded: the profiles go now, the rest in steps (deletion.py)."""
        claims = Claims(message.user_id, message.anonymous_id)
        claimed = [pk for _, pk in claims.pks()]

        def change() -> ProfileChange:
            return deletion.change_for(resolve_identity(self.store, claims, now), claimed, message.message_id, now)

        return self._commit(change)

    def _commit(self, build: Callable[[], ProfileChange | None]) -> Outcome:
        """Read-modify-write under optimistic locking: on a lost race, read again and retry.

        Races inside one delivery cannot happen (its messages are grouped by profile); these are
        races with other deliveries writing the same profile at the same moment."""
        for attempt in range(MAX_WRITE_ATTEMPTS):
            if attempt:
                time.sleep(0.01 * 2**attempt * random.random())  # noqa: S311 - jitter, not cryptography
            change = build()
            if change is None:
                return "unchanged"  # the stored state already reflects it: nothing to write
            try:
                self.store.profiles.commit(change)
                return "stored"
            except DuplicateMessage:
                return "duplicate"
            except VersionConflict:
                continue
        raise StoreUnavailable("too many concurrent updates of one profile, retry later")


def apply_in_order(ingestor: Ingestor, messages: list[tuple[int, Any]], single: bool) -> list[Applied]:
    """Each message in turn; in a batch, a message the store refuses is rejected, not the delivery."""
    applied: list[Applied] = []
    for index, message in messages:
        try:
            applied.append((index, ingestor.apply(message), None))
        except BadRequest as error:
            if single:
                raise
            applied.append((index, message, error))
    return applied

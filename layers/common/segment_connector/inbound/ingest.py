"""Inbound: a delivery from Segment (or a Tracking API call) -> validated, deduplicated writes."""

from __future__ import annotations

import contextvars
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from segment_connector.domain.errors import (
    BadRequest,
    DuplicateMessage,
    PayloadTooLarge,
    StoreUnavailable,
    VersionConflict,
)
from segment_connector.domain.explain import field_errors, json_error, summary
from segment_connector.domain.models.items import Account, StoredEvent, account_pk, identity_pk
from segment_connector.domain.models.messages import (
    MESSAGE_ADAPTER,
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
from segment_connector.domain.storable import MAX_DEPTH, Unstorable, clean_text, storable
from segment_connector.domain.traits import merge_traits, normalize_traits, valid_email
from segment_connector.inbound import deletion
from segment_connector.inbound.identity import Claims, resolve_identity
from segment_connector.runtime.auth import authenticate
from segment_connector.store.identities import identity_owners
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.profiles import ProfileChange

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BODY_BYTES = 5 * 1024 * 1024  # Lambda takes 6 MB synchronously; Webhooks (Actions) batches stay below
MAX_BATCH_MESSAGES = 4_000  # Webhooks (Actions) sends at most this many per request
MAX_WRITE_ATTEMPTS = 8
GENERATED_ID_PREFIX = "generated-"
PARALLEL_FROM = 8  # messages in one delivery before profiles are written in parallel
BATCH_EVENTS_FROM = 4  # events in one round before they are stored in batches
EVENTS_PER_WRITE = 100  # events of a delivery stored together: one BatchGetItem + four BatchWriteItem
ID_FIELDS = frozenset(
    {
        "messageId",
        "message_id",
        "userId",
        "user_id",
        "anonymousId",
        "anonymous_id",
        "groupId",
        "group_id",
        "previousId",
        "previous_id",
    }
)
TRACKING_CALLS = ("identify", "track", "page", "screen", "group", "alias", "batch")


@dataclass(frozen=True)
class Ignored:
    """A message acknowledged but not stored, and why (plain words: the key of `ignored_reasons`)."""

    reason: str


def _setting_off(call: str, setting: str) -> Ignored:
    return Ignored(f"{call} calls are not stored: {setting} is off")


def _names_nobody(call: str) -> Ignored:
    """ignore_segment_userId is on and the call names no other identity."""
    others = "an anonymousId or a valid traits.email" if call == "identify" else "an anonymousId"
    return Ignored(f"{call} calls without {others} are not stored: ignore_segment_userId is on")


ALIAS_IGNORED = Ignored("alias calls are not stored: ignore_segment_userId is on")
ALIAS_TO_ITSELF = Ignored("alias calls whose previousId is the userId are not stored: they link nothing")
Outcome = Literal["stored", "duplicate", "unchanged"] | Ignored


@dataclass
class Delivery:
    """One HTTP request carrying Segment messages."""

    raw_body: bytes
    headers: Mapping[str, str]  # lower-case names
    source: Literal["segment", "api"]
    call: str | None = None  # /v1/<call>; None for /segment


@dataclass
class Secrets:
    api_key: str | None
    shared_secret: str | None


@dataclass
class IngestResult:
    counts: dict[str, int] = field(default_factory=lambda: {"stored": 0, "duplicate": 0, "unchanged": 0, "ignored": 0})
    ignored_reasons: dict[str, int] = field(default_factory=dict)  # why each ignored message was not stored
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def count(self, outcome: Outcome) -> None:
        if isinstance(outcome, Ignored):
            self.counts["ignored"] += 1
            self.ignored_reasons[outcome.reason] = self.ignored_reasons.get(outcome.reason, 0) + 1
        else:
            self.counts[outcome] += 1

    def reject(self, index: int, raw: Any, error: BadRequest | PayloadTooLarge) -> None:
        message_id = (raw.get("messageId") or raw.get("message_id")) if isinstance(raw, dict) else None
        if not isinstance(message_id, (str, int)) or isinstance(message_id, bool):
            message_id = None  # echo an id, never a structure the sender built
        elif isinstance(message_id, str):
            message_id = clean_text(message_id[:200])
        entry: dict[str, Any] = {"index": index, "messageId": message_id, "error": error.message}
        if error.details:
            entry["details"] = error.details
        self.rejected.append(entry)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"success": True, **self.counts, "ignored_reasons": dict(self.ignored_reasons)}
        if self.rejected:
            body["rejected"] = self.rejected
        return body


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number (write null, or a string)")


def _field_errors(error: ValidationError) -> list[dict[str, str]]:
    """In plain words (explain.field_errors), the discriminator tag pydantic puts first dropped."""
    return [
        {**detail, "field": "(message)" if detail["field"] == "(document)" else detail["field"]}
        for detail in field_errors(error, union_tags=(*TRACKING_CALLS[:-1], "delete"))
    ]


def _invalid(details: list[dict[str, str]]) -> BadRequest:
    return BadRequest(f"the message cannot be stored: {summary(details)}", details)


def split_messages(body: Any, call: str | None) -> tuple[list[Any], bool]:
    """The messages a body carries, and whether it was a single message (not a batch)."""
    if call not in (None, "batch"):
        if not isinstance(body, dict):
            raise BadRequest(f"/v1/{call} takes one JSON object")
        return [{**body, "type": call}], True
    if isinstance(body, list):
        messages = body
    elif isinstance(body, dict) and "batch" in body:
        if not isinstance(body["batch"], list):
            raise BadRequest("`batch` must be a list of messages")
        context, integrations = body.get("context"), body.get("integrations")
        shared_context = context if isinstance(context, dict) else {}
        shared_integrations = integrations if isinstance(integrations, dict) else {}
        messages = [_with_shared(m, shared_context, shared_integrations) for m in body["batch"]]
    elif isinstance(body, dict) and call is None:
        return [body], True
    else:
        raise BadRequest('body must be a Segment message, a JSON array of messages or {"batch": [...]}')
    if not messages:
        raise BadRequest("the body holds no messages")
    return messages, False


def _with_shared(message: Any, context: dict[str, Any], integrations: dict[str, Any]) -> Any:
    """Top-level batch context/integrations apply to every item (Segment's batch semantics)."""
    if not isinstance(message, dict) or not (context or integrations):
        return message
    merged = dict(message)
    for name, shared in (("context", context), ("integrations", integrations)):
        own = message.get(name)
        if shared and (own is None or isinstance(own, dict)):
            merged[name] = {**shared, **(own or {})}
    return merged


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
            return _names_nobody("identify")
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
            return _setting_off("page", "handle_pages")
        if message.type == "screen" and not self.settings.handle_screens:
            return _setting_off("screen", "handle_screens")
        user_id = self._user_id(message)
        if user_id:
            partition = identity_pk("user_id", user_id)
        elif message.anonymous_id:
            partition = identity_pk("anonymous_id", message.anonymous_id)
        else:
            return _names_nobody(message.type)
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
            return applied + _apply_in_order(
                self, [(index, message) for index, message in messages if index in {i for i, _ in events}], single=False
            )
        applied += [
            (index, "stored" if was_stored else "duplicate", None)
            for (index, _), was_stored in zip(events, stored, strict=False)
        ]
        return applied

    def claimed_pks(self, message: Any) -> list[str]:
        """The identity pks a message names (all the profiles it may read or write)."""
        user_id = None if message.type == "alias" else self._user_id(message)
        pks = [identity_pk("user_id", user_id)] if user_id else []
        if message.type == "alias":
            if not self.settings.ignore_segment_userId:
                pks += [
                    identity_pk("user_id", message.user_id),
                    identity_pk("user_id", message.previous_id),
                    identity_pk("anonymous_id", message.previous_id),
                ]
            return pks
        if message.anonymous_id:
            pks.append(identity_pk("anonymous_id", message.anonymous_id))
        if message.type == "identify":
            email = valid_email(normalize_traits(message.traits).get("email"))
            if email:
                pks.append(identity_pk("email", email))
        return pks

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
            return _setting_off("group", "handle_accounts")
        claims = Claims(self._user_id(message), message.anonymous_id)
        if not claims:
            return _names_nobody("group")
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


def receive(
    delivery: Delivery, settings: ConnectorSettings, secrets: Secrets, store: ProfileStore, writers: int = 1
) -> IngestResult:
    """Authenticate, validate and store a delivery. Raises ConnectorError subclasses for the HTTP answer."""
    if delivery.call is not None and delivery.call not in TRACKING_CALLS:
        raise BadRequest(f"unknown call /v1/{delivery.call}")
    if len(delivery.raw_body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body exceeds {MAX_BODY_BYTES} bytes (5 MiB)")
    body = _authenticated_body(delivery, secrets)
    raw_messages, single = split_messages(body, delivery.call)
    if len(raw_messages) > MAX_BATCH_MESSAGES:
        raise PayloadTooLarge(f"the body holds {len(raw_messages)} messages; at most {MAX_BATCH_MESSAGES}")

    result = IngestResult()
    valid: list[tuple[int, Any]] = []
    for index, raw in enumerate(raw_messages):
        try:
            valid.append((index, _validate(raw)))
        except (BadRequest, PayloadTooLarge) as error:
            if single:
                raise
            result.reject(index, raw, error)

    ingestor = Ingestor(store, settings, delivery.source)
    for index, outcome, failure in sorted(_write(ingestor, valid, writers, single), key=lambda item: item[0]):
        if failure is None:
            result.count(outcome)
        else:
            result.reject(index, raw_messages[index], failure)
    return result


def _authenticated_body(delivery: Delivery, secrets: Secrets) -> Any:
    """The parsed body, once the caller is known: a request without valid credentials in its
    headers is parsed only where the body may carry them (the Tracking API's writeKey)."""
    parsed: list[Any] = []

    def body() -> Any:
        if not parsed:
            parsed.append(_parse(delivery.raw_body))
        return parsed[0]

    def write_key() -> Any:
        try:
            value = body()
        except BadRequest:
            return None
        return value.get("writeKey") if isinstance(value, dict) else None

    authenticate(
        delivery.headers,
        delivery.raw_body,
        api_key=secrets.api_key,
        shared_secret=secrets.shared_secret,
        write_key_in_body=write_key if delivery.source == "api" else None,
    )
    return body()


def _parse(raw_body: bytes) -> Any:
    try:
        return json.loads(raw_body, parse_constant=_reject_constant)
    except RecursionError:
        raise BadRequest(f"body is nested too deeply (at most {MAX_DEPTH} levels are stored)") from None
    except ValueError as error:  # also UnicodeDecodeError: bytes that are not UTF-8
        raise BadRequest(f"the body is {json_error(error)}") from None


Applied = tuple[int, Any, "BadRequest | None"]


def _write(ingestor: Ingestor, messages: list[tuple[int, Any]], writers: int, single: bool) -> list[Applied]:
    """Store the messages, each profile's in delivery order (the stream, and so Segment, sees them
    in that order). A small delivery is written one message at a time. A large one is split by the
    profile its messages resolve to and written in rounds: each round takes the next message of
    every profile; profile changes are written side by side (they cannot race: one per profile),
    the round's events together in batches (at most one per profile, so their order holds), so
    that a Webhooks (Actions) batch of thousands fits in Segment's 10 s."""
    if writers <= 1 or len(messages) <= PARALLEL_FROM:
        return _apply_in_order(ingestor, messages, single)
    applied: list[Applied] = []
    with ThreadPoolExecutor(max_workers=writers) as pool:
        for events, changes in _rounds(_plan(ingestor, messages)):
            chunks = [events[start : start + EVENTS_PER_WRITE] for start in range(0, len(events), EVENTS_PER_WRITE)]
            # Each in a copy of this context: the writers' log lines are the function's (logs.function_logs).
            futures = [
                pool.submit(contextvars.copy_context().run, _apply_in_order, ingestor, [item], single)
                for item in changes
            ]
            futures += [pool.submit(contextvars.copy_context().run, ingestor.store_events, chunk) for chunk in chunks]
            applied += [item for future in futures for item in future.result()]
    return applied


Planned = tuple[int, Any, bool]  # (index in the body, message, may be stored in a batch of events)


def _rounds(groups: list[list[Planned]]) -> Iterator[tuple[list[tuple[int, Any]], list[tuple[int, Any]]]]:
    """(events to batch, messages to apply one by one) of each round: the n-th message of every group."""
    for depth in range(max((len(group) for group in groups), default=0)):
        step = [group[depth] for group in groups if depth < len(group)]
        events = [(index, message) for index, message, batchable in step if batchable]
        changes = [(index, message) for index, message, batchable in step if not batchable]
        if len(events) < BATCH_EVENTS_FROM:  # one conditional put each is cheaper than a batch
            events, changes = [], changes + events
        yield events, changes


def _plan(ingestor: Ingestor, messages: list[tuple[int, Any]]) -> list[list[Planned]]:
    """The messages in groups that touch the same profile, each in delivery order.

    Messages are joined when they name a common identity or identities of one stored profile
    (e.g. anonymous ids already linked to one user). An event may be batched unless it must link
    an anonymous id first, or its profile is deleted in this delivery.
    """
    claims = [ingestor.claimed_pks(message) for _, message in messages]
    owners = identity_owners(ingestor.store, list(dict.fromkeys(pk for pks in claims for pk in pks)))
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for position, pks in enumerate(claims):
        nodes = [f"#{position}", *pks, *(owner for owner, _ in (owners[pk] for pk in pks) if owner)]
        for node in nodes[1:]:
            parent[root(node)] = root(nodes[0])
    deleted = {root(f"#{position}") for position, (_, message) in enumerate(messages) if message.type == "delete"}
    groups: dict[str, list[Planned]] = {}
    for position, (index, message) in enumerate(messages):
        group = root(f"#{position}")
        batchable = (
            message.type in ("track", "page", "screen") and group not in deleted and _linked(message, ingestor, owners)
        )
        groups.setdefault(group, []).append((index, message, batchable))
    return list(groups.values())


def _linked(message: Any, ingestor: Ingestor, owners: dict[str, tuple[str | None, bool]]) -> bool:
    """An event whose anonymous id (if it also names a user) is already linked to a profile."""
    if ingestor.settings.ignore_segment_userId or not (message.user_id and message.anonymous_id):
        return True
    return owners.get(identity_pk("anonymous_id", message.anonymous_id), (None, False))[1]


def _apply_in_order(ingestor: Ingestor, messages: list[tuple[int, Any]], single: bool) -> list[Applied]:
    applied: list[Applied] = []
    for index, message in messages:
        try:
            applied.append((index, ingestor.apply(message), None))
        except BadRequest as error:
            if single:
                raise
            applied.append((index, message, error))
    return applied


def _validate(raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise BadRequest("a message must be a JSON object")
    try:
        raw = {key: value if key in ID_FIELDS else storable(value, key, depth=1) for key, value in raw.items()}
    except Unstorable as error:
        raise _invalid([{"field": error.field, "error": error.reason}]) from None
    if (
        len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
        > MAX_MESSAGE_BYTES
    ):
        raise PayloadTooLarge(f"message exceeds {MAX_MESSAGE_BYTES // 1024} KB")
    try:
        return MESSAGE_ADAPTER.validate_python(raw)
    except ValidationError as error:
        raise _invalid(_field_errors(error)) from None

"""The order a delivery's messages are written in: a small delivery one message at a time; a
large one grouped by the profile its messages touch and written in rounds by parallel writers."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from segment_connector.domain.models.items import identity_pk
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.domain.traits import normalize_traits, valid_email
from segment_connector.inbound.ingestor import Ingestor, apply_in_order
from segment_connector.inbound.outcomes import Applied
from segment_connector.store.identities import identity_owners

PARALLEL_FROM = 8  # messages in one delivery before profiles are written in parallel
BATCH_EVENTS_FROM = 4  # events in one round before they are stored in batches
EVENTS_PER_WRITE = 100  # events of a delivery stored together: one BatchGetItem + four BatchWriteItem

Planned = tuple[int, Any, bool]  # (index in the body, message, may be stored in a batch of events)


def write(ingestor: Ingestor, messages: list[tuple[int, Any]], writers: int, single: bool) -> list[Applied]:
    """Store the messages, each profile's in delivery order (the stream, and so Segment, sees them
    in that order). A small delivery is written one message at a time. A large one is split by the
    profile its messages resolve to and written in rounds: each round takes the next message of
    every profile; profile changes are written side by side (they cannot race: one per profile),
    the round's events together in batches (at most one per profile, so their order holds), so
    that a Webhooks (Actions) batch of thousands fits in Segment's 10 s."""
    if writers <= 1 or len(messages) <= PARALLEL_FROM:
        return apply_in_order(ingestor, messages, single)
    applied: list[Applied] = []
    with ThreadPoolExecutor(max_workers=writers) as pool:
        for events, changes in _rounds(_plan(ingestor, messages)):
            chunks = [events[start : start + EVENTS_PER_WRITE] for start in range(0, len(events), EVENTS_PER_WRITE)]
            # Each in a copy of this context: the writers' log lines are the function's (logs.function_logs).
            futures = [
                pool.submit(contextvars.copy_context().run, apply_in_order, ingestor, [item], single)
                for item in changes
            ]
            futures += [pool.submit(contextvars.copy_context().run, ingestor.store_events, chunk) for chunk in chunks]
            applied += [item for future in futures for item in future.result()]
    return applied


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
    claims = [claimed_pks(ingestor.settings, message) for _, message in messages]
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
            message.type in ("track", "page", "screen")
            and group not in deleted
            and _linked(message, ingestor.settings, owners)
        )
        groups.setdefault(group, []).append((index, message, batchable))
    return list(groups.values())


def claimed_pks(settings: ConnectorSettings, message: Any) -> list[str]:
    """The identity pks a message names (all the profiles it may read or write)."""
    ignore_user_id = settings.ignore_segment_userId
    user_id = None if message.type == "alias" or ignore_user_id else message.user_id
    pks = [identity_pk("user_id", user_id)] if user_id else []
    if message.type == "alias":
        if not ignore_user_id:
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


def _linked(message: Any, settings: ConnectorSettings, owners: dict[str, tuple[str | None, bool]]) -> bool:
    """An event whose anonymous id (if it also names a user) is already linked to a profile."""
    if settings.ignore_segment_userId or not (message.user_id and message.anonymous_id):
        return True
    return owners.get(identity_pk("anonymous_id", message.anonymous_id), (None, False))[1]

"""Single-message deliveries, one per message type, each measured on a user set up for it.

Every scenario runs `REPEATS` times on different users of the same population: request counts and
capacity come from the first run (the bench reports when the runs disagree), times are medians.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.capacity import Call
from bench.dynamodb_model import ModelledDynamoDB
from bench.stack import InboundStack
from bench.workload import Traffic, User

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
SETTINGS = {"handle_accounts": True}  # the template's default is off; group is then ignored
Messages = Callable[[Traffic, User], list[dict]]


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: Messages  # delivered first, not measured
    measured: Messages  # the delivery measured: one message


def _known(traffic: Traffic, user: User) -> list[dict]:
    return [traffic.identify(user, change=False)]


def _visitor(traffic: Traffic, user: User) -> list[dict]:
    user.user_id = None
    return []


def _new_device(traffic: Traffic, user: User) -> list[dict]:
    user.anonymous_id = traffic.new_id()
    return [traffic.track(user)]


def _redelivered(make: Messages) -> tuple[Messages, Messages]:
    sent: dict[int, dict] = {}

    def setup(traffic: Traffic, user: User) -> list[dict]:
        sent[user.index] = make(traffic, user)[0]
        return [traffic.identify(user, change=False), sent[user.index]]

    return setup, lambda traffic, user: [sent[user.index]]


def _one(make: Callable[[Traffic, User], dict]) -> Messages:
    return lambda traffic, user: [make(traffic, user)]


_dup_track = _redelivered(_one(lambda t, u: t.track(u, ids="user")))
_dup_linked = _redelivered(_one(lambda t, u: t.track(u)))
_dup_identify = _redelivered(_one(lambda t, u: t.identify(u)))

SCENARIOS = [
    Scenario("track, known user (userId only)", _known, _one(lambda t, u: t.track(u, ids="user"))),
    Scenario(
        "Order Completed under 1 KB, known user",
        _known,
        _one(lambda t, u: t.small_order(u)),
    ),
    Scenario("page, known user (userId only)", _known, _one(lambda t, u: t.page(u, ids="user"))),
    Scenario("track, userId + linked anonymousId", _known, _one(lambda t, u: t.track(u))),
    Scenario("page, userId + linked anonymousId", _known, _one(lambda t, u: t.page(u))),
    Scenario("track, anonymous visitor", _visitor, _one(lambda t, u: t.track(u, ids="anonymous"))),
    Scenario("identify, new user", lambda t, u: [], _one(lambda t, u: t.identify(u))),
    Scenario("identify, known user, traits changed", _known, _one(lambda t, u: t.identify(u))),
    Scenario("identify, known user, unchanged", _known, _one(lambda t, u: t.identify(u, change=False))),
    Scenario("group, known user (handle_accounts on)", _known, _one(lambda t, u: t.group(u, f"acct-{u.index}"))),
    Scenario("track linking a new anonymousId", _known, _new_device),
    Scenario("redelivered track (userId only)", *_dup_track),
    Scenario("redelivered track, both ids", *_dup_linked),
    Scenario("redelivered identify", *_dup_identify),
]
# Part 1's single-message deliveries.
SINGLE_DELIVERIES = [
    "track, known user (userId only)",
    "identify, known user, traits changed",
    "track, userId + linked anonymousId",
    "group, known user (handle_accounts on)",
]


@dataclass
class Measured:
    name: str
    status: int
    outcome: str
    calls: list[Call]
    message_bytes: int
    modelled: float  # s: see ModelledDynamoDB.modelled
    connector_cpu: float  # s
    log_bytes: int
    consistent: bool = True  # every repetition made the same requests
    operations: list[str] = field(default_factory=list)


def run(
    model: ModelledDynamoDB, names: list[str] | None = None, settings: dict[str, object] | None = None
) -> list[Measured]:
    """Each scenario on fresh users, in one stack (settings: SETTINGS and `settings`)."""
    chosen = [s for s in SCENARIOS if names is None or s.name in names]
    traffic = Traffic(users=len(chosen) * (REPEATS + 1), known_share=1.0, seed=7)
    users = iter(traffic.users)
    results = []
    with InboundStack({**SETTINGS, **(settings or {})}) as stack:
        model.recording = False
        warm = next(users)
        for message in [*_known(traffic, warm), traffic.track(warm), traffic.page(warm), traffic.group(warm, "w")]:
            stack.post(message)  # imports, first validations, connection pools
        for scenario in chosen:
            runs = []
            for _ in range(REPEATS):
                user = next(users)
                model.recording = False
                for message in scenario.setup(traffic, user):
                    stack.post(message)
                (message,) = scenario.measured(traffic, user)
                model.recording = True
                model.reset()
                answer = stack.post(message)
                model.recording = False
                body = answer.body or {}
                outcome = next(
                    (k for k in ("stored", "duplicate", "unchanged", "ignored") if body.get(k)), body.get("error", "?")
                )
                runs.append(
                    Measured(
                        scenario.name,
                        answer.status,
                        outcome,
                        model.calls,
                        len(json.dumps(message, separators=(",", ":"))),
                        model.modelled(answer.seconds, answer.cpu),
                        answer.cpu - model.excluded_cpu,
                        answer.log_bytes,
                        operations=[c.operation for c in model.calls],
                    )
                )
            first = runs[0]
            first.consistent = all(r.operations == first.operations for r in runs)
            first.modelled = statistics.median(r.modelled for r in runs)
            first.connector_cpu = statistics.median(r.connector_cpu for r in runs)
            results.append(first)
    return results

"""Phases (a) load and (b) redelivery: many senders, mixed bodies, then everything read back and sent again."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from soak import config, load, wire
from soak.load import Body, User
from soak.report import Check, say
from soak.session import Session
from soak.wire import Reply

COUNTS = ("stored", "duplicate", "unchanged", "ignored")


@dataclass
class Answer:
    body: Body
    reply: Reply | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.reply is not None and self.reply.status == 200 and isinstance(self.reply.json(), dict)

    @property
    def counts(self) -> dict[str, Any]:
        """The 200 answer's body ({"stored": n, ..., "rejected"?}); empty for any other answer."""
        return self.reply.json() if self.ok and self.reply is not None else {}

    def describe(self) -> str:
        if self.reply is None:
            return f"{self.body.method} {self.body.path}: no answer ({self.error})"
        return (
            f"{self.body.method} {self.body.path} ({len(self.body.messages)} msgs): {self.reply.status} "
            f"{self.reply.body[:200].decode('utf-8', 'replace')}"
        )


@dataclass
class LoadRun:
    users: list[User]
    senders: list[list[Body]]
    answers: list[Answer] = field(default_factory=list)

    def acknowledged(self) -> set[str]:
        """messageIds of messages answered 200 and not listed as rejected."""
        ids: set[str] = set()
        for answer in self.answers:
            if answer.ok:
                rejected = {entry.get("index") for entry in answer.counts.get("rejected") or []}
                ids.update(sent.message_id for index, sent in enumerate(answer.body.messages) if index not in rejected)
        return ids


def plan(seed: int) -> LoadRun:
    rng = random.Random(seed)
    users = load.make_users(rng, f"soak{seed}", config.LOAD_USERS, config.LOAD_MESSAGES_PER_USER)
    groups = [users[index :: config.SENDERS] for index in range(config.SENDERS)]
    senders = [
        load.plan_bodies(
            random.Random(f"{seed}/sender/{index}"), group, config.LOAD_BATCH_SIZES, config.LOAD_PUT_PATCH_SHARE
        )
        for index, group in enumerate(groups)
        if group
    ]
    return LoadRun(users, senders)


def send_all(session: Session, senders: list[list[Body]]) -> list[Answer]:
    """Each sender sends its bodies one after the other; the senders run side by side."""

    def sender(bodies: list[Body]) -> list[Answer]:
        answers = []
        client = session.client()
        for body in bodies:
            try:
                answers.append(Answer(body, client.request(body.method, body.path, body.payload)))
            except OSError as error:
                client.close()
                answers.append(Answer(body, None, repr(error)))
        return answers

    return [answer for answers in session.in_parallel(sender, senders) for answer in answers]


def run_load(session: Session, run: LoadRun, check: Check) -> None:
    messages = sum(len(body.messages) for bodies in run.senders for body in bodies)
    bodies = sum(len(bodies) for bodies in run.senders)
    sizes = Counter(len(body.messages) for sender in run.senders for body in sender)
    say(
        f"  sending {messages} messages of {len(run.users)} users in {bodies} bodies from {len(run.senders)} "
        f"senders (body sizes {dict(sorted(sizes.items()))})"
    )
    started = time.monotonic()
    run.answers = send_all(session, run.senders)
    elapsed = time.monotonic() - started
    check.figure(
        f"{messages} messages in {bodies} bodies answered in {elapsed:.1f} s "
        f"({messages / elapsed:.0f} messages/s, {bodies / elapsed:.0f} requests/s)"
    )
    statuses = Counter((a.body.method, a.reply.status if a.reply else "none") for a in run.answers)
    check.figure(
        f"answers by (method, status): {dict(sorted(statuses.items(), key=str))}; connections reset "
        f"by the local stack's listen backlog and sent again so far: {wire.RESETS.value}"
    )
    for answer in run.answers:
        if not answer.ok:
            check.fail(f"not 200: {answer.describe()}")
            continue
        counts = answer.counts
        if counts.get("stored") != len(answer.body.messages) or counts.get("rejected"):
            check.fail(f"not all stored: {answer.describe()}")


def verify_reads(session: Session, run: LoadRun, check: Check) -> None:
    """Every acknowledged event readable in the user's events, every acknowledged identify's traits in the user."""
    acknowledged = run.acknowledged()

    def read(user: User) -> tuple[list[str], Counter[str]]:
        client, problems, found = session.client(), [], Counter[str]()
        events = [sent for sent in user.events() if sent.message_id in acknowledged]
        identifies = [sent for sent in user.identifies() if sent.message_id in acknowledged]
        profile = client.get(f"/v1/users/user_id:{user.user_id}")
        if profile.status != 200:
            return [f"GET user {user.user_id}: {profile.status} {profile.body[:200]!r}"], found
        traits = (profile.json() or {}).get("traits") or {}
        for sent in identifies:
            key = f"t_{sent.seq}"
            if traits.get(key) == sent.message["traits"][key]:
                found["traits"] += 1
            else:
                problems.append(
                    f"user {user.user_id}: trait {key} = {traits.get(key)!r}, identify "
                    f"{sent.message_id} set {sent.message['traits'][key]!r}"
                )
        if identifies and traits.get("soak_seq") != identifies[-1].seq:
            problems.append(
                f"user {user.user_id}: soak_seq {traits.get('soak_seq')!r}, latest identify {identifies[-1].seq}"
            )
        listed = client.get(f"/v1/users/user_id:{user.user_id}/events?limit={config.EVENTS_LIMIT}")
        stored = {event.get("message_id") for event in (listed.json() or [])} if listed.status == 200 else set()
        missing = [sent.message_id for sent in events if sent.message_id not in stored]
        found["events"] += len(events) - len(missing)
        if listed.status != 200 or missing:
            problems.append(f"user {user.user_id}: events answer {listed.status}, missing {missing}")
        return problems, found

    results = session.in_parallel(read, run.users)
    problems = [problem for user_problems, _ in results for problem in user_problems]
    found = sum((user_found for _, user_found in results), Counter())
    expected_events = sum(1 for user in run.users for sent in user.events() if sent.message_id in acknowledged)
    expected_traits = sum(1 for user in run.users for sent in user.identifies() if sent.message_id in acknowledged)
    check.figure(
        f"read back: {found['events']}/{expected_events} events, {found['traits']}/{expected_traits} "
        f"identify traits, {len(run.users)} users"
    )
    for problem in problems:
        check.fail(f"lost: {problem}")


def redeliver(session: Session, run: LoadRun, check: Check, drained: bool) -> None:
    """(b) Send every acknowledged body again: all duplicate/unchanged, and nothing new at the sink."""
    check.expect(
        drained, "the outbound side had not finished (a) before the redelivery: extra messages are not attributable"
    )
    resend = []
    for bodies in run.senders:
        mine = {id(body) for body in bodies}
        resend.append([answer.body for answer in run.answers if answer.ok and id(answer.body) in mine])
    before = _outbound_ids(session)
    started = time.monotonic()
    answers = send_all(session, resend)
    elapsed = time.monotonic() - started
    totals: Counter[str] = Counter()
    for answer in answers:
        if not answer.ok:
            check.fail(f"redelivery not 200: {answer.describe()}")
            continue
        counts = answer.counts
        totals.update({key: counts.get(key, 0) for key in COUNTS})
        again = counts.get("duplicate", 0) + counts.get("unchanged", 0)
        if again != len(answer.body.messages) or counts.get("stored"):
            check.fail(
                f"redelivery counted {_counts(counts)} for {len(answer.body.messages)} messages: {answer.describe()}"
            )
    check.figure(
        f"{sum(len(a.body.messages) for a in answers)} messages sent again in {len(answers)} bodies "
        f"in {elapsed:.1f} s: {dict(totals)}"
    )
    quiet = session.wait_quiet(config.DRAIN_SECONDS)
    extra = _outbound_ids(session) - before
    check.figure(f"new outbound messageIds at the sink after the redelivery: {len(extra)} (quiet: {quiet})")
    if extra:
        samples = [m for _, _, m in session.sink.deliveries() if m.get("messageId") in extra][:3]
        check.fail(f"{len(extra)} extra messages reached the sink, e.g. {samples}")


def _outbound_ids(session: Session) -> set[str]:
    return {str(message.get("messageId")) for _, _, message in session.sink.deliveries()}


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {counts.get(key, 0)}" for key in COUNTS)

"""Phase (f): thousands of hostile requests; no 5xx, JSON answers, still healthy, no write from a rejected message."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass

from local_stack.child_process import HOST
from soak import config, hostile, wire
from soak.hostile import Case, Tag
from soak.report import Check, say
from soak.session import Session
from soak.table import Table, keys_of
from soak.wire import Reply, send_raw

SHOWN_PER_KIND = 2  # example cases printed per (kind, status) group


@dataclass
class Outcome:
    case: Case
    reply: Reply | None
    error: str | None = None


NOT_SENT = "not sent: out of time"


def send_cases(session: Session, cases: list[Case]) -> list[Outcome]:
    """Every case on its own connection, SENDERS at a time, until FINAL_RESERVE_SECONDS remain."""

    def send(case: Case) -> Outcome:
        if session.remaining() < config.FINAL_RESERVE_SECONDS:
            return Outcome(case, None, NOT_SENT)
        try:
            return Outcome(case, send_raw(HOST, session.stack.port, case.method, case.target, case.headers, case.body))
        except OSError as error:
            return Outcome(case, None, repr(error))

    return session.in_parallel(send, cases)


def describe(case: Case) -> str:
    """One line about a case; valid credentials are not shown (they hold the run's API key)."""
    auth = dict(case.headers).get("Authorization")
    shown = (
        repr(auth[:40])
        if "bad-credentials" in case.kind and auth is not None
        else ("valid" if auth is not None else "none")
    )
    return (
        f"case {case.number} {case.kind}: {case.method} {case.target[:80]!r} auth={shown}"
        f" body={case.body[:120]!r}{'...' if len(case.body) > 120 else ''} ({len(case.body)} bytes)"
    )


def run(session: Session, seed: int, check: Check) -> None:
    cases = hostile.generate(seed, config.HOSTILE_CASES, session.api_key)
    say(
        f"  {len(cases)} hostile cases, {sum(len(c.body) for c in cases) / 1e6:.0f} MB of bodies, "
        f"kinds {dict(Counter(c.kind.split('+')[0] for c in cases))}"
    )
    started = time.monotonic()
    outcomes = send_cases(session, cases)
    elapsed = time.monotonic() - started
    unsent = sum(1 for outcome in outcomes if outcome.error == NOT_SENT)
    if unsent:
        check.fail(f"{unsent} of {len(cases)} cases not sent: the stack answered too slowly for the time budget")
    outcomes = [outcome for outcome in outcomes if outcome.error != NOT_SENT]
    statuses = Counter(o.reply.status if o.reply else "none" for o in outcomes)
    check.figure(
        f"{len(outcomes)} hostile requests in {elapsed:.1f} s ({len(outcomes) / max(elapsed, 0.001):.0f}/s); "
        f"statuses {dict(sorted(statuses.items(), key=str))}; connections reset by the local stack's "
        f"listen backlog and sent again so far: {wire.RESETS.value}"
    )
    _answers(outcomes, check)
    _contract_hints(outcomes, check)
    _still_healthy(session, seed, check)
    _no_writes(session, seed, outcomes, check)


API_GATEWAY_500 = b'{"message":"Internal Server Error"}'


def refused_by_lambda(outcome: Outcome) -> bool:
    """API Gateway's own 500 for an event over Lambda's invoke limit (the function never ran):
    what AWS answers; only the documented batch size avoids it, nothing in the function can."""
    reply = outcome.reply
    expected = outcome.case.expect is not None and 500 in outcome.case.expect
    return expected and reply is not None and reply.status == 500 and reply.body.strip() == API_GATEWAY_500


def _answers(outcomes: list[Outcome], check: Check) -> None:
    """0 answers 5xx (or none), every answer a JSON body; failures grouped by (kind, status).
    The one 5xx expected: API Gateway's 500 for an event over Lambda's 6 MB (counted apart)."""
    groups: dict[tuple[str, str], list[Outcome]] = {}
    refused = [outcome for outcome in outcomes if refused_by_lambda(outcome)]
    check.figure(f"API Gateway's 500 for events over Lambda's 6 MB invoke limit (function not run): {len(refused)}")
    for outcome in outcomes:
        reply = outcome.reply
        if reply is None:
            groups.setdefault((outcome.case.kind, "no answer"), []).append(outcome)
        elif refused_by_lambda(outcome):
            continue
        elif reply.status >= 500:
            groups.setdefault((outcome.case.kind, str(reply.status)), []).append(outcome)
        elif not reply.is_json():
            groups.setdefault((outcome.case.kind, f"{reply.status} not JSON"), []).append(outcome)
    bad = sum(len(group) for group in groups.values())
    check.figure(f"5xx, no answer or non-JSON body: {bad} of {len(outcomes)}")
    for (kind, status), group in sorted(groups.items(), key=lambda item: -len(item[1])):
        examples = "; ".join(
            describe(o.case) + (f" -> {o.reply.body[:100]!r}" if o.reply else f" -> {o.error}")
            for o in group[:SHOWN_PER_KIND]
        )
        check.fail(f"{len(group)} x {status} for {kind}, e.g. {examples}")


def _contract_hints(outcomes: list[Outcome], check: Check) -> None:
    """Figures only: answers other than the status the contract names (e.g. 405 for a Profile API id)."""
    off: Counter[tuple[str, str, int]] = Counter()
    example: dict[tuple[str, str, int], Case] = {}
    for outcome in outcomes:
        expect, reply = outcome.case.expect, outcome.reply
        if expect is not None and reply is not None and reply.status not in expect:
            key = (outcome.case.kind, "/".join(map(str, sorted(expect))), reply.status)
            off[key] += 1
            example.setdefault(key, outcome.case)
    for key, count in off.most_common(12):
        kind, want, got = key
        case = example[key]
        check.figure(f"contract says {want}, got {got}: {count} x {kind}, e.g. {case.method} {case.target[:70]!r}")


def _still_healthy(session: Session, seed: int, check: Check) -> None:
    client = session.client()
    client.close()  # a fresh connection: the stack must still accept them
    health = client.get("/health")
    check.expect(
        health.status == 200 and health.json() == {"status": "ok"},
        f"/health afterwards: {health.status} {health.body[:200]!r}",
    )
    user = f"soak{seed}-after-hostile"
    stored = client.post(
        "/segment", {"type": "identify", "userId": user, "messageId": f"{user}-m", "traits": {"still": "working"}}
    )
    check.expect(
        stored.status == 200 and (stored.json() or {}).get("stored") == 1,
        f"a valid message afterwards: {stored.status} {stored.body[:200]!r}",
    )
    read = client.get(f"/v1/users/user_id:{user}")
    check.expect(
        read.status == 200 and ((read.json() or {}).get("traits") or {}).get("still") == "working",
        f"reading it back: {read.status} {read.body[:200]!r}",
    )
    check.figure(f"afterwards: /health {health.status}, valid identify {stored.status}, read back {read.status}")


def _no_writes(session: Session, seed: int, outcomes: list[Outcome], check: Check) -> None:
    """Messages rejected wrote nothing: none of the items they would have written exists (read by key),
    and the Profile API answers 404 for their ids (a sample: it is slow on a large moto table)."""
    unwritten = [(outcome.case, tag) for outcome in outcomes for tag in _unwritten(outcome)]
    sample = random.Random(seed).sample(unwritten, min(len(unwritten), config.HOSTILE_WRITE_CHECKS))
    table = Table(session.stack.state())

    def stored(item: tuple[Case, Tag]) -> str | None:
        case, tag = item
        if session.remaining() < config.FINAL_RESERVE_SECONDS / 2:
            return NOT_SENT
        keys = [key for reference in tag.references for key in keys_of(reference, tag.message_id)]
        found = table.existing(keys)
        if not found:
            return None
        written = sorted(f"{entry['pk']['S']} {entry['sk']['S']}" for entry in found)
        return f"{written} exist after {describe(case)}"

    def readable(item: tuple[Case, Tag]) -> str | None:
        case, tag = item
        if session.remaining() < config.FINAL_RESERVE_SECONDS / 2:
            return NOT_SENT
        for reference in tag.references:
            reply = session.client().get(reference)
            if reply.status != 404:
                return f"{reference} answered {reply.status} {reply.body[:160]!r} after {describe(case)}"
        return None

    control = (
        Case(-1, "control", "control", "POST", b"", (), b""),
        Tag(None, (f"/v1/users/user_id:soak{seed}-after-hostile",), f"soak{seed}-after-hostile-m"),
    )
    check.expect(
        stored(control) not in (None, NOT_SENT),
        "the table lookup finds nothing for a message that was stored: the no-write check proves nothing",
    )
    in_table = session.in_parallel(stored, sample)
    through_api = session.in_parallel(readable, sample[: config.HOSTILE_API_LOOKUPS])
    unsent = in_table.count(NOT_SENT) + through_api.count(NOT_SENT)
    written = [problem for problem in in_table if problem not in (None, NOT_SENT)]
    readable_ones = [problem for problem in through_api if problem not in (None, NOT_SENT)]
    check.figure(
        f"rejected messages: {len(unwritten)}; {len(in_table) - in_table.count(NOT_SENT)} looked up in the "
        f"table ({len(written)} wrote items), {len(through_api) - through_api.count(NOT_SENT)} through the "
        f"Profile API ({len(readable_ones)} readable)"
    )
    for problem in written:
        check.fail(f"a rejected message was written: {problem}")
    for problem in readable_ones:
        check.fail(f"a rejected message is readable: {problem}")
    if unsent:
        check.fail(f"{unsent} lookups not made: the stack answered too slowly for the time budget")


def _unwritten(outcome: Outcome) -> list[Tag]:
    """The tags of `outcome`'s messages that the answer says were not stored."""
    reply = outcome.reply
    if reply is None or (reply.status >= 500 and not refused_by_lambda(outcome)) or not outcome.case.tags:
        return []  # 5xx and no answer are counted as failures already; what was written is unknown
    answer = reply.json() if reply.status == 200 else None
    answer = answer if isinstance(answer, dict) else {}
    rejected = {entry.get("index") for entry in answer.get("rejected") or [] if isinstance(entry, dict)}
    return [
        tag
        for tag in outcome.case.tags
        if reply.status != 200
        or (tag.index is None and not answer.get("stored"))
        or (tag.index is not None and tag.index in rejected)
    ]

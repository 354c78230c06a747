"""What reached the sink: waiting for the outbound side, (a)'s delivery checks and (e) the failing sink."""

from __future__ import annotations

import time
from typing import Any

from soak import config
from soak.deliveries import Deliveries, analyse
from soak.phase_load import LoadRun
from soak.report import Check, say
from soak.session import Session
from soak.table import Table

PROGRESS_SECONDS = 15
SHOWN = 5


def expected_events(run: LoadRun) -> set[str]:
    acknowledged = run.acknowledged()
    return {sent.message_id for user in run.users for sent in user.events() if sent.message_id in acknowledged}


def current(session: Session) -> Deliveries:
    return analyse(session.sink.deliveries())


def drain(
    session: Session, expected: set[str], timeout: float = config.DRAIN_SECONDS, quiet: float = config.QUIET_SECONDS
) -> bool:
    """Wait until every expected event was accepted by the sink, then until the sink is quiet."""
    started = last_print = time.monotonic()

    def delivered() -> bool:
        nonlocal last_print
        accepted = len(expected & current(session).accepted_events())
        if time.monotonic() - last_print >= PROGRESS_SECONDS:
            last_print = time.monotonic()
            requests = session.sink.requests
            refused = sum(1 for request in requests if not 200 <= request.status < 300)
            say(
                f"  outbound: {accepted}/{len(expected)} events accepted by the sink; sink requests "
                f"{len(requests)} ({refused} refused)"
            )
        return accepted == len(expected)

    complete = session.wait_until(delivered, timeout)
    idle = session.wait_quiet(max(quiet * 2, timeout - (time.monotonic() - started)), quiet)
    say(
        f"  outbound: {'all' if complete else 'NOT all'} expected events accepted, sink "
        f"{'quiet' if idle else 'still busy'} after {time.monotonic() - started:.0f} s"
    )
    return complete and idle


def trace(entries: list[tuple[int, int, dict[str, Any]]], user: str) -> str:
    """Every attempt at the sink for `user`'s marked calls: request number, status, type, soak_seq, messageId."""
    attempts = []
    for number, status, message in entries:
        holder = message.get("traits") if message.get("type") == "identify" else message.get("properties")
        if isinstance(holder, dict) and holder.get("soak_user") == user:
            attempts.append(
                f"#{number}:{status}:{message.get('type')}:{holder.get('soak_seq')}:"
                f"{str(message.get('messageId'))[-6:]}"
            )
    return " ".join(attempts)


def check_load_deliveries(
    run: LoadRun, deliveries: Deliveries, check: Check, entries: list[tuple[int, int, dict[str, Any]]]
) -> None:
    """(a) every event accepted under exactly one outbound messageId; per-user order kept; latest identify sent."""
    expected = expected_events(run)
    accepted = deliveries.accepted_events()
    missing = sorted(expected - accepted)
    check.figure(f"events accepted by the sink: {len(expected & accepted)}/{len(expected)}")
    if missing:
        check.fail(f"{len(missing)} events never accepted by the sink, e.g. {missing[:SHOWN]}")
    split = {mid: sorted(ids) for mid, ids in deliveries.ids_by_event.items() if len(ids) > 1}
    check.figure(f"events sent under more than one messageId: {len(split)}")
    for mid, ids in list(split.items())[:SHOWN]:
        check.fail(f"event {mid} reached the sink as {ids}")
    if len(split) > SHOWN:
        check.fail(f"... {len(split) - SHOWN} more events under several messageIds")
    violations = deliveries.order_violations()
    check.figure(f"users whose delivered calls left their stored order: {len(violations)}")
    for user_id, seqs in list(violations.items())[:SHOWN]:
        check.fail(f"user {user_id}: calls delivered in soak_seq order {seqs}; attempts {trace(entries, user_id)}")
    if len(violations) > SHOWN:
        check.fail(f"... {len(violations) - SHOWN} more users out of order")
    acknowledged = run.acknowledged()
    last = deliveries.last_identify_seq()
    stale = []
    for user in run.users:
        identifies = [sent.seq for sent in user.identifies() if sent.message_id in acknowledged]
        if identifies and last.get(user.user_id) != identifies[-1]:
            stale.append(
                f"{user.user_id}: last identify sent carries soak_seq {last.get(user.user_id)}, "
                f"latest stored {identifies[-1]}"
            )
    check.figure(f"users whose latest identify (traits) did not reach the sink: {len(stale)}")
    for problem in stale[:SHOWN]:
        check.fail(problem)


def check_failing_sink(session: Session, run: LoadRun, deliveries: Deliveries, check: Check) -> None:
    """(e) The sink refused ~30%: every refused message was accepted later, nothing dead-lettered or given up."""
    requests = session.sink.requests
    refused = sum(1 for request in requests if not 200 <= request.status < 300)
    ratio = refused / len(requests) if requests else 0.0
    check.figure(
        f"sink requests {len(requests)}, refused {refused} ({ratio:.0%}); distinct messages "
        f"{len(deliveries.accepted_ids | deliveries.refused_ids)}, refused at least once "
        f"{len(deliveries.refused_ids)}"
    )
    check.expect(refused > 0, "the sink refused nothing: the retry path was not exercised")
    never = sorted(deliveries.refused_ids - deliveries.accepted_ids)
    check.figure(f"refused and never accepted afterwards: {len(never)}")
    if never:
        check.fail(f"{len(never)} messages refused and never delivered, e.g. {never[:SHOWN]}")
    missing = expected_events(run) - deliveries.accepted_events()
    check.expect(not missing, f"{len(missing)} load events never delivered")
    letters = Table(session.stack.state()).dead_letters()
    check.figure(
        f"dead letters in the table: {len(letters)}; stream batches given up: "
        f"{session.stack.markers['stream gave up']}; stream retries: {session.stack.markers['stream retry']}"
    )
    for letter in letters[:SHOWN]:
        check.fail(f"dead letter {letter.get('message_id', {}).get('S')}: {letter.get('reason', {}).get('S')}")
    check.expect(session.stack.markers["stream gave up"] == 0, "the stream worker gave up batches (records lost)")
    read_errors = session.stack.markers["stream read error"]
    check.expect(
        read_errors == 0,
        f"the stream worker failed to read the stream {read_errors} times (outbound "
        f"stalled meanwhile; see the stack's output)",
    )

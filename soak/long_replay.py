"""(k) Thousands of dead letters replayed by two replays started at once.

The sink answers 401 (a write key Segment refuses: permanent, so OutboundFunction keeps each
message as a dead letter at once), a user in the filter sends tracks, and once every message is a
dead letter the sink is fixed and two `segment-connector replay` run side by side: one starts the
replay, the other is shown the running one. When it ends, each letter's message reached the sink
exactly once (accepted under its messageId after the fix) and no letter is left.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from local_stack.segment_sink import Response
from soak.operator import CliRun, Operator
from soak.report import Check, say
from soak.session import Session
from soak.table import Table

BATCH = 100
LETTERS_SECONDS = 240.0  # every message a dead letter within this
REPLAY_SECONDS = 240.0
REFUSAL: Response = (401, {}, {"success": False, "error": "soak: invalid write key"})


def _letter_ids(table: Table, prefix: str) -> set[str]:
    """The message ids of the dead letters whose payload belongs to the soak's user."""
    return {
        letter["message_id"]["S"] for letter in table.dead_letters() if prefix in letter.get("payload", {}).get("S", "")
    }


def make_letters(session: Session, table: Table, user: str, count: int, check: Check) -> set[str]:
    """Tracks of `user` while the sink refuses everything: the dead letters they became."""
    answer = session.client().post(
        "/segment", {"type": "identify", "userId": user, "messageId": f"{user}-id", "traits": {"plan": "pro"}}
    )
    check.expect(answer.status == 200, f"identify {user}: {answer.status}")
    session.wait_quiet(60, 5)
    session.sink.refusing = REFUSAL
    ids = [f"{user}-e{n:05d}" for n in range(count)]

    def send(start: int) -> str | None:
        body = [
            {"type": "track", "userId": user, "messageId": mid, "event": "Paid"} for mid in ids[start : start + BATCH]
        ]
        reply = session.client().post("/segment", body)
        return None if reply.status == 200 else f"tracks from {start}: {reply.status} {reply.body[:200]!r}"

    for problem in session.in_parallel(send, list(range(0, count, BATCH)), workers=4):
        if problem:
            check.fail(problem)
    letters: set[str] = set()

    def all_kept() -> bool:
        letters.clear()
        letters.update(_letter_ids(table, user))
        return len(letters) >= count

    started = time.monotonic()
    session.wait_until(all_kept, LETTERS_SECONDS)
    session.wait_quiet(60, 5)
    letters = _letter_ids(table, user)
    say(f"  {len(letters):,} dead letters of {user} after {time.monotonic() - started:.0f} s")
    check.expect(len(letters) >= count, f"only {len(letters):,} of {count:,} messages became dead letters")
    return letters


def replay_job(table: Table) -> dict[str, Any]:
    found = table.existing([("replay", "job")])
    if not found:
        return {}
    return {name: next(iter(value.values())) for name, value in found[0].items()}


def run(session: Session, operator: Operator, table: Table, seed: int, count: int, check: Check) -> None:
    user = f"soak{seed}-dl"
    try:
        letters = make_letters(session, table, user, count, check)
    finally:
        session.sink.refusing = None  # the sink is fixed
    mark = len(session.sink.requests)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs: list[CliRun] = list(pool.map(lambda _: operator.cli("replay", "--local", "--json"), range(2)))
    answers = [run.json() or {} for run in runs]
    for cli in runs:
        check.expect(cli.code == 0 and cli.json() is not None, f"`replay --local --json` {cli.describe()}")
    starts = sum(1 for answer in answers if answer.get("started"))
    same = len({answer.get("id") for answer in answers}) == 1
    check.expect(
        starts == 1 and same,
        f"two replays at once: {starts} started, ids {[answer.get('id') for answer in answers]} (one must join)",
    )
    job: dict[str, Any] = {}

    def ended() -> bool:
        job.clear()
        job.update(replay_job(table))
        return job.get("status") not in ("running", None)

    session.wait_until(ended, REPLAY_SECONDS)
    session.wait_quiet(30, 5)
    left = letters & _letter_ids(table, user)
    accepted = Counter(
        str(message.get("messageId"))
        for number, status, message in session.sink.deliveries()
        if number >= mark and status == 200 and message.get("messageId") in letters
    )
    missing = [mid for mid in letters if accepted[mid] == 0]
    twice = [mid for mid, times in accepted.items() if times > 1]
    check.figure(
        f"{len(letters):,} letters; replay {job.get('status')} (tried {job.get('tried')}, replayed "
        f"{job.get('replayed')}, failed {job.get('failed')}) in {time.monotonic() - started:.0f} s; "
        f"{len(missing)} never reached the sink, {len(twice)} reached it twice, {len(left)} letters left"
    )
    check.expect(job.get("status") == "done", f"the replay ended {job.get('status')}: {job}")
    check.expect(not missing, f"{len(missing)} letters never reached the sink, e.g. {sorted(missing)[:3]}")
    check.expect(not twice, f"{len(twice)} letters reached the sink more than once, e.g. {sorted(twice)[:3]}")
    check.expect(not left, f"{len(left)} letters left, e.g. {sorted(left)[:3]}")

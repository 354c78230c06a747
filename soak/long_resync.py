"""(h) Settings saved three times while a resync over thousands of users runs.

Users get a `plan` (pro, free, team) and a `score` (0-99). The run's settings (S0: segment Pro,
everyone synchronized) are followed by three saves, each made once the previous save's resync is
working (its job id seen by the status contract); each moves users in and out of segments and of
the user filter. Pro users are in the filter under every one of them, so every Entered/Left
Segment event of theirs is sent: per (user, segment), the events that reached the sink alternate
(never the same transition twice) from the membership under S0 and end at the membership under the
last settings (never a missing final state); intermediate states may or may not have been sent.
Every user in the last filter has a last identify carrying the last settings' hull_segments.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from soak import config
from soak.operator import Operator
from soak.report import Check, say
from soak.session import Session

BATCH = 100
PLANS = ("pro", "free", "team")
SAVE_AFTER_SECONDS = 4.0  # a save follows once the previous job has worked this long
JOB_SEEN_SECONDS = 60.0  # the settings watcher polls every 5 s; the job starts within this
ENTERED, LEFT = "Entered Segment", "Left Segment"


def _rule(trait: str, op: str, value: Any) -> dict[str, Any]:
    return {"trait": trait, "op": op, "value": value}


PRO = {"name": "Pro", "rule": _rule("plan", "eq", "pro")}
SAVES: list[dict[str, Any]] = [
    {
        "segments": [PRO, {"name": "Gold", "rule": _rule("score", "gte", 50)}],
        "synchronized_segments": ["Pro", "Gold"],
    },
    {
        "segments": [
            PRO,
            {"name": "Gold", "rule": _rule("score", "gte", 30)},
            {"name": "Low", "rule": _rule("score", "lt", 20)},
        ],
        "synchronized_segments": ["Pro", "Gold", "Low"],
    },
    {
        "segments": [
            PRO,
            {"name": "Gold", "rule": _rule("score", "gte", 70)},
            {"name": "Team", "rule": _rule("plan", "eq", "team")},
        ],
        "synchronized_segments": ["Pro", "Team"],
    },
]


@dataclass(frozen=True)
class LongUser:
    user_id: str
    plan: str
    score: int

    def segments(self, settings: dict[str, Any]) -> list[str]:
        return [segment["name"] for segment in settings["segments"] if _matches(segment["rule"], self)]

    def in_filter(self, settings: dict[str, Any]) -> bool:
        chosen = settings["synchronized_segments"]
        return "ALL" in chosen or any(name in chosen for name in self.segments(settings))


def _matches(rule: dict[str, Any], user: LongUser) -> bool:
    value = getattr(user, rule["trait"])
    if rule["op"] == "eq":
        return bool(value == rule["value"])
    if rule["op"] == "gte":
        return bool(value >= rule["value"])
    if rule["op"] == "lt":
        return bool(value < rule["value"])
    raise ValueError(f"soak: rule {rule} is not modelled")


def settings_sequence() -> list[dict[str, Any]]:
    """S0 (the run's settings) and the three saves (the rest of the run's settings kept)."""
    return [config.SETTINGS] + [{**config.SETTINGS, **change} for change in SAVES]


def make_users(seed: int, count: int) -> list[LongUser]:
    rng = random.Random(seed * 7 + 1)
    return [LongUser(f"soak{seed}-lp{n:05d}", PLANS[n % 3], rng.randrange(100)) for n in range(count)]


def create_users(session: Session, users: list[LongUser], check: Check) -> None:
    """One identify per user, in batches of BATCH, on the senders."""
    batches = [users[start : start + BATCH] for start in range(0, len(users), BATCH)]

    def send(batch: list[LongUser]) -> str | None:
        body = [
            {
                "type": "identify",
                "userId": user.user_id,
                "messageId": f"{user.user_id}-create",
                "traits": {"plan": user.plan, "score": user.score},
            }
            for user in batch
        ]
        answer = session.client().post("/segment", body)
        if answer.status != 200 or (answer.json() or {}).get("rejected"):
            return f"creating {batch[0].user_id}..: {answer.status} {answer.body[:200]!r}"
        return None

    for problem in session.in_parallel(send, batches, workers=4):
        if problem:
            check.fail(problem)


def wait_for_new_job(operator: Operator, session: Session, previous: str | None) -> dict[str, Any] | None:
    """The status once a job other than `previous` is seen (the watcher started the save's resync)."""
    seen: dict[str, Any] = {}

    def started() -> bool:
        status = operator.resync_status()
        seen.update(status)
        return bool(status.get("id")) and status.get("id") != previous

    return seen if session.wait_until(started, JOB_SEEN_SECONDS) else None


def save_during_resync(session: Session, operator: Operator, check: Check) -> list[dict[str, Any]]:
    """The three saves, each once the previous one's job is seen working; the jobs seen."""
    jobs: list[dict[str, Any]] = []
    previous = operator.resync_status().get("id")
    for number, settings in enumerate(settings_sequence()[1:], start=1):
        put = operator.put_settings(settings)
        if not check.expect(put.code == 0, f"save {number}: `settings put` {put.describe()}"):
            return jobs
        job = wait_for_new_job(operator, session, previous)
        if not check.expect(job is not None, f"save {number}: no resync job started within {JOB_SEEN_SECONDS:.0f} s"):
            return jobs
        assert job is not None
        jobs.append(job)
        previous = job["id"]
        say(f"  save {number}: resync {job['id'][:8]} {job.get('status')} ({job.get('evaluated', 0)} evaluated)")
        if number < len(SAVES):
            time.sleep(SAVE_AFTER_SECONDS)
    return jobs


def wait_settled(operator: Operator, session: Session, timeout: float) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    def settled() -> bool:
        latest.clear()
        latest.update(operator.resync_status())
        return latest.get("status") != "running"

    session.wait_until(settled, timeout)
    return latest


# -- what reached the sink --------------------------------------------------------------------------


def sink_view(
    entries: Iterable[tuple[int, int, dict[str, Any]]], users: set[str]
) -> tuple[dict[tuple[str, str], list[tuple[str, str]]], dict[str, list[Any]], int]:
    """Accepted messages of `users` in arrival order, each messageId once: per (user, segment) its
    Entered/Left events (event, messageId); per user the hull_segments of each identify; and how
    many messageIds were accepted more than once."""
    events: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    identifies: dict[str, list[Any]] = defaultdict(list)
    seen: set[str] = set()
    repeated = 0
    for _, status, message in entries:
        user = message.get("userId")
        if status != 200 or user not in users:
            continue
        message_id = str(message.get("messageId"))
        if message_id in seen:
            repeated += 1
            continue
        seen.add(message_id)
        if message.get("type") == "identify":
            identifies[user].append((message.get("traits") or {}).get("hull_segments"))
        elif message.get("type") == "track" and message.get("event") in (ENTERED, LEFT):
            segment = str((message.get("properties") or {}).get("segment"))
            events[(user, segment)].append((str(message["event"]), message_id))
    return events, identifies, repeated


def transition_problems(
    user: LongUser, segment: str, events: list[tuple[str, str]], first: dict[str, Any], last: dict[str, Any]
) -> list[str]:
    member = segment in user.segments(first)
    problems = []
    for event, message_id in events:
        if (event == ENTERED) == member:
            problems.append(f"{user.user_id} {segment}: {event} twice in a row ({message_id}); events {events}")
            break
        member = not member
    if member != (segment in user.segments(last)):
        problems.append(f"{user.user_id} {segment}: ends {'in' if member else 'out'}, the last settings say otherwise")
    return problems


def stale_identify(user: LongUser, sent: list[Any] | None, last: dict[str, Any]) -> str | None:
    """A problem when the user's last identify lacks the last settings' hull_segments."""
    wanted = user.segments(last)
    if sent and sorted(sent[-1] or []) == sorted(wanted):
        return None
    return f"{user.user_id}: last identify has {sent[-1] if sent else 'none'}, wanted {wanted}"


def verify(users: list[LongUser], entries: list[tuple[int, int, dict[str, Any]]], mark: int, check: Check) -> None:
    """Entered/Left events counted from request `mark` on (the first save); identifies from the
    start (a user whose hull_segments never changed keeps the one of its creation)."""
    first, *_, last = settings_sequence()
    everyone = settings_sequence()
    names_of_users = {user.user_id for user in users}
    events, _, repeated = sink_view([entry for entry in entries if entry[0] >= mark], names_of_users)
    _, identifies, _ = sink_view(entries, names_of_users)
    always_in = [user for user in users if all(user.in_filter(settings) for settings in everyone)]
    names = {segment["name"] for settings in everyone for segment in settings["segments"]}
    problems = [
        problem
        for user in always_in
        for segment in sorted(names)
        for problem in transition_problems(user, segment, events.get((user.user_id, segment), []), first, last)
    ]
    final = [user for user in users if user.in_filter(last)]
    stale = [problem for user in final if (problem := stale_identify(user, identifies.get(user.user_id), last))]
    sent = sum(len(value) for value in events.values())
    check.figure(
        f"{len(users):,} users; {len(always_in):,} always in the filter: {sent:,} Entered/Left events, "
        f"{len(problems)} transition problems; {len(final):,} in the last filter: {len(stale)} whose last "
        f"identify lacks the last hull_segments; {repeated} messageIds accepted twice"
    )
    for problem in problems + stale:
        check.fail(problem)


def run(session: Session, operator: Operator, seed: int, count: int, check: Check) -> None:
    users = make_users(seed, count)
    started = time.monotonic()
    create_users(session, users, check)
    session.wait_quiet(180)
    say(f"  {len(users):,} users created and sent in {time.monotonic() - started:.0f} s")
    mark = len(session.sink.requests)
    started = time.monotonic()
    jobs = save_during_resync(session, operator, check)
    final = wait_settled(operator, session, config.LONG_RESYNC_SETTLE_SECONDS)
    session.wait_quiet(120)
    check.figure(
        f"3 saves, jobs {[job['id'][:8] for job in jobs]}; last job {final.get('status')} "
        f"(evaluated {final.get('evaluated')}, sent {final.get('sent')}, failed {final.get('failed')}) "
        f"{time.monotonic() - started:.0f} s after the first save"
    )
    check.expect(final.get("status") == "done", f"the last resync ended {final.get('status')}: {final}")
    if len(jobs) < len(SAVES):
        return  # the saves did not all take: what the sink got cannot be judged against the last settings
    verify(users, list(session.sink.deliveries()), mark, check)

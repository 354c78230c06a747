"""Phases (c) out-of-order identifies and (d) 50 identifies of one user side by side in one batch."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from soak import config
from soak.report import Check
from soak.session import Session

NEWER = datetime(2026, 3, 1, 10, 0, 0, 123000, tzinfo=UTC)
OLDER = NEWER - timedelta(hours=1)
# Every timestamp shape the contract accepts: ISO with Z, offset or no zone and any fraction, epoch numbers.
TIME_FORMATS: dict[str, Callable[[datetime], Any]] = {
    "iso-z-ms": lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
    "iso-offset": lambda t: t.astimezone(timezone(timedelta(hours=2))).isoformat(),
    "iso-no-zone": lambda t: t.replace(tzinfo=None).isoformat(timespec="milliseconds"),
    "iso-9-digits": lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}789Z",
    "iso-no-fraction": lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "iso-1-digit": lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 100000}Z",
    "epoch-seconds": lambda t: int(t.timestamp()),
    "epoch-ms": lambda t: int(t.timestamp() * 1000),
}


def out_of_order(session: Session, seed: int, check: Check) -> None:
    """(c) An older identify delivered after a newer one does not overwrite the newer trait values."""
    names = list(TIME_FORMATS)
    client = session.client()
    users = []
    for index in range(config.OUT_OF_ORDER_USERS):
        user = f"soak{seed}-ooo{index:03d}"
        newer_format, older_format = names[index % len(names)], names[(index * 3 + 1) % len(names)]
        newer = {
            "type": "identify",
            "userId": user,
            "messageId": f"{user}-new",
            "timestamp": TIME_FORMATS[newer_format](NEWER),
            "traits": {"plan": f"new-{index}", "color": "blue"},
        }
        older = {
            "type": "identify",
            "userId": user,
            "messageId": f"{user}-old",
            "timestamp": TIME_FORMATS[older_format](OLDER),
            "traits": {"plan": "old", "color": "red", "only_old": "x"},
        }
        label = f"{user} (newer {newer_format} {newer['timestamp']!r}, older {older_format} {older['timestamp']!r})"
        bodies = [newer, older] if index % 2 == 0 else [[newer, older]]  # two requests, or one batch in order
        answers = [client.post("/segment", body) for body in bodies]
        if all(a.status == 200 and not (a.json() or {}).get("rejected") for a in answers):
            users.append((user, index, label))
        else:
            check.fail(f"{label}: answered " + "; ".join(f"{a.status} {a.body[:300]!r}" for a in answers))
    kept = 0
    for user, index, label in users:
        traits = (client.get(f"/v1/users/user_id:{user}").json() or {}).get("traits") or {}
        wanted = {"plan": f"new-{index}", "color": "blue", "only_old": "x"}
        wrong = {key: traits.get(key) for key, value in wanted.items() if traits.get(key) != value}
        if check.expect(not wrong, f"{label}: traits {wrong} (wanted {wanted})"):
            kept += 1
    check.figure(
        f"{kept}/{config.OUT_OF_ORDER_USERS} users kept the newer traits "
        f"({len(TIME_FORMATS)} timestamp formats, pairs sent apart and in one batch)"
    )


def parallel_identifies(session: Session, seed: int, check: Check) -> None:
    """(d) 50 identifies of one user, each by its own (already linked) anonymousId, in one batch: 200 at once."""
    user = f"soak{seed}-par"
    anonymous = [f"{user}-a{index:02d}" for index in range(config.PARALLEL_IDENTIFIES)]
    client = session.client()
    links = [
        {
            "type": "identify",
            "userId": user,
            "anonymousId": anonymous_id,
            "messageId": f"{anonymous_id}-link",
            "traits": {"linked": True},
        }
        for anonymous_id in anonymous
    ]
    setup = client.post("/segment", {"batch": links})
    profile = client.get(f"/v1/users/user_id:{user}").json() or {}
    linked = set(profile.get("anonymous_ids") or [])
    if not check.expect(
        setup.status == 200 and linked >= set(anonymous),
        f"setup: linking {len(anonymous)} anonymous ids answered {setup.status} "
        f"{setup.body[:300]!r}; {len(linked & set(anonymous))} linked",
    ):
        return
    batch = [
        {
            "type": "identify",
            "anonymousId": anonymous_id,
            "messageId": f"{anonymous_id}-par",
            "traits": {f"p{index:02d}": index},
        }
        for index, anonymous_id in enumerate(anonymous)
    ]
    answer = client.post("/segment", batch)
    counts = answer.json() or {}
    check.figure(
        f"{len(batch)} identifies of one user in one batch: {answer.status} "
        f"{ {key: counts.get(key) for key in ('stored', 'duplicate', 'unchanged', 'rejected')} }"
    )
    check.expect(
        answer.status == 200 and counts.get("stored") == len(batch),
        f"first answer {answer.status} {answer.body[:300]!r}",
    )
    traits = (client.get(f"/v1/users/user_id:{user}").json() or {}).get("traits") or {}
    missing = [f"p{index:02d}" for index in range(len(batch)) if traits.get(f"p{index:02d}") != index]
    check.expect(not missing, f"traits missing from the user afterwards: {missing}")

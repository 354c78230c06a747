"""Phase long_paths: the paths that only long runs and big profiles take (`python -m soak --phase
long_paths` runs it alone).

  i  a user with thousands of anonymous ids: every call 200, every id resolves, item under 400 KB
  k  thousands of dead letters replayed by two replays at once: each message once, no letter left
  h  settings saved 3 times during a resync over thousands of users: each transition's Entered/Left
     events once, the final state always, each user's last identify with the final hull_segments
  j  the delete of a user with thousands of events: 200 at once, then nothing of the user left

The sink answers every request (no random failures) while this phase runs, except in (k) where it
refuses everything until the letters are made; its failure rate is restored afterwards. The last
settings of (h) stay in place (Pro and Team users synchronized). (i) runs first: each of its calls
rewrites one big profile in a transaction, which moto makes cost as much as the table is large.
SOAK_LONG_CHECKS=j (any of "ikhj", in the order given) runs only some.
"""

from __future__ import annotations

from collections.abc import Callable

from soak import config, long_profiles, long_replay, long_resync
from soak.operator import Operator
from soak.report import Report
from soak.session import Session
from soak.table import Table

NAMES = {
    "h": "settings saved during a resync",
    "i": "thousands of anonymous ids",
    "k": "dead letters replayed twice at once",
    "j": "delete of a user with many events",
}
CHECKS = {
    "h": f"settings saved 3 times during a resync of {config.LONG_USERS:,} users: each Entered/Left once, "
    "the final state sent, last identify with the final hull_segments",
    "i": f"{config.LONG_ANONYMOUS_IDS:,} anonymous ids of one user: every call 200, every id resolves, "
    "profile item under 400 KB",
    "k": f"{config.LONG_DEAD_LETTERS:,} dead letters, two replays at once: one runs, each message reaches "
    "the sink once, no letter left",
    "j": f"delete of a user with {config.LONG_DELETE_EVENTS:,} events: 200 fast, then every item gone and 404",
}


def steps(session: Session, report: Report) -> list[tuple[str, str, Callable[[], object]]]:
    """(check key, step name, step) of the phase, in order; each step finishes its check."""
    chosen = [key for key in config.LONG_CHECKS if key in CHECKS]
    for key in chosen:
        report.check(key, CHECKS[key])
    operator = Operator(session.stack)
    table = Table(session.stack.state())
    checks = report.checks
    seed = config.SEED
    every = {
        "i": lambda: long_profiles.anonymous_ids(session, table, seed, config.LONG_ANONYMOUS_IDS, checks["i"]),
        "k": lambda: long_replay.run(session, operator, table, seed, config.LONG_DEAD_LETTERS, checks["k"]),
        "h": lambda: long_resync.run(session, operator, seed, config.LONG_USERS, checks["h"]),
        "j": lambda: long_profiles.delete_user(session, table, seed, config.LONG_DELETE_EVENTS, checks["j"]),
    }
    return [(key, f"{key} {NAMES[key]}", _calm(session, every[key])) for key in chosen]


def _calm(session: Session, step: Callable[[], None]) -> Callable[[], None]:
    """`step`, run with the sink answering every request; its failure rate back afterwards."""

    def calm() -> None:
        rate = session.sink.failure_rate
        session.sink.failure_rate = 0.0
        try:
            step()
        finally:
            session.sink.failure_rate = rate

    return calm

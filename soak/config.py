"""The soak's rates, sizes and limits (SOAK_SCALE=0.1 makes a quick run; SOAK_SEED another run)."""

from __future__ import annotations

import os

SCALE = float(os.environ.get("SOAK_SCALE", "1"))
SEED = int(os.environ.get("SOAK_SEED", "20260101"))


def scaled(count: int, minimum: int = 1) -> int:
    return max(minimum, round(count * SCALE))


# -- time -------------------------------------------------------------------------------------------
HARD_TIMEOUT_SECONDS = 19 * 60  # the whole run, stack start and stop included (then everything is killed)
# added to it when the long-path phase runs: after the main phase about 25 minutes at scale 1 on 2
# cores (3,000 anonymous ids ~10, the dead letters ~2.5, the resync of 3,000 users ~6, the delete ~2)
LONG_PATHS_SECONDS = 30 * 60
ALONE_SECONDS = 4 * 60  # stack start and stop when the main phase does not run
STARTUP_SECONDS = 120
DRAIN_SECONDS = 300  # the longest wait for the outbound side to deliver what is expected
QUIET_SECONDS = 15  # no request at the sink for this long: the outbound side is done (retries included)
STOP_RESERVE_SECONDS = 60  # kept for stopping the stack and the summary
FINAL_RESERVE_SECONDS = 240  # the hostile phase stops sending this long before the end: lookups, final drain

# -- traffic ----------------------------------------------------------------------------------------
SENDERS = 16  # concurrent HTTP clients
LOAD_USERS = scaled(400, 16)
LOAD_MESSAGES_PER_USER = 8  # LOAD_USERS * 8 = 3,200 messages
LOAD_BATCH_SIZES = ((1, 40), (2, 10), (5, 10), (10, 10), (25, 8), (50, 6), (100, 4))  # (messages, weight)
LOAD_PUT_PATCH_SHARE = 0.05  # bodies sent with PUT or PATCH /segment instead of POST
EVENTS_LIMIT = 500  # GET /v1/users/{id}/events?limit=
OUT_OF_ORDER_USERS = scaled(24, 6)
PARALLEL_IDENTIFIES = 50
HOSTILE_CASES = scaled(10_000, 200)
HOSTILE_WRITE_CHECKS = scaled(3_000, 100)  # rejected messages whose items are looked up in the table afterwards
HOSTILE_API_LOOKUPS = scaled(200, 30)  # ... and whose ids are read through the Profile API (slow on a big moto table)

# -- long paths (phase long_paths) ---------------------------------------------------------------------
LONG_USERS = scaled(3_000, 30)  # users whose segments and filter three settings saves change
# how long the last of those resyncs may take: alone on an empty table about 3 minutes; after the
# main phase and the other long checks moto's scans cross a table many times larger (each page
# reads it all), and the last job covers the 3,000 users at ~6 a second
LONG_RESYNC_SETTLE_SECONDS = float(os.environ.get("SOAK_RESYNC_SETTLE_S", "900"))
# calls of one user, each with a new anonymousId: 3,000 (the size; past both bounds of a
# profile: 1,000 anonymous_ids listed, 1,100 identities) took ~5.5 minutes alone on this 2-core
# machine once moto answered item values as they are (local_stack/moto_patches.py); before, 25.
LONG_ANONYMOUS_IDS = int(os.environ.get("SOAK_ANONYMOUS_IDS", scaled(3_000, 30)))
LONG_DELETE_EVENTS = scaled(20_000, 100)  # events of the user that is deleted
LONG_DEAD_LETTERS = scaled(3_000, 30)  # dead letters replayed by two replays at once
LONG_CHECKS = os.environ.get("SOAK_LONG_CHECKS", "ikhj")  # which long-path checks run, in this order

# -- the Segment sink -------------------------------------------------------------------------------
SINK_FAILURE_RATE = 0.30  # share of sink requests answered 500 or 429

# -- the connector's settings for the run -------------------------------------------------------------
SYNCHRONIZED_PROPERTIES = ["email", "plan", "soak_user", "soak_seq", "soak_mid"]
SETTINGS = {
    "segments": [{"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}],
    "synchronized_segments": ["ALL"],
    "synchronized_properties": SYNCHRONIZED_PROPERTIES,
    "send_events": ["ALL"],
    "forward_events": True,  # events from /segment go back out too: every event reaches the sink
    "handle_accounts": True,
}

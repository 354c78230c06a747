"""`python -m bench [part ...]`: every part when none is named (what `make bench` runs).

cold-start  import + init of each handler against boto3's own (bench/cold_start.py)
inbound     batches and single messages with modelled DynamoDB latency (bench/inbound_latency.py)
capacity    DynamoDB units and cost per message type, and what would save (bench/message_costs.py)
profile-api DynamoDB requests per route of the Segment-compatible Profile API (bench/profile_api.py)
recompute   DynamoDB requests of a scheduled re-evaluation, by users due (bench/recompute.py)
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback

PARTS = {
    "cold-start": "bench.cold_start",
    "inbound": "bench.inbound_latency",
    "capacity": "bench.message_costs",
    "profile-api": "bench.profile_api",
    "recompute": "bench.recompute",
}


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(__doc__.strip())
        return 0
    if any(name not in PARTS for name in argv):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    failed = 0
    for name in argv or list(PARTS):
        started = time.monotonic()
        try:
            failed |= importlib.import_module(PARTS[name]).main()
        except Exception:  # noqa: BLE001 - one part failing (the code changed under it) must not hide the others
            traceback.print_exc()
            failed = 1
        print(f"[{name}: {time.monotonic() - started:.0f} s]", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Part 5: the scheduled re-evaluation's DynamoDB requests (issue 15's budget: it reads only the
users whose windows end, never the whole table; its cost per run follows the users due).

USERS known users each order once (stored through the real InboundFunction, with segment rules
that read the orders); some of them are due to be evaluated again (their due items as outbound
writes them). Runs of OutboundFunction's recompute an hour apart (the template's schedule) are
counted: with none due, DUE due and 10x DUE due. Nothing is sent (no write key): only the
table's requests are counted.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from bench.capacity import table_model, total_usage
from bench.dynamodb_model import ModelledDynamoDB
from bench.stack import TABLE, TEMPLATE, InboundStack

USERS = 1_000
DUE = 10
SETTINGS = {
    "segments": [{"name": "Buyers", "rule": {"event": "Order Completed", "within_days": 30}}],
    "computed_traits": [{"name": "orders_30d", "type": "count", "event": "Order Completed", "within_days": 30}],
    "synchronized_segments": ["ALL"],
}


def main() -> int:
    from segment_connector.domain.models.settings import ConnectorSettings
    from segment_connector.outbound import recompute
    from segment_connector.segment_api.delivery import ClientPool
    from segment_connector.store.due import Due
    from segment_connector.store.profile_store import ProfileStore
    from segment_connector.store.table import WRITE_BATCH

    table = table_model(TEMPLATE)
    now = datetime.now(UTC)
    edge = now + timedelta(days=1)
    print(f"\nScheduled re-evaluation (recompute): DynamoDB requests of one run, {USERS:,} users stored")
    print(f"  {'users due':>9} {'requests':>8} {'RRU':>6} {'WRU':>5}  operations")
    failed = 0
    with InboundStack(SETTINGS) as stack:
        ordered = (now - timedelta(days=29)).isoformat()
        batch = [
            {"type": "track", "userId": f"u{n}", "event": "Order Completed", "messageId": f"o{n}", "timestamp": ordered}
            for n in range(USERS)
        ]
        for start in range(0, USERS, 500):
            users = [{"type": "identify", "userId": f"u{n}", "messageId": f"i{n}"} for n in range(start, start + 500)]
            stack.post({"batch": users})
            stack.post({"batch": batch[start : start + 500]})
        store = ProfileStore(TABLE)
        settings = ConnectorSettings.model_validate(SETTINGS)
        run = edge - timedelta(hours=1)
        recompute.run(settings, store, ClientPool(), None, run)  # the first run: no cursor yet
        for due in (0, DUE, DUE * 10):
            items = [Due(run + timedelta(minutes=30, seconds=n), f"uid-{n}", f"id#user_id#u{n}") for n in range(due)]
            for start in range(0, len(items), WRITE_BATCH):
                store.due.schedule(items[start : start + WRITE_BATCH])
            run += timedelta(hours=1)  # the hourly schedule's next run
            with ModelledDynamoDB(table, sleep=False) as model:
                answer, _ = recompute.run(settings, store, ClientPool(), None, run)
                usage = total_usage(model.calls, table)
                operations = Counter(call.operation for call in model.calls)
                shown = ", ".join(f"{count} {operation}" for operation, count in sorted(operations.items()))
                print(f"  {due:>9} {len(model.calls):>8} {usage.read:>6g} {usage.write_total:>5g}  {shown}")
                if answer.get("users", 0) != due:
                    failed = 1
    print("  budget: no scan; the requests grow with the users due (profiles, histories, events: per user due)")
    return failed

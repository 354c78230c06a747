"""Part 2: DynamoDB capacity units and the cost of a message, per message type.

Units come from the requests the connector really made (see bench/capacity.py for the rules and
the item-size approximation); moto's own ReturnConsumedCapacity is shown next to them. Then the
same requests are re-priced under a few design changes, to show what each would save.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from typing import Any

from bench import scenarios
from bench.batches import LAMBDA_VCPU_MB, BatchRun, run_batch
from bench.capacity import (
    FLOOR_PER_MILLION,
    HTTP_API_METERING_BYTES,
    PRICE_HTTP_API_REQUEST,
    PRICE_LAMBDA_GB_SECOND_ARM,
    PRICE_LAMBDA_REQUEST,
    PRICE_STORAGE_GB_MONTH,
    Call,
    TableModel,
    Usage,
    call_usage,
    drop_transact_items,
    eventually_consistent,
    item_size,
    starts_with,
    stored_bytes,
    table_model,
    total_usage,
    written_items,
)
from bench.dynamodb_model import ModelledDynamoDB
from bench.stack import MEMORY_MB, TEMPLATE
from bench.workload import Traffic
from local_stack.template import ttl_attribute

LATENCY = float(os.environ.get("BENCH_DDB_LATENCY_MS", "8")) / 1000
BATCH_SIZE = 1000
PRICE_LOGS_GB = 0.50
CPU_STRETCH = max(1.0, LAMBDA_VCPU_MB / MEMORY_MB)


def lambda_dollars(seconds: float) -> float:
    """One invocation: the request and its duration (billed per started ms) at the template's memory."""
    billed = math.ceil(seconds * 1000) / 1000
    return PRICE_LAMBDA_REQUEST + billed * MEMORY_MB / 1024 * PRICE_LAMBDA_GB_SECOND_ARM


def single_lambda_seconds(measured: scenarios.Measured) -> float:
    """Sequential: the waits and the CPU add up, the CPU stretched to the function's CPU share."""
    return measured.modelled + measured.connector_cpu * (CPU_STRETCH - 1)


def batch_lambda_seconds(run: BatchRun) -> float:
    """Parallel writers: at least the stretched CPU, or the busiest writer's latencies."""
    return max(run.floor, run.cpu_at(MEMORY_MB))


What = Callable[[list[Call]], list[Call]]

# Issue 15's budgets, and the settings they are measured with: 5 event rules and 5 computed traits
# a shop would configure (the workload's events: Product Viewed, Checkout Started, Order Completed...).
BUDGET_TRACK_REQUESTS, BUDGET_TRACK_WRU = 2, 3  # a single track of a known user, under 1 KB
BUDGET_MIX, BUDGET_MIX_EVENT_RULES = 1.60, 2.20  # $ per million messages, the batched mix
EVENT_RULES: dict[str, Any] = {
    "segments": [
        {"name": "Buyers", "rule": {"event": "Order Completed", "within_days": 30}},
        {
            "name": "Repeat buyers",
            "rule": {"event": "Order Completed", "count": {"op": "gte", "value": 2}, "within_days": 90},
        },
        {
            "name": "Browsing, not buying",
            "rule": {
                "all": [
                    {"event": "Product Viewed", "within_days": 7},
                    {"not": {"event": "Order Completed", "within_days": 7}},
                ]
            },
        },
        {
            "name": "Tent shoppers",
            "rule": {
                "event": "Product Viewed",
                "within_days": 30,
                "where": {"property": "category", "op": "eq", "value": "Tents"},
            },
        },
        {
            "name": "Abandoned checkout",
            "rule": {
                "all": [
                    {"event": "Checkout Started", "within_days": 3},
                    {"not": {"event": "Order Completed", "within_days": 3}},
                ]
            },
        },
    ],
    "computed_traits": [
        {"name": "orders_90d", "type": "count", "event": "Order Completed", "within_days": 90},
        {"name": "revenue_365d", "type": "sum", "event": "Order Completed", "property": "revenue"},
        {"name": "last_viewed_category", "type": "last", "event": "Product Viewed", "property": "category"},
        {
            "name": "favourite_category",
            "type": "most_frequent",
            "event": "Product Viewed",
            "property": "category",
            "within_days": 90,
        },
        {"name": "pages_7d", "type": "count", "event": "page", "within_days": 7},
    ],
}


def what_ifs(table: TableModel) -> list[tuple[str, TableModel, What]]:
    lsi = next((ix for ix in table.indexes if ix.hash_key == table.keys[0] and ix.range_key), None)
    same: What = lambda calls: calls  # noqa: E731
    no_dedup: What = lambda calls: drop_transact_items(calls, starts_with(table.keys[0], "msg#"))  # noqa: E731
    no_check: What = lambda calls: drop_transact_items(calls, lambda kind, body: kind == "ConditionCheck")  # noqa: E731
    options: list[tuple[str, TableModel, What]] = [("as is", table, same)]
    if lsi and lsi.projection != "KEYS_ONLY":
        options.append((f"LSI {lsi.name} projects KEYS_ONLY", table.with_index(lsi.name, "KEYS_ONLY"), same))
        options.append((f"no LSI {lsi.name} (time-ordered sort key)", table.with_index(lsi.name, None), same))
    options += [
        ("no dedup markers (msg# items)", table, no_dedup),
        ("linked anonymousIds cached, no ConditionCheck", table, no_check),
        ("identity reads eventually consistent", table, eventually_consistent),
    ]
    if lsi:
        options.append(
            (
                f"all of the above, without LSI {lsi.name}",
                table.with_index(lsi.name, None),
                lambda calls: eventually_consistent(no_check(no_dedup(calls))),
            )
        )
    return options


def _ops(calls: list[Call]) -> str:
    names = {
        "TransactWriteItems": "TWI",
        "BatchGetItem": "BGI",
        "BatchWriteItem": "BWI",
        "PutItem": "Put",
        "GetItem": "Get",
        "UpdateItem": "Upd",
        "DeleteItem": "Del",
        "Query": "Q",
    }
    parts = [names.get(c.operation, c.operation) + ("!" if c.error else "") for c in calls]
    return " ".join(parts) or "-"


def _units(usage: Usage) -> str:
    writes = f"{usage.write:g}+{usage.index_write:g}" if usage.index_write else f"{usage.write:g}"
    return f"{writes:>6} {usage.read:5g}"


def main() -> int:
    table = table_model(TEMPLATE)
    print(
        f"\nDynamoDB capacity and cost per message (on-demand, us-east-1; requests as made, {LATENCY * 1000:g} ms "
        f"modelled latency; Lambda arm64 {MEMORY_MB} MB, CPU x{CPU_STRETCH:.2f} of this machine's)"
    )
    with ModelledDynamoDB(table, LATENCY, images=True, sleep=False) as model:
        measured = scenarios.run(model)
    traffic = Traffic()
    seed, batch = traffic.seed(), traffic.batch(BATCH_SIZE)
    with ModelledDynamoDB(table, LATENCY, images=True) as model:
        run = run_batch(seed, batch, None, model)
    print_per_message(measured, table)
    print_batched(run, measured, table)
    print_event_rule_budgets(table, run, traffic)
    print_what_ifs(run, measured, table)
    return 0


def print_per_message(measured: list[scenarios.Measured], table: TableModel) -> None:
    print("  WRU = write request units (table + index), RRU = read request units; ! = failed condition / cancelled")
    print(
        f"  {'message':40} {'sent':>5} {'requests':18} {'item':>5} {'WRU':>6} {'RRU':>5} {'moto':>5} "
        f"{'DDB $/M':>8} {'Lambda':>7} {'total $/M':>9} {'x floor':>7}"
    )
    for m in measured:
        usage = total_usage(m.calls, table)
        largest = max((item_size(item) for item in written_items(m.calls, attempted=True)), default=0)
        moto = [c.moto_units for c in m.calls]
        moto_text = "n/a" if any(u is None for u in moto) else f"{sum(u for u in moto if u is not None):g}"
        seconds = single_lambda_seconds(m)
        total = usage.dollars() + PRICE_HTTP_API_REQUEST + lambda_dollars(seconds)
        flag = "" if m.consistent else "  (repeats differed)"
        print(
            f"  {m.name:40} {m.message_bytes / 1024:4.1f}K {_ops(m.calls):18} {largest / 1024:4.1f}K {_units(usage)} "
            f"{moto_text:>5} {usage.dollars() * 1e6:8.2f} {seconds * 1000:5.0f}ms {total * 1e6:9.2f} "
            f"{total * 1e6 / FLOOR_PER_MILLION:6.1f}x  {m.outcome}{flag}"
        )
    print(
        "  sent = the message as Segment sends it; item = the largest item written; Lambda = estimated duration: "
        f"the time without moto + the connector's CPU x{CPU_STRETCH - 1:.2f} more ({MEMORY_MB} MB CPU share), "
        "billed per ms"
    )
    print(
        f"  floor: HTTP API $1.00 + Lambda request $0.20 + one 1 KB write $0.625 = ${FLOOR_PER_MILLION:.3f}/M "
        "(one message per request)"
    )
    print("  " + _moto_comparison([c for m in measured for c in m.calls], table))


def print_batched(run: BatchRun, measured: list[scenarios.Measured], table: TableModel) -> None:
    per = total_usage(run.calls, table).scaled(1 / run.messages)
    metered = math.ceil(run.body_bytes / HTTP_API_METERING_BYTES)
    http = metered * PRICE_HTTP_API_REQUEST / run.messages
    lam = lambda_dollars(batch_lambda_seconds(run)) / run.messages
    total = per.dollars() + http + lam
    print(
        f"\n  batched: {run.messages:,} messages per delivery ({run.body_bytes / 1e6:.1f} MB, {run.writers} writers, "
        f"answer {run.status} {_outcomes(run.answer)}), per message:"
    )
    print(
        f"    {len(run.calls) / run.messages:.2f} requests ({_by_operation(run.calls)}), "
        f"WRU {per.write:.2f}+{per.index_write:.2f}, RRU {per.read:.2f}"
    )
    print(
        f"    DynamoDB ${per.dollars() * 1e6:.2f}/M + HTTP API ${http * 1e6:.3f}/M ({metered} metered requests of "
        f"512 KB) + Lambda ${lam * 1e6:.3f}/M (at least {batch_lambda_seconds(run):.2f} s) = ${total * 1e6:.2f}/M"
    )
    logs = statistics.mean(m.log_bytes for m in measured)
    print(
        f"  not in the totals: CloudWatch Logs - the handler prints {logs:.0f} bytes per invocation (EMF metrics), "
        f"${logs * PRICE_LOGS_GB / 1e9 * 1e6:.2f}/M invocations at $0.50/GB, plus Lambda's START/END/REPORT lines;"
    )
    events = [i for i in written_items(run.calls) if i.get("kind", {}).get("S") == "event"]
    if events:
        stored = statistics.mean(stored_bytes(i, table) for i in events)
        ttl = ttl_attribute(TEMPLATE)
        expiring = sum(1 for i in events if ttl and ttl in i)
        print(
            f"  storage: an event keeps {stored / 1024:.1f} KB (table + indexes) = "
            f"${stored * 1e6 / 1e9 * PRICE_STORAGE_GB_MONTH:.2f}/month per million events kept "
            f"({expiring or 'none'} of {len(events)} with a TTL), point-in-time recovery on top."
        )


def _mix_dollars(run: BatchRun, table: TableModel) -> float:
    per = total_usage(run.calls, table).scaled(1 / run.messages)
    http = math.ceil(run.body_bytes / HTTP_API_METERING_BYTES) * PRICE_HTTP_API_REQUEST / run.messages
    return per.dollars() + http + lambda_dollars(batch_lambda_seconds(run)) / run.messages


def print_event_rule_budgets(table: TableModel, plain: BatchRun, traffic: Traffic) -> None:
    """Issue 15: a single track of a known user under 1 KB, and the batched mix, with 5 event rules
    and 5 computed traits configured, against the budgets (and the mix without them)."""
    names = ["Order Completed under 1 KB, known user", "track, known user (userId only)"]
    with ModelledDynamoDB(table, LATENCY, images=True, sleep=False) as model:
        measured = scenarios.run(model, names, settings=EVENT_RULES)
    ruled = Traffic()
    seed, batch = ruled.seed(), ruled.batch(BATCH_SIZE)
    with ModelledDynamoDB(table, LATENCY, images=True) as model:
        run = run_batch(seed, batch, None, model, settings=EVENT_RULES)
    print("\nwith 5 event rules and 5 computed traits (issue 15's budgets)")
    for m in measured:
        usage = total_usage(m.calls, table)
        within = len(m.calls) <= BUDGET_TRACK_REQUESTS and usage.write_total <= BUDGET_TRACK_WRU
        flag = ("within" if within else "OVER") if m.message_bytes < 1024 else "(over 1 KB: not the budget's)"
        print(
            f"  {m.name:40} {m.message_bytes / 1024:4.1f}K {_ops(m.calls):12} WRU {_units(usage)}  "
            f"budget {BUDGET_TRACK_REQUESTS} requests, {BUDGET_TRACK_WRU} WRU for a message under 1 KB: {flag}"
        )
    for label, batch_run, budget in (
        ("without event rules", plain, BUDGET_MIX),
        ("with them", run, BUDGET_MIX_EVENT_RULES),
    ):
        dollars = _mix_dollars(batch_run, table) * 1e6
        per = total_usage(batch_run.calls, table).scaled(1 / batch_run.messages)
        verdict = "within" if dollars <= budget else "OVER"
        print(
            f"  batched mix {label:20} ${dollars:.2f}/M (WRU {per.write:.2f}+{per.index_write:.2f}, "
            f"RRU {per.read:.2f}; budget ${budget:.2f}/M: {verdict})"
        )


def print_what_ifs(run: BatchRun, measured: list[scenarios.Measured], table: TableModel) -> None:
    picks = [
        m
        for m in measured
        if m.name
        in (
            "track, userId + linked anonymousId",
            "page, known user (userId only)",
            "identify, known user, traits changed",
        )
    ]
    print("\nthe same requests re-priced under design changes (DynamoDB $ per million messages)")
    print(
        f"  {'change':46} {'batch WRU':>9} {'RRU':>5} {'$/M':>6} {'saved':>6} {'KB kept':>7}"
        + "".join(f" {m.name.split(',')[0] + '*':>10}" for m in picks)
    )
    base = None
    for label, model_table, change in what_ifs(table):
        calls = change(run.calls)
        usage = total_usage(calls, model_table).scaled(1 / run.messages)
        base = usage.dollars() if base is None else base
        kept = [i for i in written_items(calls) if i.get("kind", {}).get("S") == "event"]
        kb = statistics.mean(stored_bytes(i, model_table) for i in kept) / 1024 if kept else 0
        singles = "".join(f" {total_usage(change(m.calls), model_table).dollars() * 1e6:10.2f}" for m in picks)
        print(
            f"  {label:46} {usage.write_total:9.2f} {usage.read:5.2f} {usage.dollars() * 1e6:6.2f} "
            f"{(base - usage.dollars()) * 1e6:6.2f} {kb:7.2f}{singles}"
        )
    print("  * single deliveries: " + "; ".join(m.name for m in picks) + "; KB kept = storage per event")


def _moto_comparison(calls: list[Call], table: TableModel) -> str:
    """Where moto's ReturnConsumedCapacity and the model disagree, by operation."""
    agree, differ, missing = 0, dict[str, set[tuple[float, float]]](), set[str]()
    for call in calls:
        usage = call_usage(call, table)
        ours = usage.write_total + usage.read
        if call.moto_units is None:
            missing.add(call.operation + ("!" if call.error else ""))
        elif abs(call.moto_units - ours) < 1e-9:
            agree += 1
        else:
            differ.setdefault(call.operation, set()).add((call.moto_units, ours))
    parts = []
    for op, pairs in sorted(differ.items()):
        moto = "/".join(f"{m:g}" for m in sorted({m for m, _ in pairs}))
        low, high = min(o for _, o in pairs), max(o for _, o in pairs)
        parts.append(f"{op} moto {moto} vs {low:g}" + (f"-{high:g}" if high != low else ""))
    return (
        f"moto's ReturnConsumedCapacity matches the units above on {agree} of {len(calls)} requests; differs: "
        + ("; ".join(parts) or "none")
        + (f"; none reported for {', '.join(sorted(missing))}" if missing else "")
        + " (moto counts requests, not sizes, indexes or transactions)"
    )


def _outcomes(answer: dict[str, Any]) -> str:
    counts = [f"{k} {answer[k]:,}" for k in ("stored", "duplicate", "unchanged", "ignored") if answer.get(k)]
    if answer.get("rejected"):
        counts.append(f"rejected {len(answer['rejected'])}")
    return ", ".join(counts) or str(answer.get("error", ""))


def _by_operation(calls: list[Call]) -> str:
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.operation] = counts.get(call.operation, 0) + 1
    return ", ".join(f"{op} {n:,}" for op, n in sorted(counts.items()))

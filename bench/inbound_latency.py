"""Part 1: inbound deliveries against DynamoDB with a modelled latency per request.

The real InboundFunction handler stores Webhooks (Actions) batches and single messages in moto;
every DynamoDB request waits BENCH_DDB_LATENCY_MS (default 8 ms) outside any lock, so parallel
writers overlap as on AWS, and moto's own CPU time is taken out of the figures ("modelled").
The template's INBOUND_WRITERS is compared with 1 writer on the same batch and table state;
at 1 writer the requests are sequential, so the latency is added up instead of slept (exact,
and checked: the run sleeps for real if it finds requests in parallel), and the modelled time is
the connector's CPU time plus the latencies, which other processes on the machine do not inflate.
"""

from __future__ import annotations

import json
import os

from bench import scenarios
from bench.batches import LAMBDA_VCPU_MB, BatchRun, run_batch
from bench.capacity import table_model
from bench.dynamodb_model import ModelledDynamoDB
from bench.stack import MEMORY_MB, TEMPLATE, TEMPLATE_WRITERS, TIMEOUT_S
from bench.workload import Traffic

LATENCY = float(os.environ.get("BENCH_DDB_LATENCY_MS", "8")) / 1000
BUDGET_S = 5.0  # of modelled time, half of Segment's timeout
SEGMENT_TIMEOUT_S = 10.0
BATCH_SIZES = (4000, 1000)


def measure(seed: list[dict], batch: list[dict], writers: int) -> BatchRun:
    table = table_model(TEMPLATE)
    with ModelledDynamoDB(table, LATENCY, sleep=writers > 1) as model:
        run = run_batch(seed, batch, writers, model)
    if writers == 1 and run.max_in_flight > 1:
        with ModelledDynamoDB(table, LATENCY) as model:
            run = run_batch(seed, batch, writers, model)
    return run


def main() -> int:
    traffic = Traffic()
    seed, batch = traffic.seed(), traffic.batch(max(BATCH_SIZES))
    print(
        f"\ninbound with {LATENCY * 1000:g} ms per DynamoDB request (moto's CPU taken out = 'modelled'); "
        f"template: INBOUND_WRITERS {TEMPLATE_WRITERS}, {MEMORY_MB} MB, timeout {TIMEOUT_S} s"
    )
    print(
        f"  {len(seed)} users identified before each batch; budget {BUDGET_S:g} s modelled, Segment times out "
        f"at {SEGMENT_TIMEOUT_S:g} s; 'CPU@{MEMORY_MB}MB' = connector CPU x{LAMBDA_VCPU_MB / MEMORY_MB:.2f} "
        f"(Lambda has 1 vCPU at {LAMBDA_VCPU_MB} MB), a floor under Lambda's wall time"
    )
    print(
        f"  this machine: {os.cpu_count()} CPUs; 'others' = CPU time other processes used during the run "
        "(it inflates wall and modelled times)"
    )
    failed = False
    for size in BATCH_SIZES:
        failed |= report_batch(seed, batch[:size], batch)
    report_single_deliveries()
    return 1 if failed else 0


def report_batch(seed: list[dict], messages: list[dict], population: list[dict]) -> bool:
    """Print one batch at the template's writers and at 1; True when the template's run fails."""
    body = len(json.dumps(messages, separators=(",", ":")).encode())
    print(
        f"\n  batch of {len(messages):,} messages: {body / 1e6:.2f} MB ({body / len(messages) / 1024:.2f} KB/message), "
        f"{_profiles(messages)} of {_profiles(population)} users/visitors, {_mix(messages)}"
    )
    runs = [measure(seed, messages, writers) for writers in dict.fromkeys((TEMPLATE_WRITERS, 1))]
    if runs[0].refused:
        print(
            f'    as deployed: 413 "{runs[0].refused}" - measured with the limit lifted'
            + (" (Lambda takes 6 MB at most: such a body never reaches the function)" if body > 6e6 else "")
        )
    failed = _print_runs(runs)
    for run in runs:
        print(f"    requests at {run.writers:>2} writer{'s' if run.writers > 1 else ' '}: {_by_operation(run)}")
    if len(runs) == 2 and runs[0].modelled > 0:
        path = (
            ""
            if {c.operation for c in runs[0].calls} == {c.operation for c in runs[1].calls}
            else " (1 writer takes the per-message write path)"
        )
        print(
            f"    {runs[0].writers} writers: {runs[1].modelled / runs[0].modelled:.1f}x faster than 1, "
            f"{len(runs[1].calls) / max(1, len(runs[0].calls)):.1f}x fewer requests{path}"
        )
    return failed


def _print_runs(runs: list[BatchRun]) -> bool:
    """One row per run; True when the template's run fails its budget."""
    print(
        f"    {'writers':>7} {'answer':24} {'modelled':>8} {'budget':>6} {'wall':>6} {'moto CPU':>8} "
        f"{'connector CPU':>13} {'CPU@' + str(MEMORY_MB) + 'MB':>10} {'vs 10 s':>7} {'requests':>8} "
        f"{'req/msg':>7} {'parallel':>8} {'others':>6}"
    )
    failed = busy = False
    for run in runs:
        contended = run.max_in_flight > 1 and run.other_cpu > 0.5 * run.wall
        busy |= contended
        verdict = "PASS" if run.modelled <= BUDGET_S and run.status == 200 else "FAIL"
        if contended and verdict == "FAIL" and run.status == 200 and run.floor <= BUDGET_S:
            verdict = "FAIL?"  # the machine, not the connector, may have made it slow
        failed |= verdict == "FAIL" and run.writers == TEMPLATE_WRITERS
        stretched = run.cpu_at(MEMORY_MB)
        timeout = "ok" if max(stretched, run.modelled) <= SEGMENT_TIMEOUT_S else "OVER"
        print(
            f"    {run.writers:7} {run.status} {_outcomes(run.answer):20} {run.modelled:7.2f}"
            f"{'*' if contended else 's'} {verdict:>6} {run.wall:5.1f}s {run.moto_cpu:7.1f}s "
            f"{run.connector_cpu:12.2f}s {stretched:9.2f}s {timeout:>7} {len(run.calls):8,} "
            f"{len(run.calls) / run.messages:7.3f} {run.max_in_flight:8} {run.other_cpu:5.1f}s"
        )
    if busy:
        print(
            "    * other processes kept a CPU busy for over half of this run: its modelled time is inflated; "
            + ", ".join(f"at least {r.floor:.2f} s at {r.writers} writers" for r in runs if r.max_in_flight > 1)
            + " (connector CPU or the busiest writer's latencies)"
        )
    return failed


def report_single_deliveries() -> None:
    print("\n  single-message deliveries (one message per request, to users identified before)")
    with ModelledDynamoDB(table_model(TEMPLATE), LATENCY, sleep=False) as model:
        singles = scenarios.run(model, scenarios.SINGLE_DELIVERIES)
    for m in singles:
        ops = ", ".join(m.operations) or "none"
        print(
            f"    {m.name:42} {m.outcome:9} {len(m.calls)} request{'s' if len(m.calls) != 1 else ' '} "
            f"{m.modelled * 1000:5.0f} ms  {ops}" + ("" if m.consistent else "  (repeats differed)")
        )


def _profiles(messages: list[dict]) -> int:
    return len({m.get("userId") or m.get("anonymousId") for m in messages})


def _mix(messages: list[dict]) -> str:
    counts: dict[str, int] = {}
    for m in messages:
        counts[m["type"]] = counts.get(m["type"], 0) + 1
    return ", ".join(f"{n:,} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _outcomes(answer: dict) -> str:
    short = {"stored": "st", "duplicate": "dup", "unchanged": "unch", "ignored": "ign"}
    parts = [f"{short[k]} {answer[k]}" for k in short if answer.get(k)]
    if answer.get("rejected"):
        parts.append(f"rej {len(answer['rejected'])}")
    return " ".join(parts) or str(answer.get("error", ""))[:20]


def _by_operation(run: BatchRun) -> str:
    counts: dict[str, int] = {}
    for call in run.calls:
        counts[call.operation] = counts.get(call.operation, 0) + 1
    return ", ".join(f"{op} {n:,}" for op, n in sorted(counts.items()))

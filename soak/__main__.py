"""`make soak`: a reliability run of the connector against its own local stack (~10 minutes).

Starts a Segment sink that refuses 30% of requests, then the local stack (own port, keys and
settings: everyone synchronized, every event sent) pointed at it, and runs the checks:

  a  load: 16 senders, thousands of messages in mixed bodies; every answer 200, nothing lost
     (read back through the Profile API), every event delivered to the sink under one
     messageId, per-user order of delivered calls as stored
  b  every message delivered twice: duplicate/unchanged, nothing extra at the sink
  c  out-of-order identifies keep the newer trait values
  d  50 identifies of one user side by side in one batch: 200 the first time
  e  the failing sink: everything still delivered, nothing dead-lettered
  f  10,000 hostile requests: no 5xx, JSON answers, still healthy, no write from a rejected message
  g  the stack's output never holds the API key, the write key or their Basic forms

  h-k  long paths (soak/phase_long_paths.py): settings saved during a resync of thousands of users,
     thousands of anonymous ids, dead letters replayed twice at once, the delete of a big user

`python -m soak --phase main` runs (a)-(g) only, `--phase long_paths` (h)-(k) and (g) only.
Rates and sizes are in soak/config.py. Prints figures as it goes and ends with `N passed, N failed`
(exit status 1 if any failed). Stops by itself: a watchdog kills everything after 19 minutes (35
with the long paths).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from soak import config, phase_delivery, phase_hostile, phase_identity, phase_load, phase_long_paths
from soak.deliveries import analyse
from soak.flaky_sink import FlakySink
from soak.report import Check, Report, say
from soak.session import Session
from soak.stack import Stack

CHECKS = {
    "a": "load: every answer 200, nothing lost, every event delivered under one messageId, per-user order kept",
    "b": "redelivery: duplicate/unchanged answers, nothing extra at the sink",
    "c": "out-of-order identifies keep the newer trait values",
    "d": f"{config.PARALLEL_IDENTIFIES} identifies of one user in one batch answered 200 the first time",
    "e": f"a sink failing {config.SINK_FAILURE_RATE:.0%} of requests: everything still delivered",
    "f": f"{config.HOSTILE_CASES} hostile inputs: no 5xx, JSON answers, still healthy, "
    "no write from a rejected message",
}
SECRET_CHECKS = {
    "g": "stack output (all of it) never holds the API key, write key or their Basic base64 forms",
    "g-runtime": "stack output after the ready line never holds them",
}
PHASES = ("main", "long_paths")
Step = tuple[str, str, Callable[[], object]]


def secret_forms(api_key: str, write_key: str) -> dict[str, str]:
    forms = {}
    for name, key in (("API key", api_key), ("write key", write_key)):
        forms[name] = key
        forms[f"{name} as Basic base64"] = base64.b64encode(f"{key}:".encode()).decode()
        forms[f"{name} as base64 without colon"] = base64.b64encode(key.encode()).decode()
    return forms


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m soak", description="make soak: a reliability run")
    parser.add_argument("--phase", choices=PHASES, action="append", help="run only this phase (repeatable)")
    return parser.parse_args(argv)


def hard_timeout_seconds(phases: tuple[str, ...]) -> float:
    """The whole run's limit: the main phase's, else start and stop alone, plus the long paths'."""
    base = config.HARD_TIMEOUT_SECONDS if "main" in phases else config.ALONE_SECONDS
    return base + (config.LONG_PATHS_SECONDS if "long_paths" in phases else 0)


def main(argv: list[str] | None = None) -> int:
    phases = tuple(arguments(argv).phase or PHASES)
    started = time.monotonic()
    hard_timeout = hard_timeout_seconds(phases)
    deadline = started + hard_timeout
    report = Report()
    for key, title in {**(CHECKS if "main" in phases else {}), **SECRET_CHECKS}.items():
        report.check(key, title)
    workdir = Path(tempfile.mkdtemp(prefix="segment-soak-"))
    api_key, write_key = f"soak-api-{secrets.token_hex(12)}", f"soak-write-{secrets.token_hex(12)}"
    settings_path = workdir / "settings.json"
    settings_path.write_text(json.dumps(config.SETTINGS), encoding="utf-8")
    say(
        f"soak: seed {config.SEED}, scale {config.SCALE}, {config.SENDERS} senders, sink failure rate "
        f"{config.SINK_FAILURE_RATE:.0%}; stack output in {workdir / 'stack.log'}"
    )

    sink = FlakySink(config.SINK_FAILURE_RATE, config.SEED).start()
    stack: Stack | None = None
    watchdog = threading.Timer(hard_timeout, _hard_timeout, args=(report, lambda: stack, hard_timeout))
    watchdog.daemon = True
    watchdog.start()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with report.phase("start the local stack"):
            stack = Stack(
                {
                    "API_KEY": api_key,
                    "WRITE_KEY": write_key,
                    "CONNECTOR_SETTINGS": str(settings_path),
                    "SEGMENT_API_URL": sink.url,
                },
                workdir / "stack.log",
                secret_forms(api_key, write_key),
            )
            ready = stack.wait_ready(config.STARTUP_SECONDS)
            say(
                f"  stack on {stack.url}, sink on {sink.url}"
                if ready
                else f"soak: the local stack did not start; see {workdir / 'stack.log'}"
            )
        if ready:
            session = Session(stack, sink, report, api_key, deadline)
            steps = _phases(session, report) if "main" in phases else []
            if "long_paths" in phases:
                steps += phase_long_paths.steps(session, report)
            _run_steps(session, report, steps)
    except KeyboardInterrupt:
        say("soak: interrupted")
    finally:
        _dump_sink(sink, workdir / "sink.jsonl")
        sink_stop = threading.Thread(target=sink.stop, daemon=True)
        if stack is not None:
            _stop_stack(stack, report)
        sink_stop.start()
        sink_stop.join(10)
        watchdog.cancel()
    say(f"soak: {time.monotonic() - started:.0f} s in all")
    return _finish(report, stack)


def _phases(session: Session, report: Report) -> list[Step]:
    checks = report.checks
    run = phase_load.plan(config.SEED)
    steps: list[Step] = [
        ("a", "a load: send", lambda: phase_load.run_load(session, run, checks["a"])),
        ("a", "a load: read back", lambda: phase_load.verify_reads(session, run, checks["a"])),
    ]
    drained = {"value": False}

    def drain_load() -> None:
        drained["value"] = phase_delivery.drain(session, phase_delivery.expected_events(run))

    steps += [
        ("a", "a load: outbound delivery", drain_load),
        ("b", "b redelivery", lambda: phase_load.redeliver(session, run, checks["b"], drained["value"])),
        ("c", "c out-of-order identifies", lambda: phase_identity.out_of_order(session, config.SEED, checks["c"])),
        ("d", "d parallel identifies", lambda: phase_identity.parallel_identifies(session, config.SEED, checks["d"])),
        ("f", "f hostile inputs", lambda: phase_hostile.run(session, config.SEED, checks["f"])),
        ("e", "e final delivery", lambda: _final_delivery(session, run, checks)),
    ]
    return steps


def _run_steps(session: Session, report: Report, steps: list[Step]) -> None:
    checks = report.checks
    for key, name, step in steps:
        if session.remaining() <= 0 or session.stack.process.poll() is not None:
            checks[key].fail(f"{name}: not run (stack stopped or out of time)")
            continue
        with report.phase(name):
            try:
                step()
            except Exception as error:  # noqa: BLE001 - one phase's crash must not stop the others
                checks[key].fail(f"{name} crashed: {error!r}")
        if key in "bcdfhijk":
            checks[key].finish()


def _final_delivery(session: Session, run: phase_load.LoadRun, checks: dict[str, Check]) -> None:
    # Longer quiet at the end: the outbound side may still be planning the hostile phase's records.
    phase_delivery.drain(session, phase_delivery.expected_events(run), config.DRAIN_SECONDS, config.QUIET_SECONDS * 2)
    entries = list(session.sink.deliveries())
    deliveries = analyse(entries)
    phase_delivery.check_load_deliveries(run, deliveries, checks["a"], entries)
    checks["a"].finish()
    phase_delivery.check_failing_sink(session, run, deliveries, checks["e"])
    checks["e"].finish()


def _stop_stack(stack: Stack, report: Report) -> None:
    with report.phase("stop the local stack"):
        code = stack.stop()
        say(f"  exit status {code}; {stack.lines} lines of output; markers {dict(stack.markers)}")
    whole, runtime = report.checks["g"], report.checks["g-runtime"]
    for line, name, after_ready in stack.leaks:
        where = "after ready" if after_ready else "start-up banner"
        whole.fail(f"line {line} ({where}) holds the {name}")
        if after_ready:
            runtime.fail(f"line {line} holds the {name}")
    whole.figure(
        f"lines holding a key: {len(stack.leaks)} ({sum(1 for *_, after in stack.leaks if after)} "
        f"after ready) of {stack.lines}"
    )
    whole.finish()
    runtime.finish()


def _dump_sink(sink: FlakySink, path: Path) -> None:
    """Every request the sink got, one JSON line each (request number, status, messages), for diagnosis."""
    with open(path, "w", encoding="utf-8") as out:
        for number, request in enumerate(sink.requests):
            out.write(
                json.dumps({"n": number, "status": request.status, "messages": request.messages}, default=str) + "\n"
            )
    say(f"  sink requests written to {path}")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _finish(report: Report, stack: Stack | None) -> int:
    if stack is not None and stack.process.poll() is None:
        stack.kill()
    _, failed = report.summary()
    return 1 if failed else 0


def _hard_timeout(report: Report, stack: Callable[[], Stack | None], seconds: float) -> None:
    say(f"soak: hard timeout after {seconds:.0f} s: killing the stack")
    running = stack()
    if running is not None:
        running.kill()
    report.summary()
    sys.stdout.flush()
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main())

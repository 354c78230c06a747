"""What EventBridge's schedules do for the deployed stack: a function's `Schedule` event invokes it
(asynchronously) with the event's Input, here every RESYNC_CHECK_EVERY_S seconds (default 60) for
ResyncFunction instead of the template's rate, so that a local run sees a stuck resync resumed
without waiting ten minutes, and every RECOMPUTE_EVERY_S seconds (default 10) for
OutboundFunction's re-evaluation of users whose event windows ended (hourly on AWS).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

INTERVAL_ENV = "RESYNC_CHECK_EVERY_S"
DEFAULT_INTERVAL = 60.0
RECOMPUTE_ENV = "RECOMPUTE_EVERY_S"
DEFAULT_RECOMPUTE_INTERVAL = 10.0


def scheduled_inputs(template: Mapping[str, Any], logical_id: str) -> list[dict[str, Any]]:
    """The Input of each Schedule/ScheduleV2 event of a function (its event: {} without Input)."""
    resource = template["Resources"].get(logical_id, {})
    events = resource.get("Properties", {}).get("Events", {})
    inputs = []
    for event in events.values():
        if event.get("Type") in ("Schedule", "ScheduleV2"):
            raw = event.get("Properties", {}).get("Input")
            inputs.append(json.loads(raw) if raw else {})
    return inputs


def interval_from(environ: Mapping[str, str], name: str = INTERVAL_ENV, default: float = DEFAULT_INTERVAL) -> float:
    raw = environ.get(name) or ""
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


class Schedule(threading.Thread):
    """Calls `invoke(payload)` for each payload every `interval` seconds until stopped."""

    def __init__(
        self,
        payloads: list[dict[str, Any]],
        invoke: Callable[[dict[str, Any]], object],
        interval: float,
        log: Callable[[str], None] = print,
    ) -> None:
        super().__init__(name=f"schedule-{interval:g}s", daemon=True)
        self.payloads, self.invoke, self.interval, self.log = payloads, invoke, interval, log
        self._stopping = threading.Event()
        self.fired = 0

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.fire()

    def fire(self) -> None:
        for payload in self.payloads:
            try:
                self.invoke(dict(payload))
            except Exception as error:  # noqa: BLE001 - EventBridge tries again at the next tick too
                self.log(f"schedule: could not invoke with {payload}: {error!r}")
        self.fired += 1

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

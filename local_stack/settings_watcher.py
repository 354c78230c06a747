"""What EventBridge does for the deployed stack: a settings change invokes ResyncFunction.

On AWS, a put of `<prefix>/settings` emits a "Parameter Store Change" event, and the rule of
ResyncFunction's SettingsChanged event invokes the function (asynchronously) with it. Here the
parameter is polled in the emulator; when its value changes, the same event goes to `invoke`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from local_stack.lambda_runtime import ACCOUNT_ID, REGION

POLL_SECONDS = 5.0


def parameter_change_event(
    name: str, operation: str = "Update", kind: str = "String", now: datetime | None = None
) -> dict[str, Any]:
    """The EventBridge event of an SSM parameter change (source aws.ssm)."""
    now = now or datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Parameter Store Change",
        "source": "aws.ssm",
        "account": ACCOUNT_ID,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/{name.lstrip('/')}"],
        "detail": {"name": name, "operation": operation, "type": kind, "description": ""},
    }


class SettingsWatcher(threading.Thread):
    """Polls the settings parameter; on a new value calls `on_change(event)` with the EventBridge event."""

    def __init__(
        self,
        ssm: Any,
        name: str,
        on_change: Callable[[dict[str, Any]], None],
        poll_seconds: float = POLL_SECONDS,
        log: Callable[[str], None] = print,
    ) -> None:
        super().__init__(name="settings-watcher", daemon=True)
        self.ssm, self.parameter, self.on_change = ssm, name, on_change
        self.poll_seconds, self.log = poll_seconds, log
        self._stopping = threading.Event()
        self._value: str | None = self._read()
        self._failing = False

    def _read(self) -> str | None:
        try:
            return str(self.ssm.get_parameter(Name=self.parameter)["Parameter"]["Value"])
        except self.ssm.exceptions.ParameterNotFound:
            return None

    def run(self) -> None:
        while not self._stopping.wait(self.poll_seconds):
            self.poll()

    def poll(self) -> bool:
        """Read the parameter once; True when it changed (and `on_change` was called)."""
        try:
            value = self._read()
        except Exception as error:  # noqa: BLE001 - the emulator is stopping or busy: try again later
            if not (self._stopping.is_set() or self._failing):
                self.log(f"settings watcher: cannot read {self.parameter}: {error!r}")
            self._failing = True
            return False
        self._failing = False
        if value is None or value == self._value:
            return False
        operation = "Create" if self._value is None else "Update"
        self._value = value
        self.on_change(parameter_change_event(self.parameter, operation))
        return True

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

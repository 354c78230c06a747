"""The local stack as a subprocess: started on a free port, its output kept and scanned, killed at the end."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

from local_stack.child_process import HOST, ChildProcess, free_port, stack_environment
from local_stack.config import STATE_ENV
from local_stack.template import ROOT

# Lines worth counting in the stack's output (the handler's traceback, the stream worker giving up).
MARKERS = {
    "handler failed": "handler failed",
    "Traceback": "traceback",
    "gave up a batch": "stream gave up",
    "retry ": "stream retry",
    "error while reading the stream": "stream read error",
}


class Stack:
    """`python -m local_stack` with the given environment and a state file of its own; output goes to
    `log_path`.

    `secrets` are strings that must never appear in the output: each line is checked as it
    arrives and where they appear is kept (line number, which secret, before/after ready).
    """

    def __init__(self, env: dict[str, str], log_path: Path, secrets: dict[str, str]):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.state_path = ROOT / ".local-stack" / f"soak-{os.getpid()}.json"
        self.log_path = log_path
        self.secrets = secrets
        self.leaks: list[tuple[int, str, bool]] = []  # (line number, secret name, after ready)
        self.markers: Counter[str] = Counter()
        self.lines = 0
        self._ready = threading.Event()
        environment = stack_environment(
            {
                **env,
                "PORT": str(self.port),
                "PYTHONUNBUFFERED": "1",
                # `make run`'s state file (make replay, e2e tests) is left alone
                STATE_ENV: str(self.state_path),
            }
        )
        self._log: TextIO = open(log_path, "w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        self.child = ChildProcess([sys.executable, "-m", "local_stack"], environment, self._line)
        self.process = self.child.process

    def _line(self, line: str) -> None:
        self.lines += 1
        self._log.write(line)
        for name, secret in self.secrets.items():
            if secret in line:
                self.leaks.append((self.lines, name, self._ready.is_set()))
        for needle, label in MARKERS.items():
            if needle in line:
                self.markers[label] += 1
        if not self._ready.is_set() and "ready" in line:
            self._ready.set()

    def wait_ready(self, timeout: float) -> bool:
        """Wait for the ready line; False at once if the stack exits first."""
        until = time.monotonic() + timeout
        while not self._ready.wait(0.2):
            if self.child.ended.is_set() or time.monotonic() >= until:
                break
        return self._ready.is_set() and self.process.poll() is None

    def state(self) -> dict[str, str]:
        return json.loads(self.state_path.read_text(encoding="utf-8"))

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole process group after `grace` seconds; the exit code."""
        code = self.child.terminate(grace)
        self.child.ended.wait(10)
        self._log.close()
        self.state_path.unlink(missing_ok=True)
        return code

    def kill(self) -> None:
        self.child.kill(10)
        self.state_path.unlink(missing_ok=True)  # a killed stack leaves its state file behind

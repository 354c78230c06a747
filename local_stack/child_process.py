"""A command (usually `python -m local_stack`) as a child process in a process group of its own,
its merged output read line by line; for the e2e tests and the soak run."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence

from local_stack.template import ROOT

HOST = "127.0.0.1"
# What configures a local stack: never inherited from the caller's shell, only given on purpose.
STACK_VARIABLES = (
    "SEGMENT_API_URL",
    "API_KEY",
    "SHARED_SECRET",
    "WRITE_KEY",
    "ADMIN_KEY",
    "PROFILE_TOKEN",
    "SPACE_ID",
    "CONNECTOR_SETTINGS",
    "AWS_ENDPOINT_URL",
    "TABLE_NAME",
    "PARAMETER_PREFIX",
    "PORT",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def stack_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without the stack's variables, then `settings`."""
    environment = {name: value for name, value in os.environ.items() if name not in STACK_VARIABLES}
    environment.update(settings)
    return environment


class ChildProcess:
    """Runs `command` in ROOT; each line of its output goes to `on_line` (on a reader thread), and
    `on_end` is called once the output ends."""

    def __init__(
        self,
        command: Sequence[str],
        environment: Mapping[str, str],
        on_line: Callable[[str], None],
        on_end: Callable[[], None] = lambda: None,
    ):
        self.ended = threading.Event()
        self._on_line = on_line
        self._on_end = on_end
        self.process = subprocess.Popen(  # noqa: S603 - the command is ours (tests, soak), never input
            list(command),
            cwd=ROOT,
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="backslashreplace",
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="child-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                self._on_line(line)
        finally:
            self.ended.set()
            self._on_end()

    def running(self) -> bool:
        return self.process.poll() is None

    def terminate(self, grace: float) -> int | None:
        """SIGTERM to the process group, SIGKILL after `grace` seconds; the exit code."""
        if self.running():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self, wait: float = 30) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(wait)

"""What an operator does to the soak's stack: the `segment-connector` CLI (`--local`, pointed at the
stack's own state file) and the status contract of its functions (Lambda Invoke API, as the CLI
calls them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from local_stack.template import ROOT
from soak.stack import Stack
from soak.table import ANY_CREDENTIAL

CLI = Path(sys.executable).parent / "segment-connector"
CLI_TIMEOUT = 300.0


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError:
            return None

    def describe(self) -> str:
        return f"exit {self.code}: {(self.stdout + self.stderr).strip()[-400:]!r}"


STATUS_ATTEMPTS = 5  # a status read the overloaded emulator refused is asked again


class Operator:
    def __init__(self, stack: Stack):
        self.stack = stack
        self._local = threading.local()

    def cli(self, *args: str, stdin: str | None = None, timeout: float = CLI_TIMEOUT) -> CliRun:
        """`segment-connector ARGS` against this stack (its state file, not `make run`'s)."""
        environment = {**os.environ, "SEGMENT_CONNECTOR_STATE": str(self.stack.state_path)}
        done = subprocess.run(
            [str(CLI), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
            cwd=ROOT,
            check=False,
        )
        return CliRun(done.returncode, done.stdout, done.stderr)

    def put_settings(self, settings: dict[str, Any]) -> CliRun:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as file:
            json.dump(settings, file)
        try:
            return self.cli("settings", "put", "--local", file.name)
        finally:
            Path(file.name).unlink(missing_ok=True)

    def _lambda(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            state = self.stack.state()
            client = self._local.client = boto3.client(
                "lambda",
                endpoint_url=state["lambda_endpoint_url"],
                region_name=state["region"],
                aws_access_key_id=ANY_CREDENTIAL,
                aws_secret_access_key=ANY_CREDENTIAL,
                config=Config(read_timeout=910, retries={"max_attempts": 0}),
            )
        return client

    def invoke(self, function: str, payload: dict[str, Any]) -> Any:
        """A function's answer (RequestResponse, as the CLI invokes it under its logical id)."""
        answer = self._lambda().invoke(FunctionName=function, Payload=json.dumps(payload).encode())
        body = answer["Payload"].read()
        result = json.loads(body) if body else None
        if answer.get("FunctionError"):
            raise RuntimeError(f"{function} failed: {str(result)[:300]}")
        return result

    def resync_status(self) -> dict[str, Any]:
        """The job's status. A status the function could not read because the emulated table was
        overloaded (StoreUnavailable: a resync's 16 chains at once on a 2-core machine) is asked
        again, as an operator would; any other failure is raised."""
        for attempt in range(STATUS_ATTEMPTS):
            try:
                answer = self.invoke("ResyncFunction", {"action": "status"})
            except RuntimeError as error:
                if "StoreUnavailable" not in str(error) or attempt == STATUS_ATTEMPTS - 1:
                    raise
                time.sleep(2.0)
                continue
            return answer if isinstance(answer, dict) else {"status": "unknown", "answer": answer}
        raise AssertionError("unreachable")

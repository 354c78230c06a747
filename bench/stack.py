"""A fresh moto account built from template.yaml, and the real InboundFunction handler called with
API Gateway HTTP API events (as tests/conftest.py does)."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from local_stack.template import ROOT, function_spec, load_template, parameter_default, table_definition, ttl_attribute

sys.path.insert(0, str(ROOT / "layers" / "common"))

TEMPLATE = load_template()
FUNCTION = "InboundFunction"
TABLE = "connector-bench"
PREFIX = parameter_default(TEMPLATE, "ParameterPrefix")
API_KEY = "bench-api-key"
AUTHORIZATION = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
SETTINGS_DEFAULT = json.loads(TEMPLATE["Resources"]["SettingsParameter"]["Properties"]["Value"])


def function_property(name: str, default: Any = None) -> Any:
    own = TEMPLATE["Resources"][FUNCTION]["Properties"]
    return own.get(name, TEMPLATE.get("Globals", {}).get("Function", {}).get(name, default))


def function_environment() -> dict[str, str]:
    refs = {"Table": TABLE, "ParameterPrefix": PREFIX, "LogLevel": parameter_default(TEMPLATE, "LogLevel")}
    return function_spec(TEMPLATE, FUNCTION, refs).environment


TEMPLATE_WRITERS = int(function_environment().get("INBOUND_WRITERS", "1"))
MEMORY_MB = int(function_property("MemorySize", 128))
TIMEOUT_S = int(function_property("Timeout", 3))


@cache
def handler_module() -> Any:
    name = "bench_inbound_app"
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / "inbound" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Answer:
    status: int
    body: Any
    seconds: float  # wall time of the handler call
    cpu: float  # process CPU time during the call (all threads)
    log_bytes: int  # what the handler printed (EMF metrics) = CloudWatch Logs ingestion
    other_cpu: float  # CPU time other processes used meanwhile (they slow this run's wall time)


def _busy_cpu() -> float:
    """Seconds of CPU the whole machine has spent busy (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class InboundStack:
    """`with InboundStack(settings) as stack: stack.post(body)`; INBOUND_WRITERS as in the template
    unless `writers` is given."""

    def __init__(self, settings: dict[str, Any] | None = None, writers: int | None = None, space_id: str | None = None):
        self.settings = {**SETTINGS_DEFAULT, **(settings or {})}
        self.space_id = space_id
        self.writers = TEMPLATE_WRITERS if writers is None else writers
        self._saved_env: dict[str, str | None] = {}
        self._mock: Any = None

    def __enter__(self) -> InboundStack:
        import boto3
        from moto import mock_aws

        from local_stack import moto_patches

        env = {
            **function_environment(),
            "INBOUND_WRITERS": str(self.writers),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_ENDPOINT_URL": None,
            "SEGMENT_API_URL": None,
            **({"SPACE_ID": self.space_id} if self.space_id else {}),
        }
        for name, value in env.items():
            self._saved_env[name] = os.environ.get(name)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        moto_patches.apply()  # the same emulator as the tests and the local stack
        self._mock = mock_aws()
        self._mock.start()
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(**table_definition(TEMPLATE, TABLE))
        if ttl_attribute(TEMPLATE):
            dynamodb.update_time_to_live(
                TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute(TEMPLATE)}
            )
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name=f"{PREFIX}/api-key", Value=API_KEY, Type="SecureString")
        ssm.put_parameter(Name=f"{PREFIX}/settings", Value=json.dumps(self.settings), Type="String")
        self._forget()
        self.handler = handler_module().lambda_handler
        return self

    def __exit__(self, *exc: Any) -> None:
        self._forget()
        self._mock.stop()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    @staticmethod
    def _forget() -> None:
        from segment_connector.runtime import config
        from segment_connector.store import profile_store as storage

        config.clear_caches()
        storage.forget_shared_store()  # its boto3 client belongs to another mock

    def post(self, body: Any, path: str = "/segment") -> Answer:
        raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        return self.request("POST", path, raw)

    def get(self, path: str, authorization: str = AUTHORIZATION) -> Answer:
        return self.request("GET", path, b"", authorization)

    def request(self, method: str, path: str, raw: bytes, authorization: str = AUTHORIZATION) -> Answer:
        from local_stack.api import build_event
        from local_stack.lambda_runtime import LambdaContext

        headers = [("content-type", "application/json"), ("authorization", authorization)]
        event = build_event(method, path, headers, raw)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            busy, wall, cpu = _busy_cpu(), time.perf_counter(), time.process_time()
            response = self.handler(event, LambdaContext(FUNCTION, MEMORY_MB, TIMEOUT_S))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            busy = _busy_cpu() - busy
        text = response.get("body") or ""
        if response.get("isBase64Encoded"):
            text = base64.b64decode(text).decode()
        return Answer(
            response["statusCode"],
            json.loads(text) if text else None,
            wall,
            cpu,
            len(printed.getvalue().encode()),
            max(0.0, busy - cpu),
        )

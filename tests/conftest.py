"""Shared fixtures: a moto account built from template.yaml, and handlers loaded from their files."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
from moto import mock_aws

from local_stack import moto_patches
from local_stack.api import build_event
from local_stack.lambda_runtime import LambdaContext
from local_stack.segment_sink import SegmentSink
from local_stack.template import ROOT, load_template, parameter_default, table_definition, ttl_attribute

TEMPLATE = load_template()
moto_patches.apply()  # the same emulator as the local stack
TABLE = "connector-test"
PREFIX = parameter_default(TEMPLATE, "ParameterPrefix")
API_KEY = "test-api-key"
SETTINGS_DEFAULT = TEMPLATE["Resources"]["SettingsParameter"]["Properties"]["Value"]
INBOUND_ENVIRONMENT = TEMPLATE["Resources"]["InboundFunction"]["Properties"]["Environment"]["Variables"]


class SerializedClient:
    """A boto3 client shared by threads the way the local stack shares moto: one call at a time
    (moto's backends are not thread-safe; DynamoDB itself serves the calls side by side)."""

    def __init__(self, client: Any):
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call


def load_handler_module(function: str) -> Any:
    """functions/<function>/app.py under a module name of its own (both files are app.py)."""
    name = f"{function}_app_under_test"
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    """Given an AWS account with the template's table and the operator's SSM parameters."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": TABLE,
        "PARAMETER_PREFIX": PREFIX,
        "POWERTOOLS_METRICS_NAMESPACE": "SegmentConnectorTest",
        "POWERTOOLS_SERVICE_NAME": "test",
        "INBOUND_WRITERS": str(INBOUND_ENVIRONMENT["INBOUND_WRITERS"]),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("SEGMENT_API_URL", raising=False)
    from segment_connector import config, storage

    config.clear_caches()
    storage.forget_shared_store()  # its boto3 client belongs to the previous test's mock
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        # The handlers write with the template's parallel writers; moto takes one call at a time.
        storage._shared = storage.ProfileStore(TABLE, SerializedClient(dynamodb))
        dynamodb.create_table(**table_definition(TEMPLATE, TABLE))
        dynamodb.update_time_to_live(
            TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute(TEMPLATE)}
        )
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name=f"{PREFIX}/api-key", Value=API_KEY, Type="SecureString")
        ssm.put_parameter(Name=f"{PREFIX}/settings", Value=SETTINGS_DEFAULT, Type="String")
        yield Aws(dynamodb, ssm)
    config.clear_caches()


class Aws:
    def __init__(self, dynamodb: Any, ssm: Any):
        self.dynamodb = dynamodb
        self.ssm = ssm

    def set_settings(self, **overrides: Any) -> None:
        from segment_connector import config

        settings = {**json.loads(SETTINGS_DEFAULT), **overrides}
        self.ssm.put_parameter(Name=f"{PREFIX}/settings", Value=json.dumps(settings), Type="String", Overwrite=True)
        config.clear_caches()

    def set_secret(self, suffix: str, value: str) -> None:
        from segment_connector import config

        self.ssm.put_parameter(Name=f"{PREFIX}/{suffix}", Value=value, Type="SecureString", Overwrite=True)
        config.clear_caches()

    def items(self) -> list[dict[str, Any]]:
        from segment_connector.storage import deserialize

        pages = self.dynamodb.get_paginator("scan").paginate(TableName=TABLE)
        return [deserialize(item) for page in pages for item in page["Items"]]

    def items_of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [item for item in self.items() if item.get("kind") == kind]


class FakeTime:
    """clock() starts at 0 and only moves when the client sleeps: waits are recorded, never taken."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def sink():
    """Given a Segment stand-in on 127.0.0.1."""
    with SegmentSink() as running:
        yield running


def basic(key: str = API_KEY) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


class Api:
    """Calls the inbound handler with API Gateway HTTP API events, as API Gateway would."""

    def __init__(self, module: Any):
        self.module = module

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        auth: str | None = basic(),
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        all_headers = {
            "content-type": "application/json",
            **({"authorization": auth} if auth else {}),
            **(headers or {}),
        }
        event = build_event(method, path, list(all_headers.items()), data)
        response = self.module.lambda_handler(event, LambdaContext("InboundFunction", 512, 10))
        text = response.get("body") or ""
        if response.get("isBase64Encoded"):
            text = base64.b64decode(text).decode()
        return response["statusCode"], json.loads(text) if text else None, response.get("headers") or {}

    def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        status, payload, _ = self.request("POST", path, body, **kwargs)
        return status, payload

    def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        status, payload, _ = self.request("GET", path, **kwargs)
        return status, payload


@pytest.fixture
def api(aws: Aws) -> Api:
    module = load_handler_module("inbound")
    return Api(module)


@pytest.fixture
def message() -> Callable[..., dict[str, Any]]:
    counter = iter(range(1, 1_000_000))

    def build(type_: str, **fields: Any) -> dict[str, Any]:
        body = {"type": type_, "messageId": f"m-{next(counter)}", "timestamp": "2026-01-01T00:00:00.000Z"}
        body.update(fields)
        return body

    return build

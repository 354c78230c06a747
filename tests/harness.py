"""Test helpers (plain functions, classes and constants; the fixtures are in conftest.py).

A moto account built from template.yaml (`Aws`), handlers loaded from their files
(`load_handler_module`), the inbound API called with API Gateway events (`Api`), a fake clock
(`FakeTime`) and the function's log as on Lambda (`FunctionLog`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib.util
import io
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_stack import moto_patches
from local_stack.api import build_event
from local_stack.child_process import ChildProcess, stack_environment
from local_stack.child_process import free_port as free_port  # the e2e tests import it from here
from local_stack.iam.deployment import authority_for
from local_stack.iam.enforce import Authority, as_function
from local_stack.iam.intrinsics import Deployment
from local_stack.lambda_runtime import ACCOUNT_ID, REGION, LambdaContext, forget_flow_entries, template_refs
from local_stack.template import ROOT, function_spec, load_template, parameter_default

TEMPLATE = load_template()
moto_patches.apply()  # the same emulator as the local stack
TABLE = "connector-test"
PREFIX = parameter_default(TEMPLATE, "ParameterPrefix")
API_KEY = "test-api-key"
ADMIN_KEY = "test-admin-key"
OUTBOUND_FUNCTION = "connector-test-outbound"
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
    """functions/<function>/app.py under a module name of its own (both files are app.py), its
    handler acting as the template's function: every AWS call it makes is checked against that
    function's role (local_stack.iam), as on AWS."""
    name = f"{function}_app_under_test"
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    forget_flow_entries()
    spec.loader.exec_module(module)
    # The handler's state (clients, caches, the resolver) lives in its flow's entry module: tests
    # read and replace it there.
    entry = module.entry
    entry.lambda_handler = as_function(logical_id_of(function), entry.lambda_handler)
    setattr(module, "lambda_handler", entry.lambda_handler)  # noqa: B010 - the module's attribute, as the runtime calls it
    return entry


def logical_id_of(function: str) -> str:
    """The template's function whose code is functions/<function>/."""
    for logical_id, resource in TEMPLATE["Resources"].items():
        code = resource.get("Properties", {}).get("CodeUri", "")
        if resource.get("Type") == "AWS::Serverless::Function" and code.rstrip("/") == f"functions/{function}":
            return str(logical_id)
    raise KeyError(function)


# The tests' deployment: the template's roles with the names the tests give the table and the
# functions (ResyncFunction's FunctionName is ${AWS::StackName}-resync: "connector-resync").
TEST_DEPLOYMENT = Deployment(
    account=ACCOUNT_ID,
    region=REGION,
    stack_name="connector",
    parameters={},
    names={"Table": TABLE, "OutboundFunction": OUTBOUND_FUNCTION},
)


@functools.cache
def iam_authority() -> Authority:
    return authority_for(TEST_DEPLOYMENT)


def template_without(logical_id: str, action: str, tmp_path: Path) -> Path:
    """template.yaml with `action` removed from every statement of the function's own policies."""
    template = json.loads(json.dumps(TEMPLATE))  # a deep copy
    for policy in template["Resources"][logical_id]["Properties"]["Policies"]:
        for statement in policy.get("Statement", []):
            if "Fn::If" in statement:
                statement = statement["Fn::If"][1]
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            statement["Action"] = [a for a in actions if a != action] or ["none:None"]
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    return path


@contextlib.contextmanager
def process_state() -> Iterator[None]:
    """Undo what loading a handler does to the process (environment, sys.path, modules)."""
    environ, path, modules = dict(os.environ), list(sys.path), set(sys.modules)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if name.startswith("local_stack_"):
                del sys.modules[name]


class Aws:
    def __init__(self, dynamodb: Any, ssm: Any):
        self.dynamodb = dynamodb
        self.ssm = ssm

    def set_settings(self, **overrides: Any) -> None:
        from segment_connector.runtime import config

        settings = {**json.loads(SETTINGS_DEFAULT), **overrides}
        self.ssm.put_parameter(Name=f"{PREFIX}/settings", Value=json.dumps(settings), Type="String", Overwrite=True)
        config.clear_caches()

    def set_secret(self, suffix: str, value: str) -> None:
        from segment_connector.runtime import config

        self.ssm.put_parameter(Name=f"{PREFIX}/{suffix}", Value=value, Type="SecureString", Overwrite=True)
        config.clear_caches()

    def items(self) -> list[dict[str, Any]]:
        """Every item, as the table keeps it; an event with its body unpacked (its `properties` and
        `context`, and `message_id`: as StoredEvent.from_item reads it)."""
        from segment_connector.store.table import deserialize

        pages = self.dynamodb.get_paginator("scan").paginate(TableName=TABLE)
        return [_readable(deserialize(item)) for page in pages for item in page["Items"]]

    def items_of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [item for item in self.items() if item.get("kind") == kind]


def _readable(item: dict[str, Any]) -> dict[str, Any]:
    if item.get("kind") != "event" or "body" not in item:
        return item
    from segment_connector.domain.models.items import StoredEvent

    unpacked = StoredEvent.from_item(item)
    readable = {key: value for key, value in item.items() if key != "body"}
    return {
        **readable,
        "properties": unpacked.properties,
        "context": unpacked.context,
        "message_id": unpacked.message_id,
    }


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


def basic(key: str = API_KEY) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def bearer(key: str = ADMIN_KEY) -> str:
    return f"Bearer {key}"


class Api:
    """Calls a handler with API Gateway HTTP API events, as API Gateway would (`auth`: the
    Authorization header sent unless a request names its own)."""

    def __init__(self, module: Any, auth: str | None = None):
        self.module = module
        self.auth = auth or basic()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        auth: str | None = "default",
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        all_headers = {
            "content-type": "application/json",
            **({"authorization": self.auth if auth == "default" else auth} if auth else {}),
            **(headers or {}),
        }
        event = build_event(method, path, list(all_headers.items()), data)
        response = self.module.lambda_handler(event, LambdaContext("InboundFunction", 512, 10))
        text = response.get("body") or ""
        if response.get("isBase64Encoded"):
            text = base64.b64decode(text).decode()
        answer_headers = response.get("headers") or {}
        is_json = "json" in str(answer_headers.get("Content-Type", "application/json"))
        return response["statusCode"], (json.loads(text) if is_json else text) if text else None, answer_headers

    def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        status, payload, _ = self.request("POST", path, body, **kwargs)
        return status, payload

    def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        status, payload, _ = self.request("GET", path, **kwargs)
        return status, payload

    def put(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        status, payload, _ = self.request("PUT", path, body, **kwargs)
        return status, payload


# -- the function's log -----------------------------------------------------------------------------

LOG_PACKAGE = "segment_connector"
HANDLER_FILES = {"InboundFunction": "inbound", "OutboundFunction": "outbound"}


class FunctionLog:
    """Cold starts of a function as on Lambda, and the JSON lines it writes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.monkeypatch, self.capsys = monkeypatch, capsys
        self.runtime = io.StringIO()  # what Lambda's own root handler would print
        self.records: list[dict[str, Any]] = []
        self.replaced: dict[str, Any] = {}  # service name -> the logging.Logger it had before the test

    def cold_start(self, logical_id: str) -> Any:
        """Import the function's handler in a fresh container with the template's logging settings."""
        environment = function_spec(TEMPLATE, logical_id, template_refs(TEMPLATE, TABLE)).environment
        for name in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"):
            self.monkeypatch.setenv(name, environment[name])
        # A new process has no Logger of that name yet: Powertools makes one writing to stdout (capsys).
        service = environment["POWERTOOLS_SERVICE_NAME"]
        previous = logging.Logger.manager.loggerDict.pop(service, None)
        self.replaced.setdefault(service, previous)
        return load_handler_module(HANDLER_FILES[logical_id])

    def restore(self) -> None:
        for service, previous in self.replaced.items():
            logging.Logger.manager.loggerDict.pop(service, None)
            if previous is not None:
                logging.Logger.manager.loggerDict[service] = previous

    def lines(self) -> list[dict[str, Any]]:
        """Every log line written so far (metrics lines left out), parsed."""
        for line in self.capsys.readouterr().out.splitlines():
            document = json.loads(line)
            if "level" in document:
                self.records.append(document)
        return self.records

    def find(self, text: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if text in line["message"]]


# -- the local stack (`make run`) as a subprocess ----------------------------------------------------

READY_SECONDS = 120  # bound on start-up (first run may install the venv)
WAIT_SECONDS = 30  # bound on any other wait; never a timing assertion


class Stack:
    """A local stack subprocess whose merged stdout/stderr is collected line by line."""

    def __init__(self, command: list[str], port: int, extra_env: dict[str, str] | None = None):
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self._changed = threading.Condition()
        environment = stack_environment({"PORT": str(port), **(extra_env or {})})
        self.child = ChildProcess(command, environment, self._add_line, self._ended)
        self.process = self.child.process

    def _add_line(self, line: str) -> None:
        with self._changed:
            self.lines.append(line.rstrip("\n"))
            self._changed.notify_all()

    def _ended(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(self, predicate: Any, timeout: float) -> str | None:
        def found() -> str | None:
            return next((line for line in self.lines if predicate(line)), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None or self.child.ended.is_set(), timeout)
            return found()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self) -> None:
        line = self.wait_for_line(lambda text: "ready" in text, READY_SECONDS)
        assert line is not None, f"no ready line; output:\n{self.output}"

    def kill(self) -> None:
        self.child.kill(WAIT_SECONDS)


# -- the console in a browser (tests/test_console_browser.py) ----------------------------------------

# Debian's chromium package (`.ci/run` installs it); Playwright never downloads a browser here.
# CHROMIUM names another Chromium or Chrome binary (e.g. on a fork's CI runner).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    return os.environ.get("CHROMIUM") or "/usr/bin/chromium"


def chromium_missing() -> str | None:
    """Why the browser tests cannot run (one line with the fix), or None."""
    if os.access(chromium_path(), os.X_OK):
        return None
    return (
        f"Chromium is missing at {chromium_path()} (the console's browser tests need it): "
        "apt-get install -y chromium, or set CHROMIUM to a Chromium binary"
    )

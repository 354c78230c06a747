"""Shared fixtures (every fixture of the suite lives here; helpers are in harness.py,
stream_helpers.py and resync_helpers.py): a moto account built from template.yaml, handlers loaded
from their files, the Segment sink, the connector wired end to end, ResyncFunction with its queue
and the function's log."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator
from typing import Any

import boto3
import pytest
from _pytest.reports import BaseReport
from moto import mock_aws

from harness import (
    ADMIN_KEY,
    API_KEY,
    CHROMIUM_ARGS,
    INBOUND_ENVIRONMENT,
    LOG_PACKAGE,
    OUTBOUND_FUNCTION,
    PREFIX,
    SETTINGS_DEFAULT,
    TABLE,
    TEMPLATE,
    Api,
    Aws,
    FakeTime,
    FunctionLog,
    SerializedClient,
    basic,
    bearer,
    chromium_missing,
    chromium_path,
    iam_authority,
    load_handler_module,
)
from local_stack.iam.enforce import enforce, stop_enforcing
from local_stack.segment_sink import SegmentSink
from local_stack.template import table_definition, ttl_attribute
from resync_helpers import Resync
from stream_helpers import WRITE_KEY, Connector

pytest_plugins = ("pytester",)  # tests/test_ci.py runs pytest on small test files

# Older test modules import these from conftest; new code imports them from harness.
__all__ = [
    "API_KEY",
    "PREFIX",
    "SETTINGS_DEFAULT",
    "TABLE",
    "TEMPLATE",
    "Api",
    "Aws",
    "FakeTime",
    "SerializedClient",
    "basic",
    "load_handler_module",
]


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
    from segment_connector.runtime import config
    from segment_connector.store import profile_store as storage

    config.clear_caches()
    storage.forget_shared_store()  # its boto3 client belongs to the previous test's mock
    with mock_aws():
        enforce(iam_authority())  # each handler's calls checked against its role in template.yaml
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
    stop_enforcing()  # the next test's deployment, if any, brings its own roles
    config.clear_caches()


STANDARD_PARAMETER_BYTES = 4096  # SSM's limits, per tier (the ssm_tiers fixture)
ADVANCED_PARAMETER_BYTES = 8192


@pytest.fixture
def ssm_tiers(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """Given SSM's parameter tiers as AWS applies them, which moto does not (it stores any value in
    any tier): a standard parameter holds 4 KB, an advanced one 8 KB (counted in UTF-8 bytes, the
    stricter reading); an advanced parameter is never made standard again; Intelligent-Tiering
    takes the standard tier unless the value needs the advanced one (or the parameter is advanced
    already); without a Tier a parameter keeps its tier, a new one is standard (the default)."""
    from moto.ssm.exceptions import ValidationException
    from moto.ssm.models import SimpleSystemManagerBackend

    put_parameter = SimpleSystemManagerBackend.put_parameter

    def tiered(self: Any, name: str, description: Any, value: str, *args: Any, tier: Any = None, **kwargs: Any) -> Any:
        size = len((value or "").encode("utf-8"))
        current = self.get_parameter(name) if name in self._parameters else None
        was_advanced = current is not None and current.tier == "Advanced"
        if tier == "Intelligent-Tiering":
            tier = "Advanced" if was_advanced or size > STANDARD_PARAMETER_BYTES else "Standard"
        tier = tier or (current.tier if current is not None else "Standard")
        if tier == "Standard" and was_advanced:
            raise ValidationException(
                "This parameter uses the advanced-parameter tier. You can't downgrade a parameter from "
                "the advanced-parameter tier to the standard-parameter tier."
            )
        if tier == "Standard" and size > STANDARD_PARAMETER_BYTES:
            raise ValidationException(
                "Standard tier parameters support a maximum parameter value of 4096 characters. To create a "
                "larger parameter value, upgrade the parameter to use the advanced-parameter tier."
            )
        if size > ADVANCED_PARAMETER_BYTES:
            raise ValidationException(
                "1 validation error detected: Value at 'value' failed to satisfy constraint: "
                "Member must have length less than or equal to 8192"
            )
        kwargs["tier"] = tier
        return put_parameter(self, name, description, value, *args, **kwargs)

    monkeypatch.setattr(SimpleSystemManagerBackend, "put_parameter", tiered)
    return aws


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def sink():
    """Given a Segment stand-in on 127.0.0.1."""
    with SegmentSink() as running:
        yield running


@pytest.fixture
def api(aws: Aws) -> Api:
    module = load_handler_module("inbound")
    return Api(module)


@pytest.fixture
def segment_profiles(api: Api, aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Api:
    """Given the Segment-compatible Profile API of InboundFunction: its space id and its token
    (tests/segment_profile_helpers.py), a client sending that token."""
    from segment_profile_helpers import SPACE, TOKEN

    monkeypatch.setenv("SPACE_ID", SPACE)
    aws.set_secret("profile-token", TOKEN)
    return Api(api.module, auth=basic(TOKEN))


@pytest.fixture
def profile_api_requests(segment_profiles: Api) -> list[str]:
    """The DynamoDB requests InboundFunction makes (operation names), counted at its client."""
    calls: list[str] = []
    client = segment_profiles.module.store().client
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    return calls


@pytest.fixture
def message() -> Callable[..., dict[str, Any]]:
    counter = iter(range(1, 1_000_000))

    def build(type_: str, **fields: Any) -> dict[str, Any]:
        body = {"type": type_, "messageId": f"m-{next(counter)}", "timestamp": "2026-01-01T00:00:00.000Z"}
        body.update(fields)
        return body

    return build


@pytest.fixture
def connector(aws: Aws, api: Api, sink: SegmentSink, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch) -> Connector:
    """Given the deployed pieces with a write key and SEGMENT_API_URL pointing at the sink."""
    aws.set_secret("write-key", WRITE_KEY)
    monkeypatch.setenv("SEGMENT_API_URL", sink.url)
    return Connector(aws, api, sink, fake_time, load_handler_module("outbound"))


@pytest.fixture
def resyncs(aws: Aws, sink: SegmentSink, monkeypatch: pytest.MonkeyPatch) -> Resync:
    """Given ResyncFunction loaded from its file, its async self-invocations held in a queue the test runs."""
    return Resync(aws, sink, monkeypatch)


@pytest.fixture
def function_log(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Given Lambda's runtime handler on the root logger (WARNING, the runtime's default level)."""
    log = FunctionLog(monkeypatch, capsys)
    package = logging.getLogger(LOG_PACKAGE)
    saved = package.handlers, package.level, package.propagate
    root = logging.getLogger()
    root_level = root.level
    runtime = logging.StreamHandler(log.runtime)
    root.addHandler(runtime)
    root.setLevel(logging.WARNING)
    yield log
    log.restore()
    root.removeHandler(runtime)
    root.setLevel(root_level)
    package.handlers, package.propagate = saved[0], saved[2]
    package.setLevel(saved[1])


# -- the console's API (tests/test_console_api.py) -----------------------------------------------


@pytest.fixture
def console_api(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Api:
    """Given ConsoleFunction with an admin key (its environment as template.yaml sets it)."""
    aws.set_secret("admin-key", ADMIN_KEY)
    for name, value in TEMPLATE["Resources"]["ConsoleFunction"]["Properties"]["Environment"]["Variables"].items():
        monkeypatch.setenv(name, OUTBOUND_FUNCTION if name == "OUTBOUND_FUNCTION_NAME" else str(value))
    return Api(load_handler_module("console"), auth=bearer())


# -- the console in a browser (tests/test_console_browser.py) ----------------------------------------


@pytest.fixture(scope="session")
def browser():
    """Given headless Chromium driven by Playwright (one browser; each test opens its own context)."""
    missing = chromium_missing()
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


# -- CI: a skipped test fails the run (tests/test_ci.py) ---------------------------------------------
#
# With CI=true (GitHub Actions sets it; `.ci/run` exports it) a skip is reported as a failure that
# names the skip's reason: a skip marker, pytest.skip in a fixture or a test, importorskip (in a
# module: an error collecting it). A green CI run is every test run, not some of them. xfail stays
# xfail. Elsewhere skips stay skips.

SKIP_UNDER_CI = "skipped under CI=true, which fails the run"


def _under_ci() -> bool:
    return os.environ.get("CI") == "true"


def _fail_the_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = f"{SKIP_UNDER_CI}: {reason.removeprefix('Skipped: ')}"
    report.skipped_under_ci = True  # type: ignore[union-attr]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and _under_ci():
        _fail_the_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    report = yield
    if report.skipped and _under_ci():
        _fail_the_skip(report)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: BaseReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """A test skipped in its setup (a marker, a fixture) counts as failed, not as an error."""
    if isinstance(report, pytest.TestReport) and getattr(report, "skipped_under_ci", False):
        return "failed", "F", "FAILED"
    return None

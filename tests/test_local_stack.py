"""The local stack: its pure pieces (unit) and `make run` end to end (e2e, subprocess)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from harness import WAIT_SECONDS, Stack, free_port, process_state
from local_stack import event_filter
from local_stack.api import build_event, http_response
from local_stack.config import STATE_PATH, ConfigError, load_config, settings_document, settings_problems
from local_stack.lambda_runtime import LambdaContext, LocalFunction, function_environment, load_function
from local_stack.stream import MappingSettings, StreamWorker, failed_from, lambda_record
from local_stack.template import ROOT, load_template, parameter_default, table_definition

TEMPLATE = load_template()
PATTERNS = MappingSettings.from_template(TEMPLATE, "OutboundFunction").patterns


def stream_record(event_name: str, new: dict[str, Any] | None, seq: str = "100") -> dict[str, Any]:
    dynamodb: dict[str, Any] = {"Keys": {"pk": {"S": "k"}, "sk": {"S": "s"}}, "SequenceNumber": seq}
    if new is not None:
        dynamodb["NewImage"] = new
    return {"eventName": event_name, "eventSource": "aws:dynamodb", "dynamodb": dynamodb}


# -- FilterCriteria ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_name", "kind", "passes"),
    [
        ("INSERT", "user", True),
        ("MODIFY", "user", True),
        ("MODIFY", "account", True),
        ("INSERT", "event", True),
        ("MODIFY", "event", False),
        ("INSERT", "alias", False),
        ("INSERT", "dedup", False),
        ("INSERT", "deadletter", False),
        ("MODIFY", "retry", False),
    ],
)
def test_template_filters_pass_only_users_accounts_and_new_events(event_name: str, kind: str, passes: bool) -> None:
    record = stream_record(event_name, {"pk": {"S": "k"}, "kind": {"S": kind}})
    assert event_filter.passes(PATTERNS, record) is passes


def test_template_filters_drop_removes_without_new_image() -> None:
    assert not event_filter.passes(PATTERNS, stream_record("REMOVE", None))


def test_filter_language_subset() -> None:
    event = {"a": {"b": "hello", "n": 5, "flag": True, "tags": ["x", "y"], "none": None}}
    match = event_filter.matches
    assert match({"a": {"b": ["hello", "bye"]}}, event)
    assert not match({"a": {"b": ["bye"]}}, event)
    assert match({"a": {"tags": ["y"]}}, event)  # an array matches if any element does
    assert match({"a": {"n": [5]}}, event) and match({"a": {"n": [5.0]}}, event)
    assert not match({"a": {"n": ["5"]}}, event)  # types must agree
    assert match({"a": {"flag": [True]}}, event) and not match({"a": {"flag": [1]}}, event)
    assert match({"a": {"none": [None]}}, event)
    assert match({"a": {"b": [{"prefix": "he"}]}}, event)
    assert match({"a": {"b": [{"suffix": "llo"}]}}, event)
    assert match({"a": {"b": [{"prefix": {"equals-ignore-case": "HE"}}]}}, event)
    assert match({"a": {"b": [{"equals-ignore-case": "HELLO"}]}}, event)
    assert match({"a": {"b": [{"wildcard": "h*o"}]}}, event)
    assert match({"a": {"b": [{"anything-but": ["bye"]}]}}, event)
    assert not match({"a": {"b": [{"anything-but": "hello"}]}}, event)
    assert not match({"a": {"b": [{"anything-but": {"prefix": "h"}}]}}, event)
    assert match({"a": {"n": [{"numeric": [">", 1, "<=", 5]}]}}, event)
    assert not match({"a": {"n": [{"numeric": ["<", 5]}]}}, event)
    assert match({"a": {"b": [{"exists": True}], "missing": [{"exists": False}]}}, event)
    assert not match({"a": {"missing": [{"exists": True}]}}, event)
    assert not match({"a": {"missing": ["x"]}}, event)
    assert not match({"a": {"b": {"nested": ["x"]}}}, event)  # an object pattern needs an object
    assert match({"$or": [{"a": {"b": ["no"]}}, {"a": {"n": [5]}}]}, event)
    assert event_filter.passes([], event)  # no FilterCriteria: everything passes
    with pytest.raises(ValueError):
        match({"a": "not-a-list"}, event)


# -- API Gateway event and response ----------------------------------------------------------------


def test_build_event_is_an_http_api_v2_event() -> None:
    headers = [
        ("Host", "127.0.0.1:3000"),
        ("Content-Type", "application/json"),
        ("User-Agent", "curl/8"),
        ("X-Dup", "a"),
        ("x-dup", "b"),
        ("Cookie", "c1=1; c2=2"),
        ("Authorization", "Basic eDo="),
    ]
    event = build_event(
        "post",
        "/v1/users/email:a%40example.com?limit=5&x=1&x=2&e=%20",
        headers,
        b'{"a": 1}',
        source_ip="127.0.0.9",
        now=1_700_000_000.123,
        request_id="rid",
    )
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/v1/users/email:a@example.com"  # HTTP APIs deliver the path decoded
    assert event["rawQueryString"] == "limit=5&x=1&x=2&e=%20"
    assert event["queryStringParameters"] == {"limit": "5", "x": "1,2", "e": " "}
    assert event["headers"]["x-dup"] == "a,b"
    assert event["headers"]["content-type"] == "application/json"
    assert event["headers"]["authorization"] == "Basic eDo="
    assert all(name == name.lower() for name in event["headers"])
    assert "cookie" not in event["headers"] and event["cookies"] == ["c1=1", "c2=2"]
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/v1/users/email:a@example.com",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.9",
        "userAgent": "curl/8",
    }
    assert context["requestId"] == "rid" and context["stage"] == "$default"
    assert context["timeEpoch"] == 1_700_000_000_123
    assert context["time"] == "14/Nov/2023:22:13:20 +0000"
    assert context["domainName"] == "127.0.0.1" and context["accountId"] and context["apiId"]


def test_build_event_base64_encodes_binary_bodies_and_omits_empty_ones() -> None:
    gzipped = build_event(
        "POST", "/segment", [("Content-Type", "application/json"), ("Content-Encoding", "gzip")], b"\x1f\x8b\x00"
    )
    assert gzipped["isBase64Encoded"] is True and base64.b64decode(gzipped["body"]) == b"\x1f\x8b\x00"
    octets = build_event("POST", "/x", [("Content-Type", "application/octet-stream")], b"abc")
    assert octets["isBase64Encoded"] is True and base64.b64decode(octets["body"]) == b"abc"
    plain = build_event("POST", "/x", [("Content-Type", "text/plain; charset=utf-8")], "é".encode())
    assert plain["body"] == "é" and plain["isBase64Encoded"] is False
    empty = build_event("GET", "/health", [], b"")
    assert "body" not in empty and empty["isBase64Encoded"] is False
    assert "queryStringParameters" not in empty and "cookies" not in empty and empty["rawQueryString"] == ""


def test_http_response_follows_api_gateway_rules() -> None:
    status, headers, body = http_response(
        {"statusCode": 201, "headers": {"X-A": "1"}, "cookies": ["s=1", "t=2"], "body": "{}"}
    )
    assert (status, body) == (201, b"{}")
    assert ("X-A", "1") in headers and ("Set-Cookie", "s=1") in headers and ("Set-Cookie", "t=2") in headers
    assert ("Content-Type", "application/json") in headers
    assert (
        http_response({"statusCode": 200, "body": base64.b64encode(b"\x00").decode(), "isBase64Encoded": True})[2]
        == b"\x00"
    )
    assert http_response({"ok": True}) == (200, [("Content-Type", "application/json")], b'{"ok": true}')
    with pytest.raises(ValueError):
        http_response({"statusCode": "nope"})


# -- stream worker pieces ----------------------------------------------------------------------------


def test_mapping_settings_come_from_the_template() -> None:
    props = TEMPLATE["Resources"]["OutboundFunction"]["Properties"]["Events"]["TableStream"]["Properties"]
    settings = MappingSettings.from_template(TEMPLATE, "OutboundFunction")
    assert settings.batch_size == props["BatchSize"]
    assert settings.maximum_retry_attempts == props["MaximumRetryAttempts"]
    assert settings.report_batch_item_failures
    assert len(settings.patterns) == len(props["FilterCriteria"]["Filters"])


def test_lambda_record_has_lambda_shape() -> None:
    raw = {
        "eventID": "e",
        "eventName": "INSERT",
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 1, 1, tzinfo=UTC),
            "Keys": {"pk": {"S": "k"}},
            "NewImage": {"b": {"B": b"\x01"}, "bs": {"BS": [b"\x02"]}},
            "SequenceNumber": "7",
            "SizeBytes": 1,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    record = lambda_record(raw, "arn:stream")
    assert record["eventSourceARN"] == "arn:stream" and record["eventSource"] == "aws:dynamodb"
    assert record["awsRegion"] == "us-east-1"
    assert record["dynamodb"]["ApproximateCreationDateTime"] == 1767225600
    assert record["dynamodb"]["NewImage"] == {"b": {"B": "AQ=="}, "bs": {"BS": ["Ag=="]}}
    json.dumps(record)  # JSON-serialisable like the real event


def test_failed_from_follows_report_batch_item_failures() -> None:
    records = [stream_record("INSERT", {}, seq) for seq in ("1", "2", "3")]
    assert failed_from(records, None) is None
    assert failed_from(records, {}) is None
    assert failed_from(records, {"batchItemFailures": []}) is None
    assert failed_from(records, {"batchItemFailures": [{"itemIdentifier": "3"}, {"itemIdentifier": "2"}]}) == 1
    assert failed_from(records, {"batchItemFailures": [{"itemIdentifier": "9"}]}) == 0  # unknown: whole batch
    assert failed_from(records, {"batchItemFailures": [{"itemIdentifier": ""}]}) == 0
    assert failed_from(records, {"batchItemFailures": "x"}) == 0
    assert failed_from(records, "not an object") == 0


@pytest.fixture
def streamed_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, str]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        table = dynamodb.create_table(**table_definition(TEMPLATE, "stream-test"))["TableDescription"]
        # botocore would pick an account-based streams endpoint that moto's mock does not route.
        streams = boto3.client("dynamodbstreams", endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com")
        yield dynamodb, streams, table["LatestStreamArn"]


class Recorder:
    """An outbound handler stand-in: records batches, answers from a script, signals each call."""

    def __init__(self, answers: list[Any]):
        self.answers = answers
        self.batches: list[list[str]] = []
        self.called = threading.Condition()

    def __call__(self, event: dict[str, Any]) -> Any:
        with self.called:
            self.batches.append([r["dynamodb"]["NewImage"]["pk"]["S"] for r in event["Records"]])
            self.called.notify_all()
            answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        return answer(event) if callable(answer) else answer

    def wait_for_calls(self, count: int) -> None:
        with self.called:
            assert self.called.wait_for(lambda: len(self.batches) >= count, WAIT_SECONDS), self.batches


def put(dynamodb: Any, pk: str, kind: str) -> None:
    dynamodb.put_item(TableName="stream-test", Item={"pk": {"S": pk}, "sk": {"S": "s"}, "kind": {"S": kind}})


def fail_item(pk: str) -> Any:
    def answer(event: dict[str, Any]) -> dict[str, Any]:
        failed = [
            r["dynamodb"]["SequenceNumber"] for r in event["Records"] if r["dynamodb"]["NewImage"]["pk"]["S"] == pk
        ]
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in failed]}

    return answer


@contextmanager
def running_worker(
    streams: Any, arn: str, recorder: Recorder, batch_size: int, retries: int, lines: list[str]
) -> Iterator[StreamWorker]:
    settings = MappingSettings(
        batch_size=batch_size, maximum_retry_attempts=retries, patterns=PATTERNS, report_batch_item_failures=True
    )
    worker = StreamWorker(
        streams, arn, settings, recorder, log=lines.append, poll_seconds=0.01, backoff_seconds=(0.0, 0.0)
    )
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=WAIT_SECONDS)
    assert not worker.is_alive()


def test_worker_filters_batches_and_retries_from_the_lowest_failure(streamed_table: tuple[Any, Any, str]) -> None:
    dynamodb, streams, arn = streamed_table
    for pk, kind in [("u1", "user"), ("alias", "alias"), ("e1", "event"), ("e2", "event"), ("u2", "user")]:
        put(dynamodb, pk, kind)
    recorder = Recorder([fail_item("e2"), None, None])
    lines: list[str] = []
    with running_worker(streams, arn, recorder, batch_size=3, retries=2, lines=lines) as worker:
        recorder.wait_for_calls(3)
    # aliases are filtered out; batches of at most 3; the retry starts at the failed record.
    assert recorder.batches == [["u1", "e1", "e2"], ["e2"], ["u2"]]
    assert worker.delivered == 4 and worker.given_up == 0
    assert any("retry 1 of 2" in line for line in lines)


def test_worker_gives_up_after_maximum_retry_attempts(streamed_table: tuple[Any, Any, str]) -> None:
    dynamodb, streams, arn = streamed_table
    put(dynamodb, "e1", "event")
    put(dynamodb, "e2", "event")
    # a function error fails the whole batch; so does a failure reported for its first record.
    recorder = Recorder([RuntimeError("boom"), fail_item("e1"), fail_item("e1"), None])
    lines: list[str] = []
    with running_worker(streams, arn, recorder, batch_size=10, retries=2, lines=lines) as worker:
        recorder.wait_for_calls(3)
        put(dynamodb, "e3", "event")  # after giving up, the worker moves on to new records
        recorder.wait_for_calls(4)
    assert recorder.batches == [["e1", "e2"], ["e1", "e2"], ["e1", "e2"], ["e3"]]
    assert worker.given_up == 2 and worker.delivered == 1
    assert any("gave up a batch of 2 record(s) after 2 retries" in line for line in lines)


def test_a_timed_out_batch_is_retried_as_a_function_error(streamed_table: tuple[Any, Any, str]) -> None:
    # Given an outbound function with a 1 s Timeout whose first invocation runs past it
    dynamodb, streams, arn = streamed_table
    put(dynamodb, "e1", "event")
    calls: list[list[str]] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        calls.append([r["dynamodb"]["NewImage"]["pk"]["S"] for r in event["Records"]])
        if len(calls) == 1:
            time.sleep(1.5)

    timeouts: list[str] = []
    function = LocalFunction("outbound", handler, 1.0, 128, {}, log=timeouts.append)
    recorder = Recorder([function.invoke, function.invoke])
    lines: list[str] = []
    # When the stream worker hands it the batch
    with running_worker(streams, arn, recorder, batch_size=10, retries=2, lines=lines) as worker:
        recorder.wait_for_calls(2)
    # Then the timeout fails the batch, which is retried and delivered
    assert calls == [["e1"], ["e1"]] and worker.delivered == 1 and worker.given_up == 0
    assert any("function error: Sandbox.Timedout" in line and "retry 1 of 2" in line for line in lines), lines
    assert timeouts and timeouts[0].endswith("Task timed out after 1.00 seconds")


def test_a_failing_batch_is_bisected_then_its_metadata_goes_to_the_on_failure_destination(
    streamed_table: tuple[Any, Any, str],
) -> None:
    # Given the template's mapping (bisect on function error, OnFailure queue) with no retries, and a failing function
    dynamodb, streams, arn = streamed_table
    put(dynamodb, "e1", "event")
    put(dynamodb, "e2", "event")
    template = MappingSettings.from_template(TEMPLATE, "OutboundFunction")
    assert template.bisect_on_function_error and template.on_failure == "OutboundFailureQueue"
    assert template.maximum_record_age_seconds == 3600
    settings = MappingSettings(
        batch_size=10, maximum_retry_attempts=0, patterns=PATTERNS, bisect_on_function_error=True
    )
    recorder = Recorder([RuntimeError("boom")] * 3)
    sent: list[dict[str, Any]] = []
    worker = StreamWorker(
        streams, arn, settings, recorder, log=lambda line: None, poll_seconds=0.01, on_failure=sent.append
    )
    # When the worker processes the batch
    worker.start()
    try:
        recorder.wait_for_calls(3)
        deadline = time.monotonic() + WAIT_SECONDS
        while len(sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop(timeout=WAIT_SECONDS)
    # Then it is split in two, each half fails, and each half's metadata (not its records) is sent on
    assert recorder.batches == [["e1", "e2"], ["e1"], ["e2"]]
    assert worker.given_up == 2 and len(sent) == 2
    info = sent[0]["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1 and info["streamArn"] == arn and info["startSequenceNumber"]
    assert sent[0]["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert sent[0]["responseContext"]["functionError"] == "Unhandled" and "Records" not in sent[0]


def test_records_older_than_the_maximum_age_are_not_sent_again(streamed_table: tuple[Any, Any, str]) -> None:
    # Given a mapping with a 60 s MaximumRecordAgeInSeconds and a clock an hour ahead of the records
    dynamodb, streams, arn = streamed_table
    put(dynamodb, "e1", "event")
    settings = MappingSettings(
        batch_size=10, maximum_retry_attempts=-1, patterns=PATTERNS, maximum_record_age_seconds=60
    )
    recorder = Recorder([])
    sent: list[dict[str, Any]] = []
    worker = StreamWorker(
        streams,
        arn,
        settings,
        recorder,
        log=lambda line: None,
        poll_seconds=0.01,
        on_failure=sent.append,
        clock=lambda: time.time() + 3600,
    )
    # When the worker reads them
    worker.start()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not sent and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop(timeout=WAIT_SECONDS)
    # Then the function is never invoked and their metadata goes to the on-failure destination
    assert recorder.batches == [] and worker.given_up == 1
    assert sent[0]["requestContext"]["condition"] == "RecordAgeExceeded"


def test_forgetting_old_shard_iterators_keeps_the_current_one(streamed_table: tuple[Any, Any, str]) -> None:
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    from local_stack.aws import forget_stream_iterators

    dynamodb, streams, arn = streamed_table
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    for _ in range(3):
        iterator = streams.get_records(ShardIterator=iterator)["NextShardIterator"]
    forget_stream_iterators([iterator])
    assert list(dynamodbstreams_backends["123456789012"]["us-east-1"].shard_iterators) == [iterator]
    put(dynamodb, "e1", "event")
    assert len(streams.get_records(ShardIterator=iterator)["Records"]) == 1


# -- configuration and the Lambda runtime ------------------------------------------------------------


def test_config_defaults_and_settings_source(tmp_path: Path) -> None:
    config = load_config(TEMPLATE, {})
    assert (config.port, config.api_key, config.write_key, config.shared_secret) == (
        3000,
        "local-api-key",
        "local-write-key",
        None,
    )
    assert config.segment_api_url is None
    assert config.prefix == parameter_default(TEMPLATE, "ParameterPrefix")
    assert json.loads(config.settings) == {
        **json.loads(TEMPLATE["Resources"]["SettingsParameter"]["Properties"]["Value"]),
        "synchronized_segments": ["ALL"],
    }
    custom = tmp_path / "settings.json"
    custom.write_text('{"handle_pages": false}')
    assert settings_document(TEMPLATE, str(custom))[0] == '{"handle_pages": false}'
    custom.write_text("{nope")
    with pytest.raises(ConfigError):
        load_config(TEMPLATE, {"CONNECTOR_SETTINGS": str(custom)})
    with pytest.raises(ConfigError):
        load_config(TEMPLATE, {"PORT": "http"})


@pytest.fixture
def restore_process_state() -> Iterator[None]:
    with process_state():
        yield


def test_function_environment_and_loader(tmp_path: Path, restore_process_state: None) -> None:
    env = function_environment(TEMPLATE, "OutboundFunction", "tbl", "http://127.0.0.1:1", "http://127.0.0.1:2")
    assert env["TABLE_NAME"] == "tbl" and env["PARAMETER_PREFIX"] == parameter_default(TEMPLATE, "ParameterPrefix")
    assert env["POWERTOOLS_LOG_LEVEL"] == parameter_default(TEMPLATE, "LogLevel")
    assert env["POWERTOOLS_SERVICE_NAME"] == "outbound" and env["DEAD_LETTER_AFTER_ATTEMPTS"]
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1" and env["SEGMENT_API_URL"] == "http://127.0.0.1:2"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1" and env["AWS_ACCESS_KEY_ID"]

    handlers = {}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "app.py"  # both called app.py, like the real ones
        path.write_text(
            "import os\nSEEN = os.environ.get('POWERTOOLS_SERVICE_NAME')\n"
            f"def lambda_handler(event, context):\n    return ({name!r}, SEEN, context)\n"
        )
        handlers[name] = path
    first = load_function(TEMPLATE, "InboundFunction", {"POWERTOOLS_SERVICE_NAME": "inbound"}, handlers["one"])
    second = load_function(TEMPLATE, "OutboundFunction", {"POWERTOOLS_SERVICE_NAME": "outbound"}, handlers["two"])
    assert first.invoke({})[:2] == ("one", "inbound")  # env was set before the import
    name, _, context = second.invoke({})
    assert name == "two"
    assert second.timeout_s == TEMPLATE["Resources"]["OutboundFunction"]["Properties"]["Timeout"]
    assert context.function_name and context.memory_limit_in_mb == second.memory_mb
    assert context.invoked_function_arn.startswith("arn:aws:lambda:us-east-1:")
    assert 0 < context.get_remaining_time_in_millis() <= second.timeout_s * 1000
    assert first.invoke({})[2].aws_request_id != first.invoke({})[2].aws_request_id
    assert str(ROOT / "layers" / "common") in sys.path


def test_lambda_context_counts_down_to_zero() -> None:
    assert LambdaContext("f", 128, 0).get_remaining_time_in_millis() == 0


def test_replay_without_a_running_stack_says_so(tmp_path: Path) -> None:
    # Given no local stack (its state file absent) / When `make replay` runs its command
    env = {
        **os.environ,
        "SEGMENT_CONNECTOR_STATE": str(tmp_path / "state.json"),
        "PYTHONPATH": os.pathsep.join(str(ROOT / folder) for folder in ("cli", "layers/common")),
    }
    result = subprocess.run(
        [sys.executable, "-m", "segment_connector_cli", "replay", "--local"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    # Then it says how to start one, in one line, and fails
    assert result.returncode == 1
    assert (
        result.stderr.startswith("segment-connector: error: no local stack is running") and "make run" in result.stderr
    )


# -- end to end: `make run` ---------------------------------------------------------------------------

HANDLERS_PRESENT = all((ROOT / "functions" / name / "app.py").exists() for name in ("inbound", "outbound"))
needs_handlers = pytest.mark.skipif(not HANDLERS_PRESENT, reason="functions/*/app.py not written yet")


# Every user is synchronized, so the outbound side has something to send to the sink.
E2E_SETTINGS = {"synchronized_segments": ["ALL"], "synchronized_properties": ["email"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not HANDLERS_PRESENT:
        pytest.skip("functions/*/app.py not written yet")
    settings = tmp_path_factory.mktemp("settings") / "settings.json"
    settings.write_text(json.dumps(E2E_SETTINGS))
    running = Stack(["make", "run"], free_port(), {"CONNECTOR_SETTINGS": str(settings)})
    try:
        running.wait_ready()
        yield running
    finally:
        running.kill()


@pytest.mark.e2e
@needs_handlers
def test_startup_prints_settings_and_one_ready_line(stack: Stack) -> None:
    output = stack.output
    assert stack.url in output and "local-api-key" in output
    assert "shared secret:  not set" in output and "(CONNECTOR_SETTINGS)" in output
    assert f"curl -s -u local-api-key: {stack.url}/v1/users/user_id:u1" in output
    assert f"console:        {stack.url}/console (sign in with the admin key: local-admin-key (default))" in output
    assert sum("ready" in line for line in stack.lines) == 1
    state = json.loads(STATE_PATH.read_text())
    assert state["aws_endpoint_url"].startswith("http://127.0.0.1:")
    assert state["segment_api_url"].startswith("http://127.0.0.1:") and state["segment_api_url"] in output


@pytest.mark.e2e
@needs_handlers
def test_round_trip_through_the_local_stack(stack: Stack) -> None:
    from segment.analytics.client import Client

    assert requests.get(f"{stack.url}/health", timeout=WAIT_SECONDS).json() == {"status": "ok"}

    user = f"u-{uuid.uuid4().hex[:8]}"
    client = Client(write_key="local-api-key", host=stack.url, sync_mode=True)  # raises on a non-2xx answer
    client.identify(user, {"email": f"{user}@example.com", "plan": "pro"})
    client.track(user, "Signed Up", {"source": "e2e"})

    webhook = {
        "type": "track",
        "userId": user,
        "event": "Webhook Event",
        "messageId": f"m-{uuid.uuid4()}",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    answer = requests.post(f"{stack.url}/segment", json=webhook, auth=("local-api-key", ""), timeout=WAIT_SECONDS)
    assert answer.status_code == 200, answer.text

    profile = requests.get(f"{stack.url}/v1/users/user_id:{user}", auth=("local-api-key", ""), timeout=WAIT_SECONDS)
    assert profile.status_code == 200, profile.text
    assert f"{user}@example.com" in profile.text
    events = requests.get(
        f"{stack.url}/v1/users/user_id:{user}/events", auth=("local-api-key", ""), timeout=WAIT_SECONDS
    )
    assert events.status_code == 200, events.text
    assert "Signed Up" in events.text and "Webhook Event" in events.text

    unauthorized = requests.get(f"{stack.url}/v1/users/user_id:{user}", timeout=WAIT_SECONDS)
    assert unauthorized.status_code == 401

    # The stream worker hands the changes to the outbound handler, which sends them to the local
    # Segment sink, which prints them.
    identify = stack.wait_for_line(
        lambda line: line.startswith(f"segment <- identify userId={user} ") and f"{user}@example.com" in line,
        WAIT_SECONDS,
    )
    assert identify is not None, stack.output
    track = stack.wait_for_line(
        lambda line: line.startswith(f"segment <- track userId={user} ") and "Signed Up" in line, WAIT_SECONDS
    )
    assert track is not None, stack.output


@pytest.mark.e2e
@needs_handlers
def test_outbound_goes_on_after_a_redelivered_identify(stack: Stack) -> None:
    # Given Segment redelivering an identify (a deduplicated, rolled-back write in the emulator)
    user = f"dup-{uuid.uuid4().hex[:8]}"
    redelivered = {"type": "identify", "userId": user, "traits": {"n": 1}, "messageId": f"m-{user}"}
    for _ in range(2):
        answer = requests.post(
            f"{stack.url}/segment", json=redelivered, auth=("local-api-key", ""), timeout=WAIT_SECONDS
        )
        assert answer.status_code == 200, answer.text
    # When another user arrives afterwards
    later = {"type": "identify", "userId": f"{user}-later", "traits": {"n": 2}}
    assert (
        requests.post(f"{stack.url}/segment", json=later, auth=("local-api-key", ""), timeout=WAIT_SECONDS).status_code
        == 200
    )
    # Then the stream worker still hands it to the outbound side, which sends it to the sink
    assert stack.wait_for_line(
        lambda line: line.startswith(f"segment <- identify userId={user}-later "), WAIT_SECONDS
    ), stack.output


@pytest.mark.e2e
@needs_handlers
def test_sigterm_stops_make_run_cleanly(stack: Stack) -> None:
    # make itself dies of a SIGTERM sent to its process group (GNU make re-raises it), so this
    # signals the stack's process: make then reports the stack's own exit status.
    state = json.loads(STATE_PATH.read_text())
    os.kill(state["pid"], signal.SIGTERM)
    assert stack.process.wait(WAIT_SECONDS) == 0, stack.output
    assert not STATE_PATH.exists()
    assert "stopping" in stack.output


@pytest.mark.e2e
@needs_handlers
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_the_process_group_exits_zero(sig: signal.Signals) -> None:
    running = Stack(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "local_stack"],
        free_port(),
        {"SHARED_SECRET": "local-shared-secret"},
    )
    try:
        running.wait_ready()
        assert "shared secret:  set" in running.output and "local-shared-secret" not in running.output
        assert "SettingsParameter" in running.output
        assert requests.get(f"{running.url}/health", timeout=WAIT_SECONDS).status_code == 200
        # With the default local settings every user reaches the sink.
        identify = {"type": "identify", "userId": "u-default", "traits": {"plan": "pro"}, "messageId": "m-default"}
        answer = requests.post(
            f"{running.url}/segment", json=identify, auth=("local-api-key", ""), timeout=WAIT_SECONDS
        )
        assert answer.status_code == 200, answer.text
        assert running.wait_for_line(
            lambda line: line.startswith("segment <- identify userId=u-default"), WAIT_SECONDS
        ), running.output
        os.killpg(running.process.pid, sig)
        assert running.process.wait(WAIT_SECONDS) == 0, running.output
        assert not STATE_PATH.exists()
    finally:
        running.kill()


def test_settings_problems_name_the_bad_fields() -> None:
    assert settings_problems('{"handle_pages": true}') == []
    problems = settings_problems('{"bogus": 1, "segments": [{"name": "A", "rule": {"trait": "x", "op": "zz"}}]}')
    assert any(p.startswith("bogus:") for p in problems)
    assert any(p.startswith("segments.0.rule") for p in problems)


def banner_of(config: Any, capsys: pytest.CaptureFixture[str]) -> str:
    from local_stack.__main__ import _banner

    capsys.readouterr()
    _banner(config, "http://127.0.0.1:3000", "http://127.0.0.1:5000", "t", "http://127.0.0.1:4000", "http://l")
    return capsys.readouterr().out


def test_the_banner_says_when_events_from_segment_are_not_sent_back(capsys: pytest.CaptureFixture[str]) -> None:
    # Given the local default settings (everyone sent; forward_events off, send_events ["ALL"])
    banner = banner_of(load_config(TEMPLATE, {}), capsys)
    # Then the banner says that events from Segment are not sent back, under the settings line
    lines = banner.splitlines()
    settings_at = next(i for i, line in enumerate(lines) if line.startswith("  settings:"))
    assert lines[settings_at + 1].startswith("    note: forward_events_off: forward_events is off: ")
    assert "not sent back to Segment" in lines[settings_at + 1]
    assert "sends nobody" not in banner


def test_the_banner_says_when_the_user_filter_sends_nobody(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given settings whose User Filter is empty, with forward_events on
    custom = tmp_path / "settings.json"
    custom.write_text('{"synchronized_segments": [], "forward_events": true}')
    banner = banner_of(load_config(TEMPLATE, {"CONNECTOR_SETTINGS": str(custom)}), capsys)
    # Then the banner says the User Filter sends nobody (and warns of the loop), not that events stay
    assert "    note: no_users_in_filter: The User Filter sends nobody: synchronized_segments is []" in banner
    assert "    note: forward_events_loop: " in banner
    assert "forward_events_off" not in banner


def test_settings_problems_are_in_plain_words() -> None:
    problems = settings_problems('{"handle_page": false, "send_events": "ALL"}')
    assert "handle_page: is not a setting: did you mean handle_pages?" in problems
    assert 'send_events: must be a list, e.g. [] or ["a", "b"]; got "ALL"' in problems
    assert not any("Extra inputs" in problem or "Input should" in problem for problem in problems)

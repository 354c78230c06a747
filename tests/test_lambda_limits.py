"""The local stack runs functions as Lambda and API Gateway do: Timeout, payload limits, retries."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from harness import WAIT_SECONDS, Stack, free_port, process_state
from local_stack import aws
from local_stack.api import ApiServer
from local_stack.config import STATE_ENV
from local_stack.lambda_api import AsyncConfig, LambdaApi
from local_stack.lambda_runtime import (
    MAX_REQUEST_BYTES,
    FunctionTimedOut,
    LocalFunction,
    RequestTooLarge,
    ResponseTooLarge,
    load_function,
)
from local_stack.payload_limits import body_of, event_bytes, typical_message, worst_message
from local_stack.template import ROOT, load_template

TEMPLATE = load_template()

SLOW_HANDLER = """
import time
LOADED = time.monotonic()  # a fresh import (a cold start) gets a new value
def lambda_handler(event, context):
    if event.get("sleep"):
        while True:  # past any timeout
            time.sleep(0.01)
    return {"loaded": LOADED}
"""


def template_with_timeout(seconds: int) -> dict[str, Any]:
    template = copy.deepcopy(TEMPLATE)
    template["Resources"]["InboundFunction"]["Properties"]["Timeout"] = seconds
    return template


def invocation_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "InboundFunction-invocation"]


def test_an_invocation_past_its_timeout_is_stopped_and_the_next_one_is_a_cold_start(tmp_path: Path) -> None:
    # Given InboundFunction with a 1 s Timeout and a handler that would run for ever
    handler = tmp_path / "app.py"
    handler.write_text(SLOW_HANDLER)
    lines: list[str] = []
    with process_state():
        function = load_function(template_with_timeout(1), "InboundFunction", {}, handler, log=lines.append)
        first = function.invoke({})["loaded"]
        # When an invocation runs past the timeout
        with pytest.raises(FunctionTimedOut, match=r"Task timed out after 1\.00 seconds") as stopped:
            function.invoke({"sleep": True})
        # Then Lambda's line is logged, the error is Lambda's, and the handler's thread is stopped
        assert len(lines) == 1 and lines[0].endswith("Task timed out after 1.00 seconds"), lines
        assert stopped.value.error_type == "Sandbox.Timedout"
        deadline = time.monotonic() + WAIT_SECONDS
        while invocation_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not invocation_threads()
        # And the next invocation works, in a fresh container (the module imported again)
        assert function.invoke({})["loaded"] != first


def test_context_set_around_the_call_reaches_the_handler(tmp_path: Path) -> None:
    # Given a handler that reads a contextvar set by the caller (as acting_as does)
    import contextvars

    probe: contextvars.ContextVar[str] = contextvars.ContextVar("probe", default="unset")
    function = LocalFunction("f", lambda event, context: probe.get(), 1.0, 128, {})
    # When the caller sets it around the call / Then the handler's thread sees it
    token = probe.set("caller")
    try:
        assert function.call({}) == "caller"
    finally:
        probe.reset(token)


def test_oversize_response_fails_as_on_lambda() -> None:
    # Given a handler returning more than 6 MB / When invoked synchronously / Then Lambda's error
    function = LocalFunction("f", lambda event, context: "x" * (MAX_REQUEST_BYTES + 200), 3.0, 128, {})
    with pytest.raises(ResponseTooLarge, match=r"exceeded maximum allowed payload size \(6291556 bytes\)"):
        function.call({})


@contextmanager
def api_server(function: LocalFunction) -> Iterator[str]:
    server = ApiServer("127.0.0.1", 0, function.invoke)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def test_api_gateway_answers_an_oversize_event_without_running_the_function() -> None:
    # Given a function that records its calls, behind the HTTP API
    calls: list[Any] = []

    def record(event: Any, context: Any) -> dict[str, Any]:
        calls.append(event)
        return {"statusCode": 200}

    function = LocalFunction("f", record, 3.0, 128, {})
    # And a 3.2 MB JSON body of quotes: under API Gateway's 10 MB, but twice that once escaped in the event
    body = json.dumps(['"' * (3_200_000 // 2)]).encode()
    assert len(body) < 5 * 1024 * 1024 and event_bytes(body) > MAX_REQUEST_BYTES
    with api_server(function) as url:
        # When it is posted
        answer = requests.post(f"{url}/segment", data=body, headers={"Content-Type": "application/json"}, timeout=30)
        small = requests.post(f"{url}/segment", json=["ok"], timeout=30)
    # Then API Gateway answers 500 (Lambda refused the invocation) and the function never ran
    assert answer.status_code == 500 and answer.json() == {"message": "Internal Server Error"}
    assert small.status_code == 200 and len(calls) == 1
    with pytest.raises(RequestTooLarge):
        function.call({"body": body.decode()})


def test_api_gateway_answers_502_for_a_timeout_and_an_oversize_response(tmp_path: Path) -> None:
    # Given a function that answers too much, and one that runs past its 1 s timeout
    big = LocalFunction("big", lambda event, context: {"statusCode": 200, "body": "x" * 7_000_000}, 3.0, 128, {})
    slow = LocalFunction("slow", lambda event, context: time.sleep(1.5), 1.0, 128, {}, log=lambda line: None)
    for function in (big, slow):
        with api_server(function) as url:
            # When called through the HTTP API / Then API Gateway's answer to a failed function
            answer = requests.get(f"{url}/health", timeout=30)
            assert answer.status_code == 502 and answer.json() == {"message": "Internal Server Error"}


# -- asynchronous invocations: retries, then the on-failure destination ------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = aws.MotoServer()
    try:
        yield server.start()
    finally:
        server.stop()


def test_a_failing_event_is_retried_then_its_record_goes_to_the_on_failure_queue(moto_endpoint: str) -> None:
    # Given ResyncFunction's EventInvokeConfig (2 retries, then ResyncFailureQueue) and a handler that times out
    queues = aws.create_queues(TEMPLATE, moto_endpoint)
    assert set(queues) >= {"ResyncFailureQueue", "OutboundFailureQueue"}
    senders = {"ResyncFailureQueue": aws.sqs_destination(moto_endpoint, queues["ResyncFailureQueue"], "ResyncFunction")}
    config = AsyncConfig.from_template(TEMPLATE, "ResyncFunction", senders)
    assert config.maximum_retry_attempts == 2 and config.on_failure is not None
    attempts: list[Any] = []

    def slow(event: Any, context: Any) -> None:
        attempts.append(event)
        time.sleep(1.2)

    function = LocalFunction("resync", slow, 1.0, 128, {}, logical_id="ResyncFunction", log=lambda line: None)
    lambdas = LambdaApi(out=open(os.devnull, "w"), retry_delays=(0.0, 0.0))  # noqa: SIM115 - closed with the process
    lambdas.register(["ResyncFunction", "segment-connector-local-ResyncFunction"], function.call, async_config=config)
    lambdas.start()
    try:
        # When it is invoked asynchronously
        request_id = lambdas.invoke_async("ResyncFunction", {"detail": {"name": "/x/settings"}})
        # Then, after three attempts, Lambda's invocation record arrives in the queue
        sqs = aws.client("sqs", moto_endpoint)
        messages: list[Any] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while not messages and time.monotonic() < deadline:
            messages = sqs.receive_message(QueueUrl=queues["ResyncFailureQueue"], WaitTimeSeconds=1).get("Messages", [])
    finally:
        lambdas.stop()
    assert len(attempts) == 3
    record = json.loads(messages[0]["Body"])
    assert record["version"] == "1.0" and record["requestPayload"] == {"detail": {"name": "/x/settings"}}
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert (
        record["requestContext"]["approximateInvokeCount"] == 3 and record["requestContext"]["requestId"] == request_id
    )
    assert record["requestContext"]["functionArn"].endswith(":function:segment-connector-local-ResyncFunction:$LATEST")
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in record["responsePayload"]["errorMessage"]


def test_an_event_is_not_held_back_by_a_resyncs_sixteen_busy_segment_chains() -> None:
    # Given ResyncFunction busy with 16 segment chains (each invocation runs until released)
    release, started = threading.Event(), threading.Semaphore(0)
    settings_changes: list[Any] = []

    def resync(event: Any, context: Any) -> None:
        if event.get("action") == "work":
            started.release()
            release.wait(WAIT_SECONDS)
        else:
            settings_changes.append(event)

    function = LocalFunction("resync", resync, 60.0, 128, {}, logical_id="ResyncFunction", log=lambda line: None)
    lambdas = LambdaApi(out=open(os.devnull, "w"))  # noqa: SIM115 - closed with the process
    lambdas.register(["ResyncFunction"], function.call)
    lambdas.start()
    try:
        for segment in range(16):
            lambdas.invoke_async("ResyncFunction", {"action": "work", "segment": segment})
        for _ in range(16):
            assert started.acquire(timeout=WAIT_SECONDS)
        # When the settings change (EventBridge's event) while they run
        lambdas.invoke_async("ResyncFunction", {"detail": {"name": "/x/settings"}})
        deadline = time.monotonic() + WAIT_SECONDS
        while not settings_changes and time.monotonic() < deadline:
            time.sleep(0.05)
        # Then it runs beside them, as Lambda runs Event invocations concurrently (not after them)
        assert settings_changes == [{"detail": {"name": "/x/settings"}}]
    finally:
        release.set()
        lambdas.stop()


def test_the_destination_is_sent_to_as_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a destination whose SQS client records who is acting when it sends
    from local_stack.iam.enforce import current_function

    seen: list[str | None] = []

    class Client:
        def send_message(self, **kwargs: Any) -> None:
            seen.append(current_function())

    monkeypatch.setattr(aws, "client", lambda service, endpoint: Client())
    # When a record is sent / Then it is sent with the function's role, as Lambda does
    aws.sqs_destination("http://unused", "http://queue", "ResyncFunction")({"version": "1.0"})
    assert seen == ["ResyncFunction"]


# -- Segment's batches and Lambda's 6 MB ----------------------------------------------------------------


def test_readme_batch_sizes_fit_in_the_event_limit() -> None:
    # Given the figures of `python -m local_stack.payload_limits` (stated in README.md)
    # Then 96 worst-case messages (32 KB of quotes each) fit and 97 do not,
    worst = [worst_message(i) for i in range(97)]
    assert len(body_of(worst[:1])) - 2 <= 32 * 1024
    assert event_bytes(body_of(worst[:96])) <= MAX_REQUEST_BYTES < event_bytes(body_of(worst))
    # And Segment's largest batch (4,000) of typical messages fits, under the connector's 5 MiB too
    typical = body_of([typical_message(i) for i in range(4000)])
    assert len(typical) < 5 * 1024 * 1024 and event_bytes(typical) <= MAX_REQUEST_BYTES
    readme = (ROOT / "README.md").read_text()
    assert "at most 96 messages" in readme


# -- the local stack end to end ------------------------------------------------------------------------


def test_a_function_that_fails_to_import_stops_the_start(tmp_path: Path) -> None:
    # Given a ResyncFunction whose code cannot be imported
    broken = tmp_path / "app.py"
    broken.write_text("import segment_connector.no_such_module\n")
    script = (
        "import sys; from pathlib import Path; import local_stack.__main__ as stack; "
        f"sys.exit(stack.main({{'ResyncFunction': Path({str(broken)!r})}}))"
    )
    environment = {**os.environ, "PORT": str(free_port()), STATE_ENV: str(tmp_path / "state.json")}
    # When the local stack starts
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then it exits non-zero, naming the function and the error, and never says it is ready
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ResyncFunction could not be loaded (Runtime.ImportModuleError: ModuleNotFoundError" in result.stderr
    assert "ready" not in result.stdout
    assert not (tmp_path / "state.json").exists()


@pytest.mark.e2e
def test_make_run_with_a_1_s_inbound_timeout_answers_a_large_batch_with_a_5xx(tmp_path: Path) -> None:
    # Given `make run` with a template whose InboundFunction Timeout is 1 s
    text = (ROOT / "template.yaml").read_text()
    template = tmp_path / "template.yaml"
    template.write_text(text.replace("      Timeout: 10\n", "      Timeout: 1\n", 1))
    assert "      Timeout: 1\n" in template.read_text()
    running = Stack(
        ["make", "run"], free_port(), {"TEMPLATE_FILE": str(template), STATE_ENV: str(tmp_path / "state.json")}
    )
    try:
        running.wait_ready()
        # When Segment posts a 4,000-message batch
        batch = [
            {"type": "track", "event": "E", "userId": f"u{i}", "messageId": str(uuid.uuid4()), "properties": {"i": i}}
            for i in range(4000)
        ]
        answer = requests.post(f"{running.url}/segment", json=batch, auth=("local-api-key", ""), timeout=WAIT_SECONDS)
        # Then API Gateway answers a 5xx (Segment retries it) and the log says the task timed out
        assert answer.status_code >= 500, answer.text
        assert running.wait_for_line(lambda line: "Task timed out after 1.00 seconds" in line, WAIT_SECONDS)
        # And the stack goes on answering (the next invocation is a cold start)
        assert requests.get(f"{running.url}/health", timeout=WAIT_SECONDS).status_code == 200
    finally:
        running.kill()

"""Helpers of the resync tests (tests/test_resync*.py, test_gdpr_delete.py): ResyncFunction loaded
from its file with Lambda's async invocations held in a queue the test runs, profiles written
straight to the table, and the set-up of a job whose segment chain died."""

from __future__ import annotations

import contextlib
from collections import Counter, deque
from typing import Any

import pytest

from harness import PREFIX, TABLE, load_handler_module
from local_stack.lambda_runtime import LambdaContext
from local_stack.template import load_template
from segment_connector.domain.models.items import UserProfile, identity_pk
from segment_connector.resync import work as resync_work
from segment_connector.segment_api.delivery import ClientPool
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.table import serialize
from stream_helpers import WRITE_KEY, _loopback_session

TEMPLATE = load_template()
TIMEOUT = int(TEMPLATE["Resources"]["ResyncFunction"]["Properties"]["Timeout"])
SEGMENTS = int(TEMPLATE["Resources"]["ResyncFunction"]["Properties"]["Environment"]["Variables"]["RESYNC_SEGMENTS"])
PRO = {"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}


SETTINGS_CHANGED = {
    "version": "0",
    "source": "aws.ssm",
    "detail-type": "Parameter Store Change",
    "detail": {"name": f"{PREFIX}/settings", "operation": "Update", "type": "String"},
}


class QueuedInvoker:
    """Lambda's async invocations, held in a queue the test runs (all, or some)."""

    def __init__(self) -> None:
        self.queue: deque[dict[str, Any]] = deque()

    def invoke_async(self, function_name: str, payload: dict[str, Any]) -> None:
        assert function_name == "connector-resync"
        self.queue.append(payload)


class Resync:
    def __init__(self, aws: Any, sink: Any, monkeypatch: pytest.MonkeyPatch):
        self.aws, self.sink = aws, sink
        self.module = load_handler_module("resync")
        self.module.clients = ClientPool(session_factory=_loopback_session)
        self.invoker = QueuedInvoker()
        monkeypatch.setattr(self.module.resync, "FunctionInvoker", lambda: self.invoker)
        monkeypatch.setenv("RESYNC_SEGMENTS", str(SEGMENTS))
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "resync")
        monkeypatch.setenv("SEGMENT_API_URL", sink.url)
        aws.set_secret("write-key", WRITE_KEY)
        self.store = ProfileStore(TABLE)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.module.lambda_handler(event, LambdaContext("connector-resync", 512, TIMEOUT))

    def change_settings(self, **settings: Any) -> dict[str, Any]:
        """The operator puts new settings; EventBridge invokes the function with the change."""
        self.aws.set_settings(**settings)
        return self.invoke(SETTINGS_CHANGED)

    def run(self, steps: int | None = None) -> int:
        """Run queued invocations (all, or the first `steps`) as Lambda would; returns how many ran."""
        ran = 0
        while self.invoker.queue and (steps is None or ran < steps):
            self.invoke(self.invoker.queue.popleft())
            ran += 1
        return ran

    def given_settings(self, **settings: Any) -> None:
        """Given settings Segment got everything with: saved, and their resync run to its end."""
        self.change_settings(**settings)
        self.run()
        self.sink.accepted_messages.clear()

    def job(self) -> dict[str, Any]:
        return self.invoke({"action": "status"})

    def identified(self) -> Counter[str]:
        return Counter(m["userId"] for m in self.sink.accepted_messages if m["type"] == "identify")


class RefusingInvoker(QueuedInvoker):
    """Lambda refuses (throttles) the next `refusals` invocations of one segment's work."""

    def __init__(self, segment: int, refusals: int) -> None:
        super().__init__()
        self.segment, self.refusals = segment, refusals

    def invoke_async(self, function_name: str, payload: dict[str, Any]) -> None:
        if payload.get("segment") == self.segment and self.refusals and payload.get("action") == "work":
            self.refusals -= 1
            raise RuntimeError("TooManyRequestsException: Rate Exceeded")
        super().invoke_async(function_name, payload)


def put_users(aws: Any, users: list[dict[str, Any]]) -> None:
    """Given stored profiles (written straight to the table, as inbound leaves them)."""
    requests = []
    for fields in users:
        profile = UserProfile(
            pk=identity_pk("user_id", fields["user_id"]),
            created_at="2026-01-01T00:00:00.000Z",
            updated_at="2026-01-01T00:00:00.000Z",
            identities=[],
            version=1,
            **fields,
        )
        requests.append({"PutRequest": {"Item": serialize(profile.to_item())}})
    for start in range(0, len(requests), 25):
        aws.dynamodb.batch_write_item(RequestItems={TABLE: requests[start : start + 25]})


def identifies(sink: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Per user (userId, else anonymousId): its identify calls by message id (one id sent twice is
    one call to Segment, which dedups it)."""
    calls: dict[str, dict[str, dict[str, Any]]] = {}
    for message in list(sink.accepted_messages):
        if message["type"] == "identify":
            calls.setdefault(message.get("userId") or message["anonymousId"], {})[message["messageId"]] = message
    return calls


def a_job_whose_segment_chain_died(resyncs: Resync, aws: Any, monkeypatch: pytest.MonkeyPatch) -> RefusingInvoker:
    """Given 40 pro users, nothing sent; 2 segments, pages of 5, one page per invocation; and Lambda
    refusing segment 1's hand-over and its retry (the invocation fails; Lambda's retries too): the
    resync to "Pro" runs until its queue is empty with segment 1's chain dead. Returns the invoker
    that now holds the function's queue (resyncs.invoker)."""
    resyncs.given_settings(segments=[PRO], synchronized_segments=[])
    put_users(aws, [{"user_id": f"u{n:02d}", "traits": {"plan": "pro"}} for n in range(40)])
    monkeypatch.setenv("RESYNC_SEGMENTS", "2")
    monkeypatch.setattr(resync_work, "PAGE_SIZE", 5)
    monkeypatch.setattr(resync_work, "TIME_MARGIN", TIMEOUT + 1)
    resyncs.change_settings(segments=[PRO], synchronized_segments=["Pro"])
    refusing = RefusingInvoker(segment=1, refusals=2)
    refusing.queue.extend(resyncs.invoker.queue)
    resyncs.invoker.queue.clear()
    monkeypatch.setattr(resyncs.module.resync, "FunctionInvoker", lambda: refusing)
    resyncs.invoker = refusing
    while refusing.queue:
        with contextlib.suppress(RuntimeError):  # Lambda's retries fail the same way: the invocation is lost
            resyncs.invoke(refusing.queue.popleft())
    return refusing

"""Helpers of the dead-letter replay tests (tests/test_outbound_replay.py, test_outbound_delivery.py,
test_cli.py): OutboundFunction's replay with Lambda's asynchronous self-invocations held in a queue
the test runs. The Invoke calls are real botocore calls, checked against the function's role (its
grant to invoke itself), answered before they leave the process."""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any, ClassVar

import boto3
import pytest

from local_stack.lambda_runtime import REGION, LambdaContext
from segment_connector.outbound import replay as replay_module
from segment_connector.runtime.invoker import FunctionInvoker
from segment_connector.store.profile_store import ProfileStore
from stream_helpers import TIMEOUT

EVERYONE = {"synchronized_segments": ["ALL"]}
# The function's name as deployed by the tests' stack "connector" (FunctionName ${AWS::StackName}-outbound).
FUNCTION = "connector-outbound"


class _Accepted:
    status_code = 202
    headers: ClassVar[dict[str, str]] = {}


class Replays:
    """OutboundFunction's replay: its queued self-invocations, run as Lambda would run them."""

    def __init__(self, connector: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.connector = connector
        self.queue: deque[dict[str, Any]] = deque()
        self.lock = threading.Lock()
        client = boto3.client("lambda", region_name=REGION)
        client.meta.events.register("before-call.lambda.Invoke", self._hold)
        monkeypatch.setattr(replay_module, "invoker", lambda: FunctionInvoker(client))
        self.store = ProfileStore("connector-test")

    def _hold(self, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        assert params["url_path"].split("/")[3] == FUNCTION  # the function queues itself, nothing else
        assert params["headers"]["X-Amz-Invocation-Type"] == "Event"
        with self.lock:
            self.queue.append(json.loads(params["body"]))
        return _Accepted(), {"StatusCode": 202}

    def context(self, timeout: float = TIMEOUT) -> LambdaContext:
        return LambdaContext(FUNCTION, 512, timeout)

    def start(self, limit: int | None = None) -> dict[str, Any]:
        event: dict[str, Any] = {"action": "replay", **({"limit": limit} if limit is not None else {})}
        answer: dict[str, Any] = self.connector.module.lambda_handler(event, self.context())
        return answer

    def step(self, timeout: float = TIMEOUT) -> Any:
        with self.lock:
            event = self.queue.popleft()
        return self.connector.module.lambda_handler(event, self.context(timeout))

    def run(self, timeout: float = TIMEOUT) -> int:
        steps = 0
        while self.queue:
            self.step(timeout)
            steps += 1
            assert steps < 100
        return steps

    def job(self) -> dict[str, Any]:
        return replay_module.public(self.store.replay.job())


def replay(connector: Any, monkeypatch: pytest.MonkeyPatch, limit: int | None = None) -> dict[str, Any]:
    """Start a replay and run it to its end: the job's summary."""
    replays = Replays(connector, monkeypatch)
    started = replays.start(limit)
    assert started["started"] is True and started["status"] == "running"
    replays.run()
    return replays.job()


def counts(job: dict[str, Any]) -> dict[str, Any]:
    return {key: job.get(key) for key in ("status", "tried", "replayed", "failed")}


def dead_letter_tracks(connector: Any, count: int) -> list[dict[str, Any]]:
    """Given `count` tracks that Segment rejected, kept as dead letters (oldest first)."""
    connector.settings(**EVERYONE)
    for n in range(count):
        connector.sink.script((400, {}, {"error": "invalid event"}))
        connector.post(
            {
                "type": "track",
                "userId": f"u{n % 3}",
                "event": f"E{n}",
                "messageId": f"m-E{n}",
                "timestamp": "2026-01-01T00:00:00.000Z",
            }
        )
        connector.drain()
    letters: list[dict[str, Any]] = connector.dead_letters()
    assert [json.loads(letter["payload"])["event"] for letter in letters] == [f"E{n}" for n in range(count)]
    return letters


def accepted_ids(connector: Any) -> list[str]:
    return [m["messageId"] for m in connector.sent()]

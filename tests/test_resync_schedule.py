"""ResyncFunction's schedule (StaleCheck): a resync whose segment chain died is resumed even when
nobody asks for its status; with no job (or one that moves) the scheduled call writes nothing."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from local_stack.schedules import Schedule, interval_from, scheduled_inputs
from local_stack.template import load_template
from resync_helpers import PRO, a_job_whose_segment_chain_died, identifies, put_users
from segment_connector.resync import clock as resync_clock
from segment_connector.resync import stale as resync_stale
from segment_connector.store import deletions_pending

TEMPLATE = load_template()
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


def scheduled_event() -> dict[str, Any]:
    """What EventBridge invokes ResyncFunction with on each tick: the schedule's Input."""
    (payload,) = scheduled_inputs(TEMPLATE, "ResyncFunction")
    return payload


@contextlib.contextmanager
def dynamodb_calls(aws: Any) -> Iterator[list[str]]:
    """The DynamoDB operations made through the test account's client (the handlers' store uses it)."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    aws.dynamodb.meta.events.register("before-call.dynamodb", record)
    try:
        yield calls
    finally:
        aws.dynamodb.meta.events.unregister("before-call.dynamodb", record)


def test_the_schedule_event_is_a_status_request() -> None:
    # The handler resumes stale segments on a status request; the schedule sends exactly that
    assert scheduled_event() == {"action": "status"}


def test_with_no_job_the_scheduled_call_reads_and_writes_nothing(resyncs, aws):
    # Given a stack where no resync ever ran
    before = aws.items()
    # When the schedule fires a few times
    with dynamodb_calls(aws) as calls:
        answers = [resyncs.invoke(scheduled_event()) for _ in range(3)]
    # Then it answers that there is no job, and only read the table
    assert answers == [{"status": "none"}] * 3
    assert calls and not [call for call in calls if call in WRITES]
    assert aws.items() == before


def test_a_job_that_moves_or_is_done_is_left_alone_by_the_schedule(resyncs, aws, monkeypatch):
    # Given a running job whose segments are not stale (still queued)
    resyncs.given_settings(segments=[PRO], synchronized_segments=[])
    put_users(aws, [{"user_id": f"u{n}", "traits": {"plan": "pro"}} for n in range(10)])
    resyncs.change_settings(segments=[PRO], synchronized_segments=["Pro"])
    queued = len(resyncs.invoker.queue)
    # When the schedule fires
    with dynamodb_calls(aws) as calls:
        assert resyncs.invoke(scheduled_event())["status"] == "running"
    # Then nothing is written and nothing more is queued
    assert not [call for call in calls if call in WRITES] and len(resyncs.invoker.queue) == queued
    # And once the job is done, a tick even far in the future writes nothing either
    resyncs.run()
    later = resync_clock.utcnow() + timedelta(seconds=resync_stale.STALE_SECONDS * 10)
    monkeypatch.setattr(resync_clock, "utcnow", lambda: later)
    with dynamodb_calls(aws) as calls:
        assert resyncs.invoke(scheduled_event())["status"] == "done"
    assert not [call for call in calls if call in WRITES] and not resyncs.invoker.queue


def test_a_job_whose_segment_chain_died_is_resumed_by_the_schedule_and_completes(resyncs, aws, monkeypatch):
    # Given a resync whose segment 1 chain died (Lambda refused its hand-over and the retry), and
    # nobody asks for its status
    refusing = a_job_whose_segment_chain_died(resyncs, aws, monkeypatch)
    assert not refusing.queue
    # When the schedule fires once the segment has made no progress for STALE_SECONDS
    later = resync_clock.utcnow() + timedelta(seconds=resync_stale.STALE_SECONDS + 60)
    monkeypatch.setattr(resync_clock, "utcnow", lambda: later)
    resyncs.invoke(scheduled_event())
    # Then segment 1 is invoked again; its chain runs to the end and the job is done
    assert [payload["segment"] for payload in refusing.queue] == [1]
    resyncs.run()
    assert resyncs.job()["status"] == "done"
    assert {user: len(sent) for user, sent in identifies(resyncs.sink).items()} == {f"u{n:02d}": 1 for n in range(40)}
    # And the next tick, with the job done, queues nothing
    resyncs.invoke(scheduled_event())
    assert not refusing.queue


def test_the_local_stack_fires_the_template_schedule_at_its_interval() -> None:
    # Given the local stack's schedule of ResyncFunction, every 0.05 s
    fired = threading.Event()
    payloads: list[dict[str, Any]] = []

    def invoke(payload: dict[str, Any]) -> None:
        payloads.append(payload)
        if len(payloads) >= 3:
            fired.set()

    schedule = Schedule(scheduled_inputs(TEMPLATE, "ResyncFunction"), invoke, 0.05)
    # When it runs for a while
    schedule.start()
    try:
        assert fired.wait(5)
    finally:
        schedule.stop(timeout=5)
    # Then it invoked the function with the template's input each time, and stopped
    assert payloads[:3] == [{"action": "status"}] * 3 and not schedule.is_alive()


def test_a_failing_invoke_does_not_stop_the_local_schedule() -> None:
    logged: list[str] = []
    calls: list[int] = []

    def invoke(payload: dict[str, Any]) -> None:
        calls.append(1)
        raise RuntimeError("queue closed")

    schedule = Schedule([{"action": "status"}], invoke, 1.0, log=logged.append)
    schedule.fire()
    schedule.fire()
    assert len(calls) == 2 and schedule.fired == 2 and "queue closed" in logged[0]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, 60.0), ({"RESYNC_CHECK_EVERY_S": ""}, 60.0), ({"RESYNC_CHECK_EVERY_S": "2.5"}, 2.5)],
)
def test_the_local_interval_comes_from_resync_check_every_s(environ: dict[str, str], expected: float) -> None:
    assert interval_from(environ) == expected


@pytest.mark.parametrize("raw", ["0", "-1", "soon"])
def test_a_bad_local_interval_is_refused_with_the_variable_name(raw: str) -> None:
    with pytest.raises(ValueError, match="RESYNC_CHECK_EVERY_S"):
        interval_from({"RESYNC_CHECK_EVERY_S": raw})


def test_a_deletion_in_progress_that_moves_is_left_alone_by_the_schedule(resyncs, aws, api, monkeypatch):
    # Given a GDPR deletion registered as in progress, whose last step is recent
    assert api.post("/segment", {"type": "identify", "userId": "u1", "messageId": "i1"})[0] == 200
    assert api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})[0] == 200
    assert [item["sk"] for item in aws.items_of_kind("deletion_pending")] == ["deletion#d1"]
    # When the schedule fires
    with dynamodb_calls(aws) as calls:
        assert resyncs.invoke(scheduled_event()) == {"status": "none"}
    # Then it read the registrations and the tombstone, and wrote nothing
    assert "Query" in calls and not [call for call in calls if call in WRITES]
    (tombstone,) = aws.items_of_kind("deletion")
    assert tombstone["step"] == 0 and "resumed" not in tombstone
    # And once that step is older than STALLED_SECONDS, one tick touches it once
    later = resync_clock.utcnow() + timedelta(seconds=deletions_pending.STALLED_SECONDS + 1)
    monkeypatch.setattr(resync_clock, "utcnow", lambda: later)
    with dynamodb_calls(aws) as calls:
        resyncs.invoke(scheduled_event())
    assert [call for call in calls if call in WRITES] == ["UpdateItem"]
    (tombstone,) = aws.items_of_kind("deletion")
    assert tombstone["step"] == 1 and tombstone["resumed"] == 1

"""Resync while the table is unavailable (throttled, unreachable): the segment waits and goes on; a
burst of StoreUnavailable never fails the job nor leaves a segment for stale detection."""

from __future__ import annotations

from typing import Any

import pytest

from local_stack.lambda_runtime import LambdaContext
from resync_helpers import PRO, Resync, identifies, put_users
from segment_connector.domain.errors import StoreUnavailable
from segment_connector.resync import clock as resync_clock
from segment_connector.resync import work as resync_work
from segment_connector.store.jobs import ResyncJobs
from segment_connector.store.profiles import Profiles

TEAM = {"name": "Pro", "rule": {"trait": "plan", "op": "in", "value": ["pro", "team"]}}
USERS = [{"user_id": f"u{n:02d}", "traits": {"plan": ["pro", "team", "free"][n % 3]}} for n in range(30)]
ENTERING = [user["user_id"] for user in USERS[1::3]]


class Outage:
    """The table answers StoreUnavailable to the next `count` calls of a store method."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: type, method: str):
        self.count = 0
        self.refused = 0
        real = getattr(owner, method)

        def call(store: Any, *args: Any, **kwargs: Any) -> Any:
            if self.count > 0:
                self.count -= 1
                self.refused += 1
                raise StoreUnavailable()
            return real(store, *args, **kwargs)

        monkeypatch.setattr(owner, method, call)


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits of the resync's workers, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(resync_clock, "sleep", waited.append)
    return waited


def given_a_resync_started(resyncs: Resync, aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """30 users sent with plan "pro" as Pro; then Pro becomes pro or team (10 users enter it), and
    the job is started over 2 segments (its work invocations queued, not run yet)."""
    resyncs.given_settings(segments=[PRO], synchronized_segments=["ALL"])
    put_users(aws, USERS)
    monkeypatch.setenv("RESYNC_SEGMENTS", "2")
    monkeypatch.setattr(resync_work, "PAGE_SIZE", 5)
    resyncs.change_settings(segments=[TEAM], synchronized_segments=["ALL"])
    assert len(resyncs.invoker.queue) == 2


def attempts(resyncs: Resync) -> list[int]:
    """Each segment's failed attempts, as the job records them."""
    job = resyncs.store.resync.job()
    assert job is not None
    return [int(progress.get("attempts", 0)) for _, progress in sorted(job["progress"].items())]


def test_a_burst_of_throttling_is_waited_out_inside_the_invocation(resyncs, aws, monkeypatch, pauses):
    given_a_resync_started(resyncs, aws, monkeypatch)
    # And the table refuses the next 5 scans (more than MAX_STEP_ATTEMPTS failures in a row) and,
    # once those are over, the job read that starts the second segment's invocation
    scans = Outage(monkeypatch, Profiles, "scan")
    scans.count = 5
    reads = Outage(monkeypatch, ResyncJobs, "job")
    # When the first segment's invocation runs
    resyncs.run(steps=1)
    reads.count = 2
    # And then the rest
    resyncs.run()
    # Then the job is done, no attempt counted, and each user entering Pro was identified once
    job = resyncs.job()
    assert (job["status"], attempts(resyncs)) == ("done", [0, 0]), job
    assert (scans.refused, reads.refused) == (5, 2)
    assert {user: len(sent) for user, sent in identifies(resyncs.sink).items()} == dict.fromkeys(ENTERING, 1)
    # And the worker waited between tries, longer each time, within the same invocation
    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0, 1.0, 2.0]


def test_an_outage_longer_than_the_invocation_hands_over_without_counting_an_attempt(resyncs, aws, monkeypatch, pauses):
    given_a_resync_started(resyncs, aws, monkeypatch)
    resyncs.run(steps=1)  # segment 0 done
    # And the table unavailable for longer than the second segment's invocation has time left
    scans = Outage(monkeypatch, Profiles, "scan")
    scans.count = 1_000
    payload = resyncs.invoker.queue.popleft()
    short = LambdaContext("connector-resync", 512, resync_work.TIME_MARGIN + 1.5)
    # When its invocation runs
    answer = resyncs.module.lambda_handler(payload, short)
    # Then it waited once, then handed over to the next invocation: the same segment queued again,
    # the job running with no attempt counted
    assert (answer["state"], answer["unavailable"], pauses) == ("continues", True, [1.0])
    assert list(resyncs.invoker.queue) == [payload]
    job = resyncs.job()
    assert (job["status"], attempts(resyncs)) == ("running", [0, 0])
    # When the table is back and the next invocation runs
    scans.count = 0
    resyncs.run()
    # Then the job is done and everyone entering Pro identified once
    assert resyncs.job()["status"] == "done"
    assert {user: len(sent) for user, sent in identifies(resyncs.sink).items()} == dict.fromkeys(ENTERING, 1)


def test_a_failure_that_is_not_the_table_still_counts_and_fails_the_job(resyncs, aws, monkeypatch, pauses):
    given_a_resync_started(resyncs, aws, monkeypatch)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Profiles, "scan", broken)
    resyncs.run()
    job = resyncs.job()
    assert job["status"] == "failed" and "a bug" in job["error"] and pauses == []


def test_a_settings_change_whose_start_never_ran_is_started_by_the_scheduled_status(resyncs, aws, monkeypatch):
    # Given 30 users sent with plan "pro" as Pro
    resyncs.given_settings(segments=[PRO], synchronized_segments=["ALL"])
    put_users(aws, USERS)
    resyncs.given_settings(segments=[PRO], synchronized_segments=["ALL"])
    sent_before = {user: len(sent) for user, sent in identifies(resyncs.sink).items()}
    # When Pro becomes pro or team, but the start invocation EventBridge made failed every retry
    aws.set_settings(segments=[TEAM], synchronized_segments=["ALL"])
    # And the schedule's status runs
    status = resyncs.invoke({"action": "status"})
    resyncs.run()
    # Then it started the resync, which identified each user entering Pro once
    assert status["status"] == "running" and status["reason"] == "settings changed (start missed)"
    assert resyncs.job()["status"] == "done"
    sent = {user: len(calls) - sent_before.get(user, 0) for user, calls in identifies(resyncs.sink).items()}
    assert {user: count for user, count in sent.items() if count} == dict.fromkeys(ENTERING, 1)
    # And the next status starts nothing more
    assert resyncs.invoke({"action": "status"})["id"] == resyncs.job()["id"]
    assert not resyncs.invoker.queue


def test_a_status_with_the_settings_synced_starts_nothing(resyncs, aws):
    # Given no resync ever (the deployed settings), then one that ran to its end
    assert resyncs.job() == {"status": "none"} and not resyncs.invoker.queue
    resyncs.given_settings(segments=[PRO], synchronized_segments=["ALL"])
    done = resyncs.job()
    # When the status is asked again: Then the same job, nothing queued
    assert resyncs.invoke({"action": "status"})["id"] == done["id"] and not resyncs.invoker.queue

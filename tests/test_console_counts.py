"""The console's counts: estimated from DescribeTable on a table too large to scan in time, kept a
minute in the warm function (issue 14), and a status route that polls the jobs without scanning."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import TABLE, Api, Aws, FakeTime
from segment_connector.ops import console as console_module
from segment_connector.ops.dashboard_counts import CountsCache
from segment_connector.store.inventory import KindCounts


def test_counts_past_the_time_bound_are_estimated_from_the_tables_item_count(
    aws: Aws, console_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given users whose items fill more than one scan page (DynamoDB pages at 1 MB), one scan
    # segment and a time bound already past
    padding = "x" * 350_000
    for n in range(4):
        aws.dynamodb.put_item(
            TableName=TABLE,
            Item={"pk": {"S": f"user#u{n}"}, "sk": {"S": "profile"}, "kind": {"S": "user"}, "pad": {"S": padding}},
        )
    monkeypatch.setattr(console_module, "COUNT_SEGMENTS", 1)
    monkeypatch.setattr(console_module, "COUNT_SECONDS", -1.0)
    # When the dashboard is read
    status, board = console_api.get("/console/api/dashboard")
    # Then the counts are an estimate (the shares of what was read, times the table's item count)
    assert status == 200, board
    assert board["counts"]["exact"] is False
    assert board["counts"]["users"] >= 1


# -- issue 14: the counts are kept a minute; a running job is followed by its status alone ----------


def put_user(aws: Aws, uid: str) -> None:
    aws.dynamodb.put_item(
        TableName=TABLE, Item={"pk": {"S": f"user#{uid}"}, "sk": {"S": "profile"}, "kind": {"S": "user"}}
    )


def count_scans(aws: Aws) -> list[str]:
    """Every Scan the handlers make from now on (botocore's before-call event of the tests' client)."""
    scans: list[str] = []
    aws.dynamodb.meta.events.register("before-call.dynamodb.Scan", lambda **_: scans.append("scan"))
    return scans


def test_dashboard_reads_within_a_minute_share_one_count_and_a_later_read_counts_again(
    aws: Aws, console_api: Api, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a user, the console's clock under the test's control, and every Scan counted
    monkeypatch.setattr(console_api.module, "_counts", CountsCache(clock=fake_time.clock))
    put_user(aws, "u1")
    scans = count_scans(aws)
    # When the dashboard is read
    status, first = console_api.get("/console/api/dashboard")
    # Then the table was scanned (one parallel scan) and the answer says when it was counted
    assert status == 200, first
    assert first["counts"]["users"] == 1
    assert first["counts"]["age_seconds"] == 0
    scanned_once = len(scans)
    assert scanned_once == console_module.COUNT_SEGMENTS
    # When another user arrives and the dashboard is read again 30 s later
    put_user(aws, "u2")
    fake_time.now += 30
    second = console_api.get("/console/api/dashboard")[1]
    # Then nothing was scanned: the same count, 30 s old
    assert len(scans) == scanned_once
    assert second["counts"]["users"] == 1
    assert second["counts"]["counted_at"] == first["counts"]["counted_at"]
    assert second["counts"]["age_seconds"] == 30
    # When the dashboard is read after the minute
    fake_time.now += 31
    third = console_api.get("/console/api/dashboard")[1]
    # Then the table is counted again: the new user, counted now
    assert len(scans) == 2 * scanned_once
    assert third["counts"]["users"] == 2
    assert third["counts"]["age_seconds"] == 0
    assert third["counts"]["counted_at"] > first["counts"]["counted_at"]


def test_dead_letters_are_counted_on_every_read_while_the_other_counts_are_kept(
    aws: Aws, console_api: Api, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a dashboard read (its counts kept for a minute)
    monkeypatch.setattr(console_api.module, "_counts", CountsCache(clock=fake_time.clock))
    assert console_api.get("/console/api/dashboard")[1]["counts"]["dead_letters"] == 0
    # When a dead letter is kept and the dashboard is read again within the minute
    aws.dynamodb.put_item(
        TableName=TABLE,
        Item={"pk": {"S": "deadletter"}, "sk": {"S": "2026-01-01T00:00:00.000Z#m1"}, "payload": {"S": "{}"}},
    )
    fake_time.now += 5
    # Then it is counted (a replay changes them; the page must not show a letter it replayed)
    assert console_api.get("/console/api/dashboard")[1]["counts"]["dead_letters"] == 1


def test_the_status_route_answers_the_jobs_without_scanning(aws: Aws, console_api: Api) -> None:
    # Given a running resync and users in the table
    put_user(aws, "u1")
    aws.dynamodb.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": "resync"},
            "sk": {"S": "job"},
            "kind": {"S": "resync"},
            "id": {"S": "r1"},
            "status": {"S": "running"},
            "segments": {"N": "4"},
            "segments_done": {"N": "1"},
        },
    )
    scans = count_scans(aws)
    # When the page polls the status
    status, answer = console_api.get("/console/api/status")
    # Then it has the jobs, and nothing was scanned
    assert status == 200, answer
    assert answer["resync"] == {"id": "r1", "status": "running", "segments": 4, "segments_done": 1}
    assert answer["replay"] == {"status": "none"}
    assert scans == []
    # And without the admin key it is refused, as every console API route
    assert console_api.request("GET", "/console/api/status", auth=None)[0] == 401


def test_dashboard_reads_at_the_same_time_wait_for_one_count() -> None:
    # Given a count that takes a while, and eight reads of an expired cache at once
    cache = CountsCache()
    started = threading.Barrier(8)
    counted: list[int] = []

    def slow_count() -> KindCounts:
        counted.append(1)
        time.sleep(0.2)
        return KindCounts({"user": len(counted)}, exact=True)

    def read() -> int:
        started.wait()
        return cache.get(TABLE, slow_count).counts["user"]

    # When they run side by side
    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(lambda _: read(), range(8)))
    # Then the table was counted once, and every read shows that count
    assert counted == [1]
    assert seen == [1] * 8

"""The console's counts on a table too large to scan in time: estimated from DescribeTable."""

from __future__ import annotations

import pytest

from harness import TABLE, Api, Aws
from segment_connector.ops import console as console_module


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

"""Issue 15 on `make run` (a fresh local stack, spoken to only over HTTP): a user whose only order
is near the edge of a 1-day window enters the segment when it arrives and leaves it within a minute
of the edge passing (the local schedule re-evaluates every RECOMPUTE_EVERY_S seconds)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from harness import WAIT_SECONDS, Stack, free_port
from segment_connector.domain.times import format_time

SETTINGS = {
    "segments": [{"name": "Ordered today", "rule": {"event": "Order Completed", "within_days": 1}}],
    "computed_traits": [{"name": "orders_1d", "type": "count", "event": "Order Completed", "within_days": 1}],
    # every user is sent, so that the Left Segment event is sent too (a user leaving the User Filter
    # gets a last identify; its Left Segment is recorded on it, not sent: tests/test_outbound.py)
    "synchronized_segments": ["ALL"],
    "synchronized_properties": ["orders_1d"],
    "send_events": ["Entered Segment", "Left Segment"],
}
AUTH = ("local-api-key", "")
SECONDS_BEFORE_EDGE = 25


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = tmp_path_factory.mktemp("settings") / "settings.json"
    settings.write_text(json.dumps(SETTINGS))
    running = Stack(["make", "run"], free_port(), {"CONNECTOR_SETTINGS": str(settings), "RECOMPUTE_EVERY_S": "2"})
    try:
        running.wait_ready()
        yield running
    finally:
        running.kill()


def post(stack: Stack, message: dict[str, object]) -> None:
    answer = requests.post(f"{stack.url}/segment", json=message, auth=AUTH, timeout=WAIT_SECONDS)
    assert answer.status_code == 200, answer.text


@pytest.mark.e2e
def test_a_user_leaves_a_one_day_segment_within_a_minute_of_the_edge(stack: Stack) -> None:
    user = f"edge-{uuid.uuid4().hex[:8]}"
    # Given a user whose only order happened a day ago, less SECONDS_BEFORE_EDGE seconds
    ordered = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=SECONDS_BEFORE_EDGE)
    edge = ordered + timedelta(days=1)
    post(stack, {"type": "identify", "userId": user, "messageId": f"i-{user}"})
    post(
        stack,
        {
            "type": "track",
            "userId": user,
            "event": "Order Completed",
            "messageId": f"o-{user}",
            "timestamp": format_time(ordered),
        },
    )
    # Then it enters the segment, with its computed trait
    entered = stack.wait_for_line(
        lambda line: f"userId={user} " in line and "Entered Segment" in line and "Ordered today" in line, WAIT_SECONDS
    )
    assert entered is not None, stack.output
    assert stack.wait_for_line(
        lambda line: line.startswith(f"segment <- identify userId={user} ") and '"orders_1d": 1' in line, WAIT_SECONDS
    ), stack.output
    # And the Profile API shows the computed trait
    profile = requests.get(f"{stack.url}/v1/users/user_id:{user}", auth=AUTH, timeout=WAIT_SECONDS)
    assert profile.status_code == 200, profile.text
    assert profile.json()["traits"]["orders_1d"] == 1
    segment_api = f"{stack.url}/v1/spaces/local/collections/users/profiles/user_id:{user}/traits"
    traits = requests.get(segment_api, auth=("local-profile-token", ""), timeout=WAIT_SECONDS)
    assert traits.status_code == 200, traits.text
    assert traits.json()["traits"]["orders_1d"] == 1
    # When the edge passes, it leaves within a minute, with a Left Segment event
    left = stack.wait_for_line(
        lambda line: f"userId={user} " in line and "Left Segment" in line and "Ordered today" in line,
        SECONDS_BEFORE_EDGE + 60,
    )
    assert left is not None, stack.output
    assert datetime.now(UTC) < edge + timedelta(seconds=60)
    assert stack.wait_for_line(
        lambda line: line.startswith(f"segment <- identify userId={user} ") and '"orders_1d": 0' in line, WAIT_SECONDS
    ), stack.output

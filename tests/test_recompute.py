"""Time passing (issue 15): OutboundFunction's scheduled `{"action": "recompute"}` re-evaluates the
users whose counted events left a window, and only them. Runs are given their `now`, as the
schedule would reach it later; the stream and the sink are the real test pieces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from segment_connector.domain.times import format_time
from stream_helpers import outbound_context

BUYER = {"name": "Buyer", "rule": {"event": "Order Completed", "within_days": 30}}
ORDERS = {"name": "orders_30d", "type": "count", "event": "Order Completed", "within_days": 30}
ANNOUNCEMENTS = ["Entered Segment", "Left Segment"]
UNAVAILABLE: tuple[int, dict[str, str], Any] = (503, {}, {"error": "unavailable"})


def order(message: Any, at: datetime, user_id: str = "u1") -> dict[str, Any]:
    return message("track", userId=user_id, event="Order Completed", timestamp=format_time(at))


def recompute(connector: Any, now: datetime) -> dict[str, Any]:
    module = connector.module
    result = module.outbound.handle(
        {"action": "recompute"}, outbound_context(), module.store(), module.clients, now=now
    )
    connector.drain()  # the Entered/Left events it stored go out through the stream
    return result.response


def announcements(connector: Any) -> list[tuple[str, str]]:
    return [(name, props["segment"]) for name, props in connector.tracks() if name.endswith("Segment")]


@pytest.fixture
def buyer(connector: Any, message: Any) -> datetime:
    """Given u1 in "Buyer" through one order 29 days ago (it leaves the window in a day) and u2,
    who ordered yesterday; returns when u1's order leaves the window."""
    connector.settings(
        segments=[BUYER],
        computed_traits=[ORDERS],
        synchronized_segments=["ALL"],
        synchronized_properties=["orders_30d"],
        send_events=ANNOUNCEMENTS,
    )
    now = datetime.now(UTC)
    first = order(message, now - timedelta(days=29))
    connector.post(message("identify", userId="u1"), message("identify", userId="u2"), first)
    connector.post(order(message, now - timedelta(days=1), "u2"))
    connector.drain()
    assert sorted(announcements(connector)) == [("Entered Segment", "Buyer")] * 2
    return datetime.fromisoformat(first["timestamp"]) + timedelta(days=30)


def test_a_user_leaves_when_its_order_leaves_the_window_and_the_run_reads_only_due_users(connector, buyer):
    sent_before = len(connector.sent())
    # When the schedule runs just before the edge: nobody is due
    assert recompute(connector, buyer - timedelta(seconds=1))["due"] == 0
    assert len(connector.sent()) == sent_before
    # When it runs just after the edge
    answer = recompute(connector, buyer + timedelta(seconds=1))
    # Then only u1 was read, and it left the segment, with its computed trait at 0
    assert answer == {"due": 1, "users": 1, "failed": 0}
    assert announcements(connector)[-1] == ("Left Segment", "Buyer")
    identify = connector.sent("identify")[-1]
    assert identify["userId"] == "u1" and identify["traits"] == {"hull_segments": [], "orders_30d": 0}
    # and its due item is gone: a second run sends nothing
    sent = len(connector.sent())
    assert recompute(connector, buyer + timedelta(seconds=2))["due"] == 0
    assert len(connector.sent()) == sent
    assert [item["profile_pk"] for item in connector.aws.items_of_kind("due")] == ["id#user_id#u2"]


def test_a_run_that_could_not_deliver_keeps_the_user_due_and_the_next_sends_the_same_ids(connector, buyer):
    # Given Segment is down during the first run after the edge
    connector.sink.responder = lambda path, body: UNAVAILABLE
    first = recompute(connector, buyer + timedelta(seconds=1))
    assert first["failed"] == 1
    # When it is back for the next run
    connector.sink.responder = None
    second = recompute(connector, buyer + timedelta(seconds=30))
    # Then the user is done, its Left Segment event announced once
    assert second == {"due": 1, "users": 1, "failed": 0}
    assert announcements(connector).count(("Left Segment", "Buyer")) == 1
    identifies = [m for m in connector.sent("identify") if m["traits"].get("orders_30d") == 0]
    assert len(identifies) == 1


def test_a_run_killed_after_announcing_is_safe_to_run_again(connector, buyer, monkeypatch):
    # Given the run dies after sending, before removing the due item
    from segment_connector.store.due import DueItems

    done = DueItems.done
    killed: list[Any] = []

    def crash_once(self, due):
        if not killed:
            killed.append(due)
            raise RuntimeError("killed")
        return done(self, due)

    monkeypatch.setattr(DueItems, "done", crash_once)
    with pytest.raises(RuntimeError):
        recompute(connector, buyer + timedelta(seconds=1))
    # When the next run does it again
    recompute(connector, buyer + timedelta(seconds=5))
    # Then Segment got the same message ids twice (it dedups them) and the event was stored once
    identifies = [m for m in connector.sent("identify") if m["traits"].get("orders_30d") == 0]
    assert len({m["messageId"] for m in identifies}) == 1
    assert announcements(connector).count(("Left Segment", "Buyer")) == 1


def test_a_new_order_before_the_edge_moves_it_and_the_old_due_item_changes_nothing(connector, message, buyer):
    # Given u1 orders again before its first order leaves the window
    connector.post(order(message, datetime.now(UTC) - timedelta(hours=1)))
    connector.drain()
    assert connector.sent("identify")[-1]["traits"]["orders_30d"] == 2
    # When the old edge passes
    answer = recompute(connector, buyer + timedelta(seconds=1))
    # Then u1 is evaluated: still a buyer (no Left Segment), with one order counted
    assert answer["users"] == 1
    assert ("Left Segment", "Buyer") not in announcements(connector)
    assert connector.sent("identify")[-1]["traits"] == {"hull_segments": ["Buyer"], "orders_30d": 1}
    # and it is due again when the new order leaves the window
    due = [item for item in connector.aws.items_of_kind("due") if item["profile_pk"] == "id#user_id#u1"]
    assert max(item["due_at"] for item in due) > format_time(buyer + timedelta(days=1))


def test_the_schedule_invokes_recompute_hourly_on_aws_and_every_ten_seconds_locally() -> None:
    from local_stack.schedules import DEFAULT_RECOMPUTE_INTERVAL, RECOMPUTE_ENV, interval_from, scheduled_inputs
    from local_stack.template import load_template, parameter_default

    template = load_template()
    assert scheduled_inputs(template, "OutboundFunction") == [{"action": "recompute"}]
    assert parameter_default(template, "RecomputeSchedule") == "rate(1 hour)"
    assert interval_from({}, RECOMPUTE_ENV, DEFAULT_RECOMPUTE_INTERVAL) == 10
    assert interval_from({RECOMPUTE_ENV: "2"}, RECOMPUTE_ENV, DEFAULT_RECOMPUTE_INTERVAL) == 2


def test_a_user_deleted_before_its_edge_is_not_told_anything(connector, message, buyer):
    # Given u1 deleted (GDPR) before its order leaves the window
    connector.post(message("delete", userId="u1"))
    connector.drain()
    sent = len(connector.sent())
    # When the edge passes
    answer = recompute(connector, buyer + timedelta(seconds=1))
    # Then nothing is sent for it, and its due item is done
    assert answer["failed"] == 0
    assert len(connector.sent()) == sent
    assert [item["profile_pk"] for item in connector.aws.items_of_kind("due")] == ["id#user_id#u2"]

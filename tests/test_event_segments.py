"""Segments on what users do, end to end (issue 15): events through the inbound API, the stream,
OutboundFunction and the Segment sink. Event leaves and computed traits, merges, what is sent and
what is not, and when the user is due to be evaluated again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from segment_connector.domain.times import format_time

BUYERS = {
    "name": "Buyers",
    "rule": {"event": "Order Completed", "count": {"op": "gte", "value": 2}, "within_days": 30},
}
ORDERS_30D = {"name": "orders_30d", "type": "count", "event": "Order Completed", "within_days": 30}
ANNOUNCEMENTS = ["Entered Segment", "Left Segment"]  # sent; the orders themselves are not
REVENUE = {"name": "revenue", "type": "sum", "event": "Order Completed", "property": "total"}


def ago(days: float) -> str:
    return format_time(datetime.now(UTC) - timedelta(days=days))


def order(message: Any, days_ago: float, total: float = 10, **ids: str) -> dict[str, Any]:
    return message(
        "track",
        event="Order Completed",
        properties={"total": total},
        timestamp=ago(days_ago),
        **(ids or {"userId": "u1"}),
    )


def entered(connector: Any) -> list[tuple[str, str]]:
    return [(name, props["segment"]) for name, props in connector.tracks() if name.endswith("Segment")]


def test_a_user_with_two_orders_in_30_days_enters_the_segment_and_is_sent(connector, message):
    # Given "Buyers" (2 orders in 30 days) is synchronized
    connector.settings(segments=[BUYERS], synchronized_segments=["Buyers"], send_events=ANNOUNCEMENTS)
    connector.post(message("identify", userId="u1", traits={"plan": "free"}))
    connector.drain()
    # When a first order arrives, nothing is sent: the user is not in the filter
    connector.post(order(message, 3))
    connector.drain()
    assert connector.sent("identify") == []
    # When the second one arrives
    connector.post(order(message, 1))
    connector.drain()
    # Then the user is identified with the segment and announced as entering it
    (identify,) = connector.sent("identify")
    assert identify["userId"] == "u1" and identify["traits"] == {"hull_segments": ["Buyers"]}
    assert entered(connector) == [("Entered Segment", "Buyers")]


def test_orders_older_than_the_window_do_not_count(connector, message):
    connector.settings(segments=[BUYERS], synchronized_segments=["Buyers"], send_events=ANNOUNCEMENTS)
    connector.post(message("identify", userId="u1"))
    connector.post(order(message, 45), order(message, 31))
    connector.drain()
    connector.post(order(message, 2))
    connector.drain()
    assert connector.sent("identify") == [] and entered(connector) == []


def test_computed_traits_go_out_when_synchronized_and_shadow_a_received_trait(connector, message):
    # Given computed traits, revenue synchronized, every user sent
    connector.settings(
        computed_traits=[ORDERS_30D, REVENUE],
        synchronized_segments=["ALL"],
        synchronized_properties=["revenue", "plan"],
        send_events=ANNOUNCEMENTS,
    )
    # And a user who claims revenue of their own
    connector.post(message("identify", userId="u1", traits={"plan": "pro", "revenue": 999999}))
    connector.drain()
    first = connector.sent("identify")[-1]
    assert first["traits"] == {"hull_segments": [], "plan": "pro"}  # no order yet: the sum is absent
    # When two orders arrive in one delivery
    connector.post(order(message, 2, total=20), order(message, 1, total=5.5))
    connector.drain()
    # Then one identify carries the computed sum (the received value is shadowed)
    last = connector.sent("identify")[-1]
    assert last["traits"] == {"hull_segments": [], "plan": "pro", "revenue": 25.5}
    assert len(connector.sent("identify")) == 2


def test_nothing_is_sent_when_an_event_changes_nothing_sent(connector, message):
    # Given a buyer already in the segment, no computed trait synchronized
    connector.settings(
        segments=[BUYERS], synchronized_segments=["Buyers"], computed_traits=[ORDERS_30D], send_events=ANNOUNCEMENTS
    )
    connector.post(message("identify", userId="u1"), order(message, 3), order(message, 2))
    connector.drain()
    assert len(connector.sent("identify")) == 1
    # When a third order arrives
    connector.post(order(message, 1))
    connector.drain()
    # Then nothing more is sent (the segments and the synchronized traits are the same)
    assert len(connector.sent("identify")) == 1
    assert entered(connector) == [("Entered Segment", "Buyers")]


def test_an_anonymous_visitors_orders_count_once_it_is_known(connector, message):
    connector.settings(segments=[BUYERS], synchronized_segments=["Buyers"], send_events=ANNOUNCEMENTS)
    # Given a visitor ordering twice before logging in
    connector.post(order(message, 3, anonymousId="a1"), order(message, 2, anonymousId="a1"))
    connector.drain()
    assert connector.sent() == []
    # When it identifies
    connector.post(message("identify", userId="u1", anonymousId="a1"))
    connector.drain()
    # Then the user is in the segment through the visitor's orders
    (identify,) = connector.sent("identify")
    assert identify["userId"] == "u1" and identify["traits"]["hull_segments"] == ["Buyers"]
    assert entered(connector) == [("Entered Segment", "Buyers")]


def test_a_user_is_due_again_when_the_oldest_counted_event_leaves_the_window(connector, message):
    connector.settings(segments=[BUYERS], synchronized_segments=["Buyers"], send_events=ANNOUNCEMENTS)
    connector.post(message("identify", userId="u1"))
    first, second = order(message, 3), order(message, 1)
    connector.post(first, second)
    connector.drain()
    (due,) = connector.aws.items_of_kind("due")
    edge = datetime.fromisoformat(first["timestamp"]) + timedelta(days=30)
    assert due["due_at"] == format_time(edge)
    assert due["pk"] == "due#" + format_time(edge)[:13]
    assert due["profile_pk"] == "id#user_id#u1"


def test_events_keep_what_rules_read_and_expire_after_the_retention(connector, message):
    connector.settings(segments=[BUYERS], event_retention_days=60, send_events=ANNOUNCEMENTS)
    connector.post(order(message, 1, total=12), message("track", userId="u1", event="Clicked", properties={"x": 1}))
    kept = {item["event"]: item for item in connector.aws.items_of_kind("event")}
    ordered, clicked = kept["Order Completed"], kept["Clicked"]
    # the order keeps what the rules read of it (nothing but its name here), the click nothing
    assert ordered["facts"] == {}
    assert "facts" not in clicked
    # both expire 60 days after their timestamp
    for item in (ordered, clicked):
        at = datetime.fromisoformat(item["timestamp"])
        assert int(item["expires_at"]) == int((at + timedelta(days=60)).timestamp())

"""Computed traits and event segments wherever a user is shown (issue 15): the Segment-compatible
Profile API's traits and audiences, the console's user lookup and segment preview, and the status
warning `computed_trait_shadows`. The CLI's `users get`: tests/test_cli.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from harness import Api, Aws
from segment_connector.domain.times import format_time
from segment_profile_helpers import Message, path

REVENUE = {"name": "revenue", "type": "sum", "event": "Order Completed", "property": "total"}
ORDERS = {"name": "orders", "type": "count", "event": "Order Completed", "within_days": 30}
BUYERS = {"name": "Buyers", "rule": {"event": "Order Completed", "count": {"op": "gte", "value": 2}, "within_days": 30}}
PREVIEW = "/console/api/segments/preview"


def ago(days: float) -> str:
    return format_time(datetime.now(UTC) - timedelta(days=days))


def order(message: Message, days_ago: float, total: float, **ids: str) -> dict[str, Any]:
    fields = ids or {"userId": "u1"}
    return message("track", event="Order Completed", properties={"total": total}, timestamp=ago(days_ago), **fields)


def post(api: Api, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        assert api.post("/segment", body)[0] == 200, body


def a_buyer_who_claims_revenue(aws: Aws, api: Api, message: Message, **settings: Any) -> None:
    """Given computed traits and "Buyers", and u1 who sends revenue of its own and orders twice
    (one order 45 days ago, out of the 30-day windows) and u2 who orders once."""
    aws.set_settings(computed_traits=[REVENUE, ORDERS], segments=[BUYERS], **settings)
    post(api, message("identify", userId="u1", anonymousId="a1", traits={"plan": "pro", "revenue": 999}))
    post(api, order(message, 3, 20), order(message, 1, 5.5, anonymousId="a1"), order(message, 45, 100))
    post(api, message("identify", userId="u2", traits={"plan": "free"}), order(message, 2, 7, userId="u2"))


def test_profile_api_traits_show_computed_traits_in_place_of_received_ones(
    segment_profiles: Api, api: Api, aws: Aws, message: Message
) -> None:
    a_buyer_who_claims_revenue(aws, api, message)
    # When the traits are asked by any of the user's ids
    for profile in ("user_id:u1", "anonymous_id:a1"):
        status, body = segment_profiles.get(path(profile, "traits"))
        # Then the computed values are traits; the received revenue is shadowed
        assert status == 200, body
        assert body["traits"] == {"orders": 2, "plan": "pro", "revenue": 125.5}, profile
    # And class=computed_trait answers the computed ones only, verbose with the newest counted event
    status, body = segment_profiles.get(path("user_id:u1", "traits", **{"class": "computed_trait"}))
    assert (status, body["traits"]) == (200, {"orders": 2, "revenue": 125.5})
    body = segment_profiles.get(path("user_id:u1", "traits", include="orders,plan", verbose="true"))[1]
    assert body["traits"]["orders"]["value"] == 2 and body["traits"]["orders"]["updated_at"][:10] == ago(1)[:10]
    assert body["traits"]["plan"]["value"] == "pro"
    # And the audiences count the orders within the window
    assert segment_profiles.get(path("user_id:u1", "traits", **{"class": "audience"}))[1]["traits"] == {"Buyers": True}
    assert segment_profiles.get(path("user_id:u2", "traits", **{"class": "audience"}))[1]["traits"] == {}
    # And the older Profile API (GET /v1/users/ID) shows the same
    status, user = api.get("/v1/users/user_id:u1")
    assert (status, user["traits"]["revenue"], user["segments"]) == (200, 125.5, ["Buyers"])


def test_profile_api_reads_no_events_without_event_rules(
    segment_profiles: Api, api: Api, aws: Aws, message: Message, profile_api_requests: list[str]
) -> None:
    # Given no computed trait and no event leaf
    aws.set_settings(segments=[{"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}])
    post(api, message("identify", userId="u1", traits={"plan": "pro", "revenue": 999}), order(message, 1, 5))
    for query in ({}, {"class": "audience"}, {"class": "computed_trait"}):
        profile_api_requests.clear()
        # When the traits are asked: Then one Query (the profile), none of the events
        status, _ = segment_profiles.get(path("user_id:u1", "traits", **query))
        assert status == 200 and profile_api_requests == ["Query"], (query, profile_api_requests)
    assert segment_profiles.get(path("user_id:u1", "traits"))[1]["traits"] == {"plan": "pro", "revenue": 999}


def test_console_lookup_shows_computed_traits_marked_and_sent(
    console_api: Api, api: Api, aws: Aws, message: Message
) -> None:
    a_buyer_who_claims_revenue(
        aws, api, message, synchronized_segments=["Buyers"], synchronized_properties=["revenue", "plan"]
    )
    # When the console looks the user up
    status, found = console_api.get("/console/api/users?q=u1")
    # Then its traits carry the computed values, marked as computed, and its event segment
    assert status == 200, found
    assert found["user"]["traits"] == {"orders": 2, "plan": "pro", "revenue": 125.5}
    assert found["computed_traits"] == ["orders", "revenue"]
    assert found["user"]["segments"] == ["Buyers"]
    # And what is sent carries the computed revenue
    assert found["sent"] == {
        "in_user_filter": True,
        "identify_traits": {"hull_segments": ["Buyers"], "plan": "pro", "revenue": 125.5},
    }


def test_the_preview_counts_users_by_an_event_leaf(console_api: Api, api: Api, aws: Aws, message: Message) -> None:
    a_buyer_who_claims_revenue(aws, api, message)
    post(api, message("identify", userId="u3"))
    # When a rule with an event leaf is previewed
    rule = {"event": "Order Completed", "count": {"op": "gte", "value": 2}, "within_days": 30}
    status, preview = console_api.post(PREVIEW, {"kind": "user", "rule": rule})
    # Then only the user with two orders in the window matches, shown with its computed traits
    assert status == 200, preview
    assert (preview["sampled"], preview["matched"]) == (3, 1)
    assert preview["examples"][0]["user_id"] == "u1" and preview["examples"][0]["traits"]["revenue"] == 125.5
    # And `where` on properties, `not` (never did it) and a trait leaf on a computed trait count too
    where = {"event": "Order Completed", "where": {"property": "total", "op": "gt", "value": 50}}
    assert console_api.post(PREVIEW, {"kind": "user", "rule": where})[1]["matched"] == 1
    never = {"not": {"event": "Order Completed"}}
    assert [e["user_id"] for e in console_api.post(PREVIEW, {"kind": "user", "rule": never})[1]["examples"]] == ["u3"]
    rich = {"trait": "revenue", "op": "gt", "value": 100}
    assert console_api.post(PREVIEW, {"kind": "user", "rule": rich})[1]["matched"] == 1


def test_the_preview_explains_a_bad_event_leaf(console_api: Api, aws: Aws) -> None:
    aws.set_settings(event_retention_days=90)
    for rule, field in (
        ({"event": "E", "count": {"op": "most", "value": 1}}, "rule.count.op"),
        ({"event": "E", "where": {"trait": "x", "op": "exists"}}, "rule.where"),
        ({"all": [{"event": "E", "within_days": 120}]}, "rule.all.0.within_days"),
    ):
        status, answer = console_api.post(PREVIEW, {"kind": "user", "rule": rule})
        assert status == 400, (rule, answer)
        assert any(detail["field"].startswith(field) for detail in answer["details"]), (rule, answer)
        assert answer["message"].startswith("the rule cannot be previewed: "), answer


def test_the_dashboard_warns_when_a_computed_trait_shadows_a_received_one(
    console_api: Api, api: Api, aws: Aws, message: Message
) -> None:
    a_buyer_who_claims_revenue(aws, api, message)
    # When the dashboard is shown: Then the warning names the shadowed trait (orders is not sent)
    warnings = console_api.get("/console/api/dashboard")[1]["warnings"]
    shadows = [w for w in warnings if w["code"] == "computed_trait_shadows"]
    assert len(shadows) == 1 and "'revenue'" in shadows[0]["message"], warnings
    assert set(shadows[0]) == {"code", "message"}
    # And not once no user sends a trait of a computed trait's name
    aws.set_settings(computed_traits=[ORDERS])
    warnings = console_api.get("/console/api/dashboard")[1]["warnings"]
    assert "computed_trait_shadows" not in [w["code"] for w in warnings]

"""DynamoDB requests per message (the budget of the inbound issue), counted at the client."""

from __future__ import annotations

import pytest


@pytest.fixture
def requests_made(api):
    calls: list[str] = []
    client = api.module.store().client
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    return calls


def test_known_users_track_page_screen_cost_one_request_each(api, message, requests_made):
    api.post("/segment", message("identify", userId="u1", traits={"a": 1}))
    requests_made.clear()
    for call in (
        message("track", userId="u1", event="E"),
        message("page", userId="u1", name="P"),
        message("screen", userId="u1", name="S"),
    ):
        api.post("/segment", call)
    assert requests_made == ["PutItem", "PutItem", "PutItem"]


def test_duplicate_track_costs_one_request(api, message, requests_made):
    track = message("track", userId="u1", event="E")
    api.post("/segment", track)
    requests_made.clear()
    api.post("/segment", track)
    assert requests_made == ["PutItem"]


def test_known_users_identify_costs_at_most_two_requests(api, message, requests_made):
    api.post("/segment", message("identify", userId="u1", anonymousId="a1", traits={"a": 1}))
    requests_made.clear()
    api.post(
        "/segment",
        message("identify", userId="u1", anonymousId="a1", traits={"a": 2}, timestamp="2026-01-02T00:00:00Z"),
    )
    assert requests_made == ["BatchGetItem", "TransactWriteItems"]


def test_known_users_track_with_a_known_anonymous_id_costs_one_request(api, message, requests_made):
    api.post("/segment", message("identify", userId="u1", anonymousId="a1"))
    requests_made.clear()
    api.post("/segment", message("track", userId="u1", anonymousId="a1", event="E"))
    assert requests_made == ["TransactWriteItems"]

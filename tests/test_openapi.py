"""docs/openapi.json is generated from the code (`make openapi`), and real answers match it."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from local_stack import openapi

ROUTES = {
    ("/segment", "post"),
    ("/segment", "put"),
    ("/segment", "patch"),
    ("/v1/{call}", "post"),
    ("/v1/users/{reference}", "get"),
    ("/v1/users/{reference}/events", "get"),
    ("/v1/accounts/{group_id}", "get"),
    ("/health", "get"),
}
SEGMENT_PROFILE = "/v1/spaces/{space_id}/collections/{collection}/profiles/{profile}"
SEGMENT_PROFILE_ROUTES = {
    (f"{SEGMENT_PROFILE}/{resource}", "get") for resource in ("traits", "external_ids", "events", "metadata", "links")
}
CONSOLE_ROUTES = {
    ("/console/api/dashboard", "get"),
    ("/console/api/replay", "post"),
    ("/console/api/status", "get"),
    ("/console/api/settings", "get"),
    ("/console/api/settings", "put"),
    ("/console/api/write-key", "put"),
    ("/console/api/catalogue", "get"),
    ("/console/api/segments/preview", "post"),
    ("/console/api/users", "get"),
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.document()


def test_the_committed_document_matches_the_code(document: dict[str, Any]) -> None:
    committed = openapi.DOCUMENT.read_text(encoding="utf-8") if openapi.DOCUMENT.exists() else ""
    assert committed == openapi.render(document), "docs/openapi.json is stale: run `make openapi`"


def test_every_route_is_documented_with_basic_auth(document: dict[str, Any]) -> None:
    operations = {(path, method) for path, methods in document["paths"].items() for method in methods}
    assert operations == ROUTES | CONSOLE_ROUTES | SEGMENT_PROFILE_ROUTES
    assert document["components"]["securitySchemes"]["basicAuth"] == {
        "type": "http",
        "scheme": "basic",
        "description": document["components"]["securitySchemes"]["basicAuth"]["description"],
    }
    assert document["security"] == [{"basicAuth": []}]
    assert document["paths"]["/health"]["get"]["security"] == []  # no authentication
    for path, method in ROUTES:
        operation = document["paths"][path][method]
        assert operation["summary"] and operation["description"] and operation["tags"]
        assert "200" in operation["responses"]
    for path in ("/segment", "/v1/{call}"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/Delivery"}
    limit = document["paths"]["/v1/users/{reference}/events"]["get"]["parameters"][1]
    assert (limit["name"], limit["in"], limit["schema"]["maximum"]) == ("limit", "query", 500)


def matches(document: dict[str, Any], schema: str, instance: Any) -> None:
    root = {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
    Draft202012Validator(root).validate(instance)


def test_answers_match_their_schemas(document: dict[str, Any], api: Any, aws: Any, message: Any) -> None:
    aws.set_settings(handle_accounts=True)
    assert api.get("/health", auth=None) == (200, {"status": "ok"})
    matches(document, "Health", {"status": "ok"})
    identify = message("identify", userId="u1", traits={"email": "ann@example.com", "plan": "pro"})
    track = message("track", userId="u1", event="Signed Up", properties={"plan": "pro"})
    group = message("group", userId="u1", groupId="g1", traits={"name": "Acme"})
    status, answer = api.post("/v1/batch", {"batch": [identify, track, group, {"type": "nope"}]})
    assert status == 200 and answer["rejected"], answer
    matches(document, "DeliveryResult", answer)
    matches(document, "Delivery", {"batch": [identify, track, group]})
    matches(document, "Delivery", [identify, track])
    status, answer = api.post("/segment", identify)
    assert status == 200
    matches(document, "DeliveryResult", answer)
    for path, schema in (
        ("/v1/users/user_id:u1", "User"),
        ("/v1/users/user_id:u1/events", "Events"),
        ("/v1/accounts/g1", "Account"),
    ):
        status, answer = api.get(path)
        assert status == 200, answer
        matches(document, schema, answer)
    for path, expected in (("/v1/users/user_id:nobody", 404), ("/v1/users/nonsense", 400)):
        status, answer = api.get(path)
        assert status == expected
        matches(document, "Error", answer)
    status, answer = api.post("/segment", {"type": "identify"})
    assert status == 400 and answer["details"]
    matches(document, "Error", answer)


def test_segment_profile_routes_are_documented_with_the_profile_token(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["profileToken"]["scheme"] == "basic"
    for path, method in SEGMENT_PROFILE_ROUTES:
        operation = document["paths"][path][method]
        assert operation["security"] == [{"profileToken": []}], path
        assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ProfileApiError"
        }
    events = document["paths"][f"{SEGMENT_PROFILE}/events"]["get"]["parameters"]
    assert {p["name"] for p in events if p["in"] == "query"} == {
        "limit",
        "next",
        "sort",
        "start",
        "end",
        "include",
        "exclude",
    }


def test_segment_profile_answers_match_their_schemas(
    document: dict[str, Any], segment_profiles: Any, api: Any, aws: Any, message: Any
) -> None:
    from segment_profile_helpers import path

    aws.set_settings(handle_accounts=True)
    for body in (
        message("identify", userId="u1", anonymousId="a1", traits={"plan": "pro", "email": "a@example.com"}),
        message("track", userId="u1", event="Paid", properties={"amount": 3}),
        message("page", anonymousId="a1", name="Home"),
        message("group", userId="u1", groupId="g1", traits={"name": "Acme"}),
    ):
        assert api.post("/segment", body)[0] == 200
    for url, schema in (
        (path("user_id:u1", "traits", verbose="true"), "ProfileTraits"),
        (path("user_id:u1", "traits"), "ProfileTraits"),
        (path("user_id:u1", "external_ids"), "ProfileExternalIds"),
        (path("user_id:u1", "events"), "ProfileEvents"),
        (path("user_id:u1", "metadata"), "ProfileMetadata"),
        (path("user_id:u1", "links"), "ProfileLinks"),
        (path("group_id:g1", "links", collection="accounts"), "ProfileLinks"),
        (path("group_id:g1", "metadata", collection="accounts"), "ProfileMetadata"),
    ):
        status, answer = segment_profiles.get(url)
        assert status == 200, answer
        matches(document, schema, answer)
    for url, auth in ((path("user_id:nobody", "traits"), "default"), (path("user_id:u1", "traits"), None)):
        status, answer = segment_profiles.get(url, auth=auth)
        assert status in (401, 404)
        matches(document, "ProfileApiError", answer)


def test_console_routes_are_documented_with_the_admin_key(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, method in CONSOLE_ROUTES:
        operation = document["paths"][path][method]
        assert operation["security"] == [{"bearerAuth": []}], (path, method)
        assert operation["tags"] == ["Console"] and operation["summary"] and operation["description"]
        assert {"200", "401", "503"} <= set(operation["responses"])
    body = document["paths"]["/console/api/settings"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SettingsDocument"}


def test_console_answers_match_their_schemas(document: dict[str, Any], console_api: Any, aws: Any, monkeypatch) -> None:
    import io
    import json

    from harness import Api, load_handler_module
    from segment_connector.runtime.invoker import FunctionInvoker

    # Given a user with an event and an account, a segment in the filter, and a dead letter
    aws.set_settings(
        handle_accounts=True,
        segments=[{"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}],
        synchronized_segments=["Pro"],
        synchronized_properties=["plan"],
    )
    inbound = Api(load_handler_module("inbound"))
    for body in (
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro", "email": "a@example.com"}},
        {"type": "track", "userId": "u1", "event": "Paid", "properties": {"amount": 3}},
        {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}},
    ):
        assert inbound.post("/segment", body)[0] == 200
    from segment_connector.store.profile_store import ProfileStore

    ProfileStore("connector-test", aws.dynamodb).dead_letters.put(
        "sc-1",
        {"type": "identify", "userId": "u1", "messageId": "sc-1"},
        "Segment answered 400",
        "2026-01-01T00:00:00.000Z",
    )

    class Lambda:
        def invoke(self, **_: Any) -> dict[str, Any]:
            answer = {
                "started": True,
                "id": "r1",
                "status": "running",
                "started_at": "2026-01-01T00:00:00.000Z",
                "total": 1,
                "tried": 0,
                "replayed": 0,
                "failed": 0,
                "errors": [],
            }
            return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}

    monkeypatch.setattr(console_api.module, "_invoker", FunctionInvoker(Lambda()))
    settings = console_api.get("/console/api/settings")[1]
    rule = {"trait": "plan", "op": "eq", "value": "pro"}
    # When every console route is called / Then each answer matches its schema
    calls: tuple[tuple[tuple[str, str, Any], str], ...] = (
        (("GET", "/console/api/dashboard", None), "ConsoleDashboard"),
        (("GET", "/console/api/status", None), "ConsoleStatus"),
        (("POST", "/console/api/replay", {}), "ConsoleReplay"),
        (("GET", "/console/api/settings", None), "ConsoleSettings"),
        (("PUT", "/console/api/settings", {**settings["settings"], "forward_events": True}), "ConsoleSaved"),
        (("PUT", "/console/api/write-key", {"write_key": "wk"}), "ConsoleWriteKeySet"),
        (("GET", "/console/api/catalogue", None), "ConsoleCatalogue"),
        (("POST", "/console/api/segments/preview", {"kind": "user", "rule": rule}), "ConsolePreview"),
        (("GET", "/console/api/users?q=u1", None), "ConsoleUser"),
        (("PUT", "/console/api/settings", {"synchronized_segments": ["Ghost"]}), "Error"),
        (("GET", "/console/api/users?q=nobody", None), "Error"),
    )
    for (method, path, body), schema in calls:
        status, answer, _ = console_api.request(method, path, body)
        assert (status == 200) == (schema != "Error"), (path, answer)
        matches(document, schema, answer)
    matches(document, "SettingsDocument", settings["settings"])
    matches(document, "ConsolePreviewRequest", {"kind": "user", "rule": rule})
    status, answer, _ = console_api.request("GET", "/console/api/dashboard", auth=None)
    assert status == 401
    matches(document, "Error", answer)

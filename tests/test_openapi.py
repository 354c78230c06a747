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


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.document()


def test_the_committed_document_matches_the_code(document: dict[str, Any]) -> None:
    committed = openapi.DOCUMENT.read_text(encoding="utf-8") if openapi.DOCUMENT.exists() else ""
    assert committed == openapi.render(document), "docs/openapi.json is stale: run `make openapi`"


def test_every_route_is_documented_with_basic_auth(document: dict[str, Any]) -> None:
    operations = {(path, method) for path, methods in document["paths"].items() for method in methods}
    assert operations == ROUTES
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

"""Every file in events/ (used by `sam local invoke`) goes through the real handler."""

from __future__ import annotations

import json
from pathlib import Path

from local_stack.lambda_runtime import LambdaContext

EVENTS = Path(__file__).resolve().parent.parent / "events"
ORDER = ["identify", "page", "track", "screen", "group", "alias", "profile", "delete"]


def invoke(api, name):
    event = json.loads((EVENTS / "apigw" / f"{name}.json").read_text())
    response = api.module.lambda_handler(event, LambdaContext("InboundFunction", 512, 10))
    return response["statusCode"], json.loads(response["body"])


def test_every_events_file_is_covered_and_wraps_its_message():
    assert sorted(p.stem for p in (EVENTS / "apigw").glob("*.json")) == sorted(ORDER)
    assert sorted(p.stem for p in (EVENTS / "stream").glob("*.json")) == ["event-insert", "user-insert"]
    for path in (EVENTS / "messages").glob("*.json"):
        wrapped = json.loads((EVENTS / "apigw" / path.name).read_text())
        assert json.loads(wrapped["body"]) == json.loads(path.read_text())


def test_events_files_store_what_they_describe(api, aws):
    # Given the local API key the files carry, and accounts handled
    aws.set_secret("api-key", "local-api-key")
    aws.set_settings(handle_accounts=True)
    # When each call type's file is invoked in a realistic order
    for name in ORDER[:6]:
        status, body = invoke(api, name)
        assert status == 200 and body["stored"] + body["unchanged"] == 1, (name, body)
    # Then the profile holds the identify's traits, the account link and the three events
    status, profile = invoke(api, "profile")
    assert status == 200
    assert profile["email"] == "jane.doe@example.com" and profile["account_id"] == "acme-inc"
    assert profile["traits"]["first_name"] == "Jane" and profile["traits"]["address"] == {
        "city": "Lyon",
        "country": "FR",
    }
    _, stored = api.get("/v1/users/user_id:user-1042/events", auth="Basic bG9jYWwtYXBpLWtleTo=")
    assert [e["type"] for e in stored] == ["screen", "track", "page"]
    assert api.get("/v1/accounts/acme-inc", auth="Basic bG9jYWwtYXBpLWtleTo=")[1]["traits"]["plan"] == "enterprise"
    # And delete erases the user
    assert invoke(api, "delete")[0] == 200
    assert invoke(api, "profile")[0] == 404


def test_stream_event_files_drive_the_outbound_handler(connector):
    # Given every user synchronized with its email
    connector.settings(synchronized_segments=["ALL"], synchronized_properties=["email"])
    # When OutboundFunction gets the stream events sam local invoke would hand it
    for name in ("user-insert", "event-insert"):
        response = connector.handler(json.loads((EVENTS / "stream" / f"{name}.json").read_text()))
        assert response == {"batchItemFailures": []}
    # Then Segment receives the user's identify and the track
    identify, track = connector.sent("identify")[0], connector.sent("track")[0]
    assert identify["userId"] == "user-1042"
    assert identify["traits"] == {"hull_segments": [], "email": "Jane.Doe@Example.com"}
    assert (track["event"], track["properties"]["order_id"]) == ("Order Completed", "ord-5521")


def test_env_json_sets_every_variable_the_template_gives_each_function():
    # Given events/env.json (sam local invoke --env-vars) and template.yaml's environments
    from local_stack.template import load_template

    template = load_template()
    env = json.loads((EVENTS / "env.json").read_text())
    shared = set(template["Globals"]["Function"]["Environment"]["Variables"])
    # Then the shared variables are under Parameters and each function's own under its logical id
    assert shared <= set(env["Parameters"])
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        own = set(resource["Properties"].get("Environment", {}).get("Variables", {}))
        assert own <= set(env[logical_id]), logical_id

"""ConsoleFunction: the page, the admin key, and each console API route against moto."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness import ADMIN_KEY, API_KEY, OUTBOUND_FUNCTION, PREFIX, Api, Aws, basic, bearer, load_handler_module
from segment_connector.runtime.invoker import FunctionInvoker

# A request to each API route that would change something if the admin key were not checked
# (the route's example; other routes are sent as they are, with an empty object for a body).
EXAMPLES: dict[tuple[str, str], tuple[str, Any]] = {
    ("PUT", "/console/api/settings"): ("", {"synchronized_segments": ["ALL"]}),
    ("PUT", "/console/api/write-key"): ("", {"write_key": "w"}),
    ("POST", "/console/api/segments/preview"): ("", {"kind": "user", "rule": {"trait": "a", "op": "exists"}}),
    ("GET", "/console/api/users"): ("?q=u1", None),
    ("POST", "/console/api/replay"): ("", {}),
}


def console_api_routes() -> list[tuple[str, str]]:
    """Every (method, path) that the console's resolver serves under /console/api/: Powertools keeps
    its registered routes (`_static_routes`, `_dynamic_routes`), so a new route is tested here at
    once. A path parameter (`<name>`) gets a value."""
    app = load_handler_module("console").app
    routes = {(route.method, re.sub(r"<[^>]+>", "x", route.path)) for route in app._static_routes + app._dynamic_routes}
    return sorted(route for route in routes if route[1].startswith("/console/api/"))


def example_request(method: str, path: str) -> tuple[str, str, Any]:
    query, body = EXAMPLES.get((method, path), ("", None if method in ("GET", "HEAD") else {}))
    return method, path + query, body


API_ROUTES = [example_request(method, path) for method, path in console_api_routes()]


def settings_in_ssm(aws: Aws) -> dict[str, Any]:
    parameter = aws.ssm.get_parameter(Name=f"{PREFIX}/settings")["Parameter"]
    return {"version": parameter["Version"], "document": json.loads(parameter["Value"])}


def identify(aws_api: Api, user_id: str, traits: dict[str, Any], **fields: Any) -> None:
    status, answer = aws_api.post("/segment", {"type": "identify", "userId": user_id, "traits": traits, **fields})
    assert status == 200, answer


@pytest.fixture
def inbound(aws: Aws) -> Api:
    return Api(load_handler_module("inbound"))


# -- the page ---------------------------------------------------------------------------------------


def test_the_page_and_its_assets_are_served_with_a_strict_policy(console_api: Api) -> None:
    # When the page is fetched (no key needed: it holds no data)
    status, html, headers = console_api.request("GET", "/console", auth=None)
    # Then it is HTML loading only its own script and style, under a CSP that forbids inline script and framing
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert 'src="/console/assets/console.js"' in html and "<script>" not in html
    for name, media_type in (("console.js", "text/javascript"), ("console.css", "text/css")):
        status, text, headers = console_api.request("GET", f"/console/assets/{name}", auth=None)
        assert status == 200 and headers["Content-Type"].startswith(media_type) and text
    # And nothing else is read from the disk
    for path in ("/console/assets/app.py", "/console/assets/..%2Fapp.py", "/console/assets/index.html"):
        status, body, _ = console_api.request("GET", path, auth=None)
        assert status == 404 and body["code"] == "not_found", path


STATIC = Path(__file__).resolve().parent.parent / "functions" / "console" / "static"
MAX_MODULE_LINES = 400


def test_the_script_is_es_modules_each_served_as_javascript_and_small(console_api: Api) -> None:
    # Given the page's script: an entry module importing the others (issue 18)
    status, html, _ = console_api.request("GET", "/console", auth=None)
    assert status == 200 and '<script type="module" src="/console/assets/console.js"></script>' in html
    modules = sorted(path.name for path in STATIC.glob("*.js"))
    assert len(modules) >= 6 and "console.js" in modules and "shared.js" in modules
    imported: set[str] = set()
    for name in modules:
        # When each module is fetched as the browser does
        status, text, headers = console_api.request("GET", f"/console/assets/{name}", auth=None)
        # Then it is served as JavaScript (a module in another type does not run), under the CSP
        assert status == 200, name
        assert headers["Content-Type"] == "text/javascript; charset=utf-8", name
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert text == (STATIC / name).read_text(encoding="utf-8")
        # And it is at most 400 lines, importing only the console's own modules by relative path
        assert text.count("\n") <= MAX_MODULE_LINES, name
        for source in re.findall(r'^import .* from "([^"]+)";$', text, flags=re.MULTILINE):
            assert re.fullmatch(r"\./[a-z]+\.js", source), (name, source)
            imported.add(source[2:])
    # And every module is imported by another one (none is left over), and served
    assert imported == set(modules) - {"console.js"}
    # And a name that is not one of them is still not found
    for path in ("/console/assets/missing.js", "/console/assets/shared.mjs", "/console/assets/..%2Fstatic%2Fshared.js"):
        status, body, _ = console_api.request("GET", path, auth=None)
        assert status == 404 and body["code"] == "not_found", path


# -- the admin key ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), API_ROUTES)
def test_without_an_admin_key_every_api_route_is_503_not_configured(
    aws: Aws, console_api: Api, method: str, path: str, body: Any
) -> None:
    # Given no admin key parameter
    aws.ssm.delete_parameter(Name=f"{PREFIX}/admin-key")
    from segment_connector.runtime import config

    config.clear_caches()
    # When any API route is called
    status, answer, _ = console_api.request(method, path, body)
    # Then 503 not_configured says how to set one
    assert status == 503 and answer["code"] == "not_configured"
    assert "keys set admin-key" in answer["message"] and f"{PREFIX}/admin-key" in answer["message"]


@pytest.mark.parametrize(("method", "path", "body"), API_ROUTES)
@pytest.mark.parametrize("auth", [None, bearer("wrong"), basic(ADMIN_KEY), f"Bearer {ADMIN_KEY}x", "Bearer"])
def test_a_wrong_or_missing_admin_key_is_401_and_changes_nothing(
    aws: Aws, console_api: Api, method: str, path: str, body: Any, auth: str | None
) -> None:
    before = settings_in_ssm(aws)
    status, answer, _ = console_api.request(method, path, body, auth=auth)
    assert status == 401 and answer["code"] == "unauthorized"
    assert settings_in_ssm(aws) == before
    assert "write-key" not in {p["Name"].rsplit("/", 1)[1] for p in aws.ssm.describe_parameters()["Parameters"]}


def test_the_api_routes_are_the_apps_and_every_example_is_one_of_them() -> None:
    # Given the routes that the console's resolver registered
    routes = console_api_routes()
    # Then the admin key tests cover each of them, and no example names a route that is gone
    assert {(method, path.partition("?")[0]) for method, path, _ in API_ROUTES} == set(routes)
    assert set(EXAMPLES) <= set(routes), set(EXAMPLES) - set(routes)
    assert ("GET", "/console/api/dashboard") in routes and ("PUT", "/console/api/settings") in routes


def test_unknown_console_routes_are_404_json(console_api: Api) -> None:
    status, answer, _ = console_api.request("GET", "/console/api/nothing")
    assert status == 404 and answer["code"] == "not_found"
    status, answer, _ = console_api.request("DELETE", "/console/api/settings")
    assert status == 404 and answer["code"] == "not_found"


# -- dashboard -------------------------------------------------------------------------------------


def test_dashboard_shows_what_to_paste_into_segment_and_the_state(aws: Aws, console_api: Api, inbound: Api) -> None:
    # Given two users, one event, no write key, and the deployed default settings
    identify(inbound, "u1", {"plan": "pro"})
    identify(inbound, "u2", {"plan": "free"})
    assert inbound.post("/segment", {"type": "track", "userId": "u1", "event": "Signed Up"})[0] == 200
    # When the dashboard is read through the API's own host name
    status, board, headers = console_api.request(
        "GET",
        "/console/api/dashboard",
        headers={"host": "abc.execute-api.eu-west-1.amazonaws.com", "x-forwarded-proto": "https"},
    )
    # Then the webhook URL is that host's /segment and the header is Basic auth with the API key
    assert status == 200
    assert board["webhook_url"] == "https://abc.execute-api.eu-west-1.amazonaws.com/segment"
    assert board["auth_header"] == basic(API_KEY)
    assert headers["Cache-Control"] == "no-store"
    # And the counts, the resync and the (absent) dead letters are there
    counts = {name: board["counts"].pop(name) for name in ("counted_at", "age_seconds")}
    assert board["counts"] == {"users": 2, "accounts": 0, "events": 1, "dead_letters": 0, "exact": True}
    assert counts["age_seconds"] == 0 and counts["counted_at"].endswith("Z")  # counted now, UTC
    assert board["resync"] == {"status": "none"} and board["dead_letters"] == []
    # And no secret other than that header's key is in the answer
    aws.set_secret("write-key", "secret-write-key")
    aws.set_secret("shared-secret", "secret-shared")
    text = json.dumps(console_api.request("GET", "/console/api/dashboard")[1])
    assert "secret-write-key" not in text and "secret-shared" not in text and ADMIN_KEY not in text


def test_dashboard_warnings_follow_the_keys_and_settings(aws: Aws, console_api: Api) -> None:
    # Given segments but no write key
    aws.set_settings(segments=[{"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}])
    codes = [w["code"] for w in console_api.get("/console/api/dashboard")[1]["warnings"]]
    # Then the missing key, the empty User Filter (it sends nobody) and forward_events off are said
    assert codes == ["no_write_key", "no_users_in_filter", "forward_events_off"]
    # When the write key is set through the console
    assert console_api.put("/console/api/write-key", {"write_key": "wk"}) == (200, {"write_key_set": True})
    # Then the warning is gone and the empty User Filter and forward_events off are left
    codes = [w["code"] for w in console_api.get("/console/api/dashboard")[1]["warnings"]]
    assert codes == ["no_users_in_filter", "forward_events_off"]


def test_dashboard_says_when_the_user_filter_sends_nobody_and_events_are_not_sent_back(
    aws: Aws, console_api: Api
) -> None:
    # Given a write key, an empty User Filter and forward_events off (the template's defaults)
    aws.set_secret("write-key", "wk")
    aws.set_settings(synchronized_segments=[], forward_events=False, send_events=["ALL"])
    # When the dashboard is read
    warnings = {w["code"]: w["message"] for w in console_api.get("/console/api/dashboard")[1]["warnings"]}
    # Then it says both, in plain words
    assert warnings["no_users_in_filter"].startswith("The User Filter sends nobody")
    assert warnings["forward_events_off"].startswith("forward_events is off")
    assert "not sent back to Segment" in warnings["forward_events_off"]
    # When everyone is sent and events from Segment are sent back / Then neither is said
    aws.set_settings(synchronized_segments=["ALL"], forward_events=True, send_events=["ALL"])
    codes = [w["code"] for w in console_api.get("/console/api/dashboard")[1]["warnings"]]
    assert "no_users_in_filter" not in codes and "forward_events_off" not in codes


def test_dashboard_lists_dead_letters_and_replay_asks_outbound(aws: Aws, console_api: Api, monkeypatch) -> None:
    # Given a dead letter and OutboundFunction reachable through Lambda's Invoke API
    from segment_connector.store.profile_store import ProfileStore

    store = ProfileStore("connector-test", aws.dynamodb)
    payload = {"type": "identify", "userId": "u9", "messageId": "sc-1", "traits": {}}
    store.dead_letters.put("sc-1", payload, "Segment answered 400", "2026-01-01T00:00:00.000Z")
    invoked: list[tuple[str, dict[str, Any]]] = []

    class Lambda:
        def invoke(self, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803
            invoked.append((FunctionName, json.loads(Payload)))
            answer = {"started": True, "id": "r1", "status": "running", "total": 1, "tried": 0, "errors": []}
            return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}

    monkeypatch.setattr(console_api.module, "_invoker", FunctionInvoker(Lambda()))
    # When the dashboard is read
    board = console_api.get("/console/api/dashboard")[1]
    # Then the letter is listed with its reason
    assert board["counts"]["dead_letters"] == 1
    assert board["dead_letters"] == [
        {
            "message_id": "sc-1",
            "reason": "Segment answered 400",
            "at": "2026-01-01T00:00:00.000Z",
            "type": "identify",
            "user_id": "u9",
        }
    ]
    # and no replay yet
    assert board["replay"] == {"status": "none"}
    # When replay is pressed
    status, answer = console_api.post("/console/api/replay", {})
    # Then OutboundFunction got {"action": "replay"} and its summary (the replay started) is the answer
    assert status == 200 and answer["started"] is True and answer["status"] == "running"
    assert invoked == [(OUTBOUND_FUNCTION, {"action": "replay"})]


def test_the_dashboard_shows_the_replays_progress_and_first_errors(aws: Aws, console_api: Api) -> None:
    # Given a replay job that tried 3 of 5 letters, one of which failed
    from segment_connector.store.profile_store import ProfileStore

    store = ProfileStore("connector-test", aws.dynamodb)
    job = {
        "id": "r1",
        "status": "running",
        "total": 5,
        "tried": 3,
        "replayed": 2,
        "failed": 1,
        "errors": [{"message_id": "sc-1", "reason": "replay: HTTP 400"}],
        "cursor": "x",
        "lease_owner": "w",
        "lease_until": 4102444800,
    }
    assert store.replay.start(job, 0)
    # When the dashboard is read / Then it shows the counts and first errors, no lease nor cursor
    replay = console_api.get("/console/api/dashboard")[1]["replay"]
    assert replay == {
        "id": "r1",
        "status": "running",
        "total": 5,
        "tried": 3,
        "replayed": 2,
        "failed": 1,
        "errors": [{"message_id": "sc-1", "reason": "replay: HTTP 400"}],
    }


def test_a_failing_replay_is_502_and_names_the_error(console_api: Api, monkeypatch) -> None:
    class Lambda:
        def invoke(self, **_: Any) -> dict[str, Any]:
            body = json.dumps({"errorMessage": "boom", "errorType": "RuntimeError"}).encode()
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(body)}

    monkeypatch.setattr(console_api.module, "_invoker", FunctionInvoker(Lambda()))
    status, answer = console_api.post("/console/api/replay", {})
    assert status == 502 and answer["code"] == "replay_failed" and "boom" in answer["message"]


# -- settings --------------------------------------------------------------------------------------


def test_settings_are_shown_with_defaults_and_whether_a_write_key_exists(aws: Aws, console_api: Api) -> None:
    status, view = console_api.get("/console/api/settings")
    assert status == 200 and view["write_key_set"] is False and "errors" not in view
    assert view["settings"]["synchronized_segments"] == []
    assert view["settings"]["synchronized_account_segments"] == ["ALL"]
    assert view["settings"]["synchronized_properties"] == [] and view["settings"]["forward_events"] is False
    aws.set_secret("write-key", "wk-value")
    status, view = console_api.get("/console/api/settings")
    assert view["write_key_set"] is True and "wk-value" not in json.dumps(view)


def test_an_invalid_stored_document_is_shown_with_its_errors(aws: Aws, console_api: Api) -> None:
    aws.set_settings(synchronized_segments=["Ghost"])
    view = console_api.get("/console/api/settings")[1]
    assert view["settings"]["synchronized_segments"] == ["Ghost"]
    assert [e["field"] for e in view["errors"]] == ["synchronized_segments"]


def test_saving_valid_settings_writes_the_parameter_and_answers_the_new_warnings(aws: Aws, console_api: Api) -> None:
    # Given the deployed defaults (version 1) and a write key
    aws.set_secret("write-key", "wk")
    before = settings_in_ssm(aws)
    document = {
        **console_api.get("/console/api/settings")[1]["settings"],
        "segments": [{"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}],
        "synchronized_segments": ["Pro"],
        "synchronized_properties": ["plan", "address.city"],
    }
    # When saved
    status, answer = console_api.put("/console/api/settings", document)
    # Then the parameter holds the document (a new version: EventBridge starts the resync)
    assert status == 200 and answer["saved"] is True and answer["resync"] == "started"
    after = settings_in_ssm(aws)
    assert after["version"] == before["version"] + 1 and after["document"] == document
    assert [warning["code"] for warning in answer["warnings"]] == ["forward_events_off"]
    assert answer["settings"]["synchronized_segments"] == ["Pro"]
    # When the same document is saved again, nothing is written (no resync for nothing)
    status, answer = console_api.put("/console/api/settings", document)
    assert answer["saved"] is False and answer["resync"] == "unchanged"
    assert settings_in_ssm(aws)["version"] == after["version"]


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"synchronized_segments": ["Ghost"]}, "synchronized_segments"),
        ({"handle_pages": "maybe"}, "handle_pages"),
        ({"segments": [{"name": "A", "rule": {"trait": "x", "op": "nope"}}]}, "segments.0.rule.op"),
        ({"synchronized_properties": [".bad"]}, "synchronized_properties.0"),
        ({"unknown_setting": 1}, "unknown_setting"),
        ({"synchronized_account_segments": ["Big"]}, "synchronized_account_segments"),
    ],
)
def test_invalid_settings_are_400_with_field_errors_and_nothing_saved(
    aws: Aws, console_api: Api, document: dict[str, Any], field: str
) -> None:
    before = settings_in_ssm(aws)
    status, answer = console_api.put("/console/api/settings", document)
    assert status == 400 and answer["code"] == "settings_invalid"
    assert field in [e["field"] for e in answer["details"]]
    assert all(not e["error"].startswith("Value error") for e in answer["details"])
    assert settings_in_ssm(aws) == before


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1, 2]", b'"text"', b"[" * 5000])
def test_a_settings_body_that_is_not_a_json_object_is_400(aws: Aws, console_api: Api, raw: bytes) -> None:
    before = settings_in_ssm(aws)
    status, answer, _ = console_api.request("PUT", "/console/api/settings", raw=raw)
    assert status == 400 and answer["code"] == "bad_request"
    assert settings_in_ssm(aws) == before


def test_a_document_over_the_standard_tier_is_saved_up_to_the_advanced_limit(
    aws: Aws, ssm_tiers: Aws, console_api: Api
) -> None:
    # Given segments whose document is over 4 KB (a standard parameter's limit), SSM's tiers in force
    segments = [{"name": f"Segment {i}", "rule": {"trait": f"trait_{i}", "op": "exists"}} for i in range(80)]
    status, answer = console_api.put("/console/api/settings", {"segments": segments})
    assert status == 200 and answer["saved"] is True
    assert len(segments) == len(settings_in_ssm(aws)["document"]["segments"])
    parameters = aws.ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [f"{PREFIX}/settings"]}]
    )["Parameters"]
    assert parameters[0]["Tier"] == "Advanced"
    # And one over 8 KB is refused whole
    segments = [{"name": f"Segment {i}", "rule": {"trait": f"trait_{i}", "op": "exists"}} for i in range(200)]
    status, answer = console_api.put("/console/api/settings", {"segments": segments})
    assert status == 400 and answer["details"][0]["field"] == "(document)"


def test_the_write_key_is_stored_as_a_secure_string_and_never_answered(aws: Aws, console_api: Api) -> None:
    status, answer = console_api.put("/console/api/write-key", {"write_key": "  wk-123  "})
    assert (status, answer) == (200, {"write_key_set": True})
    parameter = aws.ssm.get_parameter(Name=f"{PREFIX}/write-key", WithDecryption=True)["Parameter"]
    assert parameter["Type"] == "SecureString" and parameter["Value"] == "wk-123"
    for body in ({"write_key": ""}, {"write_key": "   "}, {"write_key": 5}, {}, {"write_key": "k" * 2000}):
        status, answer = console_api.put("/console/api/write-key", body)
        assert status == 400 and answer["details"][0]["field"] == "write_key"
    assert aws.ssm.get_parameter(Name=f"{PREFIX}/write-key", WithDecryption=True)["Parameter"]["Value"] == "wk-123"


# -- names, previews, users ------------------------------------------------------------------------------


def test_the_catalogue_offers_trait_and_event_names_from_a_sample(aws: Aws, console_api: Api, inbound: Api) -> None:
    # Given users with flat and nested traits, an account and events
    aws.set_settings(handle_accounts=True)
    identify(inbound, "u1", {"plan": "pro", "address": {"city": "Paris", "zip": "75001"}})
    identify(inbound, "u2", {"plan": "free", "<b>odd</b>": 1})
    assert inbound.post("/segment", {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"size": 5}})[0] == 200
    for event in ("Signed Up", "Signed Up", "Paid"):
        assert inbound.post("/segment", {"type": "track", "userId": "u1", "event": event})[0] == 200
    assert inbound.post("/segment", {"type": "page", "userId": "u1", "name": "Home"})[0] == 200
    # When the catalogue is read
    status, names = console_api.get("/console/api/catalogue")
    # Then nested traits are dotted, the most frequent come first, and page and screen are offered
    assert status == 200
    assert names["traits"][0] == "plan"
    assert set(names["traits"]) == {"plan", "address.city", "address.zip", "<b>odd</b>"}
    assert names["account_traits"] == ["size"]
    assert names["events"][0] == "Signed Up" and set(names["events"]) == {"Signed Up", "Paid", "page", "screen"}
    assert names["sampled"] == {"users": 2, "accounts": 1, "events": 4}


def test_the_catalogue_reads_a_bounded_sample_and_writes_nothing(aws: Aws, console_api: Api, monkeypatch) -> None:
    from segment_connector.ops import console as console_logic

    monkeypatch.setattr(console_logic, "SAMPLE_PER_SEGMENT", 2)
    items = aws.items()
    for index in range(40):
        aws.dynamodb.put_item(
            TableName="connector-test",
            Item={"pk": {"S": f"id#user_id#n{index}"}, "sk": {"S": "profile"}, "kind": {"S": "user"},
                  "traits": {"M": {f"t{index}": {"N": "1"}}}},
        )  # fmt: skip
    names = console_api.get("/console/api/catalogue")[1]
    assert names["sampled"]["users"] <= 2 * console_logic.SAMPLE_SEGMENTS
    assert len(names["traits"]) <= 2 * console_logic.SAMPLE_SEGMENTS
    assert len(aws.items()) == len(items) + 40


def test_a_rule_preview_counts_matching_users_of_the_sample(aws: Aws, console_api: Api, inbound: Api) -> None:
    identify(inbound, "u1", {"plan": "pro", "email": "one@example.com"})
    identify(inbound, "u2", {"plan": "pro"})
    identify(inbound, "u3", {"plan": "free"})
    rule = {"trait": "plan", "op": "eq", "value": "pro"}
    status, preview = console_api.post("/console/api/segments/preview", {"kind": "user", "rule": rule})
    assert status == 200 and (preview["sampled"], preview["matched"]) == (3, 2)
    assert {example["user_id"] for example in preview["examples"]} == {"u1", "u2"}
    assert all(example["traits"]["plan"] == "pro" for example in preview["examples"])


def test_a_rule_preview_reads_account_traits_and_previews_account_rules(
    aws: Aws, console_api: Api, inbound: Api
) -> None:
    aws.set_settings(handle_accounts=True)
    identify(inbound, "u1", {"plan": "pro"})
    identify(inbound, "u2", {"plan": "pro"})
    assert (
        inbound.post("/segment", {"type": "group", "userId": "u1", "groupId": "big", "traits": {"size": 500}})[0] == 200
    )
    user_rule = {
        "all": [{"trait": "plan", "op": "eq", "value": "pro"}, {"trait": "account.size", "op": "gt", "value": 100}]
    }
    preview = console_api.post("/console/api/segments/preview", {"kind": "user", "rule": user_rule})[1]
    assert preview["matched"] == 1 and preview["examples"][0]["user_id"] == "u1"
    account_rule = {"trait": "size", "op": "gte", "value": 500}
    preview = console_api.post("/console/api/segments/preview", {"kind": "account", "rule": account_rule})[1]
    assert (preview["sampled"], preview["matched"]) == (1, 1) and preview["examples"][0]["id"] == "big"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "user", "rule": {"trait": "plan", "op": "bogus"}}, "rule.op"),
        ({"kind": "user"}, "rule"),
        ({"kind": "account", "rule": {"trait": "email", "op": "exists"}}, "rule"),
        ({"kind": "robot", "rule": {"trait": "a", "op": "exists"}}, "kind"),
    ],
)
def test_an_invalid_rule_preview_is_400_naming_the_problem(console_api: Api, body: dict[str, Any], field: str) -> None:
    status, answer = console_api.post("/console/api/segments/preview", body)
    assert status == 400 and answer["details"][0]["field"] == field


def test_user_lookup_by_any_identity_shows_traits_segments_account_and_events(
    aws: Aws, console_api: Api, inbound: Api
) -> None:
    # Given a user with an email, an anonymous id, an account and events, and a segment that matches
    aws.set_settings(
        handle_accounts=True, segments=[{"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}]
    )
    identify(
        inbound,
        "u1",
        {"plan": "pro", "email": "One@Example.com", "x": "<img src=x onerror=alert(1)>"},
        anonymousId="a1",
    )
    assert (
        inbound.post("/segment", {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}})[0]
        == 200
    )
    assert inbound.post("/segment", {"type": "track", "userId": "u1", "event": "Paid"})[0] == 200
    # When looked up by user id, anonymous id, email (bare or prefixed)
    for query in ("u1", "a1", "one@example.com", "user_id:u1", "email:ONE@example.com", "anonymous_id:a1"):
        status, found = console_api.get(f"/console/api/users?q={query}")
        # Then the same user, with its segments, account and latest events
        assert status == 200, query
        assert found["user"]["user_id"] == "u1" and found["user"]["segments"] == ["Pro"]
        assert found["user"]["traits"]["x"] == "<img src=x onerror=alert(1)>"
        assert found["account"]["id"] == "g1" and found["account"]["traits"] == {"name": "Acme"}
        assert [event["event"] for event in found["events"]] == ["Paid"]
        # And not sent: the deployed default User Filter is empty
        assert found["sent"] == {"in_user_filter": False, "identify_traits": None}


def test_user_lookup_shows_the_traits_a_user_in_the_filter_is_sent_with(
    aws: Aws, console_api: Api, inbound: Api
) -> None:
    aws.set_settings(
        segments=[{"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}],
        synchronized_segments=["Pro"],
        synchronized_properties=["plan", "address.city"],
    )
    identify(inbound, "u1", {"plan": "pro", "seats": 3, "address": {"city": "Oslo", "zip": "0150"}})
    found = console_api.get("/console/api/users?q=u1")[1]
    assert found["sent"] == {
        "in_user_filter": True,
        "identify_traits": {"plan": "pro", "address": {"city": "Oslo"}, "hull_segments": ["Pro"]},
    }


@pytest.mark.parametrize(("query", "status"), [("", 400), ("%20", 400), ("nobody", 404), ("user_id:a1", 404)])
def test_user_lookup_without_a_match_is_a_clear_error(console_api: Api, inbound: Api, query: str, status: int) -> None:
    identify(inbound, "u1", {}, anonymousId="a1")
    answer_status, answer = console_api.get(f"/console/api/users?q={query}")
    assert answer_status == status and answer["code"] in ("bad_request", "not_found")


def test_a_new_admin_key_applies_without_waiting_for_a_cold_start(aws: Aws, console_api: Api, monkeypatch) -> None:
    # Given a signed-in console (its key cached for KEY_MAX_AGE seconds; here 0, as if they had passed)
    monkeypatch.setattr(console_api.module, "KEY_MAX_AGE", 0)
    assert console_api.get("/console/api/settings")[0] == 200
    # When the admin key is rotated in SSM (no cache cleared)
    aws.ssm.put_parameter(Name=f"{PREFIX}/admin-key", Value="rotated", Type="SecureString", Overwrite=True)
    # Then the old key is refused and the new one accepted
    assert console_api.get("/console/api/settings")[0] == 401
    assert console_api.get("/console/api/settings", auth=bearer("rotated"))[0] == 200


def test_the_catalogue_stays_small_whatever_names_senders_make_up(aws: Aws, console_api: Api, monkeypatch) -> None:
    from segment_connector.ops import console as console_logic

    monkeypatch.setattr(console_logic, "MAX_NAMES", 5)
    # Given profiles with a thousand-character trait name, and more names than offered
    for index in range(8):
        traits = {f"trait_{index}": 1, "x" * 1000 + str(index): 1, "common": 1}
        aws.dynamodb.put_item(
            TableName="connector-test",
            Item={"pk": {"S": f"id#user_id#n{index}"}, "sk": {"S": "profile"}, "kind": {"S": "user"},
                  "traits": {"M": {name: {"N": "1"} for name in traits}}},
        )  # fmt: skip
    aws.dynamodb.put_item(
        TableName="connector-test",
        Item={"pk": {"S": "id#user_id#n0"}, "sk": {"S": "event#m1"}, "kind": {"S": "event"},
              "type": {"S": "track"}, "event": {"S": "E" * 1000}},
    )  # fmt: skip
    names = console_api.get("/console/api/catalogue")[1]
    # Then the most frequent short names only, at most MAX_NAMES
    assert names["traits"][0] == "common" and len(names["traits"]) == 5
    assert all(len(name) <= console_logic.MAX_NAME_LENGTH for name in names["traits"])
    assert names["events"] == ["page", "screen"]


def test_values_senders_control_reach_the_console_whole(aws: Aws, console_api: Api, inbound: Api) -> None:
    # Given traits with a 46-digit integer, tiny and decimal numbers, unicode with a bidi override,
    # nesting 29 levels deep and a mixed list
    deep: dict[str, Any] = {"leaf": "x"}
    for _ in range(28):
        deep = {"d": deep}
    traits = {
        "big": 10**45,
        "small": 1e-100,
        "dec": 0.1,
        "uni": "日本語 🎉 \u202e",
        "deep": deep,
        "list": [1, "a", None, {"k": True}],
    }
    identify(inbound, "u1", traits)
    # When the user is looked up, the names read and a rule on the big number previewed
    found = console_api.get("/console/api/users?q=u1")[1]
    names = console_api.get("/console/api/catalogue")[1]
    preview = console_api.post(
        "/console/api/segments/preview", {"kind": "user", "rule": {"trait": "big", "op": "gt", "value": 10**44}}
    )[1]
    # Then the values come back exactly as JSON, nested names stop at NAME_DEPTH, and the rule matches
    assert found["user"]["traits"] == traits
    assert set(names["traits"]) == {"big", "small", "dec", "uni", "deep.d.d.d", "list"}
    assert preview["matched"] == 1


PYDANTIC_WORDS = (
    "Unable to extract tag",
    "Value error",
    "Extra inputs are not permitted",
    "Field required",
    "Input should",
)


def test_a_misspelled_setting_is_refused_with_did_you_mean(aws: Aws, console_api: Api) -> None:
    # Given a document with handle_page for handle_pages, and a rule key misspelled
    before = settings_in_ssm(aws)
    document = {
        "handle_page": False,
        "segments": [{"name": "Pro", "rule": {"tratt": "plan", "op": "eq", "value": "pro"}}],
    }
    # When saved
    status, answer = console_api.put("/console/api/settings", document)
    # Then 400 saying what is wrong and how to fix it, in plain words; nothing saved
    assert status == 400 and answer["code"] == "settings_invalid"
    assert {"field": "handle_page", "error": "is not a setting: did you mean handle_pages?"} in answer["details"]
    assert {"field": "segments.0.rule.tratt", "error": "is not a key of a rule: did you mean trait?"} in answer[
        "details"
    ]
    assert answer["error"].startswith("nothing was saved: fix the settings first (")
    assert "handle_page: is not a setting: did you mean handle_pages?" in answer["error"]
    assert not any(words in json.dumps(answer) for words in PYDANTIC_WORDS)
    assert settings_in_ssm(aws) == before


def test_a_settings_body_that_is_not_json_names_its_line_and_column(aws: Aws, console_api: Api) -> None:
    status, answer, _ = console_api.request("PUT", "/console/api/settings", raw=b'{\n  "handle_pages": true,\n}')
    assert status == 400
    assert answer["error"] == (
        "the settings document is not valid JSON: line 2, column 23: a comma before } is not allowed in JSON: remove it"
    )


def test_an_invalid_rule_preview_says_what_is_wrong(aws: Aws, console_api: Api) -> None:
    # Given a rule with an unknown op
    status, answer = console_api.post(
        "/console/api/segments/preview", {"kind": "user", "rule": {"trait": "plan", "op": "equals", "value": "pro"}}
    )
    # Then 400 naming the field, the ops there are and the closest one
    assert status == 400
    (detail,) = answer["details"]
    assert detail["field"] == "rule.op"
    assert detail["error"].startswith("must be one of eq, neq, in, nin, exists, missing, gt, gte")
    assert detail["error"].endswith('; got "equals"')
    assert answer["error"] == f"the rule cannot be previewed: rule.op: {detail['error']}"
    assert "the rule is invalid" not in answer["error"]
    assert not any(words in json.dumps(answer) for words in PYDANTIC_WORDS)

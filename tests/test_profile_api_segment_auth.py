"""The Segment-compatible Profile API's token, methods and failures (issue 16): only the profile
token opens it, and a busy table or a missing grant answers in Segment's shape."""

from __future__ import annotations

from typing import Any

import pytest

from harness import API_KEY, TEST_DEPLOYMENT, Api, Aws, basic
from local_stack.iam.policy import decide
from local_stack.iam.roles import function_roles
from local_stack.template import TEMPLATE_PATH
from segment_profile_helpers import SPACE, TOKEN, Message, identify_ann, path


class Busy:
    """A DynamoDB client that is throttled, whatever it is asked."""

    def __getattr__(self, operation: str) -> Any:
        from botocore.exceptions import ClientError

        def throttled(**_: Any) -> Any:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, operation)

        return throttled


def test_a_failed_read_is_in_the_functions_log(aws: Aws, function_log: Any, monkeypatch: pytest.MonkeyPatch):
    # Given InboundFunction as deployed, and a throttled table
    client = Api(function_log.cold_start("InboundFunction"), auth=basic(TOKEN))
    monkeypatch.setenv("SPACE_ID", SPACE)
    aws.set_secret("profile-token", TOKEN)
    monkeypatch.setattr(client.module.store().db, "client", Busy())
    # When the Profile API is read: Then the 503, and a warning in the function's log
    assert client.get(path("user_id:u1", "traits"))[0] == 503
    (line,) = function_log.find("profile api request failed")
    assert (line["service"], line["level"], line["status"]) == ("inbound", "WARNING", 503)


def test_other_methods_and_a_busy_table_answer_in_segments_shape(
    segment_profiles: Api,
    api: Api,
    message: Message,
    monkeypatch: pytest.MonkeyPatch,
):
    identify_ann(api, message)
    # Given a POST: Then 405 allowing GET
    status, body, headers = segment_profiles.request("POST", path("user_id:u1", "traits"), {})
    assert (status, body["error"]["code"], headers["Allow"]) == (405, "invalid_request_error", "GET")
    assert headers["Request-Id"]

    # Given DynamoDB throttling: Then 503 with Retry-After, never Segment's 5xx without a body
    monkeypatch.setattr(segment_profiles.module.store().db, "client", Busy())
    status, body, headers = segment_profiles.request("GET", path("user_id:u1", "traits"))
    assert (status, body["error"]["code"], headers["Retry-After"]) == (503, "store_unavailable", "2")
    assert set(body["error"]) == {"code", "message"} and headers["Request-Id"]


def test_only_the_profile_token_opens_the_routes_and_it_opens_no_other(
    segment_profiles: Api, api: Api, aws: Aws, message: Message
):
    identify_ann(api, message)
    url = path("user_id:u1", "traits")
    # Given no credentials, the inbound API key, another token or a token as the password
    for auth in (None, basic(API_KEY), basic("not-the-token"), "Basic " + "OnRlc3QtcHJvZmlsZS10b2tlbg==", "Bearer x"):
        status, body, headers = segment_profiles.request("GET", url, auth=auth)
        # Then Segment's 401 (also for an unknown space: nothing is told before the token)
        assert status == 401, (auth, body)
        assert body["error"]["code"] == "authentication_error" and headers["Request-Id"]
    assert segment_profiles.get(path("user_id:u1", "traits", space="x"), auth=None)[0] == 401
    # And the profile token opens neither the Tracking API nor the other Profile API
    assert segment_profiles.get("/v1/users/user_id:u1")[0] == 401
    assert segment_profiles.post("/segment", message("identify", userId="u9"))[0] == 401
    # And without a token configured nobody gets in; the answer names the parameter to create
    aws.ssm.delete_parameter(Name="/segment-connector/profile-token")
    from segment_connector.runtime import config

    config.clear_caches()
    status, body = segment_profiles.get(url)
    assert status == 401 and "/segment-connector/profile-token" in body["error"]["message"]


def test_without_its_grant_the_token_cannot_be_read_and_the_answer_says_so(
    segment_profiles: Api, tmp_path: Any
) -> None:
    from harness import iam_authority, template_without
    from local_stack.iam.deployment import authority_for
    from local_stack.iam.enforce import enforce

    # Given InboundFunction's role without ssm:GetParameter
    enforce(
        authority_for(TEST_DEPLOYMENT, template_without("InboundFunction", "ssm:GetParameter", tmp_path), record=False)
    )
    try:
        # When a Segment client reads traits
        status, body, headers = segment_profiles.request("GET", path("user_id:u1", "traits"))
    finally:
        enforce(iam_authority())
    # Then a 500 in Segment's shape that says an operator must fix the deployment
    assert (status, body["error"]["code"]) == (500, "permission_denied") and headers["Request-Id"]


def test_only_inbound_reads_the_profile_token() -> None:
    roles = function_roles(TEMPLATE_PATH.read_text(encoding="utf-8"), TEST_DEPLOYMENT)
    arn = "arn:aws:ssm:us-east-1:123456789012:parameter/segment-connector/profile-token"
    readers = {name for name, role in roles.items() if decide(role.statements, "ssm:GetParameter", arn, {}).allowed}
    assert readers == {"InboundFunction"}

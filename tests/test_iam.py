"""IAM as AWS enforces it: each function's calls checked against its own role in template.yaml
(local_stack.iam), so that a call AWS would deny fails here too."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from harness import (
    ADMIN_KEY,
    API_KEY,
    PREFIX,
    TABLE,
    TEMPLATE,
    TEST_DEPLOYMENT,
    WAIT_SECONDS,
    Api,
    Aws,
    Stack,
    basic,
    free_port,
    iam_authority,
    load_handler_module,
    template_without,
)
from local_stack.iam.deployment import authority_for
from local_stack.iam.enforce import CALLS_FILE_ENV as IAM_CALLS_ENV
from local_stack.iam.enforce import KMSAccessDeniedException, acting_as, enforce, unrecorded
from local_stack.iam.policy import Statement, decide
from local_stack.iam.report import Excuse, build_reports, render
from local_stack.iam.requests import Place, needs
from local_stack.iam.roles import Role, function_roles
from local_stack.lambda_runtime import LambdaContext
from local_stack.template import TEMPLATE_PATH
from segment_connector.runtime import config
from segment_connector.runtime.parameter_store import ParameterStore
from stream_helpers import WRITE_KEY, Connector

PLACE = Place("123456789012", "us-east-1")
TABLE_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"


def allow(actions: list[str], resources: list[str], **extra: Any) -> Statement:
    return Statement.parse("s", {"Effect": "Allow", "Action": actions, "Resource": resources, **extra})


def deny(actions: list[str], resources: list[str], **extra: Any) -> Statement:
    return Statement.parse("d", {"Effect": "Deny", "Action": actions, "Resource": resources, **extra})


# -- evaluation, as IAM does it for identity policies ------------------------------------------------


def test_an_explicit_deny_wins_over_any_allow() -> None:
    statements = [allow(["dynamodb:*"], ["*"]), deny(["dynamodb:DeleteItem"], [TABLE_ARN])]
    assert decide(statements, "dynamodb:PutItem", TABLE_ARN, {}).allowed
    assert not decide(statements, "dynamodb:DeleteItem", TABLE_ARN, {}).allowed


def test_nothing_is_allowed_without_a_matching_allow() -> None:
    assert not decide([allow(["dynamodb:GetItem"], [TABLE_ARN])], "dynamodb:PutItem", TABLE_ARN, {}).allowed
    assert not decide([allow(["dynamodb:GetItem"], [TABLE_ARN])], "dynamodb:GetItem", TABLE_ARN + "2", {}).allowed


def test_actions_match_without_case_and_resources_with_wildcards() -> None:
    statements = [allow(["DynamoDB:get?tem"], [f"{TABLE_ARN}/index/*"])]
    assert decide(statements, "dynamodb:GetItem", f"{TABLE_ARN}/index/by_time", {}).allowed
    assert not decide(statements, "dynamodb:GetItem", TABLE_ARN, {}).allowed  # the table is not an index
    assert not decide(statements, "dynamodb:GetItems", f"{TABLE_ARN}/index/x", {}).allowed


def test_not_action_and_not_resource() -> None:
    statements = [
        Statement.parse("n", {"Effect": "Allow", "NotAction": ["ssm:PutParameter"], "NotResource": ["arn:x:secret"]})
    ]
    assert decide(statements, "ssm:GetParameter", "arn:x:other", {}).allowed
    assert not decide(statements, "ssm:PutParameter", "arn:x:other", {}).allowed
    assert not decide(statements, "ssm:GetParameter", "arn:x:secret", {}).allowed


def test_a_condition_that_cannot_be_decided_grants_nothing_and_denies() -> None:
    unknown = {"Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}
    assert not decide([allow(["s3:GetObject"], ["*"], **unknown)], "s3:GetObject", "arn:o", {}).allowed
    statements = [allow(["s3:GetObject"], ["*"]), deny(["s3:GetObject"], ["*"], **unknown)]
    assert not decide(statements, "s3:GetObject", "arn:o", {}).allowed


def test_a_condition_on_a_known_key_is_evaluated() -> None:
    via = {"Condition": {"StringEquals": {"kms:ViaService": "ssm.us-east-1.amazonaws.com"}}}
    statements = [allow(["kms:Decrypt"], ["*"], **via)]
    assert decide(statements, "kms:Decrypt", "k", {"kms:viaservice": "ssm.us-east-1.amazonaws.com"}).allowed
    assert not decide(statements, "kms:Decrypt", "k", {"kms:viaservice": "s3.us-east-1.amazonaws.com"}).allowed


# -- what each call needs ------------------------------------------------------------------------------


def test_a_transaction_needs_each_items_own_action_on_its_table() -> None:
    params = {
        "TransactItems": [
            {"Put": {"TableName": TABLE, "Item": {}}},
            {"ConditionCheck": {"TableName": TABLE, "Key": {}}},
            {"Delete": {"TableName": "other", "Key": {}}},
            {"Put": {"TableName": TABLE, "Item": {}}},
        ]
    }
    found = {(n.action, n.resource) for n in needs("dynamodb", "TransactWriteItems", params, PLACE)}
    assert found == {
        ("dynamodb:PutItem", TABLE_ARN),
        ("dynamodb:ConditionCheckItem", TABLE_ARN),
        ("dynamodb:DeleteItem", "arn:aws:dynamodb:us-east-1:123456789012:table/other"),
    }


def test_resources_of_indexes_batches_parameters_functions_and_queues() -> None:
    query = needs("dynamodb", "Query", {"TableName": TABLE, "IndexName": "by_time"}, PLACE)
    assert [(n.action, n.resource) for n in query] == [("dynamodb:Query", f"{TABLE_ARN}/index/by_time")]
    batch = needs("dynamodb", "BatchWriteItem", {"RequestItems": {TABLE: [], "b": []}}, PLACE)
    assert {n.resource for n in batch} == {TABLE_ARN, "arn:aws:dynamodb:us-east-1:123456789012:table/b"}
    ssm = needs("ssm", "GetParameter", {"Name": "/segment-connector/x"}, PLACE)
    assert ssm[0].resource == "arn:aws:ssm:us-east-1:123456789012:parameter/segment-connector/x"
    invoke = needs("lambda", "Invoke", {"FunctionName": "f"}, PLACE)
    assert (invoke[0].action, invoke[0].resource) == (
        "lambda:InvokeFunction",
        "arn:aws:lambda:us-east-1:123456789012:function:f",
    )
    sqs = needs("sqs", "SendMessage", {"QueueUrl": "http://127.0.0.1:5/123456789012/q1"}, PLACE)
    assert sqs[0].resource == "arn:aws:sqs:us-east-1:123456789012:q1"
    assert needs("ssm", "DescribeParameters", {}, PLACE)[0].resource == "*"


# -- the roles SAM creates ------------------------------------------------------------------------------


def test_roles_come_from_sams_translation_with_the_statements_sam_adds() -> None:
    roles = function_roles(TEMPLATE_PATH.read_text(encoding="utf-8"), TEST_DEPLOYMENT)
    assert set(roles) == {"InboundFunction", "OutboundFunction", "ResyncFunction", "ConsoleFunction"}
    resync = roles["ResyncFunction"].statements
    # SAM's own statement for the async invoke's on-failure destination:
    assert any(s.sid.startswith("ResyncFunctionEventInvokeConfigOnFailureSQSPolicy") for s in resync)
    # SAM's managed policy for the DynamoDB event source (the stream is read with the role):
    outbound = roles["OutboundFunction"].statements
    assert decide(outbound, "dynamodb:GetRecords", "*", {}).allowed
    assert decide(resync, "dynamodb:BatchWriteItem", TABLE_ARN, {}).allowed


# -- enforcement on the handlers' calls ------------------------------------------------------------------


def test_a_call_the_role_does_not_allow_fails_as_on_aws_and_changes_nothing(aws: Aws) -> None:
    # Given InboundFunction's role (no SSM write at all)
    # When code acting as InboundFunction writes a parameter
    with acting_as("InboundFunction"), unrecorded(), pytest.raises(ClientError) as raised:
        aws.ssm.put_parameter(Name=f"{PREFIX}/settings", Value="{}", Type="String", Overwrite=True)
    # Then AWS's access-denied error names the action and the parameter's ARN, and nothing changed
    error = raised.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert "ssm:PutParameter" in error["Message"]
    assert f"arn:aws:ssm:us-east-1:123456789012:parameter{PREFIX}/settings" in error["Message"]
    assert aws.ssm.get_parameter(Name=f"{PREFIX}/settings")["Parameter"]["Value"] != "{}"


def test_threads_a_function_starts_act_under_its_role(aws: Aws) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def delete() -> Any:
        return aws.dynamodb.delete_table(TableName=TABLE)

    with acting_as("ConsoleFunction"), unrecorded(), ThreadPoolExecutor(2) as pool:
        future = pool.submit(delete)
        with pytest.raises(ClientError, match="dynamodb:DeleteTable"):
            future.result()
    assert aws.dynamodb.describe_table(TableName=TABLE)["Table"]["TableName"] == TABLE


def test_the_aws_managed_key_needs_no_kms_grant_but_a_customer_key_does(aws: Aws) -> None:
    # Given the api key under aws/ssm, and a settings-like SecureString under a customer managed key
    kms = boto3.client("kms")
    key = kms.create_key()["KeyMetadata"]
    aws.ssm.put_parameter(Name=f"{PREFIX}/shared-secret", Value="s", Type="SecureString", KeyId=key["KeyId"])
    with acting_as("InboundFunction"):
        # Then InboundFunction reads the aws/ssm one (its key policy admits the account's principals)
        assert aws.ssm.get_parameter(Name=f"{PREFIX}/api-key", WithDecryption=True)["Parameter"]["Value"]
        # and needs kms:Decrypt on the customer key for the other (the template grants none)
        with unrecorded(), pytest.raises(ClientError, match=f"kms:Decrypt on resource: {key['Arn']}"):
            aws.ssm.get_parameter(Name=f"{PREFIX}/shared-secret", WithDecryption=True)


# -- a template with one needed action removed fails the flows that need it ---------------------------------


def test_inbound_without_a_needed_action_answers_5xx_and_stores_nothing(api: Api, aws: Aws, tmp_path: Path) -> None:
    # Given InboundFunction's role without dynamodb:PutItem (the profile's transaction needs it)
    enforce(
        authority_for(TEST_DEPLOYMENT, template_without("InboundFunction", "dynamodb:PutItem", tmp_path), record=False)
    )
    try:
        # When Segment delivers an identify
        status, answer = api.post("/segment", {"type": "identify", "userId": "u1", "messageId": "m1"})
    finally:
        enforce(iam_authority())
    # Then it is answered 500 naming the problem (Segment retries) and nothing was stored
    assert status == 500, answer
    assert answer["code"] == "permission_denied"
    assert aws.items_of_kind("user") == []


def test_the_template_as_it_is_stores_the_same_call(api: Api, aws: Aws) -> None:
    status, answer = api.post("/segment", {"type": "identify", "userId": "u1", "messageId": "m1"})
    assert status == 200, answer
    assert [item["user_id"] for item in aws.items_of_kind("user")] == ["u1"]


# -- make iam's report -------------------------------------------------------------------------------------


def _call(function: str, action: str, resource: str, allowed: bool = True, statement: str = "p#0") -> dict[str, Any]:
    return {
        "function": function,
        "action": action,
        "resource": resource,
        "allowed": allowed,
        "granted_by": [{"statement": statement, "actions": [0], "resources": [0]}] if allowed else [],
    }


def test_the_report_fails_on_a_grant_never_used_unless_it_is_excused() -> None:
    role = Role(
        "F",
        (
            Statement.parse("p#0", {"Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": [TABLE_ARN]}),
            Statement.parse("p#1", {"Effect": "Allow", "Action": ["dynamodb:Scan"], "Resource": [TABLE_ARN]}),
        ),
    )
    calls = [_call("F", "dynamodb:GetItem", TABLE_ARN)]
    table, ok = render(build_reports({"F": role}, calls, []))
    assert not ok and "UNUSED:  dynamodb:Scan" in table
    excuse = Excuse("F", "dynamodb:Scan", "*", "an operator's scan")
    table, ok = render(build_reports({"F": role}, calls, [excuse]))
    assert ok, table
    assert "an operator's scan" in table


def test_the_report_fails_on_a_denied_call() -> None:
    role = Role("F", (Statement.parse("p#0", {"Effect": "Allow", "Action": ["a:B"], "Resource": ["*"]}),))
    calls = [_call("F", "a:B", "*"), _call("F", "a:C", "arn:x", allowed=False)]
    table, ok = render(build_reports({"F": role}, calls, []))
    assert not ok
    assert "DENIED:  a:C on arn:x" in table


# -- the local stack (`make run`) enforces the same roles -------------------------------------------------


@pytest.mark.e2e
def test_the_local_stack_with_a_needed_action_removed_logs_access_denied_sends_nothing_and_stays_up(
    tmp_path: Path,
) -> None:
    # Given `make run` with a template whose OutboundFunction may not read its parameters
    template = template_without("OutboundFunction", "ssm:GetParameter", tmp_path)
    stack = Stack(
        [sys.executable, "-m", "local_stack"],
        free_port(),
        {"TEMPLATE_FILE": str(template), IAM_CALLS_ENV: ""},  # this run's denials are the point, not a finding
    )
    try:
        stack.wait_ready()
        # When Segment delivers an identify (stored by InboundFunction, whose role is intact)
        answer = requests.post(
            f"{stack.url}/segment",
            json={"type": "identify", "userId": "denied-1", "traits": {"email": "d@example.com"}},
            auth=("local-api-key", ""),
            timeout=WAIT_SECONDS,
        )
        assert answer.status_code == 200, answer.text
        # Then OutboundFunction's log shows AWS's access-denied failure naming the action
        line = stack.wait_for_line(lambda text: "AccessDeniedException" in text, WAIT_SECONDS)
        assert line is not None, stack.output
        assert "ssm:GetParameter" in line
        # and nothing reached Segment, and the stack still answers
        assert not any(text.startswith("segment <- ") for text in stack.lines), stack.output
        assert requests.get(f"{stack.url}/health", timeout=WAIT_SECONDS).json() == {"status": "ok"}
    finally:
        stack.kill()


# -- a customer managed key (KmsKeyArn): the key policy, not the account, decides who reads a key ------------


def test_with_a_customer_managed_key_each_function_decrypts_only_what_it_reads(
    connector: Connector, console_api: Api, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segment_profile_helpers import SPACE, TOKEN

    # Given a stack deployed with KmsKeyArn and its keys stored under that key
    key = boto3.client("kms").create_key()["KeyMetadata"]
    deployment = dataclasses.replace(TEST_DEPLOYMENT, parameters={"KmsKeyArn": key["Arn"]})
    monkeypatch.setenv("SPACE_ID", SPACE)
    keys = (("api-key", API_KEY), ("write-key", WRITE_KEY), ("admin-key", ADMIN_KEY), ("profile-token", TOKEN))
    for suffix, value in keys:
        aws.ssm.put_parameter(
            Name=f"{PREFIX}/{suffix}", Value=value, Type="SecureString", KeyId=key["Arn"], Overwrite=True
        )
    config.clear_caches()
    queues = boto3.client("sqs")
    queue = {
        logical_id: queues.create_queue(
            QueueName=f"{TEST_DEPLOYMENT.stack_name}-{logical_id}", Attributes={"KmsMasterKeyId": key["Arn"]}
        )["QueueUrl"]
        for logical_id in ("OutboundFailureQueue", "ResyncFailureQueue")
    }
    connector.settings(synchronized_segments=["ALL"])
    enforce(authority_for(deployment))
    try:
        # Then each function runs (Lambda decrypts its environment with its role): InboundFunction
        # decrypts the API key, OutboundFunction the write key, the console the admin key
        status, answer = connector.api.post("/segment", {"type": "identify", "userId": "k1", "messageId": "k1"})
        assert status == 200, answer
        connector.drain()
        assert [m["userId"] for m in connector.sent("identify")] == ["k1"]
        # and the Profile API's token
        profiles = Api(connector.api.module, auth=basic(TOKEN))
        status, answer = profiles.get(f"/v1/spaces/{SPACE}/collections/users/profiles/user_id:k1/traits")
        assert status == 200, answer
        status, board = console_api.get("/console/api/dashboard")
        assert status == 200, board
        resync = load_handler_module("resync")
        assert resync.lambda_handler({"action": "status"}, LambdaContext("connector-resync", 512, 900)) is not None
        # OutboundFunction and ResyncFunction read the write key; only they do
        for function in ("OutboundFunction", "ResyncFunction"):
            with acting_as(function):
                value = aws.ssm.get_parameter(Name=f"{PREFIX}/write-key", WithDecryption=True)
                assert value["Parameter"]["Value"] == WRITE_KEY
        for function in ("InboundFunction", "ConsoleFunction"):
            with acting_as(function), unrecorded(), pytest.raises(ClientError, match="AccessDenied"):
                aws.ssm.get_parameter(Name=f"{PREFIX}/write-key", WithDecryption=True)
        for function in ("OutboundFunction", "ResyncFunction", "ConsoleFunction"):
            with acting_as(function), unrecorded(), pytest.raises(ClientError, match="AccessDenied"):
                aws.ssm.get_parameter(Name=f"{PREFIX}/profile-token", WithDecryption=True)
        # The console reads the admin key and writes the write key under the same key
        with acting_as("ConsoleFunction"):
            assert aws.ssm.get_parameter(Name=f"{PREFIX}/admin-key", WithDecryption=True)["Parameter"]["Value"]
            ParameterStore(PREFIX, aws.ssm, key_id=key["Arn"]).write("write-key", "rotated", secure=True)
        stored = aws.ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [f"{PREFIX}/write-key"]}]
        )["Parameters"][0]
        assert stored["KeyId"] == key["Arn"]
        # Lambda sends to the encrypted on-failure queues with each function's role
        for function, logical_id in (
            ("OutboundFunction", "OutboundFailureQueue"),
            ("ResyncFunction", "ResyncFailureQueue"),
        ):
            with acting_as(function):
                queues.send_message(QueueUrl=queue[logical_id], MessageBody="{}")
    finally:
        enforce(iam_authority())


def test_a_function_whose_role_cannot_decrypt_its_environment_fails_as_lambda_does(
    api: Api, aws: Aws, tmp_path: Path
) -> None:
    # Given KmsKeyArn and an InboundFunction role without its kms:Decrypt statements
    key = boto3.client("kms").create_key()["KeyMetadata"]
    deployment = dataclasses.replace(TEST_DEPLOYMENT, parameters={"KmsKeyArn": key["Arn"]})
    enforce(authority_for(deployment, template_without("InboundFunction", "kms:Decrypt", tmp_path), record=False))
    try:
        # When it is invoked, Then Lambda cannot start it, and nothing is stored
        with pytest.raises(KMSAccessDeniedException):
            api.post("/segment", {"type": "identify", "userId": "k2", "messageId": "k2"})
    finally:
        enforce(iam_authority())
    assert aws.items_of_kind("user") == []


def test_the_console_without_put_parameter_answers_500_and_the_settings_stay(
    console_api: Api, aws: Aws, tmp_path: Path
) -> None:
    # Given ConsoleFunction's role without ssm:PutParameter
    before = aws.ssm.get_parameter(Name=f"{PREFIX}/settings")["Parameter"]
    enforce(
        authority_for(TEST_DEPLOYMENT, template_without("ConsoleFunction", "ssm:PutParameter", tmp_path), record=False)
    )
    try:
        # When the operator saves settings in the console
        status, answer = console_api.put(
            "/console/api/settings", {**json.loads(before["Value"]), "handle_pages": False}
        )
    finally:
        enforce(iam_authority())
    # Then the answer names the problem (500 permission_denied) and the settings did not change
    assert (status, answer["code"]) == (500, "permission_denied"), answer
    after = aws.ssm.get_parameter(Name=f"{PREFIX}/settings")["Parameter"]
    assert (after["Version"], after["Value"]) == (before["Version"], before["Value"])


def test_the_local_stack_invokes_functions_by_the_names_their_roles_grant() -> None:
    # Given the local stack's functions: the console invokes OutboundFunction by the name in its
    # environment (!Ref OutboundFunction), ResyncFunction invokes itself by its own name
    from local_stack.__main__ import local_deployment
    from local_stack.lambda_runtime import TABLE_NAME, deployed_function_name, function_environment

    environment = function_environment(TEMPLATE, "ConsoleFunction", TABLE_NAME, "http://aws", "http://segment")
    roles = function_roles(TEMPLATE_PATH.read_text(encoding="utf-8"), local_deployment(TEMPLATE, PREFIX))
    function_arn = "arn:aws:lambda:us-east-1:123456789012:function:"
    # Then those names are the ones the roles allow (as !Ref of a function is its name on AWS)
    outbound = environment["OUTBOUND_FUNCTION_NAME"]
    assert outbound == deployed_function_name(TEMPLATE, "OutboundFunction")
    assert decide(roles["ConsoleFunction"].statements, "lambda:InvokeFunction", function_arn + outbound, {}).allowed
    resync = deployed_function_name(TEMPLATE, "ResyncFunction")
    assert decide(roles["ResyncFunction"].statements, "lambda:InvokeFunction", function_arn + resync, {}).allowed

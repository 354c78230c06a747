"""`segment-connector keys set` writes through the console's ParameterStore: AWS's refusal, even
one that the adapter wraps (a denial), ends in one line that never shows the value."""

from __future__ import annotations

import io
import sys
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from harness import PREFIX, TABLE, Aws
from segment_connector_cli import main as cli
from segment_connector_cli.target import Target

STACK = "segment-connector"  # samconfig.toml's stack_name: the default target
OUTPUTS = {"TableName": TABLE, "ParameterPrefix": PREFIX, "OutboundFunctionName": "segment-connector-Outbound"}


def deploy_outputs() -> None:
    """Given the connector deployed as the stack samconfig.toml names."""
    body = (
        '{"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}, "Outputs": {'
        + ", ".join(f'"{key}": {{"Value": "{value}"}}' for key, value in OUTPUTS.items())
        + "}}"
    )
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=body)


def keys_set(name: str, value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(sys, "stdin", io.StringIO(value + "\n"))
    capsys.readouterr()
    code = cli.main(["keys", "set", name])
    out, err = capsys.readouterr()
    assert value not in out and value not in err  # never printed, not even in AWS's message
    return code, out, err


def test_a_key_ssm_refuses_is_one_line_without_its_value(
    ssm_tiers: Aws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy_outputs()
    # Given a value over SSM's 8 KB (the advanced tier's limit)
    value = "k" * 9000
    # When it is set / Then SSM's refusal is one line naming the parameter, and the key is not replaced
    code, out, err = keys_set("api-key", value, capsys, monkeypatch)
    assert code == 1 and out == ""
    assert err.startswith(f"segment-connector: error: {PREFIX}/api-key not written: ValidationException: ")
    assert len(err.splitlines()) == 1 and "8192" in err
    stored = ssm_tiers.ssm.get_parameter(Name=f"{PREFIX}/api-key", WithDecryption=True)["Parameter"]["Value"]
    assert stored != value


class DenyingSsm:
    """SSM refusing the write with AccessDenied, its message echoing the request (as some do)."""

    def put_parameter(self, **request: Any) -> Any:
        message = f"not authorized to perform ssm:PutParameter with Value {request['Value']}"
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": message}}, "PutParameter")


def test_a_denied_key_is_told_as_aws_tells_it_with_the_value_masked(
    aws: Aws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy_outputs()
    # Given an operator whose role may not write the parameter (ParameterStore raises PermissionDenied)
    real_client = Target.client
    monkeypatch.setattr(
        Target, "client", lambda self, service: DenyingSsm() if service == "ssm" else real_client(self, service)
    )
    # When a key is set / Then AWS's code and message, the value masked, in one line; exit 1
    code, out, err = keys_set("write-key", "wk-denied-secret", capsys, monkeypatch)
    assert (code, out) == (1, "")
    assert err == (
        f"segment-connector: error: {PREFIX}/write-key not written: AccessDeniedException: not authorized to "
        "perform ssm:PutParameter with Value ***\n"
    )


def test_the_profile_token_is_set_like_the_other_keys(
    aws: Aws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy_outputs()
    # When the Segment-compatible Profile API's token is set
    code, out, _ = keys_set("profile-token", "tok-16", capsys, monkeypatch)
    # Then it is the SecureString <prefix>/profile-token that InboundFunction reads
    assert code == 0 and f"wrote SecureString {PREFIX}/profile-token" in out
    stored = aws.ssm.get_parameter(Name=f"{PREFIX}/profile-token", WithDecryption=True)["Parameter"]
    assert (stored["Type"], stored["Value"]) == ("SecureString", "tok-16")

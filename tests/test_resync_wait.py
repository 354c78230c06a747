"""`segment-connector resync --wait` gives up following after its timeout."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from harness import PREFIX, TABLE
from segment_connector_cli import main as cli

STACK = "segment-connector"  # samconfig.toml's stack_name: the default target
RESYNC = "segment-connector-resync"
RUNNING = {"id": "r-1", "status": "running", "reason": "manual", "segments": 16, "segments_done": 3, "evaluated": 30}


def deploy_outputs() -> None:
    """Given the connector deployed as the stack samconfig.toml names."""
    outputs = {
        "TableName": TABLE,
        "ParameterPrefix": PREFIX,
        "OutboundFunctionName": "segment-connector-OutboundFunction-AbC123",
        "ResyncFunctionName": RESYNC,
        "ApiUrl": "https://abc.execute-api.us-east-1.amazonaws.com",
    }
    body = (
        '{"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}, "Outputs": {'
        + ", ".join(f'"{key}": {{"Value": "{value}"}}' for key, value in outputs.items())
        + "}}"
    )
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=body)


def test_resync_wait_stops_at_its_timeout_with_a_clear_message(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    deploy_outputs()
    calls: list[dict[str, Any]] = []

    def resync_function(function: str, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(payload)
        return RUNNING  # a resync that never ends

    # When the operator waits at most 0.2 s for it
    code = cli.main(["resync", "--wait", "--timeout", "0.2", "--interval", "0.01"], invoker=resync_function)
    # Then the CLI stops following, says it goes on and how to see it, and exits 1
    out, err = capsys.readouterr()
    assert out.splitlines() == ["resync r-1 started (manual)"], err
    assert code == 1
    assert err.splitlines()[-1] == (
        "segment-connector: error: stopped waiting for resync r-1 after 0.2 s: it is still running "
        "(segments 3/16, evaluated 30, changed 0, sent 0, failed 0) and goes on; `segment-connector status` "
        "shows it, `--timeout SECONDS` waits longer"
    )
    assert len(calls) > 2 and calls[0]["action"] == "start" and {c["action"] for c in calls[1:]} == {"status"}


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_resync_timeout_must_be_a_positive_number_of_seconds(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["resync", "--wait", "--timeout", value], invoker=lambda function, payload: None)
    assert "expected a number of seconds above 0" in capsys.readouterr().err

"""template.yaml and the local stack for the console: routes, least privilege, the admin key."""

from __future__ import annotations

from typing import Any

from harness import OUTBOUND_FUNCTION, PREFIX, TABLE, TEST_DEPLOYMENT
from local_stack.api import route_by_path
from local_stack.config import load_config
from local_stack.iam.policy import decide
from local_stack.iam.roles import function_roles
from local_stack.template import TEMPLATE_PATH, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = sorted(name for name, res in RESOURCES.items() if res["Type"] == "AWS::Serverless::Function")


ROLES = function_roles(TEMPLATE_PATH.read_text(encoding="utf-8"), TEST_DEPLOYMENT)  # as IAM evaluates them
PARAMETERS = ("api-key", "shared-secret", "write-key", "admin-key", "settings", "profile-token", "other")
TABLE_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"


def allowed(function: str, action: str, resource: str) -> bool:
    return decide(ROLES[function].statements, action, resource, {}).allowed


def parameter_arn(suffix: str) -> str:
    return f"arn:aws:ssm:us-east-1:123456789012:parameter{PREFIX}/{suffix}"


def test_console_routes_go_to_the_console_function() -> None:
    events = RESOURCES["ConsoleFunction"]["Properties"]["Events"].values()
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events if e["Type"] == "HttpApi"}
    assert routes == {("GET", "/console"), ("GET", "/console/assets/{name}"), ("ANY", "/console/api/{proxy+}")}


def test_only_the_console_writes_to_ssm_and_only_the_settings_and_the_write_key() -> None:
    # Given every function's role as IAM evaluates it
    for function in FUNCTIONS:
        for action in ("ssm:PutParameter", "ssm:DeleteParameter", "ssm:LabelParameterVersion"):
            writable = {suffix for suffix in PARAMETERS if allowed(function, action, parameter_arn(suffix))}
            # Then inbound, outbound and resync write nothing; the console puts exactly these two
            expected = (
                {"write-key", "settings"} if (function, action) == ("ConsoleFunction", "ssm:PutParameter") else set()
            )
            assert writable == expected, (function, action)


def test_the_console_reads_the_table_and_never_writes_it() -> None:
    for action in ("GetItem", "BatchGetItem", "Query", "Scan", "DescribeTable"):
        assert allowed("ConsoleFunction", f"dynamodb:{action}", TABLE_ARN), action
    for action in ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "ConditionCheckItem"):
        assert not allowed("ConsoleFunction", f"dynamodb:{action}", TABLE_ARN), action
    function_arn = "arn:aws:lambda:us-east-1:123456789012:function:"
    assert allowed("ConsoleFunction", "lambda:InvokeFunction", function_arn + OUTBOUND_FUNCTION)
    assert not allowed("ConsoleFunction", "lambda:InvokeFunction", function_arn + "connector-resync")


def test_the_console_never_reads_the_write_keys_value() -> None:
    # Existence comes from the parameter's metadata: no GetParameter(s) on the write key
    for action in ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParameterHistory"):
        assert not allowed("ConsoleFunction", action, parameter_arn("write-key")), action
    assert allowed("ConsoleFunction", "ssm:DescribeParameters", "*")


def test_the_console_url_is_an_output() -> None:
    assert TEMPLATE["Outputs"]["ConsoleUrl"]["Value"]["Fn::Sub"].endswith("/console")


def test_the_local_stack_takes_the_admin_key_from_admin_key() -> None:
    assert load_config(TEMPLATE, {}).admin_key == "local-admin-key"
    config = load_config(TEMPLATE, {"ADMIN_KEY": "mine"})
    assert config.admin_key == "mine" and not config.admin_key_is_default


def test_local_routing_sends_console_paths_to_the_console() -> None:
    invoke = route_by_path({"/console": lambda e: "console"}, lambda e: "inbound")
    for path, target in (
        ("/console", "console"),
        ("/console/api/settings", "console"),
        ("/console/assets/console.js", "console"),
        ("/consoles", "inbound"),
        ("/segment", "inbound"),
        ("/", "inbound"),
    ):
        assert invoke({"rawPath": path}) == target, path

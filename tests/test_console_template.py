"""template.yaml and the local stack for the console: routes, least privilege, the admin key."""

from __future__ import annotations

from typing import Any

from local_stack.api import route_by_path
from local_stack.config import load_config
from local_stack.template import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = sorted(name for name, res in RESOURCES.items() if res["Type"] == "AWS::Serverless::Function")


def statements(function: str) -> list[dict[str, Any]]:
    return [s for policy in RESOURCES[function]["Properties"]["Policies"] for s in policy["Statement"]]


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return [value] if isinstance(value, str) else list(value)


def parameter_names(statement: dict[str, Any]) -> set[str]:
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return {r["Fn::Sub"].rsplit("}", 1)[1] for r in resources}


def test_console_routes_go_to_the_console_function() -> None:
    events = RESOURCES["ConsoleFunction"]["Properties"]["Events"].values()
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events if e["Type"] == "HttpApi"}
    assert routes == {("GET", "/console"), ("GET", "/console/assets/{name}"), ("ANY", "/console/api/{proxy+}")}


def test_only_the_console_writes_to_ssm_and_only_the_settings_and_the_write_key() -> None:
    # Given every function's policy statements
    for function in FUNCTIONS:
        writes = [s for s in statements(function) if any(a.startswith("ssm:") and "Get" not in a for a in actions(s))]
        if function != "ConsoleFunction":
            # Then inbound, outbound and resync have no SSM write
            assert writes == [], function
            continue
        # And the console may put exactly these two parameters
        assert [actions(s) for s in writes] == [["ssm:PutParameter"]]
        assert parameter_names(writes[0]) == {"/write-key", "/settings"}


def test_the_console_reads_the_table_and_never_writes_it() -> None:
    dynamodb = {a for s in statements("ConsoleFunction") for a in actions(s) if a.startswith("dynamodb:")}
    assert dynamodb == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:DescribeTable",
    }
    invoke = [s for s in statements("ConsoleFunction") if "lambda:InvokeFunction" in actions(s)]
    assert [s["Resource"] for s in invoke] == [{"Fn::GetAtt": ["OutboundFunction", "Arn"]}]


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

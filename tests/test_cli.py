"""The operator CLI `segment-connector`: each command against moto (a deployed stack found by its
CloudFormation outputs; Lambda invokes go to an injected invoker), the local Lambda Invoke API it
uses with --local, the settings watcher, and the whole of it against a running local stack (e2e)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from harness import API_KEY, PREFIX, SETTINGS_DEFAULT, TABLE, WAIT_SECONDS, Aws, Stack, free_port
from local_stack.lambda_api import LambdaApi, function_name_of
from local_stack.settings_watcher import SettingsWatcher, parameter_change_event
from local_stack.template import ROOT
from segment_connector.store.profile_store import ProfileStore
from segment_connector_cli import main as cli
from segment_connector_cli.commands import keys as keys_command
from segment_connector_cli.target import STATE_ENV, FunctionFailed, Target, local_target, samconfig_defaults
from stream_helpers import WRITE_KEY

STACK = "segment-connector"  # samconfig.toml's stack_name: the default target
OUTBOUND = "segment-connector-OutboundFunction-AbC123"
RESYNC = "segment-connector-resync"
PRO = {"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}
JOB = {
    "id": "r-1",
    "status": "running",
    "reason": "manual",
    "started_at": "2026-01-01T00:00:00.000Z",
    "updated_at": "2026-01-01T00:00:01.000Z",
    "finished_at": None,
    "segments": 16,
    "segments_done": 0,
    "evaluated": 0,
    "changed": 0,
    "sent": 0,
    "failed": 0,
}


# -- harness ---------------------------------------------------------------------------------------


def outputs_template(**overrides: str) -> str:
    outputs = {
        "TableName": TABLE,
        "ParameterPrefix": PREFIX,
        "OutboundFunctionName": OUTBOUND,
        "ResyncFunctionName": RESYNC,
        "ApiUrl": "https://abc.execute-api.us-east-1.amazonaws.com",
        **overrides,
    }
    return json.dumps(
        {
            "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items() if value},
        }
    )


@pytest.fixture
def deployed(aws: Aws) -> Aws:
    """Given the connector deployed as the stack samconfig.toml names (its outputs point at moto's table)."""
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=outputs_template())
    return aws


class Functions:
    """The stack's functions for the CLI: records each invocation, answers from a script per function."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, list[Any]] = {}
        self.handlers: dict[str, Any] = {}

    def __call__(self, function: str, payload: dict[str, Any]) -> Any:
        self.calls.append((function, payload))
        if function in self.handlers:
            with contextlib.redirect_stdout(io.StringIO()):  # the function's logs are not the CLI's output
                return self.handlers[function](payload)
        script = self.answers[function]
        answer = script.pop(0) if len(script) > 1 else script[0]  # the last answer repeats
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def functions() -> Functions:
    return Functions()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Run:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], functions: Functions, monkeypatch: pytest.MonkeyPatch):
    """`segment-connector ARGS` in-process, stdin given as text (a terminal with tty=True)."""

    def invoke(*argv: str, stdin: str = "", tty: bool = False) -> Run:
        monkeypatch.setattr(sys, "stdin", Terminal(stdin) if tty else io.StringIO(stdin))
        capsys.readouterr()
        code = cli.main(list(argv), invoker=functions)
        out, err = capsys.readouterr()
        for secret in (API_KEY, WRITE_KEY, "wk-new-secret", "s3cr3t-typed"):
            assert secret not in out and secret not in err  # no command ever prints a key
        return Run(code, out, err)

    return invoke


def settings_file(tmp_path: Path, document: Any) -> str:
    path = tmp_path / f"settings-{uuid.uuid4().hex[:6]}.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def stored_settings(aws: Aws) -> str:
    return aws.ssm.get_parameter(Name=f"{PREFIX}/settings")["Parameter"]["Value"]


# -- help, the package, the console script -----------------------------------------------------------

COMMANDS = [
    [],
    ["settings"],
    ["settings", "show"],
    ["settings", "validate"],
    ["settings", "put"],
    ["keys"],
    ["keys", "set"],
    ["status"],
    ["resync"],
    ["replay"],
    ["users"],
    ["users", "get"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "(none)")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert out.startswith(f"usage: segment-connector {' '.join(command)}".rstrip())
    if command and command[-1] not in ("settings", "keys", "users"):
        assert "--local" in out and "--stack-name" in out


@pytest.mark.parametrize("group", ["settings", "keys", "users"])
def test_a_group_without_an_action_shows_its_help(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([group]) == 2
    assert f"usage: segment-connector {group}" in capsys.readouterr().err


def test_usage_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["keys", "set", "password"], ["replay", "--limit", "0"], ["nope"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1].startswith("segment-connector: error: ")


def test_the_console_script_and_module_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "segment-connector" and project["scripts"] == {
        "segment-connector": "segment_connector_cli.main:main"
    }
    assert project["requires-python"] == ">=3.13" and project["dependencies"] == []
    result = subprocess.run(
        [sys.executable, "-m", "segment_connector_cli", "--version"],
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / folder) for folder in ("cli", "layers/common"))},
    )
    assert result.returncode == 0 and result.stdout.startswith("segment-connector ")
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():  # `make venv` installs the console script
        script = ROOT / ".venv" / "bin" / "segment-connector"
        assert script.exists(), "run `make venv`"
        assert subprocess.run(
            [str(script), "--help"], capture_output=True, text=True, timeout=WAIT_SECONDS
        ).stdout.startswith("usage: segment-connector")


# -- targets -------------------------------------------------------------------------------------------


def test_the_default_stack_name_comes_from_samconfig() -> None:
    assert samconfig_defaults(ROOT)["stack_name"] == STACK


def test_an_unknown_stack_is_one_line_error(aws: Aws, run) -> None:
    result = run("status", "--stack-name", "nope", "--region", "us-east-1")
    assert result.code == 1 and result.out == ""
    assert (
        result.err == "segment-connector: error: no stack nope in us-east-1: pass --stack-name and --region of "
        "the deployed stack, or --local for the local stack\n"
    )


def test_a_stack_without_the_outputs_is_refused(aws: Aws, run) -> None:
    boto3.client("cloudformation").create_stack(StackName="old", TemplateBody=outputs_template(TableName=""))
    result = run("status", "--stack-name", "old")
    assert result.code == 1 and "stack old has no output TableName" in result.err
    assert "sam deploy" in result.err


def test_local_without_a_running_stack_says_how_to_start_one(tmp_path: Path, run, monkeypatch) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state.json"))
    result = run("status", "--local")
    assert result.code == 1 and result.err.count("\n") == 1
    assert result.err.startswith("segment-connector: error: no local stack is running") and "make run" in result.err
    # a state file whose process is gone is stale
    (tmp_path / "state.json").write_text(json.dumps({"pid": 2**22 + 12345, "aws_endpoint_url": "http://x"}))
    assert "is stale" in run("replay", "--local").err
    # --local is the local stack: no stack name or region
    assert "--local does not take" in run("status", "--local", "--region", "eu-west-1").err


def test_the_local_target_comes_from_the_state_file(tmp_path: Path, monkeypatch) -> None:
    state = {
        "pid": os.getpid(),
        "api_url": "http://127.0.0.1:3000",
        "aws_endpoint_url": "http://127.0.0.1:5000",
        "lambda_endpoint_url": "http://127.0.0.1:5001",
        "table_name": "t",
        "parameter_prefix": "/p",
        "region": "us-east-1",
    }
    (tmp_path / ".local-stack").mkdir()
    (tmp_path / ".local-stack" / "state.json").write_text(json.dumps(state))
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.delenv(STATE_ENV, raising=False)
    # Found from a subdirectory, upwards
    target = local_target(nested)
    assert (target.table_name, target.parameter_prefix, target.outbound_function, target.resync_function) == (
        "t",
        "/p",
        "OutboundFunction",
        "ResyncFunction",
    )
    assert target.parameter("settings") == "/p/settings" and target.local
    assert target.client("lambda").meta.endpoint_url == "http://127.0.0.1:5001"
    assert target.client("ssm").meta.endpoint_url == "http://127.0.0.1:5000"


# -- settings ------------------------------------------------------------------------------------------


def test_settings_show_prints_the_document_and_its_warnings(deployed: Aws, run) -> None:
    # Given the template's default settings and a write key
    deployed.set_secret("write-key", WRITE_KEY)
    # When shown
    result = run("settings", "show")
    # Then stdout is the document (pretty JSON, a file to edit), stderr the warnings
    assert result.code == 0
    assert result.json == json.loads(SETTINGS_DEFAULT) and result.out.startswith("{\n  ")
    assert result.err.startswith("warning: no_users_in_filter: ")
    # And with --json: one object
    shown = run("settings", "show", "--json").json
    assert shown["settings"] == json.loads(SETTINGS_DEFAULT) and shown["valid"] is True and shown["errors"] == []
    assert [w["code"] for w in shown["warnings"]] == ["no_users_in_filter", "forward_events_off"]
    assert all(set(w) == {"code", "message"} for w in shown["warnings"])


def test_settings_show_reports_an_invalid_stored_document(deployed: Aws, run) -> None:
    deployed.set_settings(synchronized_segments=["Ghost"], bogus=1)
    shown = run("settings", "show", "--json").json
    assert shown["valid"] is False
    # every problem is named at its field: the unknown key and the filter's unknown segment
    assert {e["field"] for e in shown["errors"]} == {"bogus", "synchronized_segments"}
    assert [w["code"] for w in shown["warnings"]] == ["no_write_key", "unknown_segment", "forward_events_off"]
    result = run("settings", "show")
    assert "is invalid" in result.err and "  bogus: is not a setting: use handle_pages, " in result.err


def test_settings_validate_accepts_a_valid_file(deployed: Aws, run, tmp_path: Path) -> None:
    path = settings_file(tmp_path, {"segments": [PRO], "synchronized_segments": ["Pro"]})
    result = run("settings", "validate", path)
    assert result.code == 0
    assert result.out.splitlines()[0] == f"{path}: valid"
    assert "warning: no_write_key: " in result.out  # a filter, and no write key in the target
    report = run("settings", "validate", path, "--json").json
    assert report == {"file": path, "valid": True, "errors": [], "warnings": report["warnings"]}
    assert [w["code"] for w in report["warnings"]] == ["no_write_key", "forward_events_off"]


def test_settings_validate_refuses_an_invalid_file_naming_the_fields(deployed: Aws, run, tmp_path: Path) -> None:
    # Given an unknown key, a bad rule and a filter naming an undefined segment
    path = settings_file(
        tmp_path,
        {
            "bogus": 1,
            "segments": [{"name": "A", "rule": {"trait": "x", "op": "zz"}}],
            "synchronized_segments": ["Ghost"],
        },
    )
    result = run("settings", "validate", path)
    # Then exit 1, every error names its field, and the unknown segment is a warning too
    assert result.code == 1
    assert result.out.splitlines()[0] == f"{path}: invalid"
    assert "  bogus: is not a setting: use handle_pages, " in result.out
    assert any(line.startswith("  segments.0.rule") for line in result.out.splitlines())
    assert "warning: unknown_segment: " in result.out and "'Ghost'" in result.out
    report = run("settings", "validate", path, "--json")
    assert report.code == 1 and report.json["valid"] is False
    assert {"bogus"} <= {e["field"] for e in report.json["errors"]}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{nope", "(document): not valid JSON: line 1, column 2: expected a key in double quotes"),
        ('{\n  "handle_pages": tru\n}', "(document): not valid JSON: line 2, column 19: expected a value"),
        ("[1]", "must be a JSON object"),
    ],
)
def test_settings_validate_refuses_what_is_not_a_json_object(deployed: Aws, run, tmp_path: Path, text, error) -> None:
    result = run("settings", "validate", settings_file(tmp_path, text))
    assert result.code == 1 and error in result.out


def test_settings_validate_offline_needs_no_target(run, tmp_path: Path, monkeypatch) -> None:
    # Given no AWS at all (not even a region)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    path = settings_file(tmp_path, {"synchronized_segments": []})
    result = run("settings", "validate", path, "--offline")
    assert result.code == 0 and "keys not checked" in result.out
    assert "warning: no_users_in_filter" in result.out  # as if every key existed
    assert run("settings", "validate", str(tmp_path / "missing.json"), "--offline").err.startswith(
        "segment-connector: error: cannot read "
    )


def test_settings_put_writes_a_valid_file(deployed: Aws, run, tmp_path: Path) -> None:
    # Given a valid file, pretty-printed
    document = {"segments": [PRO], "synchronized_segments": ["Pro"], "synchronized_properties": ["email"]}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(document, indent=4))
    # When put
    result = run("settings", "put", str(path))
    # Then the String parameter holds it (compact), and the warnings are printed
    assert result.code == 0, result.err
    assert json.loads(stored_settings(deployed)) == document and "\n" not in stored_settings(deployed)
    parameter = deployed.ssm.get_parameter(Name=f"{PREFIX}/settings")["Parameter"]
    assert parameter["Type"] == "String" and parameter["Version"] == 2
    assert result.out.startswith(f"wrote {PREFIX}/settings (version 2) in the stack {STACK} (us-east-1)")
    assert "warning: no_write_key: " in result.out
    # And with --json, from stdin
    report = run("settings", "put", "-", "--json", stdin=json.dumps({"synchronized_segments": ["ALL"]})).json
    assert report["written"] is True and report["version"] == 3 and report["parameter"] == f"{PREFIX}/settings"
    assert json.loads(stored_settings(deployed)) == {"synchronized_segments": ["ALL"]}


def test_settings_put_refuses_an_invalid_file_and_writes_nothing(deployed: Aws, run, tmp_path: Path) -> None:
    before = stored_settings(deployed)
    result = run("settings", "put", settings_file(tmp_path, {"handle_pages": "often", "synchronized_segments": ["X"]}))
    assert result.code == 1 and result.out == ""
    assert '  handle_pages: must be true or false; got "often"' in result.err
    assert "warning: unknown_segment" in result.err
    assert result.err.rstrip().splitlines()[-1].endswith("is invalid: nothing written")
    assert stored_settings(deployed) == before
    assert deployed.ssm.get_parameter(Name=f"{PREFIX}/settings")["Parameter"]["Version"] == 1


def large_settings(segments: int) -> dict[str, Any]:
    """A valid settings document of about 60 bytes per segment once stored."""
    return {
        "segments": [{"name": f"Segment {i}", "rule": {"trait": f"trait_{i}", "op": "exists"}} for i in range(segments)]
    }


def stored_tier(aws: Aws) -> str:
    parameters = aws.ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [f"{PREFIX}/settings"]}]
    )["Parameters"]
    return str(parameters[0]["Tier"])


def test_settings_put_stores_a_document_over_4_kb_as_an_advanced_parameter(
    deployed: Aws, ssm_tiers: Aws, run, tmp_path: Path
) -> None:
    # Given a valid document between the standard tier's 4 KB and the advanced tier's 8 KB once stored
    document = large_settings(80)
    assert 4096 < len(json.dumps(document, separators=(",", ":")).encode()) <= 8192
    # When it is put through the CLI, with SSM's tiers in force
    result = run("settings", "put", settings_file(tmp_path, document))
    # Then it is written as an advanced parameter (as the console writes it), and reads back whole
    assert result.code == 0, result.err
    assert result.out.startswith(f"wrote {PREFIX}/settings (version 2)")
    assert stored_tier(deployed) == "Advanced"
    shown = run("settings", "show", "--json")
    assert shown.code == 0 and shown.json["settings"] == document and shown.json["valid"] is True
    # And a small document afterwards is written too (the parameter stays advanced: SSM never downgrades)
    assert run("settings", "put", settings_file(tmp_path, {"synchronized_segments": ["ALL"]})).code == 0
    assert json.loads(stored_settings(deployed)) == {"synchronized_segments": ["ALL"]}


def test_settings_put_refuses_a_document_over_8_kb_with_a_clear_error(
    deployed: Aws, ssm_tiers: Aws, run, tmp_path: Path
) -> None:
    # Given a valid document over the advanced tier's 8 KB once stored
    before = stored_settings(deployed)
    path = settings_file(tmp_path, large_settings(200))
    # When it is put, or validated
    result = run("settings", "put", path)
    validated = run("settings", "validate", path, "--offline")
    # Then nothing is written, and the error says why in one line: its size and the limit
    assert result.code == 1 and result.out == ""
    assert result.err.rstrip().splitlines()[-1].endswith("is too large for SSM: nothing written")
    assert "  (document): " in result.err and "at most 8192" in result.err
    assert stored_settings(deployed) == before
    assert deployed.ssm.get_parameter(Name=f"{PREFIX}/settings")["Parameter"]["Version"] == 1
    # And validate reports it as put would
    assert validated.code == 1 and "at most 8192" in validated.out
    # And with --json, the error names the document
    report = run("settings", "put", path, "--json")
    assert report.code == 1 and report.json["written"] is False
    assert report.json["errors"][0]["field"] == "(document)" and "at most 8192" in report.json["errors"][0]["error"]


# -- keys ----------------------------------------------------------------------------------------------


def secret(aws: Aws, name: str) -> dict[str, Any]:
    return aws.ssm.get_parameter(Name=f"{PREFIX}/{name}", WithDecryption=True)["Parameter"]


def test_keys_set_reads_stdin_and_writes_a_secure_string(deployed: Aws, run) -> None:
    # Given a value piped in, with its trailing newline
    result = run("keys", "set", "write-key", stdin="wk-new-secret\n")
    # Then the SecureString holds it without the newline, and the output names the parameter only
    assert result.code == 0
    stored = secret(deployed, "write-key")
    assert (stored["Type"], stored["Value"]) == ("SecureString", "wk-new-secret")
    assert result.out.startswith(f"wrote SecureString {PREFIX}/write-key (version 1)")
    # Only one trailing newline goes; an existing key is overwritten
    assert run("keys", "set", "write-key", stdin="wk-new-secret\n\n").code == 0
    assert secret(deployed, "write-key")["Value"] == "wk-new-secret\n" and secret(deployed, "write-key")["Version"] == 2


def test_keys_set_uses_the_stacks_customer_managed_key(aws: Aws, run) -> None:
    # Given a stack deployed with KmsKeyArn (its ParameterKeyArn output)
    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=outputs_template(ParameterKeyArn=key))
    # When a key is set twice (the second an overwrite)
    assert run("keys", "set", "write-key", stdin="first\n").code == 0
    result = run("keys", "set", "write-key", stdin="second\n")
    # Then it stays a SecureString under that key, never moved to aws/ssm by the overwrite
    assert result.code == 0 and f"under {key}" in result.out
    described = boto3.client("ssm").describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [f"{PREFIX}/write-key"]}]
    )["Parameters"][0]
    assert (described["KeyId"], secret(aws, "write-key")["Value"]) == (key, "second")


def test_keys_set_prompts_without_echo_on_a_terminal(deployed: Aws, run, monkeypatch) -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return "s3cr3t-typed"

    monkeypatch.setattr(keys_command.getpass, "getpass", fake_getpass)  # type: ignore[attr-defined]
    result = run("keys", "set", "admin-key", tty=True, stdin="not read from a terminal\n")
    assert result.code == 0 and prompts == [f"value of {PREFIX}/admin-key (not shown): "]
    assert secret(deployed, "admin-key")["Value"] == "s3cr3t-typed"


def test_keys_set_refuses_an_empty_value(deployed: Aws, run) -> None:
    for stdin in ("", "\n"):
        result = run("keys", "set", "shared-secret", stdin=stdin)
        assert (
            result.code == 1
            and result.err == f"segment-connector: error: empty value: {PREFIX}/shared-secret not written\n"
        )
    with pytest.raises(ClientError):
        secret(deployed, "shared-secret")


# -- status --------------------------------------------------------------------------------------------


def seed(aws: Aws, api) -> None:
    """Given 2 users (one in an account), 1 account, 3 events and 1 dead letter."""
    aws.set_settings(handle_accounts=True)
    for body in (
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
        {"type": "identify", "userId": "u2", "traits": {"plan": "free"}},
        {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}},
        {"type": "track", "userId": "u1", "event": "A"},
        {"type": "track", "userId": "u2", "event": "B"},
        {"type": "page", "userId": "u2", "name": "Home"},
    ):
        status, answer = api.post("/segment", {**body, "messageId": f"m-{uuid.uuid4()}"})
        assert status == 200, answer
    ProfileStore(TABLE).dead_letters.put(
        "m-dead",
        {"type": "track", "messageId": "m-dead", "userId": "u1", "event": "A"},
        "HTTP 400",
        "2026-01-01T00:00:00.000000Z",
    )


def test_status_json_has_warnings_counts_and_the_last_resync(deployed: Aws, api, run, functions: Functions) -> None:
    seed(deployed, api)
    done = {
        **JOB,
        "status": "done",
        "finished_at": "2026-01-01T00:01:00.000Z",
        "segments_done": 16,
        "evaluated": 2,
        "changed": 1,
        "sent": 1,
    }
    functions.answers[RESYNC] = [done]
    result = run("status", "--json")
    assert result.code == 0
    report = result.json
    assert set(report) == {"warnings", "counts", "deletions", "resync", "replay"}
    assert report["replay"] == {"status": "none"}
    assert report["counts"] == {
        "users": len(deployed.items_of_kind("user")),
        "accounts": 1,
        "events": 3,
        "dead_letters": 1,
    }
    assert report["counts"]["users"] == 2
    assert report["resync"] == done
    assert functions.calls == [(RESYNC, {"action": "status"})]
    # no write key, nothing configured to send: the User Filter sends nobody, forward_events is off
    assert [w["code"] for w in report["warnings"]] == ["no_users_in_filter", "forward_events_off"]
    deployed.set_secret("write-key", WRITE_KEY)
    warnings = run("status", "--json").json["warnings"]
    assert [w["code"] for w in warnings] == ["no_users_in_filter", "forward_events_off"]
    assert all(set(w) == {"code", "message"} and w["message"] for w in warnings)


def test_status_text(deployed: Aws, api, run, functions: Functions) -> None:
    seed(deployed, api)
    deployed.ssm.delete_parameter(Name=f"{PREFIX}/api-key")
    deployed.set_settings(forward_events=True, synchronized_segments=["ALL"])
    functions.answers[RESYNC] = [{**JOB, "segments_done": 4, "evaluated": 1234}]
    result = run("status")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == f"segment-connector status of the stack {STACK} (us-east-1)"
    assert "  no_write_key: " in result.out and "  forward_events_loop: " in result.out
    assert "  no_api_key: " in result.out
    assert ("stored: 2 users, 1 account, 3 events, 1 dead letter (`segment-connector replay` sends it again)") in lines
    assert any(
        line.startswith(
            "last resync: running (manual; started 2026-01-01T00:00:00.000Z); segments 4/16, evaluated 1,234, changed 0"
        )
        for line in lines
    )


def test_status_shows_the_gdpr_deletions_in_progress_and_the_oldests_age(
    deployed: Aws, api, run, functions: Functions
) -> None:
    # Given no deletion in progress
    functions.answers[RESYNC] = [{"status": "none"}]
    assert "GDPR deletions in progress: none" in run("status").out.splitlines()
    assert run("status", "--json").json["deletions"] == {
        "in_progress": 0,
        "oldest_deleted_at": None,
        "oldest_age_seconds": None,
    }
    # When Segment deletes two users (their sweeps not run yet)
    for n in (1, 2):
        assert api.post("/segment", {"type": "identify", "userId": f"u{n}", "messageId": f"i{n}"})[0] == 200
        assert api.post("/segment", {"type": "delete", "userId": f"u{n}", "messageId": f"d{n}"})[0] == 200
    oldest = min(item["deleted_at"] for item in deployed.items_of_kind("deletion_pending"))
    # Then status counts them and says how long the oldest has waited
    deletions = run("status", "--json").json["deletions"]
    assert deletions["in_progress"] == 2 and deletions["oldest_deleted_at"] == oldest
    assert 0 <= deletions["oldest_age_seconds"] < 60
    line = next(line for line in run("status").out.splitlines() if line.startswith("GDPR deletions in progress: "))
    assert line.startswith("GDPR deletions in progress: 2 (the oldest received ") and line.endswith(" s ago)")


def test_status_still_reports_when_the_resync_cannot_be_read(deployed: Aws, run, functions: Functions) -> None:
    functions.answers[RESYNC] = [FunctionFailed(RESYNC, "Runtime.ImportModuleError", "No module named 'x'")]
    result = run("status", "--json")
    assert result.code == 0
    assert result.json["resync"] == {
        "status": "unknown",
        "error": f"{RESYNC} failed: Runtime.ImportModuleError: No module named 'x'",
    }
    assert result.json["counts"] == {"users": 0, "accounts": 0, "events": 0, "dead_letters": 0}
    functions.answers[RESYNC] = [{"id": None, "status": "none"}]
    assert "last resync: none yet" in run("status").out


def test_status_reports_settings_errors(deployed: Aws, run, functions: Functions) -> None:
    functions.answers[RESYNC] = [{"status": "none"}]
    deployed.set_settings(synchronized_segments=["Ghost"])
    report = run("status", "--json").json
    assert [w["code"] for w in report["warnings"]] == ["no_write_key", "unknown_segment", "forward_events_off"]
    assert (
        report["settings_errors"][0]["field"] == "synchronized_segments"
        and "Ghost" in report["settings_errors"][0]["error"]
    )


def test_count_kinds_scans_the_table_once_in_parallel_segments_and_pages() -> None:
    # Given a table whose scan answers two pages per segment (kinds user, user, event on each)
    class Client:
        def __init__(self) -> None:
            self.requests: list[dict[str, Any]] = []
            self.lock = threading.Lock()

        def scan(self, **request: Any) -> dict[str, Any]:
            with self.lock:
                self.requests.append(request)
            items = [{"kind": {"S": kind}} for kind in ("user", "user", "event")]
            page = {"Items": items, "Count": 3, "ScannedCount": 5}
            return page if "ExclusiveStartKey" in request else {**page, "LastEvaluatedKey": {"pk": {"S": "x"}}}

        def query(self, **request: Any) -> dict[str, Any]:
            self.requests.append(request)
            return {"Count": 3} if "ExclusiveStartKey" in request else {"Count": 2, "LastEvaluatedKey": {"pk": {}}}

    client = Client()
    store = ProfileStore("t", client)
    # When counting
    counted = store.inventory.count_kinds(["user", "event"], total_segments=3)
    # Then one scan per segment, every page, returning only the kind: exact counts per kind
    assert counted.exact and counted.counts == {"user": 12, "event": 6}
    assert len(client.requests) == 6
    assert {(r["Segment"], r["TotalSegments"], r["ProjectionExpression"]) for r in client.requests} == {
        (segment, 3, "#kind") for segment in range(3)
    }
    assert store.inventory.count_dead_letters() == 5
    assert client.requests[-1]["KeyConditionExpression"] == "pk = :pk" and client.requests[-1]["Select"] == "COUNT"


def test_count_kinds_out_of_time_estimates_from_the_share_of_each_kind() -> None:
    # Given a table of 1,000 items whose scan never ends (every page has more)
    class Client:
        def scan(self, **request: Any) -> dict[str, Any]:
            items = [{"kind": {"S": "user"}}, {"kind": {"S": "event"}}, {"kind": {"S": "event"}}]
            return {"Items": items, "ScannedCount": 4, "LastEvaluatedKey": {"pk": {"S": "x"}}}

        def describe_table(self, **request: Any) -> dict[str, Any]:
            return {"Table": {"ItemCount": 1000}}

    # When counting with no time to finish
    counted = ProfileStore("t", Client()).inventory.count_kinds(["user", "event"], total_segments=2, seconds=0)
    # Then the counts are estimates: each kind's share of the items read, times the table's item count
    assert not counted.exact
    assert counted.counts == {"user": 250, "event": 500}


# -- resync --------------------------------------------------------------------------------------------


def test_resync_starts_one(deployed: Aws, run, functions: Functions) -> None:
    functions.answers[RESYNC] = [JOB]
    result = run("resync")
    assert result.code == 0
    assert functions.calls == [(RESYNC, {"action": "start", "reason": "manual"})]
    assert result.out.splitlines()[0] == "resync r-1 started (manual)"
    assert run("resync", "--json").json == JOB


def test_resync_wait_follows_it_to_the_end(deployed: Aws, run, functions: Functions, monkeypatch) -> None:
    steps = [
        {**JOB, "segments_done": done, "evaluated": 10 * done, "changed": done, "sent": done} for done in (0, 8, 8)
    ]
    finished = {**JOB, "status": "done", "segments_done": 16, "evaluated": 160, "changed": 16, "sent": 16}
    functions.answers[RESYNC] = [JOB, *steps, finished]
    # Given stdout on a terminal (a person watches; stderr is not a terminal)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    result = run("resync", "--wait", "--interval", "0")
    assert result.code == 0
    assert functions.calls[1:] == [(RESYNC, {"action": "status"})] * 4
    # progress lines on stderr (not a terminal: one per change), the end on stdout
    bars = [line for line in result.err.splitlines() if line.startswith("[")]
    assert bars == [
        "[........................] segments 0/16, evaluated 0, changed 0, sent 0, failed 0",
        "[############............] segments 8/16, evaluated 80, changed 8, sent 8, failed 0",
    ]
    assert (
        result.out.splitlines()[-1] == "resync r-1 done: segments 16/16, evaluated 160, changed 16, sent 16, failed 0"
    )


def test_resync_wait_draws_no_progress_bar_when_stdout_is_not_a_terminal(
    deployed: Aws, run, functions: Functions
) -> None:
    # Given stdout redirected to a file or a pipe (the run fixture's stdout is not a terminal)
    finished = {**JOB, "status": "done", "segments_done": 16, "evaluated": 160, "changed": 16, "sent": 16}
    functions.answers[RESYNC] = [JOB, {**JOB, "segments_done": 8}, finished]
    # When a resync is followed
    result = run("resync", "--wait", "--interval", "0")
    # Then no progress bar is drawn anywhere, and the end is still on stdout
    assert result.code == 0
    assert "[" not in result.err and "\r" not in result.err and "[" not in result.out
    assert result.out.splitlines()[-1].startswith("resync r-1 done: segments 16/16")


def test_resync_wait_exits_1_when_it_failed(deployed: Aws, run, functions: Functions) -> None:
    functions.answers[RESYNC] = [JOB, {**JOB, "status": "failed", "failed": 3}]
    result = run("resync", "--wait", "--interval", "0", "--json")
    assert result.code == 1 and result.json["status"] == "failed"


def test_resync_wait_follows_the_resync_that_supersedes_it(deployed: Aws, run, functions: Functions) -> None:
    newer = {**JOB, "id": "r-2", "reason": "settings changed"}
    functions.answers[RESYNC] = [JOB, newer, {**newer, "status": "done", "segments_done": 16}]
    result = run("resync", "--wait", "--interval", "0")
    assert result.code == 0
    assert "resync r-1 was superseded by resync r-2 (settings changed): following that one" in result.err
    assert result.out.splitlines()[-1].startswith("resync r-2 done")


def test_resync_errors_are_one_line(deployed: Aws, run, functions: Functions) -> None:
    functions.answers[RESYNC] = [FunctionFailed(RESYNC, "SettingsInvalid", "connector settings are invalid")]
    result = run("resync")
    assert result.code == 1
    assert result.err == f"segment-connector: error: {RESYNC} failed: SettingsInvalid: connector settings are invalid\n"
    functions.answers[RESYNC] = [{"error": "the settings are invalid"}]
    assert run("resync").err == "segment-connector: error: the resync did not start: the settings are invalid\n"


# -- replay --------------------------------------------------------------------------------------------


def dead_letter(event: str, at: str) -> str:
    message_id = f"m-{event}"
    ProfileStore(TABLE).dead_letters.put(
        message_id,
        {
            "type": "track",
            "messageId": message_id,
            "userId": "u1",
            "event": event,
            "timestamp": "2026-01-01T00:00:00.000Z",
        },
        "HTTP 400",
        at,
    )
    return message_id


def outbound_with_its_replays(connector, monkeypatch, functions: Functions) -> None:
    """OutboundFunction (in-process) behind the invoker; the replay it starts runs to its end at once."""
    from replay_helpers import Replays

    replays = Replays(connector, monkeypatch)

    def invoke(payload: dict[str, Any]) -> Any:
        answer = connector.module.lambda_handler(payload, replays.context())
        replays.run()
        return answer

    functions.handlers[OUTBOUND] = invoke


def test_replay_starts_a_replay_and_wait_reports_its_counts_and_first_errors(
    deployed: Aws, connector, run, functions: Functions, monkeypatch
) -> None:
    # Given two dead letters and the OutboundFunction behind the invoker
    outbound_with_its_replays(connector, monkeypatch, functions)
    first = dead_letter("First", "2026-01-01T00:00:00.000001Z")
    dead_letter("Second", "2026-01-01T00:00:00.000002Z")
    # When the oldest is replayed, waiting, while Segment rejects it
    connector.sink.script((400, {}, {"error": "invalid"}))
    result = run("replay", "--limit", "1", "--wait", "--interval", "0")
    # Then the start and the outcome are reported and the exit status says it failed
    assert functions.calls == [(OUTBOUND, {"action": "replay", "limit": 1})]
    assert result.code == 1
    started, summary, error = result.out.splitlines()
    assert started.endswith("started: 1 dead letter to try")
    assert summary == "replay done; tried 1 of 1: 0 replayed, 1 failed"
    assert error.startswith(f"  failed  {first}: replay: HTTP 400") and "invalid" in error
    # When all are replayed once Segment accepts them / Then the counts say so
    result = run("replay", "--wait", "--interval", "0")
    assert result.code == 0
    assert result.out.splitlines()[1] == "replay done; tried 2 of 2: 2 replayed, 0 failed"
    assert [event for event, _ in connector.tracks()] == ["First", "Second"]
    # and status shows the last replay
    assert "last replay done; tried 2 of 2: 2 replayed, 0 failed" in run("status").out.splitlines()


def test_replay_without_wait_only_starts_it(deployed: Aws, connector, run, functions: Functions) -> None:
    # Given a dead letter, and OutboundFunction that starts a replay (its work queued, not run)
    functions.handlers[OUTBOUND] = lambda payload: {"started": True, "id": "r1", "status": "running", "total": 1}
    dead_letter("Only", "2026-01-01T00:00:00.000001Z")
    # When replayed without --wait / Then it says it started and exits 0
    result = run("replay")
    assert result.code == 0 and result.out.splitlines()[0] == "replay r1 started: 1 dead letter to try"


def test_replay_json(deployed: Aws, connector, run, functions: Functions, monkeypatch) -> None:
    outbound_with_its_replays(connector, monkeypatch, functions)
    dead_letter("Only", "2026-01-01T00:00:00.000001Z")
    result = run("replay", "--json", "--wait", "--interval", "0")
    assert result.code == 0
    job = result.json
    assert (job["status"], job["tried"], job["replayed"], job["failed"], job["errors"]) == ("done", 1, 1, 0, [])


# -- users ---------------------------------------------------------------------------------------------


def test_users_get_shows_the_profile_as_the_profile_api_does(deployed: Aws, api, run) -> None:
    # Given a user in a segment
    deployed.set_settings(segments=[PRO])
    status, _ = api.post(
        "/segment",
        {
            "type": "identify",
            "userId": "u 1%",
            "messageId": "m-1",
            "traits": {"plan": "pro", "email": "Ann@Example.com"},
        },
    )
    assert status == 200
    # When read by each of its ids / Then the Profile API's answer
    _, expected = api.get("/v1/users/user_id:u%201%25")
    assert expected["segments"] == ["Pro"] and expected["user_id"] == "u 1%"
    for reference in ("user_id:u 1%", "email:ann@example.com"):
        result = run("users", "get", reference)
        assert result.code == 0 and result.json == expected
    assert run("users", "get", "user_id:u 1%", "--json").json == expected


def test_users_get_errors(deployed: Aws, run) -> None:
    assert run("users", "get", "user_id:nobody").err == "segment-connector: error: no user user_id:nobody\n"
    unknown = run("users", "get", "phone:123")  # not a kind: a bare value, tried as each kind
    assert unknown.code == 1
    assert unknown.err == "segment-connector: error: no user with user_id, anonymous_id or email 'phone:123'\n"
    deployed.set_settings(bogus_setting=True)
    invalid = run("users", "get", "user_id:nobody")
    assert invalid.code == 1
    assert f"{PREFIX}/settings cannot be used (bogus_setting: is not a setting: use " in invalid.err


def test_users_get_and_status_show_computed_traits_and_event_segments(
    deployed: Aws, api, run, functions: Functions
) -> None:
    from datetime import UTC, datetime, timedelta

    from segment_connector.domain.times import format_time

    # Given a computed revenue and a segment of buyers, and a user who sends a revenue of its own
    revenue = {"name": "revenue", "type": "sum", "event": "Order Completed", "property": "total"}
    buyers = {"name": "Buyers", "rule": {"event": "Order Completed", "count": {"op": "gte", "value": 2}}}
    deployed.set_settings(computed_traits=[revenue], segments=[buyers])
    at = format_time(datetime.now(UTC) - timedelta(days=1))
    for n, body in enumerate(
        [
            {"type": "identify", "userId": "u1", "traits": {"plan": "pro", "revenue": 999}},
            {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"total": 20}, "timestamp": at},
            {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"total": 5}, "timestamp": at},
        ]
    ):
        assert api.post("/segment", {**body, "messageId": f"m-{n}"})[0] == 200
    # When `users get` reads the user: Then the computed revenue in place of the received one, in the segment
    shown = run("users", "get", "u1").json
    assert (shown["traits"], shown["segments"]) == ({"plan": "pro", "revenue": 25}, ["Buyers"])
    # And `status` warns that the computed trait shadows a received one, naming it
    functions.answers[RESYNC] = [{"status": "none"}]
    warnings = [w for w in run("status", "--json").json["warnings"] if w["code"] == "computed_trait_shadows"]
    assert len(warnings) == 1 and "'revenue'" in warnings[0]["message"]


# -- the local Lambda Invoke API (what --local invokes) ------------------------------------------------


@pytest.fixture
def lambda_api() -> Iterator[tuple[LambdaApi, Target, list[Any], threading.Event]]:
    calls: list[Any] = []
    done = threading.Event()

    def echo(event: Any) -> Any:
        calls.append(event)
        if isinstance(event, dict) and event.get("boom"):
            raise RuntimeError("boom!")
        if isinstance(event, dict) and event.get("async"):
            done.set()
        return {"echo": event}

    with LambdaApi(out=io.StringIO()) as api:
        api.register(["OutboundFunction", "segment-connector-local-OutboundFunction"], echo)
        api.register(["ResyncFunction"], None, "ModuleNotFoundError: No module named 'segment_connector.resync.job'")
        target = Target(
            label="local stack",
            region="us-east-1",
            table_name="t",
            parameter_prefix="/p",
            outbound_function="OutboundFunction",
            resync_function="ResyncFunction",
            local=True,
            lambda_endpoint_url=api.url,
            session=boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1"),
        )
        yield api, target, calls, done


def test_local_lambda_api_request_response(lambda_api) -> None:
    _, target, calls, _ = lambda_api
    # by logical id, by the local name, as an ARN with a qualifier
    assert target.invoke("OutboundFunction", {"action": "replay", "limit": 2}) == {
        "echo": {"action": "replay", "limit": 2}
    }
    arn = "arn:aws:lambda:us-east-1:123456789012:function:segment-connector-local-OutboundFunction:$LATEST"
    assert target.invoke(arn, {"n": 1}) == {"echo": {"n": 1}}
    assert function_name_of(arn) == "segment-connector-local-OutboundFunction"
    assert calls == [{"action": "replay", "limit": 2}, {"n": 1}]


def test_local_lambda_api_reports_function_errors_as_lambda_does(lambda_api) -> None:
    _, target, _, _ = lambda_api
    response = target.client("lambda").invoke(FunctionName="OutboundFunction", Payload=b'{"boom": true}')
    assert response["StatusCode"] == 200 and response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("RuntimeError", "boom!") and error["stackTrace"]
    with pytest.raises(FunctionFailed, match="OutboundFunction failed: RuntimeError: boom!"):
        target.invoke("OutboundFunction", {"boom": True})
    with pytest.raises(FunctionFailed, match=r"Runtime\.ImportModuleError: ModuleNotFoundError"):
        target.invoke("ResyncFunction", {"action": "status"})
    with pytest.raises(ClientError) as missing:
        target.invoke("Nope", {})
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_local_lambda_api_event_invocations_run_in_the_background(lambda_api) -> None:
    _, target, calls, done = lambda_api
    response = target.client("lambda").invoke(
        FunctionName="OutboundFunction", InvocationType="Event", Payload=b'{"async": true}'
    )
    assert response["StatusCode"] == 202 and response["Payload"].read() == b""
    assert done.wait(WAIT_SECONDS) and calls == [{"async": True}]
    assert target.client("lambda").invoke(FunctionName="OutboundFunction", InvocationType="DryRun")["StatusCode"] == 204


def test_replay_local_goes_through_the_lambda_api(lambda_api, tmp_path: Path, run, monkeypatch) -> None:
    api, _, _, _ = lambda_api
    state = {
        "pid": os.getpid(),
        "aws_endpoint_url": "http://127.0.0.1:9",
        "lambda_endpoint_url": api.url,
        "table_name": "t",
        "parameter_prefix": "/p",
        "region": "us-east-1",
    }
    (tmp_path / "state.json").write_text(json.dumps(state))
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state.json"))
    seen: list[Any] = []
    api.register(
        ["OutboundFunction"],
        lambda event: seen.append(event) or {"started": True, "id": "r1", "status": "running", "total": 0},  # type: ignore[func-returns-value]
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli.main(["replay", "--local", "--limit", "3"]) == 0  # the real invoker: Lambda Invoke
    assert seen == [{"action": "replay", "limit": 3}]


# -- the settings watcher (EventBridge's rule, locally) ------------------------------------------------


def test_settings_watcher_sends_the_eventbridge_event_on_a_change(aws: Aws) -> None:
    events: list[dict[str, Any]] = []
    watcher = SettingsWatcher(aws.ssm, f"{PREFIX}/settings", events.append, log=lambda line: None)
    assert watcher.poll() is False and events == []  # unchanged
    aws.set_settings(handle_pages=False)
    assert watcher.poll() is True and watcher.poll() is False
    (event,) = events
    assert (event["version"], event["source"], event["detail-type"]) == ("0", "aws.ssm", "Parameter Store Change")
    assert event["detail"] == {"name": f"{PREFIX}/settings", "operation": "Update", "type": "String", "description": ""}
    assert event["resources"] == [f"arn:aws:ssm:us-east-1:123456789012:parameter{PREFIX}/settings"]
    assert parameter_change_event("/x/settings", "Create")["detail"]["operation"] == "Create"


# -- end to end: the CLI against `make run` ------------------------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    directory = tmp_path_factory.mktemp("local-cli")
    settings = directory / "settings.json"
    settings.write_text(json.dumps({"synchronized_segments": ["ALL"], "synchronized_properties": ["email"]}))
    state = directory / "state.json"
    running = Stack(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "local_stack"],
        free_port(),
        {"CONNECTOR_SETTINGS": str(settings), STATE_ENV: str(state)},
    )
    try:
        running.wait_ready()
        yield running, state
    finally:
        running.kill()


def segment_connector(state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        STATE_ENV: str(state),
        "PYTHONPATH": os.pathsep.join(str(ROOT / folder) for folder in ("cli", "layers/common")),
    }
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "segment_connector_cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )


@pytest.mark.e2e
def test_operator_cli_against_the_local_stack(local: tuple[Stack, Path], tmp_path: Path) -> None:
    stack, state = local
    assert json.loads(state.read_text())["lambda_endpoint_url"].startswith("http://127.0.0.1:")
    # Given new settings with a segment, put with the CLI
    document = {"segments": [PRO], "synchronized_segments": ["Pro"], "synchronized_properties": ["email"]}
    path = settings_file(tmp_path, document)
    put = segment_connector(state, "settings", "put", path, "--local")
    assert put.returncode == 0, put.stderr
    assert put.stdout.startswith(f"wrote {PREFIX}/settings (version 2) in the local stack ({stack.url})")
    # Then the stack notices the change and invokes ResyncFunction, as EventBridge would
    assert stack.wait_for_line(lambda line: line.startswith(f"settings changed ({PREFIX}/settings)"), WAIT_SECONDS), (
        stack.output
    )
    assert json.loads(segment_connector(state, "settings", "show", "--local").stdout) == document

    # Given a user who arrives through the API
    user = f"cli-{uuid.uuid4().hex[:8]}"
    identify = {"type": "identify", "userId": user, "traits": {"plan": "pro", "email": f"{user}@example.com"}}
    assert (
        requests.post(
            f"{stack.url}/segment", json=identify, auth=("local-api-key", ""), timeout=WAIT_SECONDS
        ).status_code
        == 200
    )
    # When read with `users get` / Then as the Profile API shows it, in the new segment
    got = segment_connector(state, "users", "get", f"user_id:{user}", "--local")
    assert got.returncode == 0, got.stderr
    profile = requests.get(f"{stack.url}/v1/users/user_id:{user}", auth=("local-api-key", ""), timeout=WAIT_SECONDS)
    assert json.loads(got.stdout) == profile.json() and profile.json()["segments"] == ["Pro"]

    # When the status is asked for / Then warnings, counts and the resync, as one JSON object
    status = segment_connector(state, "status", "--json", "--local")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert set(report) == {"warnings", "counts", "deletions", "resync", "replay"}
    assert report["replay"] == {"status": "none"}
    # Both keys exist, a filter, an attribute: only the note that events from Segment are not sent back
    assert [warning["code"] for warning in report["warnings"]] == ["forward_events_off"]
    assert report["counts"]["users"] >= 1 and report["counts"]["dead_letters"] == 0
    assert "status" in report["resync"]

    # Given a dead letter in the emulator's table / When replayed / Then it reaches the sink
    endpoint = json.loads(state.read_text())["aws_endpoint_url"]
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    message_id = f"m-{user}"
    payload = {
        "type": "track",
        "messageId": message_id,
        "userId": user,
        "event": "Replayed Event",
        "timestamp": "2026-01-01T00:00:00.000Z",
    }
    dynamodb.put_item(
        TableName=json.loads(state.read_text())["table_name"],
        Item={
            "pk": {"S": "deadletter"},
            "sk": {"S": f"2026-01-01T00:00:00.000000Z#{message_id}"},
            "kind": {"S": "deadletter"},
            "message_id": {"S": message_id},
            "payload": {"S": json.dumps(payload)},
            "reason": {"S": "HTTP 400"},
        },
    )
    replay = segment_connector(state, "replay", "--local", "--json", "--wait")
    assert replay.returncode == 0, replay.stderr
    job = json.loads(replay.stdout)
    assert (job["started"], job["status"], job["replayed"], job["failed"]) == (True, "done", 1, 0)
    assert stack.wait_for_line(
        lambda line: line.startswith(f"segment <- track userId={user} ") and "Replayed Event" in line, WAIT_SECONDS
    ), stack.output
    for result in (put, got, status, replay):
        assert "local-api-key" not in result.stdout + result.stderr
        assert "local-write-key" not in result.stdout + result.stderr


@pytest.mark.e2e
def test_resync_wait_against_the_local_stack(local: tuple[Stack, Path]) -> None:
    stack, state = local
    result = segment_connector(state, "resync", "--wait", "--interval", "0.2", "--json", "--local")
    assert result.returncode == 0, result.stderr + stack.output
    job = json.loads(result.stdout)
    assert job["status"] == "done" and job["segments_done"] == job["segments"]


@pytest.mark.e2e
def test_the_examples_of_the_operate_issue_behave_on_the_local_stack(tmp_path: Path) -> None:
    """A pro user stored while the User Filter is [] is sent once the filter names its segment, and
    a rule change sends an identify and a Left Segment event (both through `settings put`)."""
    state = tmp_path / "state.json"
    empty = {"segments": [PRO], "synchronized_segments": [], "synchronized_properties": ["email"]}
    stack = Stack(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "local_stack"],
        free_port(),
        {"CONNECTOR_SETTINGS": str(settings_file(tmp_path, empty)), STATE_ENV: str(state)},
    )
    try:
        stack.wait_ready()
        # Given a pro user stored while nobody is sent
        user = f"why-{uuid.uuid4().hex[:8]}"
        identify = {"type": "identify", "userId": user, "traits": {"plan": "pro", "email": f"{user}@example.com"}}
        answer = requests.post(f"{stack.url}/segment", json=identify, auth=("local-api-key", ""), timeout=WAIT_SECONDS)
        assert answer.status_code == 200
        # When the User Filter is set to ["Pro"] with the CLI
        pro = {**empty, "synchronized_segments": ["Pro"]}
        assert segment_connector(state, "settings", "put", settings_file(tmp_path, pro), "--local").returncode == 0
        # Then the user's identify reaches Segment within about a minute, with its segments and email
        sent = stack.wait_for_line(lambda line: line.startswith(f"segment <- identify userId={user} "), 90)
        assert sent and '"hull_segments": ["Pro"]' in sent and f"{user}@example.com" in sent, stack.output
        # When the rule changes so that the user leaves "Pro" (everyone sent)
        team = {"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "team"}}
        moved = {**empty, "segments": [team], "synchronized_segments": ["ALL"]}
        assert segment_connector(state, "settings", "put", settings_file(tmp_path, moved), "--local").returncode == 0
        # Then an identify without the segment and a Left Segment event are sent
        left = stack.wait_for_line(
            lambda line: line.startswith(f"segment <- identify userId={user} ") and '"hull_segments": []' in line, 90
        )
        assert left, stack.output
        assert stack.wait_for_line(
            lambda line: line.startswith(f"segment <- track userId={user} ") and "Left Segment" in line, 90
        ), stack.output
    finally:
        stack.kill()


# -- the issue's CLI items: region, bare ids, plurals, an identical put -----------------------------------


def test_aws_region_is_honoured_as_well_as_aws_default_region(deployed: Aws, run, monkeypatch) -> None:
    # Given only AWS_REGION (as Lambda, CloudShell and the AWS CLI v2 set it)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    # When a command reads the deployed stack / Then it is found in that region
    result = run("settings", "show", "--json")
    assert result.code == 0, result.err
    # And with neither, the message says what works
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    failed = run("status")
    assert failed.code == 1
    assert "no AWS region: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION" in failed.err


def test_users_get_accepts_a_bare_id_like_the_console(deployed: Aws, api, run) -> None:
    # Given a user with a user_id, an anonymous id and an email
    api.post(
        "/segment",
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m-1", "traits": {"email": "a@b.co"}},
    )
    _, expected = api.get("/v1/users/user_id:u1")
    # When read by a bare id of each kind / Then the same profile, as with a prefixed reference
    for bare in ("u1", "a1", "A@B.co"):
        result = run("users", "get", bare)
        assert result.code == 0, result.err
        assert result.json == expected
    # And a bare id nobody has says which kinds were tried
    assert (
        run("users", "get", "zz").err == "segment-connector: error: no user with user_id, anonymous_id or email 'zz'\n"
    )


def test_counts_are_singular_for_one(deployed: Aws, api, run, functions: Functions) -> None:
    # Given one user and one dead letter
    functions.answers[RESYNC] = [{"status": "none"}]
    api.post("/segment", {"type": "identify", "userId": "u1", "messageId": "m-1"})
    dead_letter("Only", "2026-01-01T00:00:00.000Z")
    # When the status is printed / Then "1 user", "1 dead letter"
    lines = run("status").out.splitlines()
    assert "stored: 1 user, 0 accounts, 0 events, 1 dead letter (`segment-connector replay` sends it again)" in lines


def test_replay_says_1_dead_letter(deployed: Aws, run, functions: Functions) -> None:
    functions.answers[OUTBOUND] = [{"started": False, "id": "r1", "status": "running", "total": 1, "tried": 0}]
    out = run("replay").out.splitlines()
    assert out[0] == "replay r1 is running already (this one is shown): 1 dead letter to try"
    assert out[1] == "replay running; tried 0 of 1: 0 replayed, 0 failed"


def test_an_identical_settings_put_changes_nothing(deployed: Aws, run, tmp_path: Path) -> None:
    # Given a document put once
    document = {"synchronized_segments": ["ALL"], "synchronized_properties": ["email"]}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(document, indent=2))
    assert run("settings", "put", str(path)).code == 0
    version = deployed.ssm.get_parameter(Name=f"{PREFIX}/settings")["Parameter"]["Version"]
    # When the same document is put again (formatted differently)
    path.write_text(json.dumps(document))
    result = run("settings", "put", str(path))
    # Then nothing is written: no new version (so no settings change, no resync), and it says so
    assert result.code == 0
    assert deployed.ssm.get_parameter(Name=f"{PREFIX}/settings")["Parameter"]["Version"] == version
    assert result.out.startswith(
        f"unchanged: {PREFIX}/settings (version {version}) in the stack {STACK} (us-east-1) already holds this "
        "document; nothing written, no resync"
    )
    report = run("settings", "put", str(path), "--json").json
    assert report["written"] is False and report["version"] == version

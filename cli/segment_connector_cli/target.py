"""Where the operator CLI acts: a deployed stack, or the local stack of `make run`.

A deployed stack is found by name (`--stack-name`, else samconfig.toml's `stack_name`) and its
resources by the stack's CloudFormation outputs. The local stack is found by the state file that
`make run` writes (`<repo>/.local-stack/state.json`, or the path in SEGMENT_CONNECTOR_STATE); its
functions are invoked through its Lambda Invoke API under their logical ids. This module does not
import local_stack (imports point down): it reads the state file's JSON itself.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segment_connector.runtime.invoker import FunctionFailed as FunctionFailed  # the CLI catches it from here
from segment_connector.runtime.invoker import FunctionInvoker

STATE_ENV = "SEGMENT_CONNECTOR_STATE"
STATE_FILE = Path(".local-stack") / "state.json"
SAMCONFIG = "samconfig.toml"
DEFAULT_STACK_NAME = "segment-connector"
REQUIRED_OUTPUTS = ("TableName", "ParameterPrefix", "OutboundFunctionName")
LOCAL_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}
INVOKE_READ_TIMEOUT = 910  # seconds: longer than any function may run (900 s)


class TargetError(Exception):
    """The target cannot be found or reached (the message is one line, for the operator)."""


Invoker = Callable[[str, dict[str, Any]], Any]  # (function name, payload) -> the function's result


@dataclass
class Target:
    label: str  # for the operator: "stack segment-connector (eu-west-1)", "local stack (http://...)"
    region: str
    table_name: str
    parameter_prefix: str
    outbound_function: str
    resync_function: str | None
    api_url: str | None = None
    parameter_key: str | None = None  # the stack's customer managed key for SecureStrings (KmsKeyArn)
    local: bool = False
    endpoint_url: str | None = None  # AWS services (the emulator, locally)
    lambda_endpoint_url: str | None = None  # Lambda (the local Invoke API)
    session: Any = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def parameter(self, suffix: str) -> str:
        return f"{self.parameter_prefix.rstrip('/')}/{suffix}"

    def client(self, service: str) -> Any:
        """A boto3 client of the target (cached): its region, and locally the emulator's endpoints."""
        if service not in self._clients:
            from botocore.config import Config

            if service == "lambda":
                config = Config(connect_timeout=5, read_timeout=INVOKE_READ_TIMEOUT, retries={"total_max_attempts": 1})
                endpoint = self.lambda_endpoint_url if self.local else None
                if self.local and not endpoint:
                    raise TargetError("this local stack has no Lambda API (it predates it): restart `make run`")
            else:
                config = Config(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"max_attempts": 5, "mode": "standard"},
                    max_pool_connections=32,
                )
                endpoint = self.endpoint_url
            session = self.session or _session(region=self.region)
            self._clients[service] = session.client(
                service, region_name=self.region, endpoint_url=endpoint, config=config
            )
        return self._clients[service]

    def invoke(self, function: str, payload: dict[str, Any]) -> Any:
        """Invoke a function (RequestResponse) and return its JSON result; FunctionFailed on a function error."""
        return FunctionInvoker(self.client("lambda")).invoke(function, payload)


def resolve(
    *, local: bool, stack_name: str | None, region: str | None, profile: str | None, cwd: Path | None = None
) -> Target:
    return local_target(cwd) if local else deployed_target(stack_name, region, profile, cwd)


# -- the local stack ---------------------------------------------------------------------------------


def state_path(cwd: Path | None = None) -> Path | None:
    """SEGMENT_CONNECTOR_STATE, else `.local-stack/state.json` in the current directory or a parent,
    else next to this package's repository (an editable install)."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    found = _find_upwards(STATE_FILE, cwd)
    if found is None:
        repository = _repository()
        beside = repository / STATE_FILE if repository else None
        found = beside if beside is not None and beside.exists() else None
    return found


def local_target(cwd: Path | None = None) -> Target:
    path = state_path(cwd)
    if path is None or not path.exists():
        shown = path or STATE_FILE
        raise TargetError(
            f"no local stack is running ({shown} not found): start it with `make run` in another terminal"
        )
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(state, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        raise TargetError(f"cannot read the local stack's state file {path}: {error}") from None
    pid = state.get("pid")
    if not _alive(pid):
        raise TargetError(
            f"no local stack is running ({path} is stale: process {pid} has ended): start it with "
            "`make run` in another terminal"
        )
    missing = [key for key in ("aws_endpoint_url", "table_name", "parameter_prefix") if not state.get(key)]
    if missing:
        raise TargetError(f"the local stack's state file {path} lacks {', '.join(missing)}: restart `make run`")
    region = str(state.get("region") or "us-east-1")
    return Target(
        label=f"local stack ({state.get('api_url') or state['aws_endpoint_url']})",
        region=region,
        table_name=str(state["table_name"]),
        parameter_prefix=str(state["parameter_prefix"]),
        outbound_function="OutboundFunction",
        resync_function="ResyncFunction",
        api_url=state.get("api_url"),
        local=True,
        endpoint_url=str(state["aws_endpoint_url"]),
        lambda_endpoint_url=state.get("lambda_endpoint_url"),
        session=_session(region=region, **LOCAL_CREDENTIALS),
    )


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- a deployed stack --------------------------------------------------------------------------------


def samconfig_defaults(cwd: Path | None = None) -> dict[str, str]:
    """`stack_name`, `region` and `profile` of samconfig.toml's default deploy parameters (or its
    global ones, which SAM applies to every command)."""
    path = _find_upwards(Path(SAMCONFIG), cwd)
    repository = _repository()
    if path is None and repository and (repository / SAMCONFIG).exists():
        path = repository / SAMCONFIG
    if path is None:
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise TargetError(f"cannot read {path}: {error}") from None
    default = document.get("default", {})
    merged = {**default.get("global", {}).get("parameters", {}), **default.get("deploy", {}).get("parameters", {})}
    return {key: str(merged[key]) for key in ("stack_name", "region", "profile") if merged.get(key)}


def deployed_target(stack_name: str | None, region: str | None, profile: str | None, cwd: Path | None = None) -> Target:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

    defaults = samconfig_defaults(cwd)
    stack_name = stack_name or defaults.get("stack_name") or DEFAULT_STACK_NAME
    try:
        session = _session(profile_name=profile or defaults.get("profile"), region=_region(region, defaults))
    except ProfileNotFound as error:
        raise TargetError(str(error)) from None
    if not session.region_name:
        raise TargetError(
            "no AWS region: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION, or a region in samconfig.toml "
            "or your AWS config (aws configure)"
        )
    target = Target(
        label=f"stack {stack_name} ({session.region_name})",
        region=session.region_name,
        table_name="",
        parameter_prefix="",
        outbound_function="",
        resync_function=None,
        session=session,
    )
    try:
        stacks = target.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except NoCredentialsError:
        raise TargetError(
            "no AWS credentials: configure them (aws configure, AWS_PROFILE, --profile), or use "
            "--local for the local stack"
        ) from None
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        if "does not exist" in message:
            raise TargetError(
                f"no stack {stack_name} in {session.region_name}: pass --stack-name and --region of the "
                "deployed stack, or --local for the local stack"
            ) from None
        raise TargetError(f"cannot read stack {stack_name}: {message}") from None
    except BotoCoreError as error:
        raise TargetError(f"cannot read stack {stack_name}: {error}") from None
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs") or []}
    missing = [key for key in REQUIRED_OUTPUTS if not outputs.get(key)]
    if missing:
        raise TargetError(
            f"stack {stack_name} has no output {', '.join(missing)} (status "
            f"{stacks[0].get('StackStatus')}): deploy the current template (sam build && sam deploy)"
        )
    target.table_name = outputs["TableName"]
    target.parameter_prefix = outputs["ParameterPrefix"]
    target.outbound_function = outputs["OutboundFunctionName"]
    target.resync_function = outputs.get("ResyncFunctionName") or None
    target.api_url = outputs.get("ApiUrl") or None
    target.parameter_key = outputs.get("ParameterKeyArn") or None
    return target


def _region(region: str | None, defaults: dict[str, str]) -> str | None:
    """--region, else samconfig.toml's, else AWS_REGION; None leaves it to boto3 (AWS_DEFAULT_REGION,
    the profile's config). boto3 does not read AWS_REGION, which Lambda, CloudShell, the AWS CLI v2
    and the other SDKs honour before AWS_DEFAULT_REGION."""
    return region or defaults.get("region") or os.environ.get("AWS_REGION", "").strip() or None


# -- plumbing ----------------------------------------------------------------------------------------


def _session(*, region: str | None = None, **kwargs: Any) -> Any:
    import boto3

    return boto3.session.Session(region_name=region, **{key: value for key, value in kwargs.items() if value})


def _find_upwards(relative: Path, cwd: Path | None = None) -> Path | None:
    start = (cwd or Path.cwd()).absolute()
    for directory in (start, *start.parents):
        candidate = directory / relative
        if candidate.exists():
            return candidate
    return None


def _repository() -> Path | None:
    """The repository this package lives in (cli/segment_connector_cli), if it does."""
    root = Path(__file__).resolve().parents[2] if len(Path(__file__).resolve().parents) > 2 else None
    return root if root is not None and (root / "template.yaml").exists() else None

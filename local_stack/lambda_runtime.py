"""Load a Lambda handler from its file in-process and call it with a fake Lambda context."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_stack.template import ROOT, function_spec, parameter_default

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
LAYER_DIR = ROOT / "layers" / "common"
TABLE_NAME = "segment-connector-local"
STACK_NAME = "segment-connector-local"  # for ${AWS::StackName}
DEFAULT_TIMEOUT = 3
DEFAULT_MEMORY = 128


class LambdaContext:
    """The attributes and method of the Lambda context object that handlers and Powertools use."""

    def __init__(self, function_name: str, memory_mb: int, timeout_s: int):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]local"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LocalFunction:
    """One function: its handler, its template settings and a lock (one warm container)."""

    name: str
    handler: Callable[[Any, Any], Any]
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invoke(self, event: Any) -> Any:
        with self.lock:
            return self.call(event)

    def call(self, event: Any) -> Any:
        """An invocation that does not wait for the others (as if in another container)."""
        return self.handler(event, LambdaContext(self.name, self.memory_mb, self.timeout_s))


def function_properties(template: Mapping[str, Any], logical_id: str, name: str) -> Any:
    props = template["Resources"][logical_id].get("Properties", {})
    globals_fn = template.get("Globals", {}).get("Function", {})
    return props.get(name, globals_fn.get(name))


def template_refs(template: Mapping[str, Any], table_name: str) -> dict[str, str]:
    """Values for !Ref: every parameter's default, and the local table's name for `Table`."""
    refs = {
        name: parameter_default(template, name)
        for name, spec in template.get("Parameters", {}).items()
        if "Default" in spec
    }
    refs["Table"] = table_name
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::Serverless::Function":
            refs[logical_id] = local_function_name(logical_id)  # !Ref of a function is its name
    return refs


def local_aws_environment(endpoint_url: str) -> dict[str, str]:
    """What points boto3 (and so the handlers) at the emulator instead of AWS."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }


def function_environment(
    template: Mapping[str, Any],
    logical_id: str,
    table_name: str,
    endpoint_url: str,
    segment_api_url: str,
    lambda_endpoint_url: str | None = None,
) -> dict[str, str]:
    """The function's environment: the template's variables, AWS pointed at the emulator (and
    Lambda at the local Invoke API, when there is one: boto3 honours AWS_ENDPOINT_URL_LAMBDA)."""
    spec = function_spec(dict(template), logical_id, template_refs(template, table_name))
    name = local_function_name(logical_id)
    return {
        **spec.environment,
        **local_aws_environment(endpoint_url),
        **({"AWS_ENDPOINT_URL_LAMBDA": lambda_endpoint_url} if lambda_endpoint_url else {}),
        "SEGMENT_API_URL": segment_api_url,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(
            function_properties(template, logical_id, "MemorySize") or DEFAULT_MEMORY
        ),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        # CloudWatch EMF lines would drown the sink's output; there is no CloudWatch here.
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


def local_function_name(logical_id: str) -> str:
    return f"segment-connector-local-{logical_id}"


def function_names(template: Mapping[str, Any], logical_id: str) -> list[str]:
    """Every name the function answers to locally: its logical id, its local name and, when the
    template gives it a FunctionName, that name as deployed here (stack name STACK_NAME)."""
    names = [logical_id, local_function_name(logical_id)]
    declared = template["Resources"][logical_id].get("Properties", {}).get("FunctionName")
    if isinstance(declared, dict) and "Fn::Sub" in declared and isinstance(declared["Fn::Sub"], str):
        refs = {
            **template_refs(template, TABLE_NAME),
            "AWS::StackName": STACK_NAME,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
        }
        declared = re.sub(
            r"\$\{([^}]+)\}", lambda match: str(refs.get(match.group(1), match.group(0))), declared["Fn::Sub"]
        )
    if isinstance(declared, str) and declared:
        names.append(declared)
    return names


def load_function(
    template: Mapping[str, Any],
    logical_id: str,
    environment: Mapping[str, str],
    handler_file: Path | None = None,
) -> LocalFunction:
    """Import the function's handler under a module name of its own, after setting its env.

    `environment` goes into os.environ first (the handlers share this process, so the last
    function loaded wins on a name both define differently; Powertools reads its service name
    when the handler module is imported, so each function still gets its own).
    `handler_file` overrides the template's file (tests only).
    """
    spec = function_spec(dict(template), logical_id, template_refs(template, TABLE_NAME))
    path = handler_file or spec.code_dir / f"{spec.module.replace('.', '/')}.py"
    os.environ.update(environment)
    _prepend_sys_path(LAYER_DIR)
    _prepend_sys_path(path.parent, after=LAYER_DIR)
    module_name = f"local_stack_{logical_id.lower()}_{spec.module.replace('.', '_')}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    handler = getattr(module, spec.handler)
    return LocalFunction(
        name=local_function_name(logical_id),
        handler=handler,
        timeout_s=int(function_properties(template, logical_id, "Timeout") or DEFAULT_TIMEOUT),
        memory_mb=int(function_properties(template, logical_id, "MemorySize") or DEFAULT_MEMORY),
        environment=dict(environment),
    )


def _prepend_sys_path(directory: Path, after: Path | None = None) -> None:
    entry = str(directory)
    if entry in sys.path:
        return
    index = sys.path.index(str(after)) + 1 if after is not None and str(after) in sys.path else 0
    sys.path.insert(index, entry)

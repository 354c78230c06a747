"""Load a Lambda handler from its file in-process and call it with a fake Lambda context."""

from __future__ import annotations

import contextvars
import ctypes
import importlib.util
import json
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local_stack.iam.enforce import as_function
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

    def __init__(self, function_name: str, memory_mb: int, timeout_s: float):
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


MAX_REQUEST_BYTES = 6 * 1024 * 1024  # a synchronous Invoke's payload: "Request must be smaller than 6291456 bytes"
MAX_RESPONSE_BYTES = (
    6 * 1024 * 1024 + 100
)  # "Response payload size exceeded maximum allowed payload size (6291556 bytes)"
MAX_ASYNC_REQUEST_BYTES = 1024 * 1024  # an asynchronous (Event) Invoke's payload: 1 MB


class LambdaError(Exception):
    """An invocation that failed the way Lambda reports it: `error_type` as in `errorType`."""

    error_type = "Unhandled"


class RequestTooLarge(LambdaError):
    """Lambda's Invoke API refused the event: the function did not run (RequestEntityTooLargeException)."""

    error_type = "RequestEntityTooLargeException"


class FunctionTimedOut(LambdaError):
    """The invocation was still running at the function's Timeout and was stopped."""

    error_type = "Sandbox.Timedout"


class ResponseTooLarge(LambdaError):
    """The handler returned more than Lambda passes back from a synchronous invocation."""

    error_type = "Function.ResponseSizeTooLarge"


class _Stopped(BaseException):
    """Raised asynchronously in a timed-out invocation's threads, as Lambda stops its process."""


def payload_size(payload: Any) -> int | None:
    """Bytes of `payload` as JSON, as API Gateway and Lambda serialize it (None: not JSON-able)."""
    try:
        return len(json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8"))
    except (TypeError, ValueError):
        return None


_invocation_threads: contextvars.ContextVar[list[threading.Thread] | None] = contextvars.ContextVar(
    "invocation_threads", default=None
)
_thread_start = threading.Thread.start


def _start_and_track(self: threading.Thread) -> None:
    """Thread.start that remembers threads started by an invocation (so a timeout can stop them)."""
    started = _invocation_threads.get()
    if started is not None:
        started.append(self)
    _thread_start(self)


threading.Thread.start = _start_and_track  # type: ignore[method-assign]


def _raise_in(thread: threading.Thread) -> None:
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(_Stopped))


@dataclass
class LocalFunction:
    """One function: its handler, its template settings and a lock (one warm container).

    Every invocation goes through `call` (`invoke` is `call` one at a time). The handler runs in
    a thread of its own, in a copy of the caller's contextvars; at `timeout_s` the invocation is
    stopped as Lambda stops it: "Task timed out after N.NN seconds" is logged, `_Stopped` is
    raised in the handler's thread and in the threads it started, the caller gets
    FunctionTimedOut, and the next invocation loads the handler again (a cold start), since the
    old module's state (clients, pools, locks) may have been left half-way.
    """

    name: str
    handler: Callable[[Any, Any], Any]
    timeout_s: float
    memory_mb: int
    environment: dict[str, str]
    logical_id: str = ""
    reload: Callable[[], Callable[[Any, Any], Any]] | None = None  # a fresh container's handler
    log: Callable[[str], None] | None = None  # where "Task timed out" goes (None: stdout)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _container: threading.Lock = field(default_factory=threading.Lock)
    _dead: bool = False

    def invoke(self, event: Any) -> Any:
        with self.lock:
            return self.call(event)

    def call(self, event: Any) -> Any:
        """One synchronous invocation (as if in another container when others are running).

        Raises RequestTooLarge (the function did not run), FunctionTimedOut, ResponseTooLarge,
        or the handler's own exception.
        """
        size = payload_size(event)
        if size is not None and size > MAX_REQUEST_BYTES:
            raise RequestTooLarge(f"Request must be smaller than {MAX_REQUEST_BYTES} bytes for the Invoke operation")
        handler = self._handler()
        context = LambdaContext(self.name, self.memory_mb, self.timeout_s)
        outcome: dict[str, Any] = {}
        started: list[threading.Thread] = []
        done = threading.Event()

        def run() -> None:
            _invocation_threads.set(started)
            try:
                outcome["result"] = handler(event, context)
            except _Stopped:
                pass
            except BaseException as error:  # noqa: BLE001 - handed to the caller, as Lambda reports it
                outcome["error"] = error
            finally:
                done.set()

        caller_context = contextvars.copy_context()
        thread = threading.Thread(
            target=caller_context.run, args=(run,), name=f"{self.logical_id or self.name}-invocation", daemon=True
        )
        _thread_start(thread)
        if not done.wait(self.timeout_s):
            self._stop(thread, started, context.aws_request_id)
            raise FunctionTimedOut(
                f"RequestId: {context.aws_request_id} Error: Task timed out after {self.timeout_s:.2f} seconds"
            )
        if "error" in outcome:
            raise outcome["error"]
        result = outcome.get("result")
        size = payload_size(result)
        if size is not None and size > MAX_RESPONSE_BYTES:
            raise ResponseTooLarge(
                f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
            )
        return result

    def _handler(self) -> Callable[[Any, Any], Any]:
        with self._container:
            if self._dead and self.reload is not None:
                self.handler = self.reload()
                self._dead = False
            return self.handler

    def _stop(self, thread: threading.Thread, started: list[threading.Thread], request_id: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        line = f"{now} {request_id} Task timed out after {self.timeout_s:.2f} seconds"
        if self.log is not None:
            self.log(line)
        else:
            print(line, flush=True)
        for victim in [thread, *started]:
            _raise_in(victim)
        with self._container:
            self._dead = True


def function_properties(template: Mapping[str, Any], logical_id: str, name: str) -> Any:
    props = template["Resources"][logical_id].get("Properties", {})
    globals_fn = template.get("Globals", {}).get("Function", {})
    return props.get(name, globals_fn.get(name))


def template_refs(template: Mapping[str, Any], table_name: str) -> dict[str, str]:
    """Values for !Ref: every parameter's default, the local table's name for `Table`, and each
    function's name here (its FunctionName as deployed, else its local name), as AWS's !Ref of a
    function is its name: what a function invokes by must be what its role grants."""
    refs = _parameter_refs(template, table_name)
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::Serverless::Function":
            refs[logical_id] = deployed_function_name(template, logical_id)
    return refs


def _parameter_refs(template: Mapping[str, Any], table_name: str) -> dict[str, str]:
    refs = {
        name: parameter_default(template, name)
        for name, spec in template.get("Parameters", {}).items()
        if "Default" in spec
    }
    refs["Table"] = table_name
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
    name = deployed_function_name(template, logical_id)
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


def deployed_function_name(template: Mapping[str, Any], logical_id: str) -> str:
    """The function's name here: its FunctionName as deployed (stack STACK_NAME), else its local name."""
    return function_names(template, logical_id)[-1]


def function_names(template: Mapping[str, Any], logical_id: str) -> list[str]:
    """Every name the function answers to locally: its logical id, its local name and, when the
    template gives it a FunctionName, that name as deployed here (stack name STACK_NAME)."""
    names = [logical_id, local_function_name(logical_id)]
    declared = template["Resources"][logical_id].get("Properties", {}).get("FunctionName")
    if isinstance(declared, dict) and "Fn::Sub" in declared and isinstance(declared["Fn::Sub"], str):
        refs = {
            **_parameter_refs(template, TABLE_NAME),
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
    log: Callable[[str], None] | None = None,
) -> LocalFunction:
    """Import the function's handler under a module name of its own, after setting its env.

    `environment` goes into os.environ first (the handlers share this process, so the last
    function loaded wins on a name both define differently; Powertools reads its service name
    when the handler module is imported, so each function still gets its own).
    `handler_file` overrides the template's file (tests only). An import error propagates.
    """

    def import_handler() -> Callable[[Any, Any], Any]:
        # Every AWS call the handler makes is checked against the function's role (local_stack.iam).
        return as_function(logical_id, _import_handler(template, logical_id, environment, handler_file))

    return LocalFunction(
        name=deployed_function_name(template, logical_id),
        handler=import_handler(),
        timeout_s=float(function_properties(template, logical_id, "Timeout") or DEFAULT_TIMEOUT),
        memory_mb=int(function_properties(template, logical_id, "MemorySize") or DEFAULT_MEMORY),
        environment=dict(environment),
        logical_id=logical_id,
        reload=import_handler,
        log=log,
    )


FLOW_ENTRY = re.compile(r"^segment_connector\.[a-z_]+\.entry$")


def forget_flow_entries() -> None:
    """Each function's app.py hands over to its flow's entry module, which holds the warm state
    (logger, clients, caches): a cold start imports that module anew too."""
    for name in [name for name in sys.modules if FLOW_ENTRY.match(name)]:
        del sys.modules[name]
        package = sys.modules.get(name.rpartition(".")[0])
        if package is not None and hasattr(package, "entry"):
            delattr(package, "entry")  # else `from <flow> import entry` takes the old module


def _import_handler(
    template: Mapping[str, Any], logical_id: str, environment: Mapping[str, str], handler_file: Path | None
) -> Callable[[Any, Any], Any]:
    """A fresh import of the function's handler module (a cold start)."""
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
    forget_flow_entries()
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    handler: Callable[[Any, Any], Any] = getattr(module, spec.handler)
    return handler


def _prepend_sys_path(directory: Path, after: Path | None = None) -> None:
    entry = str(directory)
    if entry in sys.path:
        return
    index = sys.path.index(str(after)) + 1 if after is not None and str(after) in sys.path else 0
    sys.path.insert(index, entry)

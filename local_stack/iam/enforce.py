"""Every botocore call made while acting as a function is authorized against that function's role.

The local stack and the tests run the handlers in-process; `acting_as(logical_id)` marks the
calls one function makes (contextvars: the threads a handler starts through a ThreadPoolExecutor
inherit it, as every thread of a Lambda process has its role's credentials). A call the role does
not allow raises the ClientError AWS would send (AccessDeniedException / AccessDenied), naming
the action and the resource, before anything reaches the emulator. Calls made outside any
function (test set-up, the operator CLI) are not checked: they stand for an administrator.

Every checked call can be recorded (IAM_CALLS_FILE, one JSON line per permission) for `make iam`.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from local_stack.iam.policy import Decision, decide
from local_stack.iam.requests import Need, Place, needs
from local_stack.iam.roles import Role

CALLS_FILE_ENV = "IAM_CALLS_FILE"

_acting_as: contextvars.ContextVar[str | None] = contextvars.ContextVar("acting_as", default=None)


@dataclass(frozen=True)
class Authority:
    """The roles of one deployment and where it is (for the resources of each call)."""

    roles: Mapping[str, Role]
    place: Place
    kms_needs: Callable[[str, str, Mapping[str, Any], Place], list[Need]] | None = None
    environment_key: str | None = None  # the customer managed key of the functions' environment
    record: bool = True  # False: a test's altered template, whose calls say nothing of template.yaml


_authority: Authority | None = None
_lock = threading.Lock()
_installed = False


_unrecorded: contextvars.ContextVar[bool] = contextvars.ContextVar("unrecorded", default=False)


@contextmanager
def unrecorded() -> Iterator[None]:
    """Calls checked but left out of `make iam`'s record (a test that expects a denial)."""
    token = _unrecorded.set(True)
    try:
        yield
    finally:
        _unrecorded.reset(token)


def current_function() -> str | None:
    """The logical id of the function whose role the current call runs under (None: the harness)."""
    return _acting_as.get()


@contextmanager
def acting_as(logical_id: str) -> Iterator[None]:
    """Calls made inside (and in threads the function starts) use `logical_id`'s role."""
    token = _acting_as.set(logical_id)
    try:
        yield
    finally:
        _acting_as.reset(token)


def as_function(logical_id: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    """`handler` wrapped so that every call it makes is checked against `logical_id`'s role."""

    def run(*args: Any, **kwargs: Any) -> Any:
        if _authority is not None and _authority.environment_key:
            _decrypt_environment(logical_id, _authority)
        with acting_as(logical_id):
            return handler(*args, **kwargs)

    run.__wrapped__ = handler  # type: ignore[attr-defined]
    return run


class ActingClient:
    """A boto3 client whose every call runs as `logical_id` (for what Lambda does with a function's
    role outside its code: the event source mapping reading the stream, the destinations)."""

    def __init__(self, client: Any, logical_id: str):
        self._client, self._logical_id = client, logical_id

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with acting_as(self._logical_id):
                return attribute(*args, **kwargs)

        return call


def enforce(authority: Authority) -> None:
    """From now on, calls made while acting as a function are checked against `authority`."""
    global _authority
    install()
    _authority = authority


def stop_enforcing() -> None:
    """Calls are no longer checked (a test's deployment is gone)."""
    global _authority
    _authority = None


def install() -> None:
    """Patch botocore (once per process) to authorize every API call before it is sent."""
    global _installed
    with _lock:
        if _installed:
            return
        from botocore.client import BaseClient

        original = BaseClient._make_api_call

        def _make_api_call(self: Any, operation_name: str, api_params: Mapping[str, Any]) -> Any:
            function = _acting_as.get()
            if function is not None and _authority is not None:
                _authorize(self, function, operation_name, api_params, _authority)
            return original(self, operation_name, api_params)

        BaseClient._make_api_call = _make_api_call
        _propagate_context_to_pool_threads()
        _installed = True


def _propagate_context_to_pool_threads() -> None:
    """Work a handler submits to a ThreadPoolExecutor runs under the handler's role too."""
    original_submit = concurrent.futures.ThreadPoolExecutor.submit

    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        context = contextvars.copy_context()
        return original_submit(self, context.run, fn, *args, **kwargs)

    concurrent.futures.ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]


def _authorize(client: Any, function: str, operation: str, params: Mapping[str, Any], authority: Authority) -> None:
    service = client.meta.service_model.service_name
    role = authority.roles.get(function)
    required = needs(service, operation, params, authority.place)
    if authority.kms_needs is not None:
        required += authority.kms_needs(service, operation, params, authority.place)
    for need in required:
        decision = (
            decide(role.statements, need.action, need.resource, need.context)
            if role is not None
            else Decision(False, reason=f"{function} has no role in the template")
        )
        if authority.record:
            _record(function, need, decision)
        if not decision.allowed:
            raise _access_denied(client, service, operation, function, need, authority.place)


class KMSAccessDeniedException(Exception):
    """Lambda could not decrypt the function's environment with its role: the invocation fails."""


def _decrypt_environment(function: str, authority: Authority) -> None:
    """With a customer managed key, Lambda decrypts the environment with the function's role."""
    from local_stack.iam.deployment import key_arn

    role = authority.roles.get(function)
    arn = key_arn(authority.place, str(authority.environment_key))
    need = Need("kms:Decrypt", arn, {"kms:viaservice": f"lambda.{authority.place.region}.amazonaws.com"})
    decision = decide(role.statements, need.action, need.resource, need.context) if role else Decision(False)
    if authority.record:
        _record(function, need, decision)
    if not decision.allowed:
        raise KMSAccessDeniedException(
            "Lambda was unable to decrypt the environment variables because KMS access was denied "
            f"({function}'s role may not kms:Decrypt {arn})"
        )


def _access_denied(client: Any, service: str, operation: str, function: str, need: Need, place: Place) -> Exception:
    code = "AccessDenied" if service == "sqs" else "AccessDeniedException"
    role = f"arn:{place.partition}:sts::{place.account}:assumed-role/{function}Role/{function}"
    message = (
        f"User: {role} is not authorized to perform: {need.action} on resource: {need.resource} "
        "because no identity-based policy allows the "
        f"{need.action} action"
    )
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400 if service != "sqs" else 403},
    }
    error: Exception = client.exceptions.from_code(code)(response, operation)
    return error


def _record(function: str, need: Need, decision: Decision) -> None:
    """Append each distinct (function, permission, outcome) once per process."""
    path = os.environ.get(CALLS_FILE_ENV)
    if not path or _unrecorded.get():
        return
    grants = [
        {
            "statement": statement.sid,
            "actions": statement.matching_action_patterns(need.action),
            "resources": statement.matching_resource_patterns(need.resource),
        }
        for statement in decision.granted_by
    ]
    entry = {
        "function": function,
        "action": need.action,
        "resource": need.resource,
        "allowed": decision.allowed,
        "granted_by": sorted(grants, key=lambda grant: str(grant["statement"])),
    }
    line = json.dumps(entry, sort_keys=True)
    with _lock:
        if (path, line) in _recorded:
            return
        _recorded.add((path, line))
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


_recorded: set[tuple[str, str]] = set()

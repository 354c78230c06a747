"""A delivery's body -> its messages: the limits, the caller's credentials, the batch shapes
Segment sends, and each message validated (field errors in plain words)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from segment_connector.domain.errors import BadRequest, PayloadTooLarge
from segment_connector.domain.explain import field_errors, json_error, summary
from segment_connector.domain.models.messages import MESSAGE_ADAPTER
from segment_connector.domain.storable import MAX_DEPTH, Unstorable, storable
from segment_connector.runtime.auth import authenticate

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BODY_BYTES = 5 * 1024 * 1024  # Lambda takes 6 MB synchronously; Webhooks (Actions) batches stay below
MAX_BATCH_MESSAGES = 4_000  # Webhooks (Actions) sends at most this many per request
ID_FIELDS = frozenset(
    {
        "messageId",
        "message_id",
        "userId",
        "user_id",
        "anonymousId",
        "anonymous_id",
        "groupId",
        "group_id",
        "previousId",
        "previous_id",
    }
)
TRACKING_CALLS = ("identify", "track", "page", "screen", "group", "alias", "batch")


@dataclass
class Delivery:
    """One HTTP request carrying Segment messages."""

    raw_body: bytes
    headers: Mapping[str, str]  # lower-case names
    source: Literal["segment", "api"]
    call: str | None = None  # /v1/<call>; None for /segment


@dataclass
class Secrets:
    api_key: str | None
    shared_secret: str | None


def raw_messages(delivery: Delivery, secrets: Secrets) -> tuple[list[Any], bool]:
    """The messages of an authenticated delivery within the limits (not validated yet), and
    whether it was a single message (not a batch). Raises ConnectorError subclasses."""
    if delivery.call is not None and delivery.call not in TRACKING_CALLS:
        raise BadRequest(f"unknown call /v1/{delivery.call}")
    if len(delivery.raw_body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body exceeds {MAX_BODY_BYTES} bytes (5 MiB)")
    body = _authenticated_body(delivery, secrets)
    messages, single = split_messages(body, delivery.call)
    if len(messages) > MAX_BATCH_MESSAGES:
        raise PayloadTooLarge(f"the body holds {len(messages)} messages; at most {MAX_BATCH_MESSAGES}")
    return messages, single


def split_messages(body: Any, call: str | None) -> tuple[list[Any], bool]:
    """The messages a body carries, and whether it was a single message (not a batch)."""
    if call not in (None, "batch"):
        if not isinstance(body, dict):
            raise BadRequest(f"/v1/{call} takes one JSON object")
        return [{**body, "type": call}], True
    if isinstance(body, list):
        messages = body
    elif isinstance(body, dict) and "batch" in body:
        if not isinstance(body["batch"], list):
            raise BadRequest("`batch` must be a list of messages")
        context, integrations = body.get("context"), body.get("integrations")
        shared_context = context if isinstance(context, dict) else {}
        shared_integrations = integrations if isinstance(integrations, dict) else {}
        messages = [_with_shared(m, shared_context, shared_integrations) for m in body["batch"]]
    elif isinstance(body, dict) and call is None:
        return [body], True
    else:
        raise BadRequest('body must be a Segment message, a JSON array of messages or {"batch": [...]}')
    if not messages:
        raise BadRequest("the body holds no messages")
    return messages, False


def _with_shared(message: Any, context: dict[str, Any], integrations: dict[str, Any]) -> Any:
    """Top-level batch context/integrations apply to every item (Segment's batch semantics)."""
    if not isinstance(message, dict) or not (context or integrations):
        return message
    merged = dict(message)
    for name, shared in (("context", context), ("integrations", integrations)):
        own = message.get(name)
        if shared and (own is None or isinstance(own, dict)):
            merged[name] = {**shared, **(own or {})}
    return merged


def _authenticated_body(delivery: Delivery, secrets: Secrets) -> Any:
    """The parsed body, once the caller is known: a request without valid credentials in its
    headers is parsed only where the body may carry them (the Tracking API's writeKey)."""
    parsed: list[Any] = []

    def body() -> Any:
        if not parsed:
            parsed.append(_parse(delivery.raw_body))
        return parsed[0]

    def write_key() -> Any:
        try:
            value = body()
        except BadRequest:
            return None
        return value.get("writeKey") if isinstance(value, dict) else None

    authenticate(
        delivery.headers,
        delivery.raw_body,
        api_key=secrets.api_key,
        shared_secret=secrets.shared_secret,
        write_key_in_body=write_key if delivery.source == "api" else None,
    )
    return body()


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number (write null, or a string)")


def _parse(raw_body: bytes) -> Any:
    try:
        return json.loads(raw_body, parse_constant=_reject_constant)
    except RecursionError:
        raise BadRequest(f"body is nested too deeply (at most {MAX_DEPTH} levels are stored)") from None
    except ValueError as error:  # also UnicodeDecodeError: bytes that are not UTF-8
        raise BadRequest(f"the body is {json_error(error)}") from None


def validate(raw: Any) -> Any:
    """The message model of one raw message; BadRequest (the fields in plain words) or PayloadTooLarge."""
    if not isinstance(raw, dict):
        raise BadRequest("a message must be a JSON object")
    try:
        raw = {key: value if key in ID_FIELDS else storable(value, key, depth=1) for key, value in raw.items()}
    except Unstorable as error:
        raise _invalid([{"field": error.field, "error": error.reason}]) from None
    if (
        len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
        > MAX_MESSAGE_BYTES
    ):
        raise PayloadTooLarge(f"message exceeds {MAX_MESSAGE_BYTES // 1024} KB")
    try:
        return MESSAGE_ADAPTER.validate_python(raw)
    except ValidationError as error:
        raise _invalid(_field_errors(error)) from None


def _field_errors(error: ValidationError) -> list[dict[str, str]]:
    """In plain words (explain.field_errors), the discriminator tag pydantic puts first dropped."""
    return [
        {**detail, "field": "(message)" if detail["field"] == "(document)" else detail["field"]}
        for detail in field_errors(error, union_tags=(*TRACKING_CALLS[:-1], "delete"))
    ]


def _invalid(details: list[dict[str, str]]) -> BadRequest:
    return BadRequest(f"the message cannot be stored: {summary(details)}", details)

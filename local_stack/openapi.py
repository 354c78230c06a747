"""The OpenAPI document of the HTTP API (docs/openapi.json), generated from the code.

    python -m local_stack.openapi docs/openapi.json     # `make openapi`: (re)write it
    python -m local_stack.openapi --check docs/openapi.json   # exit 1 if it is stale

Operations (paths, methods, path parameters, summaries, descriptions, answers) come from the
routes of functions/inbound/app.py and functions/console/app.py through Powertools'
`get_openapi_json_schema`; the request schemas from the message models of
`segment_connector.domain.models.messages` and the settings model; the answer schemas from the models
below, which mirror `segment_connector.views.profiles`, `IngestResult.body` and
`segment_connector.ops.console` (tests/test_openapi.py checks real answers against them). Nothing
here runs in a Lambda function: the handlers build no schema at import.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from local_stack import openapi_profiles
from local_stack.template import ROOT

DOCUMENT = ROOT / "docs" / "openapi.json"
INBOUND_APP = ROOT / "functions" / "inbound" / "app.py"
CONSOLE_APP = ROOT / "functions" / "console" / "app.py"
LAYER_DIR = ROOT / "layers" / "common"
REF = "#/components/schemas/{model}"


# -- answer schemas (what the handlers return) ---------------------------------------------------


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(_Schema):
    status: Literal["ok"]


class FieldError(_Schema):
    field: str = Field(description="Dotted path of the field, e.g. traits.address.city")
    error: str


class Rejected(_Schema):
    index: int = Field(description="Position of the message in the delivery")
    messageId: str | int | None = Field(description="The message's id, when it had a usable one")  # noqa: N815 - the wire name
    error: str
    details: list[FieldError] = Field(default_factory=list, description="Present when fields are named")


class DeliveryResult(_Schema):
    success: Literal[True]
    stored: int
    duplicate: int = Field(description="Already stored (same messageId): acknowledged, not stored again")
    unchanged: int = Field(description="Redelivered or without effect: the data was already there")
    ignored: int = Field(description="Sent by this connector or opted out (integrations), or a disabled call type")
    ignored_reasons: dict[str, int] = Field(
        description=(
            "Why the ignored messages were not stored, in plain words, with a count each, e.g. "
            '`{"group calls are not stored: handle_accounts is off": 2}`; `{}` when none was ignored'
        )
    )
    rejected: list[Rejected] = Field(
        default_factory=list, description="Invalid messages of a batch (present only when there are some)"
    )


class Error(_Schema):
    error: str
    code: str = Field(description="bad_request, unauthorized, not_found, method_not_allowed, payload_too_large, ...")
    message: str
    details: list[FieldError] = Field(default_factory=list, description="Present when fields are named")


class User(_Schema):
    id: str = Field(description="The profile's id: its best identity, e.g. user_id:u1")
    user_id: str | None
    anonymous_ids: list[str] = Field(description="Oldest first")
    email: str | None
    traits: dict[str, Any]
    segments: list[str] = Field(description="Names of the user segments the user is in now")
    account_id: str | None
    created_at: str | None
    updated_at: str | None


class Event(_Schema):
    message_id: str
    type: Literal["track", "page", "screen"]
    event: str | None = Field(description="The track's event name, or the page/screen name")
    properties: dict[str, Any]
    context: dict[str, Any]
    timestamp: str = Field(description="ISO-8601 in UTC with milliseconds")
    source: str = Field(description="segment, api or connector")


class Account(_Schema):
    id: str = Field(description="The groupId")
    traits: dict[str, Any]
    segments: list[str] = Field(description="Names of the account segments the account is in now")


# -- the console's answers -------------------------------------------------------------------------


class StatusWarning(_Schema):
    code: str = Field(
        description="no_write_key, no_users_in_filter, nothing_to_send, unknown_segment, forward_events_off, ..."
    )
    message: str


class Counts(_Schema):
    users: int
    accounts: int
    events: int
    dead_letters: int
    exact: bool = Field(description="False: users, accounts and events are estimated (the count ran out of time)")
    counted_at: str = Field(description="When users, accounts and events were counted (ISO-8601; kept a minute)")
    age_seconds: int = Field(description="Seconds since then (dead_letters is counted on every read)")


class DeadLetter(_Schema):
    message_id: str | None
    reason: str | None
    at: str = Field(description="When it was kept (ISO-8601)")
    type: str | None
    user_id: str | None = Field(description="The userId (else anonymousId) of the message")


class Deletions(_Schema):
    in_progress: int = Field(description="GDPR deletions accepted whose sweep has not finished")
    oldest_deleted_at: str | None = Field(description="When the oldest of them was received (ISO-8601)")
    oldest_age_seconds: int | None = Field(description="Seconds since then (a stalled one is resumed after 10 min)")


class ConsoleDashboard(_Schema):
    webhook_url: str = Field(description="This API's /segment, as the caller reached it")
    auth_header: str | None = Field(description='`Basic base64("<api key>:")`; null without an API key')
    warnings: list[StatusWarning]
    counts: Counts
    deletions: Deletions
    resync: dict[str, Any] = Field(description='The last resync job (`{"status": "none"}` before the first)')
    replay: ReplayJob = Field(description='The last replay of the dead letters (`{"status": "none"}` before the first)')
    dead_letters: list[DeadLetter] = Field(description="The 50 oldest")


class ConsoleStatus(_Schema):
    resync: dict[str, Any] = Field(description="The dashboard's `resync`")
    replay: ReplayJob = Field(description="The dashboard's `replay`")


class ReplayError(_Schema):
    message_id: str
    reason: str


class ReplayJob(_Schema):
    status: Literal["none", "running", "done", "failed", "stalled"] = Field(
        description="stalled: its worker stopped and no invocation took it over (a new replay replaces it)"
    )
    id: str | None = None
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    limit: int | None = Field(default=None, description="Only the oldest N dead letters")
    total: int | None = Field(default=None, description="Dead letters to try, counted when it started")
    tried: int | None = None
    replayed: int | None = None
    failed: int | None = None
    errors: list[ReplayError] = Field(default_factory=list, description="The first errors (at most 5)")
    reason: str | None = Field(default=None, description="Why it failed")


class ConsoleReplay(ReplayJob):
    started: bool = Field(description="False: a replay was running already; this is its progress")


class ConsoleSettings(_Schema):
    settings: dict[str, Any] = Field(description="The document, missing settings at their defaults")
    write_key_set: bool
    errors: list[FieldError] = Field(default_factory=list, description="Present when the stored document is invalid")


class ConsoleSaved(_Schema):
    saved: bool = Field(description="False: the document was already stored as it is")
    version: int | None = Field(description="The parameter's new version")
    resync: Literal["started", "unchanged"]
    settings: dict[str, Any]
    warnings: list[StatusWarning]


class ConsoleWriteKey(_Schema):
    write_key: str = Field(min_length=1, max_length=1024)


class ConsoleWriteKeySet(_Schema):
    write_key_set: Literal[True]


class Sampled(_Schema):
    users: int
    accounts: int
    events: int


class ConsoleCatalogue(_Schema):
    traits: list[str] = Field(description="Dotted trait paths of users, most frequent first")
    account_traits: list[str]
    events: list[str] = Field(description="Track event names, plus page and screen")
    sampled: Sampled


class ConsolePreviewRequest(_Schema):
    kind: Literal["user", "account"] = "user"
    rule: dict[str, Any] = Field(description="A segment rule, as in the settings' `segments`")


class ConsolePreview(_Schema):
    kind: Literal["user", "account"]
    sampled: int
    matched: int
    examples: list[dict[str, Any]] = Field(description="A few of the matching users (id, user_id, email, traits)")


class Sent(_Schema):
    in_user_filter: bool
    identify_traits: dict[str, Any] | None = Field(description="The traits its identify carries; null when not sent")


class ConsoleProfileApi(_Schema):
    traits_path: str = Field(description="The user's traits on the Segment-compatible Profile API (path)")


class ConsoleUser(_Schema):
    user: User
    events: list[Event] = Field(description="The latest 20, newest first")
    account: Account | None
    sent: Sent
    profile_api: ConsoleProfileApi
    computed_traits: list[str] = Field(description="The names of the user's traits that are computed from its events")


ANSWERS: dict[str, Any] = {
    "Health": Health,
    "DeliveryResult": DeliveryResult,
    "Error": Error,
    "User": User,
    "Events": list[Event],
    "Account": Account,
    "ConsoleDashboard": ConsoleDashboard,
    "ConsoleStatus": ConsoleStatus,
    "ConsoleReplay": ConsoleReplay,
    "ConsoleSettings": ConsoleSettings,
    "ConsoleSaved": ConsoleSaved,
    "ConsoleWriteKey": ConsoleWriteKey,
    "ConsoleWriteKeySet": ConsoleWriteKeySet,
    "ConsoleCatalogue": ConsoleCatalogue,
    "ConsolePreviewRequest": ConsolePreviewRequest,
    "ConsolePreview": ConsolePreview,
    "ConsoleUser": ConsoleUser,
    **openapi_profiles.ANSWERS,
}


# Query parameters a handler reads from the event itself (no signature parameter declares them).
QUERY_PARAMETERS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("/v1/users/{reference}/events", "get"): [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "How many events, newest first",
            "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
        },
        {
            "name": "next",
            "in": "query",
            "required": False,
            "description": "The cursor of the previous page (its X-Next-Cursor header): the events after it",
            "schema": {"type": "string"},
        },
    ],
    ("/console/api/users", "get"): [
        {
            "name": "q",
            "in": "query",
            "required": True,
            "description": "user_id:<v>, anonymous_id:<v>, email:<v>, or a bare value tried as each",
            "schema": {"type": "string", "minLength": 1},
        }
    ],
}


# -- the document ---------------------------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    """Components: the answer models and the message models, every $ref pointing at components."""
    from segment_connector.domain.models.messages import SegmentMessage
    from segment_connector.domain.models.settings import ConnectorSettings

    schemas: dict[str, Any] = {}

    def add(name: str, annotation: Any) -> None:
        schema = TypeAdapter(annotation).json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema

    for name, annotation in ANSWERS.items():
        add(name, annotation)
    add("Message", SegmentMessage)
    add("SettingsDocument", ConnectorSettings)
    schemas["Delivery"] = {
        "description": (
            "One message, a JSON array of messages (Webhooks (Actions) batching) or "
            '`{"batch": [...]}`. On `/v1/<call>` the path names the call for a single message; '
            'the Tracking API may carry `"writeKey"`. At most 5 MiB and 4,000 messages; one '
            "message at most 32 KB."
        ),
        "oneOf": [
            {"$ref": REF.format(model="Message")},
            {"type": "array", "items": {"$ref": REF.format(model="Message")}, "maxItems": 4000},
            {
                "type": "object",
                "properties": {
                    "batch": {"type": "array", "items": {"$ref": REF.format(model="Message")}, "maxItems": 4000},
                    "writeKey": {"type": "string"},
                },
                "required": ["batch"],
            },
        ],
    }
    return dict(sorted(schemas.items()))


def _resolver(path: Path) -> Any:
    """A handler's resolver (its app.py imported as the Lambda runtime would, without AWS)."""
    if str(LAYER_DIR) not in sys.path:
        sys.path.insert(0, str(LAYER_DIR))
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_app_for_openapi", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.entry.app


def document() -> dict[str, Any]:
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBase, HTTPBearer, License, Tag

    from segment_connector import __version__

    app = _resolver(INBOUND_APP)
    generated = app.get_openapi_json_schema(
        title="segment-connector HTTP API",
        version=__version__,
        openapi_version="3.1.0",
        description=(
            "Segment deliveries, Segment's HTTP Tracking API and the Profile API of a self-hosted "
            "segment-connector stack, and the console's API (see README.md). Every error answer has a JSON body "
            "`{error, code, message, details?}` (the Segment-compatible Profile API's: `{error: {code, message}}`, "
            "as Segment's); an unknown route is answered 404, a known path with another method 405 with `Allow`."
        ),
        license_info=License(name="Apache-2.0", identifier="Apache-2.0"),
        tags=[
            Tag(name="Deliveries", description="Segment destination and Tracking API calls: stored in DynamoDB"),
            Tag(name="Profile API", description="Users, their events and accounts as stored (Basic auth only)"),
            Tag(
                name="Profile API (Segment-compatible)",
                description="Segment's Profile API routes and shapes (HTTP Basic with the profile token)",
            ),
            Tag(name="Health", description="Liveness"),
            Tag(name="Console", description="The console's data and changes (admin key as a Bearer token)"),
        ],
        security_schemes={
            "basicAuth": HTTPBase(
                scheme="basic",
                description='The API key as user name, an empty password: `Basic base64("<api key>:")`.',
            ),
            "bearerAuth": HTTPBearer(description="The console's admin key (<prefix>/admin-key)"),
            "profileToken": HTTPBase(
                scheme="basic",
                description="The profile token (<prefix>/profile-token) as user name, an empty password.",
            ),
        },
        security=[{"basicAuth": []}],
    )
    doc: dict[str, Any] = json.loads(generated)
    console: dict[str, Any] = json.loads(_resolver(CONSOLE_APP).get_openapi_json_schema(openapi_version="3.1.0"))
    doc["paths"].update(openapi_profiles.paths())
    doc["paths"].update(console["paths"])
    for (path, method), parameters in QUERY_PARAMETERS.items():
        doc["paths"][path][method].setdefault("parameters", []).extend(parameters)
    doc.setdefault("components", {})["schemas"] = _schemas()
    return doc


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack.openapi", description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DOCUMENT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the code")
    args = parser.parse_args(argv)
    text = render(document())
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is stale: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(text, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

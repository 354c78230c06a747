"""The Segment-compatible Profile API in the OpenAPI document (local_stack/openapi.py): its
operations, query parameters and answer schemas. InboundFunction serves these routes from its
not_found fallback (no route registered at a cold start), so they are described here; they mirror
segment_connector.views.segment_profiles, and tests/test_openapi.py checks real answers against them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PATH = "/v1/spaces/{space_id}/collections/{collection}/profiles/{profile}"


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Cursor(_Schema):
    url: str = Field(description="This request's path and query")
    has_more: bool
    next: str = Field(description='Pass as `next` for the following page; "" on the last page')
    limit: int


class ProfileTraits(_Schema):
    traits: dict[str, Any] = Field(
        description='Name -> value (verbose: `{"value", "updated_at"}`); class=audience: segment name -> true'
    )
    cursor: Cursor


class ExternalId(_Schema):
    id: str
    type: str = Field(description="user_id, anonymous_id, email or group_id")
    collection: Literal["users", "accounts"]
    created_at: str | None = Field(description="When the profile was created (the connector keeps no time per id)")
    encoding: Literal["none"]


class ProfileExternalIds(_Schema):
    data: list[ExternalId]
    cursor: Cursor


class EventExternalId(_Schema):
    id: str
    type: Literal["user_id", "anonymous_id"]
    collection: Literal["users"]
    encoding: Literal["none"]


class ProfileEvent(_Schema):
    type: Literal["track", "page", "screen"]
    event: str | None = Field(default=None, description="A track's event name")
    name: str | None = Field(default=None, description="A page's or screen's name")
    message_id: str
    timestamp: str = Field(description="ISO-8601 in UTC with milliseconds")
    properties: dict[str, Any]
    context: dict[str, Any]
    external_ids: list[EventExternalId] = Field(description="The ids the event arrived with")


class ProfileEvents(_Schema):
    data: list[ProfileEvent]
    cursor: Cursor


class Metadata(_Schema):
    created_at: str | None
    updated_at: str | None
    expires_at: None
    first_message_id: str | None = Field(description="The oldest stored event's (accounts: null)")
    last_message_id: str | None = Field(description="The newest stored event's (accounts: null)")


class ProfileMetadata(_Schema):
    metadata: Metadata


class Link(_Schema):
    to_collection: Literal["users", "accounts"]
    external_ids: list[ExternalId]


class ProfileLinks(_Schema):
    data: list[Link]
    cursor: Cursor


class ProfileApiErrorBody(_Schema):
    code: str = Field(description="authentication_error, not_found, validation_error, store_unavailable, ...")
    message: str = Field(description='e.g. "Profile was not found.", or the parameter and what is wrong with it')


class ProfileApiError(_Schema):
    error: ProfileApiErrorBody


ANSWERS: dict[str, Any] = {
    "ProfileTraits": ProfileTraits,
    "ProfileExternalIds": ProfileExternalIds,
    "ProfileEvents": ProfileEvents,
    "ProfileMetadata": ProfileMetadata,
    "ProfileLinks": ProfileLinks,
    "ProfileApiError": ProfileApiError,
}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _limit(default: int, most: int) -> dict[str, Any]:
    return _query("limit", "How many", {"type": "integer", "minimum": 1, "maximum": most, "default": default})


_NEXT = _query("next", "The `cursor.next` of the previous answer", {"type": "string"})
_NAMES = {"type": "string", "description": "comma-separated"}

QUERY_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "traits": [
        _query("include", "Only these trait names", _NAMES),
        _limit(10, 200),
        _NEXT,
        _query("verbose", "Each trait as {value, updated_at}", {"type": "boolean", "default": False}),
        _query("class", "Audiences or computed traits", {"type": "string", "enum": ["audience", "computed_trait"]}),
    ],
    "external_ids": [_query("include", "Only these id types", _NAMES), _limit(10, 100), _NEXT],
    "events": [
        _limit(10, 100),
        _NEXT,
        _query("sort", "Newest (desc) or oldest (asc) first", {"type": "string", "enum": ["desc", "asc"]}),
        _query("start", "From this time (ISO 8601, inclusive)", {"type": "string", "format": "date-time"}),
        _query("end", "Before this time (ISO 8601, exclusive)", {"type": "string", "format": "date-time"}),
        _query("include", "Only these event names", _NAMES),
        _query("exclude", "Not these event names", _NAMES),
    ],
    "metadata": [],
    "links": [_limit(20, 100), _NEXT],
}
OPERATIONS = {  # resource: (summary, description, answer schema)
    "traits": ("A profile's traits", "Nested traits come as stored.", "ProfileTraits"),
    "external_ids": ("A profile's external ids", "By type, then id.", "ProfileExternalIds"),
    "events": ("A profile's events", "A user's track, page and screen calls (an account: none).", "ProfileEvents"),
    "metadata": ("A profile's metadata", "Created, updated, first and last stored event.", "ProfileMetadata"),
    "links": ("A profile's links", "A user's account, an account's users.", "ProfileLinks"),
}
ERRORS = {
    400: "validation_error: a bad limit, sort, date, cursor, class, id type or collection (the message names it)",
    401: "authentication_error: not the profile token",
    404: "not_found: no such space, resource or profile",
    405: "invalid_request_error: a method other than GET (`Allow: GET`)",
    503: "store_unavailable: DynamoDB throttled or unavailable (`Retry-After`)",
}
PATH_PARAMETERS = [
    {
        "name": "space_id",
        "in": "path",
        "required": True,
        "description": "The SpaceId parameter",
        "schema": {"type": "string"},
    },
    {
        "name": "collection",
        "in": "path",
        "required": True,
        "description": "users or accounts",
        "schema": {"type": "string", "enum": ["users", "accounts"]},
    },
    {
        "name": "profile",
        "in": "path",
        "required": True,
        "description": "<id_type>:<id>: user_id, anonymous_id, email (users) or group_id (accounts); URL-encoded",
        "schema": {"type": "string"},
    },
]


def _json(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def paths() -> dict[str, Any]:
    """The five operations, as the document's `paths` holds them."""
    documented: dict[str, Any] = {}
    for resource, (summary, description, schema) in OPERATIONS.items():
        responses: dict[str, Any] = {"200": {"description": "The resource", **_json(schema)}}
        responses.update(
            {str(status): {"description": text, **_json("ProfileApiError")} for status, text in ERRORS.items()}
        )
        documented[f"{PATH}/{resource}"] = {
            "get": {
                "tags": ["Profile API (Segment-compatible)"],
                "summary": summary,
                "description": (
                    f"{description} Segment's Profile API: its routes, query parameters, shapes, cursors and "
                    "errors. HTTP Basic with the profile token as the user name (not the API key). Every "
                    "answer has a `Request-Id` header."
                ),
                "operationId": f"segmentProfile{resource.title().replace('_', '')}",
                "parameters": [*PATH_PARAMETERS, *QUERY_PARAMETERS[resource]],
                "responses": responses,
                "security": [{"profileToken": []}],
            }
        }
    return documented

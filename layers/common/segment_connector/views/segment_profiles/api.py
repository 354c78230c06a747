"""One request of the Segment-compatible Profile API, from the token check to the answer.

`/v1/spaces/<space_id>/collections/<users|accounts>/profiles/<id_type>:<id>/<resource>`; the
checks run in this order: the token (401), the space (404), the collection, id type and query
parameters (400), the profile (404). Every answer carries a `Request-Id` header.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any
from urllib.parse import quote

from segment_connector.domain.errors import BadRequest, ConnectorError, NotFound, PermissionDenied
from segment_connector.domain.models.items import Account, UserProfile
from segment_connector.runtime import config
from segment_connector.runtime.auth import token_matches
from segment_connector.store.profile_store import ProfileStore
from segment_connector.views import profiles
from segment_connector.views.segment_profiles import resources
from segment_connector.views.segment_profiles.events import events_page
from segment_connector.views.segment_profiles.request import ProfileApiError, ProfileRequest, invalid, not_found

TOKEN = "profile-token"  # noqa: S105 - the parameter's name, not a secret
COLLECTIONS = ("users", "accounts")
RESOURCES = ("traits", "external_ids", "events", "metadata", "links")

Answer = tuple[int, dict[str, Any], dict[str, str]]
logger = logging.getLogger(__name__)


def answer(store: ProfileStore, request: ProfileRequest) -> Answer:
    """(status, body, headers) of the request; errors in Segment's shape, never raised."""
    headers = {"Request-Id": request.request_id or uuid.uuid4().hex}
    try:
        return 200, _resource(store, request), headers
    except ProfileApiError as error:
        return error.status, error.body(), {**error.headers, **headers}
    except ConnectorError as error:  # DynamoDB busy (503), a denied call (500), ...
        if isinstance(error, PermissionDenied):
            logger.error("profile api request failed: AWS denied a call", extra={"denied": error.denied})
        elif error.status >= 500:
            logger.warning("profile api request failed", extra={"status": error.status, "error": error.message})
        shaped = ProfileApiError(error.status, error.code, error.message)
        return error.status, shaped.body(), {**error.headers, **headers}


def method_not_allowed(request_id: str) -> Answer:
    """Any method but GET on these routes: 405 in Segment's shape, with `Allow` and `Request-Id`."""
    error = ProfileApiError(405, "invalid_request_error", "method not allowed; use GET")
    return error.status, error.body(), {"Allow": "GET", "Request-Id": request_id or uuid.uuid4().hex}


def authenticate(request: ProfileRequest) -> None:
    """HTTP Basic, the profile token as the user name (the password is not read)."""
    token = _token()
    if not token_matches(request.authorization, token):
        missing = "" if token else f" (none is configured: create the SecureString {config.parameter_name(TOKEN)})"
        raise ProfileApiError(
            401,
            "authentication_error",
            f"send HTTP Basic auth with the Profile API's access token as the user name{missing}",
        )


def _token() -> str | None:
    """The profile token; AWS's refusal to read it (the role lacks the grant) is PermissionDenied."""
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        return config.get_secret(TOKEN)
    except GetParameterError as error:
        if "AccessDenied" not in repr(error.__cause__ or error):
            raise
        raise PermissionDenied(f"ssm:GetParameter on {config.parameter_name(TOKEN)}") from error


def _resource(store: ProfileStore, request: ProfileRequest) -> dict[str, Any]:
    authenticate(request)
    if request.space_id != config.space_id() or request.resource not in RESOURCES:
        raise not_found()
    if request.collection not in COLLECTIONS:
        raise invalid("collection", f"must be one of {', '.join(COLLECTIONS)}")
    subject = _subject(store, request)
    if request.resource == "traits":
        return resources.traits(store, request, subject, config.load_settings)
    if request.resource == "external_ids":
        return resources.external_ids_page(request, subject)
    if request.resource == "events":
        return events_page(store, request, subject)
    if request.resource == "metadata":
        return resources.metadata(store, subject)
    return resources.links(store, request, subject)


def _subject(store: ProfileStore, request: ProfileRequest) -> UserProfile | Account:
    id_type, value = request.identity()
    if request.collection == "accounts":
        account = store.profiles.accounts([value]).get(value)
        if account is None:
            raise not_found()
        return account
    try:
        return profiles.find_user(store, f"{id_type}:{quote(value, safe='')}")
    except NotFound:
        raise not_found() from None
    except BadRequest:
        raise invalid("id", "is not a valid identifier") from None

"""InboundFunction: Segment deliveries, the Tracking API and the Profile API (thin routes)."""

from __future__ import annotations

import base64
import re
import warnings
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit

from segment_connector.domain.errors import ConnectorError, MethodNotAllowed, NotFound, PermissionDenied, http_answer
from segment_connector.domain.storable import ProfileTooLarge
from segment_connector.runtime import config
from segment_connector.runtime.auth import authenticate
from segment_connector.runtime.logs import LOGGER_OPTIONS, function_logs, route_package_logs
from segment_connector.runtime.route_docs import answers, request_body
from segment_connector.store import events as stored_events
from segment_connector.store import profiles as stored_profiles
from segment_connector.store.profile_store import ProfileStore, shared_store

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Imported by the routes that need them, not at a cold start: a delivery imports the ingest (the
# message models, the writers' pool) on its first call; the Profile API's reads and /health never do.

logger = Logger(**LOGGER_OPTIONS)
route_package_logs(logger)
# Routes like /health publish no metric; that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", "No application metrics to publish")
metrics = Metrics()
app = APIGatewayHttpResolver()

DELIVERY_METHODS = ["POST", "PUT", "PATCH"]  # Webhooks (Actions) lets users pick the method
# The fallback's patterns (not_found) stay strings, compiled (and cached by `re`) when a request
# first needs them: a delivery never does, and a cold start compiles none of them.
ROUTES = {
    r"^/segment$": ", ".join(DELIVERY_METHODS),
    r"^/v1/(identify|track|page|screen|group|alias|batch)$": "POST",
    r"^/v1/users/[^/]+(/events)?$": "GET",
    r"^/v1/accounts/[^/]+$": "GET",
    r"^/health$": "GET",
}


# Every request but /health reads or writes profiles and events: their stores' modules (with the
# table's item models) are imported at init, not by the first request. (ProfileStore makes each of
# its stores on first use: the console's first requests need neither.)
REQUEST_STORES = (stored_profiles, stored_events)


def store() -> ProfileStore:
    return shared_store(config.table_name())


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


def _deliver(source: str, call: str | None = None) -> Response[Any]:
    from segment_connector.inbound.delivery import Delivery, Secrets
    from segment_connector.inbound.ingest import receive

    event = app.current_event
    raw = base64.b64decode(event.body or "") if event.is_base64_encoded else (event.body or "").encode()
    delivery = Delivery(raw_body=raw, headers=event.headers or {}, source=source, call=call)  # type: ignore[arg-type]
    secrets = Secrets(config.get_secret("api-key"), config.get_secret("shared-secret"))
    result = receive(delivery, config.load_settings(), secrets, store(), config.inbound_writers())
    for outcome, count in {**result.counts, "rejected": len(result.rejected)}.items():
        if count:
            metrics.add_metric(name=f"Messages{outcome.capitalize()}", unit=MetricUnit.Count, value=count)
    return _json(200, result.body())


def _authorize_read() -> None:
    """The Profile API takes Basic auth only: a signature over an empty body would be a fixed
    token that never expires."""
    authenticate(
        app.current_event.headers or {},
        b"",
        api_key=config.get_secret("api-key"),
        shared_secret=None,
        allow_signature=False,
    )


# -- routes -------------------------------------------------------------------------------------
# The metadata below (small dicts and strings; no schema is generated at import) feeds the
# OpenAPI document, docs/openapi.json, which `make openapi` generates (local_stack/openapi.py).


ERROR_ANSWERS = {
    400: "Body not JSON or an invalid message (`details` names the fields)",
    401: "Bad or missing credentials",
    404: "No such user, account or route",
    413: "Body over 5 MiB or 4,000 messages, or a single message over 32 KB",
    500: "Settings invalid, keys not configured, or a profile too large for DynamoDB (Segment retries)",
    503: "DynamoDB throttled or unavailable (`Retry-After`; Segment retries)",
}
_DELIVERY_ERRORS = (400, 401, 413, 500, 503)
_READ_ERRORS = (400, 401, 404, 500, 503)
_DELIVERY_BODY = request_body("Delivery")


def _answers(ok: str, schema: str, *errors: int) -> dict[int, Any]:
    return answers(ok, schema, {status: ERROR_ANSWERS[status] for status in errors})


@app.get(
    "/health",
    summary="Health check",
    description="Answers without authentication and without touching DynamoDB or SSM.",
    tags=["Health"],
    operation_id="health",
    responses=_answers("The function runs", "Health"),
    openapi_extensions={"security": []},
)
def health() -> Response[dict[str, Any]]:
    return _json(200, {"status": "ok"})


@app.route(
    "/segment",
    method=DELIVERY_METHODS,
    summary="Segment destination delivery",
    description=(
        "One Segment message, a JSON array of messages (Webhooks (Actions) batching) or "
        '`{"batch": [...]}`, stored with source `segment`. Accepts `POST`, `PUT` and `PATCH`. '
        "Authenticated by Basic auth or a valid `X-Signature` (HMAC-SHA1 of the body with the shared secret). "
        "Invalid items of a batch are listed in `rejected` without failing the others."
    ),
    tags=["Deliveries"],
    responses=_answers("Stored (counts per outcome)", "DeliveryResult", *_DELIVERY_ERRORS),
    openapi_extensions={"requestBody": _DELIVERY_BODY},
)
def segment_destination() -> Response[dict[str, Any]]:
    return _deliver("segment")


@app.post(
    "/v1/<call>",
    summary="Tracking API call",
    description=(
        "Segment's HTTP Tracking API: `call` is identify, track, page, screen, group, alias or batch; "
        "stored with source `api`. Authenticated by Basic auth (the API key as user name), "
        '`X-Signature`, or `"writeKey"` in the body. Any other `call` is answered 404.'
    ),
    tags=["Deliveries"],
    operation_id="trackingApiCall",
    responses=_answers("Stored (counts per outcome)", "DeliveryResult", *_DELIVERY_ERRORS, 404),
    openapi_extensions={"requestBody": _DELIVERY_BODY},
)
def tracking_api(call: str) -> Response[dict[str, Any]]:
    from segment_connector.inbound.delivery import TRACKING_CALLS

    if call not in TRACKING_CALLS:
        return not_found(None)
    return _deliver("api", call)


@app.get(
    "/v1/users/<reference>",
    summary="A user profile",
    description=(
        "`reference` is `user_id:<v>`, `anonymous_id:<v>` or `email:<v>` (URL-encoded). "
        "Returns the stored traits and ids with the user's current segments. Basic auth only."
    ),
    tags=["Profile API"],
    operation_id="getUser",
    responses=_answers("The user", "User", *_READ_ERRORS),
)
def get_user(reference: str) -> Response[dict[str, Any]]:
    from segment_connector.views import profiles

    _authorize_read()
    return _json(200, profiles.user_view(store(), config.load_settings(), reference))


@app.get(
    "/v1/users/<reference>/events",
    summary="A user's events",
    description=(
        "The events of all the user's identities, newest first; `limit` (query) is 1 to 500, default 50: "
        "that many when the user has them, fewer when the answer would exceed 5 MB. When more events follow, "
        "the answer's `X-Next-Cursor` header holds the cursor to pass as `next` (query) for the next page "
        '(and `Link` the next page\'s path, `rel="next"`). Basic auth only.'
    ),
    tags=["Profile API"],
    operation_id="getUserEvents",
    responses=_answers("The events, newest first", "Events", *_READ_ERRORS),
)
def get_user_events(reference: str) -> Response[dict[str, Any]]:
    from segment_connector.views import profiles

    _authorize_read()
    query = app.current_event
    limit, cursor = query.get_query_string_value("limit"), query.get_query_string_value("next")
    events, following = profiles.user_events_page(store(), reference, limit, cursor)
    headers = {}
    if following is not None:
        page = f"{query.path}?{urlencode({**({'limit': limit} if limit else {}), 'next': following})}"
        headers = {"X-Next-Cursor": following, "Link": f'<{page}>; rel="next"'}
    return _json(200, events, headers)


@app.get(
    "/v1/accounts/<group_id>",
    summary="An account",
    description="An account (group) with its traits and current account segments. Basic auth only.",
    tags=["Profile API"],
    operation_id="getAccount",
    responses=_answers("The account", "Account", *_READ_ERRORS),
)
def get_account(group_id: str) -> Response[dict[str, Any]]:
    from segment_connector.views import profiles

    _authorize_read()
    return _json(200, profiles.account_view(store(), config.load_settings(), group_id))


# -- the Segment-compatible Profile API (GET /v1/spaces/<space>/collections/<collection>/profiles/
# <id_type>:<id>/<resource>): served from not_found's PROFILE_ROUTES, so that the cold start
# registers no route for it; its OpenAPI operations are in local_stack/openapi_profiles.py.


def segment_profile(space_id: str, collection: str, profile: str, resource: str) -> Response[Any]:
    from segment_connector.views.segment_profiles.api import answer
    from segment_connector.views.segment_profiles.request import ProfileRequest

    event = app.current_event
    query = event.raw_event.get("rawQueryString") or ""
    request = ProfileRequest(
        space_id=space_id,
        collection=collection,
        profile=profile,
        resource=resource,
        query=event.query_string_parameters or {},
        authorization=(event.headers or {}).get("authorization"),
        url=event.path + (f"?{query}" if query else ""),
        request_id=event.request_context.request_id,
    )
    status, body, headers = answer(store(), request)
    return _json(status, body, headers)


def connector_error(error: ConnectorError) -> Response[Any]:
    status, body, headers = http_answer(error)
    if isinstance(error, ProfileTooLarge):
        # An operator must act (ProfilesTooLarge alarm): Segment retries the delivery meanwhile.
        metrics.add_metric(name="ProfilesTooLarge", unit=MetricUnit.Count, value=1)
        logger.error(
            "request failed: a profile no longer fits in one DynamoDB item",
            extra={"status": status, "profile_pk": error.pk, "item_bytes": error.size},
        )
    elif isinstance(error, PermissionDenied):
        logger.error("request failed: AWS denied a call", extra={"status": status, "denied": error.denied})
    elif status >= 500:
        logger.warning("request failed", extra={"status": status, "error": error.message})
    return _json(status, body, headers)


app.exception_handler(ConnectorError)(connector_error)  # every ConnectorError a route raises


# The resolver's path parameters exclude characters such as `#`, NUL or U+FFFD; any profile
# reference is looked up (and answered 404 or 400) rather than refused as an unknown route.
PROFILE_ROUTES = (
    (r"^/v1/users/(?P<reference>[^/]+)$", get_user),
    (r"^/v1/users/(?P<reference>[^/]+)/events$", get_user_events),
    (r"^/v1/accounts/(?P<group_id>[^/]+)$", get_account),
    (
        r"^/v1/spaces/(?P<space_id>[^/]+)/collections/(?P<collection>[^/]+)/profiles/(?P<profile>[^/]+)/"
        r"(?P<resource>[^/]+)$",
        segment_profile,
    ),
    # any other path under /v1/spaces/: Segment's 404 (after the token check)
    (r"^/v1/spaces/(?P<space_id>)(?P<collection>)(?P<profile>)(?P<resource>)", segment_profile),
)


def not_found(_: Exception | None) -> Response[dict[str, Any]]:
    path = app.current_event.path
    if app.current_event.http_method == "GET":
        for pattern, view in PROFILE_ROUTES:
            match = re.match(pattern, path)
            if match:
                try:
                    return view(**match.groupdict())
                except ConnectorError as error:
                    return connector_error(error)
    if path.startswith("/v1/spaces/"):  # the Segment-compatible Profile API takes GET only
        from segment_connector.views.segment_profiles.api import method_not_allowed

        return _json(*method_not_allowed(app.current_event.request_context.request_id))
    allowed = [method for pattern, method in ROUTES.items() if re.match(pattern, path)]
    answer: ConnectorError
    if allowed:
        answer = MethodNotAllowed(f"method not allowed; use {allowed[0]}", headers={"Allow": allowed[0]})
    else:
        answer = NotFound(f"no route {path}")
    return connector_error(answer)


app.not_found(not_found)  # a path no route takes


@function_logs(logger)
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

"""ConsoleFunction: the console page (GET /console) and its API (/console/api/*, admin key only)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from segment_connector.domain.errors import ConnectorError, NotFound, http_answer
from segment_connector.runtime import config
from segment_connector.runtime.auth import authenticate_admin
from segment_connector.runtime.logs import LOGGER_OPTIONS, function_logs, route_package_logs
from segment_connector.runtime.route_docs import answers, request_body

if TYPE_CHECKING:  # annotations only: a cold start imports neither module
    from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
    from aws_lambda_powertools.utilities.typing import LambdaContext

    # imported by console(): the page and its assets need none of them
    from segment_connector.ops.console import Console
    from segment_connector.ops.dashboard_counts import CountsCache
    from segment_connector.runtime.invoker import FunctionInvoker
    from segment_connector.runtime.parameter_store import ParameterStore

logger = Logger(**LOGGER_OPTIONS)
route_package_logs(logger)
app = APIGatewayHttpResolver()

# The page's files ship with the function (functions/console/static), not the layer: its handler
# says where they are (serve_files_from).
STATIC = Path("static")
JAVASCRIPT = "text/javascript; charset=utf-8"  # what browsers require of an ES module
ASSETS = {  # the only files served (no path from the request reaches the file system)
    "console.js": JAVASCRIPT,  # the entry module: sign-in, tabs; it imports the others
    "shared.js": JAVASCRIPT,
    "dashboard.js": JAVASCRIPT,
    "settings.js": JAVASCRIPT,
    "choices.js": JAVASCRIPT,
    "segments.js": JAVASCRIPT,
    "users.js": JAVASCRIPT,
    "console.css": "text/css; charset=utf-8",
}
# No inline script or style, nothing from elsewhere, never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# Keys are read again after a few seconds: a new or rotated admin key applies at once (the
# console's traffic is a person's clicks, so the extra SSM reads cost nothing worth caching for).
KEY_MAX_AGE = 5
_files: dict[str, str] = {}
_parameters: ParameterStore | None = None
_invoker: FunctionInvoker | None = None
_counts: CountsCache | None = None  # the dashboard's counts, shared by this warm container's invocations


def serve_files_from(directory: Path) -> None:
    global STATIC
    STATIC = directory
    _files.clear()


def console() -> Console:
    """The API's parts, built on its first request: a cold start that serves the page (the first
    request of a session) imports neither the console's code, its models nor the table's client."""
    global _parameters, _invoker, _counts
    from segment_connector.ops.console import Console
    from segment_connector.ops.dashboard_counts import CountsCache
    from segment_connector.runtime.invoker import FunctionInvoker
    from segment_connector.runtime.parameter_store import ParameterStore
    from segment_connector.store.profile_store import shared_store

    if _invoker is None:
        _invoker = FunctionInvoker()
    if _counts is None:
        _counts = CountsCache()
    prefix = os.environ.get("PARAMETER_PREFIX", "/segment-connector")
    key_id = os.environ.get("PARAMETER_KEY_ARN") or None
    if _parameters is None or _parameters.prefix != prefix.rstrip("/") or _parameters.key_id != key_id:
        _parameters = ParameterStore(prefix, key_id=key_id)
    return Console(
        store=shared_store(config.table_name()),
        parameters=_parameters,
        invoker=_invoker,
        outbound_function=os.environ["OUTBOUND_FUNCTION_NAME"],
        counts_cache=_counts,
    )


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def _file(name: str, content_type: str) -> Response[Any]:
    if name not in _files:
        _files[name] = (STATIC / name).read_text(encoding="utf-8")
    return Response(status_code=200, content_type=content_type, body=_files[name], headers=SECURITY_HEADERS)


def _raw_body() -> bytes:
    event = app.current_event
    return base64.b64decode(event.body or "") if event.is_base64_encoded else (event.body or "").encode()


def require_admin_key(resolver: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """Every /console/api/ route: the admin key as a Bearer token (503 while none exists)."""
    if resolver.current_event.path.startswith("/console/api/"):
        authenticate_admin(
            resolver.current_event.headers.get("authorization"),
            config.get_secret("admin-key", KEY_MAX_AGE),
            parameter=config.parameter_name("admin-key"),
        )
    return next_middleware(resolver)


app.use(middlewares=[require_admin_key])


def webhook_url() -> str:
    """The URL Segment posts to: this API's own address, as the caller reached it."""
    headers = app.current_event.headers
    host = headers.get("host") or app.current_event.request_context.domain_name
    scheme = (headers.get("x-forwarded-proto") or "https").split(",")[0].strip()
    return f"{scheme}://{host}/segment"


# -- the page -------------------------------------------------------------------------------------


@app.get("/console", include_in_schema=False)
def page() -> Response[str]:
    return _file("index.html", "text/html; charset=utf-8")


@app.get("/console/assets/<name>", include_in_schema=False)
def asset(name: str) -> Response[str]:
    if name not in ASSETS:
        raise NotFound(f"no asset {name}")
    return _file(name, ASSETS[name])


# -- the API --------------------------------------------------------------------------------------
# The metadata (plain dicts; no schema is built at import) feeds docs/openapi.json (`make openapi`).

_ADMIN: dict[str, Any] = {"security": [{"bearerAuth": []}]}
_ERRORS = {
    400: "Not a JSON object, or invalid (`details` names the fields)",
    401: "Missing or wrong admin key",
    404: "No such user",
    502: "OutboundFunction failed",
    503: "No admin key exists (`not_configured`), or DynamoDB/SSM busy",
}


def _answers(ok: str, schema: str, *errors: int) -> dict[int, Any]:
    return answers(ok, schema, {status: _ERRORS[status] for status in {401, 503, *errors}})


def _request(schema: str) -> dict[str, Any]:
    return {**_ADMIN, "requestBody": request_body(schema)}


@app.get(
    "/console/api/dashboard",
    summary="The console's dashboard",
    description="What to paste into Segment, the status warnings, counts (taken at most once a minute: "
    "`counted_at`, `age_seconds`), the last resync and the oldest dead letters.",
    tags=["Console"],
    operation_id="consoleDashboard",
    responses=_answers("The dashboard", "ConsoleDashboard"),
    openapi_extensions=_ADMIN,
)
def dashboard() -> Response[dict[str, Any]]:
    return _json(200, console().dashboard(config.get_secret("api-key", KEY_MAX_AGE), webhook_url()))


@app.get(
    "/console/api/status",
    summary="The resync and replay jobs",
    description="The dashboard's `resync` and `replay` only (no count, no scan): what the page polls while a job runs.",
    tags=["Console"],
    operation_id="consoleStatus",
    responses=_answers("The jobs", "ConsoleStatus"),
    openapi_extensions=_ADMIN,
)
def status() -> Response[dict[str, Any]]:
    return _json(200, console().status())


@app.post(
    "/console/api/replay",
    summary="Replay dead letters",
    description="OutboundFunction sends the dead letters again; its counts and each letter's outcome.",
    tags=["Console"],
    operation_id="consoleReplay",
    responses=_answers("The replay's outcome", "ConsoleReplay", 502),
    openapi_extensions=_ADMIN,
)
def replay() -> Response[dict[str, Any]]:
    return _json(200, console().replay())


@app.get(
    "/console/api/settings",
    summary="The settings document",
    description="The stored document with every missing setting at its default, whether a write key exists, "
    "and the document's errors when it is invalid.",
    tags=["Console"],
    operation_id="consoleSettings",
    responses=_answers("The settings", "ConsoleSettings"),
    openapi_extensions=_ADMIN,
)
def get_settings() -> Response[dict[str, Any]]:
    return _json(200, console().settings())


@app.put(
    "/console/api/settings",
    summary="Save the settings document",
    description="Validated with the functions' model (400 `settings_invalid` naming each field, nothing saved); "
    "a changed document starts a resync.",
    tags=["Console"],
    operation_id="consoleSaveSettings",
    responses=_answers("Saved (or unchanged)", "ConsoleSaved", 400),
    openapi_extensions=_request("SettingsDocument"),
)
def put_settings() -> Response[dict[str, Any]]:
    return _json(
        200, console().save_settings(_raw_body(), has_api_key=config.get_secret("api-key", KEY_MAX_AGE) is not None)
    )


@app.put(
    "/console/api/write-key",
    summary="Set the write key",
    description="Stores `write_key` as the SecureString <prefix>/write-key; the value is never answered.",
    tags=["Console"],
    operation_id="consoleSetWriteKey",
    responses=_answers("Stored", "ConsoleWriteKeySet", 400),
    openapi_extensions=_request("ConsoleWriteKey"),
)
def put_write_key() -> Response[dict[str, Any]]:
    return _json(200, console().set_write_key(_raw_body()))


@app.get(
    "/console/api/catalogue",
    summary="Trait and event names",
    description="Names for the settings' pickers, from a bounded sample of the table (most frequent first).",
    tags=["Console"],
    operation_id="consoleCatalogue",
    responses=_answers("The names", "ConsoleCatalogue"),
    openapi_extensions=_ADMIN,
)
def catalogue() -> Response[dict[str, Any]]:
    return _json(200, console().catalogue())


@app.post(
    "/console/api/segments/preview",
    summary="Preview a segment rule",
    description="How many users (or accounts) of a sample the rule matches, and a few of them.",
    tags=["Console"],
    operation_id="consolePreview",
    responses=_answers("The preview", "ConsolePreview", 400),
    openapi_extensions=_request("ConsolePreviewRequest"),
)
def preview() -> Response[dict[str, Any]]:
    return _json(200, console().preview(_raw_body()))


@app.get(
    "/console/api/users",
    summary="Look a user up",
    description="`q` is `user_id:<v>`, `anonymous_id:<v>`, `email:<v>` or a bare value tried as each: the user, "
    "its account, latest events and what is sent to Segment.",
    tags=["Console"],
    operation_id="consoleFindUser",
    responses=_answers("The user", "ConsoleUser", 400, 404),
    openapi_extensions=_ADMIN,
)
def find_user() -> Response[dict[str, Any]]:
    return _json(200, console().find_user(app.current_event.get_query_string_value("q")))


def connector_error(error: ConnectorError) -> Response[Any]:
    status, body, headers = http_answer(error)
    if status >= 500:
        logger.warning("console request failed", extra={"status": status, "error": error.message})
    return _json(status, body, headers)


app.exception_handler(ConnectorError)(connector_error)  # every ConnectorError a route raises


def not_found(_: Exception | None) -> Response[Any]:
    return connector_error(NotFound(f"no route {app.current_event.http_method} {app.current_event.path}"))


app.not_found(not_found)  # a path no route takes


@function_logs(logger)
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

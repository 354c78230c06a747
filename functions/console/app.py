"""ConsoleFunction: the console page (GET /console) and its API (/console/api/*, admin key only)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_connector import config
from segment_connector.auth import authenticate_admin
from segment_connector.console import Console
from segment_connector.errors import ConnectorError, NotFound, http_answer
from segment_connector.invoker import FunctionInvoker
from segment_connector.logs import route_package_logs
from segment_connector.parameter_store import ParameterStore
from segment_connector.storage import shared_store

logger = Logger()
route_package_logs(logger)
app = APIGatewayHttpResolver()

STATIC = Path(__file__).parent / "static"
ASSETS = {  # the only files served (no path from the request reaches the file system)
    "console.js": "text/javascript; charset=utf-8",
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
_invoker = FunctionInvoker()


def console() -> Console:
    global _parameters
    prefix = os.environ.get("PARAMETER_PREFIX", "/segment-connector")
    if _parameters is None or _parameters.prefix != prefix.rstrip("/"):
        _parameters = ParameterStore(prefix)
    return Console(
        store=shared_store(config.table_name()),
        parameters=_parameters,
        invoker=_invoker,
        outbound_function=os.environ["OUTBOUND_FUNCTION_NAME"],
    )


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def _file(name: str, content_type: str) -> Response:
    if name not in _files:
        _files[name] = (STATIC / name).read_text(encoding="utf-8")
    return Response(status_code=200, content_type=content_type, body=_files[name], headers=SECURITY_HEADERS)


def _body() -> bytes:
    event = app.current_event
    return base64.b64decode(event.body or "") if event.is_base64_encoded else (event.body or "").encode()


def require_admin_key(resolver: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
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


@app.get("/console")
def page() -> Response:
    return _file("index.html", "text/html; charset=utf-8")


@app.get("/console/assets/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no asset {name}")
    return _file(name, ASSETS[name])


# -- the API --------------------------------------------------------------------------------------


@app.get("/console/api/dashboard")
def dashboard() -> Response:
    return _json(200, console().dashboard(config.get_secret("api-key", KEY_MAX_AGE), webhook_url()))


@app.post("/console/api/replay")
def replay() -> Response:
    return _json(200, console().replay())


@app.get("/console/api/settings")
def get_settings() -> Response:
    return _json(200, console().settings())


@app.put("/console/api/settings")
def put_settings() -> Response:
    return _json(
        200, console().save_settings(_body(), has_api_key=config.get_secret("api-key", KEY_MAX_AGE) is not None)
    )


@app.put("/console/api/write-key")
def put_write_key() -> Response:
    return _json(200, console().set_write_key(_body()))


@app.get("/console/api/catalogue")
def catalogue() -> Response:
    return _json(200, console().catalogue())


@app.post("/console/api/segments/preview")
def preview() -> Response:
    return _json(200, console().preview(_body()))


@app.get("/console/api/users")
def find_user() -> Response:
    return _json(200, console().find_user(app.current_event.get_query_string_value("q")))


@app.exception_handler(ConnectorError)
def connector_error(error: ConnectorError) -> Response:
    status, body, headers = http_answer(error)
    if status >= 500:
        logger.warning("console request failed", extra={"status": status, "error": error.message})
    return _json(status, body, headers)


@app.not_found
def not_found(_: Exception | None) -> Response:
    return connector_error(NotFound(f"no route {app.current_event.http_method} {app.current_event.path}"))


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

"""InboundFunction: Segment deliveries, the Tracking API and the Profile API (thin routes)."""

from __future__ import annotations

import base64
import re
import warnings
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_connector import config, inbound, profiles
from segment_connector.auth import authenticate
from segment_connector.errors import ConnectorError, MethodNotAllowed, NotFound, http_answer
from segment_connector.logs import route_package_logs
from segment_connector.storage import ProfileStore, shared_store

logger = Logger()
route_package_logs(logger)
# Routes like /health publish no metric; that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", "No application metrics to publish")
metrics = Metrics()
app = APIGatewayHttpResolver()

DELIVERY_METHODS = ["POST", "PUT", "PATCH"]  # Webhooks (Actions) lets users pick the method
ROUTES = {
    re.compile(r"^/segment$"): ", ".join(DELIVERY_METHODS),
    re.compile(r"^/v1/(identify|track|page|screen|group|alias|batch)$"): "POST",
    re.compile(r"^/v1/users/[^/]+(/events)?$"): "GET",
    re.compile(r"^/v1/accounts/[^/]+$"): "GET",
    re.compile(r"^/health$"): "GET",
}


def store() -> ProfileStore:
    return shared_store(config.table_name())


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


def _deliver(source: str, call: str | None = None) -> Response:
    event = app.current_event
    raw = base64.b64decode(event.body or "") if event.is_base64_encoded else (event.body or "").encode()
    delivery = inbound.Delivery(raw_body=raw, headers=event.headers or {}, source=source, call=call)  # type: ignore[arg-type]
    secrets = inbound.Secrets(config.get_secret("api-key"), config.get_secret("shared-secret"))
    result = inbound.receive(delivery, config.load_settings(), secrets, store(), config.inbound_writers())
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


@app.get("/health")
def health() -> Response:
    return _json(200, {"status": "ok"})


@app.route("/segment", method=DELIVERY_METHODS)
def segment_destination() -> Response:
    return _deliver("segment")


@app.post("/v1/<call>")
def tracking_api(call: str) -> Response:
    if call not in inbound.TRACKING_CALLS:
        return not_found(None)
    return _deliver("api", call)


@app.get("/v1/users/<reference>")
def get_user(reference: str) -> Response:
    _authorize_read()
    return _json(200, profiles.user_view(store(), config.load_settings(), reference))


@app.get("/v1/users/<reference>/events")
def get_user_events(reference: str) -> Response:
    _authorize_read()
    limit = app.current_event.get_query_string_value("limit")
    return _json(200, profiles.user_events(store(), reference, limit))


@app.get("/v1/accounts/<group_id>")
def get_account(group_id: str) -> Response:
    _authorize_read()
    return _json(200, profiles.account_view(store(), config.load_settings(), group_id))


@app.exception_handler(ConnectorError)
def connector_error(error: ConnectorError) -> Response:
    status, body, headers = http_answer(error)
    if status >= 500:
        logger.warning("request failed", extra={"status": status, "error": error.message})
    return _json(status, body, headers)


# The resolver's path parameters exclude characters such as `#`, NUL or U+FFFD; any profile
# reference is looked up (and answered 404 or 400) rather than refused as an unknown route.
PROFILE_ROUTES = (
    (re.compile(r"^/v1/users/(?P<reference>[^/]+)$"), get_user),
    (re.compile(r"^/v1/users/(?P<reference>[^/]+)/events$"), get_user_events),
    (re.compile(r"^/v1/accounts/(?P<group_id>[^/]+)$"), get_account),
)


@app.not_found
def not_found(_: Exception | None) -> Response:
    path = app.current_event.path
    if app.current_event.http_method == "GET":
        for pattern, view in PROFILE_ROUTES:
            match = pattern.match(path)
            if match:
                try:
                    return view(**match.groupdict())
                except ConnectorError as error:
                    return connector_error(error)
    allowed = [method for pattern, method in ROUTES.items() if pattern.match(path)]
    if allowed:
        error: ConnectorError = MethodNotAllowed(f"method not allowed; use {allowed[0]}", headers={"Allow": allowed[0]})
    else:
        error = NotFound(f"no route {path}")
    return connector_error(error)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
